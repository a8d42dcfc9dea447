//! Who a request came from, for everything keyed by client address (the
//! login throttle's `ip:` key, the login log events). Behind a reverse
//! proxy every socket peer is the proxy, so one address would throttle
//! everyone at once; the proxy says who its client was in
//! `X-Forwarded-For`. Anyone can send that header, so it is believed only
//! from the peers the operator lists in `server.trusted_proxies`, and only
//! as far as those proxies vouch for it: [`client_addr`] walks the hops
//! from the right (the one the nearest proxy appended) and stops at the
//! first address that is not a trusted proxy — what a client wrote to the
//! left of that is its own claim. With nothing trusted the header is never
//! read.
//!
//! It decides nothing about limits; [`ClientAddr`] is the extractor the
//! handlers take.

use crate::AppState;
use axum::extract::{ConnectInfo, FromRequestParts};
use axum::http::request::Parts;
use axum::http::HeaderValue;
use centinela_actors::cidr::CidrSet;
use std::convert::Infallible;
use std::fmt;
use std::net::{IpAddr, SocketAddr};

/// The client's address: `peer` when it is not a trusted proxy; else the
/// rightmost `X-Forwarded-For` hop that is not one (several headers read
/// as one list, in order). A hop that is not an address (`unknown`, an
/// obfuscated name, an empty item, bytes that are not text) ends the walk:
/// the last address checked — a trusted proxy — is the answer, since
/// nothing to its left can be vouched for. When every hop is trusted, the
/// leftmost. An IPv4-mapped IPv6 address is given as the IPv4 address it
/// carries, so one client has one key on a dual-stack socket.
pub fn client_addr<'a>(
    peer: IpAddr,
    forwarded_for: impl IntoIterator<Item = &'a HeaderValue>,
    trusted: &CidrSet,
) -> IpAddr {
    let mut current = peer.to_canonical();
    if !trusted.contains(current) {
        return current;
    }
    let headers: Vec<&HeaderValue> = forwarded_for.into_iter().collect();
    let hops = headers.iter().rev().flat_map(|h| match h.to_str() {
        Ok(list) => list.rsplit(',').map(hop).collect::<Vec<_>>(),
        Err(_) => vec![None],
    });
    for hop in hops {
        let Some(ip) = hop else {
            return current;
        };
        current = ip.to_canonical();
        if !trusted.contains(current) {
            return current;
        }
    }
    current
}

/// One `X-Forwarded-For` item as an address: `203.0.113.7`, `2001:db8::1`,
/// `[2001:db8::1]`, or either with a port (some proxies add one).
fn hop(item: &str) -> Option<IpAddr> {
    let item = item.trim();
    if let Ok(ip) = item.parse::<IpAddr>() {
        return Some(ip);
    }
    if let Ok(addr) = item.parse::<SocketAddr>() {
        return Some(addr.ip());
    }
    let bracketed = item.strip_prefix('[')?.strip_suffix(']')?;
    bracketed.parse::<std::net::Ipv6Addr>().ok().map(IpAddr::V6)
}

/// The request's client address ([`client_addr`] of the socket peer with
/// `server.trusted_proxies`); unknown when the router runs without a
/// socket (`oneshot` tests), which all such requests then share.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientAddr(pub Option<IpAddr>);

impl FromRequestParts<AppState> for ClientAddr {
    type Rejection = Infallible;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Infallible> {
        Ok(ClientAddr(peer_client(parts, state)))
    }
}

/// The client address of a request: the one the forwarding node saw for a
/// request another node of the fleet forwarded (its token checked, see
/// [`crate::forward`]), else [`client_addr`] of the socket peer.
pub fn peer_client(parts: &Parts, state: &AppState) -> Option<IpAddr> {
    if let Some(f) = parts.extensions.get::<crate::forward::Forwarded>() {
        return f.client;
    }
    {
        let peer = parts
            .extensions
            .get::<ConnectInfo<SocketAddr>>()
            .map(|ConnectInfo(a)| a.ip());
        let forwarded = parts.headers.get_all("x-forwarded-for");
        let trusted = &state.web.trusted_proxies;
        peer.map(|p| client_addr(p, forwarded.iter(), trusted))
    }
}

