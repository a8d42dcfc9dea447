//! Which addresses a webhook may reach: a pure function of the address and
//! the operator's `webhooks.allow_private` ranges. Everything that is not
//! globally reachable is refused — loopback, "this network" and
//! unspecified, RFC 1918, CGNAT (100.64/10), link-local, IETF protocol
//! assignments, the documentation and benchmarking ranges, multicast,
//! reserved and broadcast; on IPv6 everything outside global unicast
//! (2000::/3: so ULA fc00::/7, link-local, multicast, the IPv4-compatible
//! ::/96) and the documentation and benchmarking ranges inside it, while
//! an address that carries an IPv4 one (mapped, NAT64, 6to4) is judged by
//! that IPv4 address. A tenant's
//! webhook is otherwise a port scanner and a blind POST into the
//! operator's network (the cloud metadata service at 169.254.169.254).
//!
//! It does not resolve names or connect: `resolve.rs` applies it to every
//! DNS answer and to literal addresses.

use crate::cidr::CidrSet;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// IPv4 ranges that are not globally reachable (IANA's special-purpose
/// registry, RFC 6890 and later), as (network, prefix length).
const V4_SPECIAL: &[([u8; 4], u32)] = &[
    ([0, 0, 0, 0], 8),       // "this network", 0.0.0.0 unspecified
    ([10, 0, 0, 0], 8),      // RFC 1918
    ([100, 64, 0, 0], 10),   // CGNAT, RFC 6598
    ([127, 0, 0, 0], 8),     // loopback
    ([169, 254, 0, 0], 16),  // link-local (cloud metadata services)
    ([172, 16, 0, 0], 12),   // RFC 1918
    ([192, 0, 0, 0], 24),    // IETF protocol assignments
    ([192, 0, 2, 0], 24),    // TEST-NET-1
    ([192, 88, 99, 0], 24),  // 6to4 relay anycast
    ([192, 168, 0, 0], 16),  // RFC 1918
    ([198, 18, 0, 0], 15),   // benchmarking
    ([198, 51, 100, 0], 24), // TEST-NET-2
    ([203, 0, 113, 0], 24),  // TEST-NET-3
    ([224, 0, 0, 0], 4),     // multicast
    ([240, 0, 0, 0], 4),     // reserved, 255.255.255.255 broadcast
];

/// Global unicast IPv6: everything outside it (unspecified, loopback, the
/// discard prefix, local-use NAT64, ULA fc00::/7, link-local, site-local,
/// multicast, the unassigned rest) is refused, unless it carries an IPv4
/// address.
const V6_GLOBAL: ([u16; 8], u32) = ([0x2000, 0, 0, 0, 0, 0, 0, 0], 3);

/// Ranges inside global unicast that are still not globally reachable.
const V6_SPECIAL: &[([u16; 8], u32)] = &[
    ([0x2001, 0x0002, 0, 0, 0, 0, 0, 0], 48), // benchmarking
    ([0x2001, 0x0db8, 0, 0, 0, 0, 0, 0], 32), // documentation
    ([0x3fff, 0, 0, 0, 0, 0, 0, 0], 20),      // documentation, RFC 9637
];

/// The operator's exceptions; everything else non-public is refused.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AddressPolicy {
    allow: CidrSet,
}

impl AddressPolicy {
    pub fn new(allow: CidrSet) -> Self {
        Self { allow }
    }

    /// Whether a delivery may connect to `ip`: a public address, or one in
    /// an allowed range (an IPv4-mapped IPv6 address is matched as the
    /// IPv4 address it is).
    pub fn permits(&self, ip: IpAddr) -> bool {
        self.allow.contains(ip) || !is_special(ip)
    }
}

/// Whether `ip` is not a globally reachable unicast address.
pub fn is_special(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => is_special_v4(v4),
        IpAddr::V6(v6) => is_special_v6(v6),
    }
}

fn is_special_v4(ip: Ipv4Addr) -> bool {
    let bits = u32::from(ip);
    V4_SPECIAL
        .iter()
        .any(|(net, len)| within(bits.into(), u32::from_be_bytes(*net).into(), *len, 32))
}

fn is_special_v6(ip: Ipv6Addr) -> bool {
    if let Some(v4) = embedded_v4(ip) {
        return is_special_v4(v4);
    }
    let bits = u128::from(ip);
    let in_v6 =
        |(net, len): &([u16; 8], u32)| within(bits, u128::from(Ipv6Addr::from(*net)), *len, 128);
    !in_v6(&V6_GLOBAL) || V6_SPECIAL.iter().any(in_v6)
}