impl fmt::Display for ClientAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            Some(ip) => ip.fmt(f),
            None => f.write_str("unknown"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().expect("an address")
    }

    fn trusted(cidrs: &[&str]) -> CidrSet {
        CidrSet::parse(cidrs.iter().copied()).expect("cidrs")
    }

    /// `client_addr` of `peer` with these `X-Forwarded-For` header values.
    fn from(peer: &str, headers: &[&str], trust: &CidrSet) -> IpAddr {
        let values: Vec<HeaderValue> = headers
            .iter()
            .map(|h| HeaderValue::from_str(h).expect("a header value"))
            .collect();
        client_addr(ip(peer), &values, trust)
    }

    const PROXY: &str = "127.0.0.1";

    #[test]
    fn an_untrusted_peer_is_the_client_whatever_the_header_says() {
        let none = CidrSet::default();
        assert_eq!(
            from("198.51.100.4", &["203.0.113.7"], &none),
            ip("198.51.100.4")
        );
        assert_eq!(
            from(PROXY, &["203.0.113.7"], &none),
            ip(PROXY),
            "nothing trusted"
        );
        let proxy = trusted(&["127.0.0.1/32"]);
        assert_eq!(
            from("198.51.100.4", &["203.0.113.7"], &proxy),
            ip("198.51.100.4"),
            "a peer outside the list"
        );
        assert_eq!(from("127.0.0.2", &["203.0.113.7"], &proxy), ip("127.0.0.2"));
    }

    #[test]
    fn a_trusted_peer_without_a_header_is_the_client() {
        let proxy = trusted(&["127.0.0.1/32"]);
        assert_eq!(from(PROXY, &[], &proxy), ip(PROXY));
    }

    #[test]
    fn the_rightmost_untrusted_hop_is_the_client() {
        let proxy = trusted(&["127.0.0.1/32"]);
        assert_eq!(from(PROXY, &["203.0.113.7"], &proxy), ip("203.0.113.7"));
        assert_eq!(
            from(PROXY, &["198.51.100.99, 203.0.113.7"], &proxy),
            ip("203.0.113.7"),
            "what the client wrote to the left of its own address is ignored"
        );
        assert_eq!(
            from(PROXY, &["203.0.113.7, 127.0.0.1"], &proxy),
            ip("203.0.113.7"),
            "a trusted hop is skipped"
        );
        let chain = trusted(&["127.0.0.1/32", "10.0.0.0/8"]);
        assert_eq!(
            from(
                PROXY,
                &["198.51.100.99, 203.0.113.7, 10.0.0.5, 10.9.9.9"],
                &chain
            ),
            ip("203.0.113.7"),
            "through a chain of trusted proxies"
        );
    }

    #[test]
    fn when_every_hop_is_trusted_the_leftmost_is_the_client() {
        let chain = trusted(&["127.0.0.1/32", "10.0.0.0/8"]);
        assert_eq!(from(PROXY, &["10.0.0.7, 10.0.0.5"], &chain), ip("10.0.0.7"));
    }

    #[test]
    fn several_headers_are_one_list_in_order() {
        let chain = trusted(&["127.0.0.1/32", "10.0.0.0/8"]);
        assert_eq!(
            from(PROXY, &["203.0.113.9", "203.0.113.7, 10.0.0.5"], &chain),
            ip("203.0.113.7")
        );
        assert_eq!(
            from(PROXY, &["203.0.113.7", "10.0.0.5"], &chain),
            ip("203.0.113.7"),
            "the walk goes on into the earlier header"
        );
        assert_eq!(
            from(PROXY, &["203.0.113.7", "203.0.113.8"], &chain),
            ip("203.0.113.8"),
            "the last header's last hop is the rightmost"
        );
    }

    #[test]
    fn a_malformed_hop_stops_the_walk_at_the_last_trusted_address() {
        let chain = trusted(&["127.0.0.1/32", "10.0.0.0/8"]);
        for header in [
            "203.0.113.7, unknown",
            "203.0.113.7, _hidden",
            "203.0.113.7, ",
            "203.0.113.7,,",
            "",
            "203.0.113.7, 300.1.2.3",
            "203.0.113.7, 203.0.113.8/32",
            "203.0.113.7, example.com",
        ] {
            assert_eq!(from(PROXY, &[header], &chain), ip(PROXY), "{header:?}");
        }
        assert_eq!(
            from(PROXY, &["garbage, 10.0.0.5"], &chain),
            ip("10.0.0.5"),
            "the last trusted hop checked"
        );
        assert_eq!(
            from(PROXY, &["203.0.113.7", "10.0.0.5, nope"], &chain),
            ip(PROXY),
            "in a later header too"
        );
        let bytes = HeaderValue::from_bytes(b"203.0.113.7\xff").expect("opaque bytes");
        assert_eq!(
            client_addr(ip(PROXY), [&bytes], &chain),
            ip(PROXY),
            "a value that is not text"
        );
        let ok = HeaderValue::from_static("203.0.113.7");
        assert_eq!(
            client_addr(ip(PROXY), [&ok, &bytes], &chain),
            ip(PROXY),
            "a later value that is not text is the rightmost hop"
        );
    }

    #[test]
    fn hops_may_be_ipv6_bracketed_or_carry_a_port() {
        let proxy = trusted(&["127.0.0.1/32", "::1/128"]);
        for (header, want) in [
            ("2001:db8::7", "2001:db8::7"),
            ("[2001:db8::7]", "2001:db8::7"),
            ("[2001:db8::7]:4711", "2001:db8::7"),
            ("203.0.113.7:4711", "203.0.113.7"),
            ("  203.0.113.7\t", "203.0.113.7"),
        ] {
            assert_eq!(from(PROXY, &[header], &proxy), ip(want), "{header:?}");
        }
        assert_eq!(from("::1", &["203.0.113.7"], &proxy), ip("203.0.113.7"));
    }

    #[test]
    fn mapped_addresses_are_the_ipv4_addresses_they_carry() {
        let proxy = trusted(&["127.0.0.1/32"]);
        assert_eq!(
            from("::ffff:127.0.0.1", &["203.0.113.7"], &proxy),
            ip("203.0.113.7"),
            "a dual-stack socket's view of the IPv4 proxy"
        );
        assert_eq!(
            from(PROXY, &["::ffff:203.0.113.7"], &proxy),
            ip("203.0.113.7")
        );
        assert_eq!(
            from("::ffff:198.51.100.4", &[], &CidrSet::default()),
            ip("198.51.100.4")
        );
        assert_eq!(
            from(PROXY, &["203.0.113.7, ::ffff:127.0.0.1"], &proxy),
            ip("203.0.113.7"),
            "a mapped trusted hop is skipped"
        );
    }

    #[test]
    fn an_unknown_client_reads_as_unknown() {
        assert_eq!(ClientAddr(None).to_string(), "unknown");
        assert_eq!(
            ClientAddr(Some(ip("203.0.113.7"))).to_string(),
            "203.0.113.7"
        );
    }
}