/// The IPv4 address an IPv6 one stands for where a host or a gateway would
/// reach that IPv4 address: mapped (::ffff:0:0/96), NAT64 (64:ff9b::/96)
/// and 6to4 (2002::/16). (The deprecated IPv4-compatible ::/96 is refused
/// whole, outside global unicast.)
fn embedded_v4(ip: Ipv6Addr) -> Option<Ipv4Addr> {
    let bits = u128::from(ip);
    let low = Ipv4Addr::from((bits & 0xffff_ffff) as u32);
    if bits >> 32 == 0xffff {
        return Some(low);
    }
    if bits >> 32 == 0x0064_ff9b_0000_0000_0000_0000 {
        return Some(low);
    }
    if bits >> 112 == 0x2002 {
        return Some(Ipv4Addr::from(((bits >> 80) & 0xffff_ffff) as u32));
    }
    None
}

/// Whether the top `len` bits of `ip` and `net` (both `width` bits) agree.
fn within(ip: u128, net: u128, len: u32, width: u32) -> bool {
    let shift = width - len;
    len == 0 || (ip >> shift) == (net >> shift)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().expect("an address")
    }

    #[test]
    fn every_non_public_range_is_refused_by_default() {
        let policy = AddressPolicy::default();
        let refused = [
            "127.0.0.1",
            "127.255.255.254",
            "0.0.0.0",
            "0.1.2.3",
            "10.0.0.1",
            "10.255.255.255",
            "172.16.0.1",
            "172.31.255.255",
            "192.168.1.1",
            "169.254.169.254",
            "100.64.0.1",
            "100.127.255.255",
            "192.0.0.8",
            "192.0.2.1",
            "198.51.100.7",
            "203.0.113.9",
            "198.18.0.1",
            "198.19.255.255",
            "192.88.99.1",
            "224.0.0.1",
            "239.255.255.250",
            "240.0.0.1",
            "255.255.255.255",
            "::",
            "::1",
            "::127.0.0.1",
            "::8.8.8.8",
            "::ffff:127.0.0.1",
            "::ffff:169.254.169.254",
            "::ffff:10.0.0.1",
            "64:ff9b::a00:1",
            "64:ff9b:1::1",
            "2002:7f00:1::1",
            "2002:a9fe:a9fe::1",
            "fc00::1",
            "fd12:3456::1",
            "fe80::1",
            "febf::1",
            "fec0::1",
            "ff02::1",
            "ff0e::1",
            "2001:db8::1",
            "3fff::1",
            "100::1",
            "2001:2::1",
            "fbff::1",
            "4000::1",
        ];
        for a in refused {
            assert!(!policy.permits(ip(a)), "{a} must be refused");
        }
    }

    #[test]
    fn public_addresses_pass() {
        let policy = AddressPolicy::default();
        let public = [
            "1.1.1.1",
            "8.8.8.8",
            "9.255.255.255",
            "11.0.0.0",
            "100.63.255.255",
            "100.128.0.0",
            "169.253.255.255",
            "172.15.255.255",
            "172.32.0.0",
            "192.167.255.255",
            "192.169.0.0",
            "198.17.255.255",
            "198.20.0.0",
            "223.255.255.255",
            "2606:4700:4700::1111",
            "2a00:1450:4001:80b::200e",
            "::ffff:8.8.8.8",
            "64:ff9b::808:808",
            "2002:808:808::1",
            "2001:db9::1",
        ];
        for a in public {
            assert!(policy.permits(ip(a)), "{a} must pass");
        }
    }

    #[test]
    fn allowed_ranges_open_exactly_what_they_list() {
        let policy = AddressPolicy::new(
            CidrSet::parse(["10.1.2.0/24", "127.0.0.0/8", "fd00:1::/64"]).expect("cidrs"),
        );
        assert!(policy.permits(ip("10.1.2.3")));
        assert!(policy.permits(ip("127.0.0.1")));
        assert!(
            policy.permits(ip("::ffff:127.0.0.1")),
            "a mapped address is the IPv4 address it carries"
        );
        assert!(policy.permits(ip("fd00:1::5")));
        assert!(!policy.permits(ip("10.1.3.1")), "a neighbouring range");
        assert!(!policy.permits(ip("169.254.169.254")));
        assert!(!policy.permits(ip("::1")), "IPv6 loopback is not 127/8");
        assert!(!policy.permits(ip("fd00:2::5")));
    }
}
