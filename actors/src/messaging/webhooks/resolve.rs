//! Where a webhook may connect: the host of its URL, resolved at connect
//! time with the [address policy](super::address) applied to every answer.
//! [`Guard`] is the delivery client's DNS resolver (`reqwest::dns::Resolve`),
//! so the addresses checked are the addresses connected to — a name that
//! rebinds to 127.0.0.1 after it was set gets no address at all. reqwest
//! never asks the resolver for a literal IP, so [`target_host`] tells the
//! caller to check those itself. It also checks a URL when it is set
//! ([`Guard::check_url`]).
//!
//! The names are looked up by a [`Lookup`]: the system's resolver in
//! service, a scripted one in tests. It does not connect or send.

use super::address::AddressPolicy;
use std::future::Future;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

/// A lookup's answer: every address of the name.
pub type LookupFuture = Pin<Box<dyn Future<Output = io::Result<Vec<IpAddr>>> + Send>>;

/// Turns a host name into its addresses, unfiltered.
pub trait Lookup: Send + Sync + 'static {
    fn lookup(&self, host: &str) -> LookupFuture;
}

/// The system's resolver (`getaddrinfo`, through tokio).
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemLookup;

impl Lookup for SystemLookup {
    fn lookup(&self, host: &str) -> LookupFuture {
        let host = host.to_owned();
        Box::pin(async move {
            let addrs = tokio::net::lookup_host((host.as_str(), 0)).await?;
            Ok(addrs.map(|a| a.ip()).collect())
        })
    }
}

/// Why a name gave the connector no address. Travels inside reqwest's
/// error, where the delivery's failure code is read from it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Refused {
    #[error("the host did not resolve")]
    Dns,
    #[error("the host resolves only to addresses webhooks may not reach")]
    Forbidden,
}

/// Why a webhook URL is refused when it is set.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TargetError {
    #[error("url must be an http:// or https:// URL with a host")]
    InvalidUrl,
    #[error("the webhook's host is, or resolves only to, a loopback, private or other non-public address (the operator may allow ranges in webhooks.allow_private)")]
    Forbidden,
}

/// A URL's host: an address (checked by the caller: reqwest connects to it
/// without asking the resolver) or a name (checked by the resolver).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TargetHost {
    Ip(IpAddr),
    Name(String),
}

/// The host of an http(s) URL, as the HTTP client will see it (the URL
/// parser turns `2130706433`, `0x7f.1` and `[::ffff:7f00:1]` into the
/// addresses they are).
pub fn target_host(url: &str) -> Result<TargetHost, TargetError> {
    let url = reqwest::Url::parse(url).map_err(|_| TargetError::InvalidUrl)?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(TargetError::InvalidUrl);
    }
    let host = url.host_str().filter(|h| !h.is_empty());
    let host = host.ok_or(TargetError::InvalidUrl)?;
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    Ok(match bare.parse::<IpAddr>() {
        Ok(ip) => TargetHost::Ip(ip),
        Err(_) => TargetHost::Name(host.to_owned()),
    })
}

/// The address policy and the lookup it filters; cheap to clone.
#[derive(Clone)]
pub struct Guard {
    policy: Arc<AddressPolicy>,
    lookup: Arc<dyn Lookup>,
}

impl Guard {
    pub fn new(policy: AddressPolicy, lookup: Arc<dyn Lookup>) -> Self {
        Self {
            policy: Arc::new(policy),
            lookup,
        }
    }

    pub fn permits(&self, ip: IpAddr) -> bool {
        self.policy.permits(ip)
    }

    /// The addresses of `host` a delivery may connect to: the lookup's
    /// answer less the refused ones; an error when none is left.
    pub async fn resolve(&self, host: &str) -> Result<Vec<IpAddr>, Refused> {
        let all = self.lookup.lookup(host).await.map_err(|_| Refused::Dns)?;
        if all.is_empty() {
            return Err(Refused::Dns);
        }
        let permitted: Vec<IpAddr> = all.into_iter().filter(|ip| self.permits(*ip)).collect();
        if permitted.is_empty() {
            return Err(Refused::Forbidden);
        }
        Ok(permitted)
    }

    /// Whether `url` may be set as a webhook: a literal address the policy
    /// refuses, or a name that resolves only to such addresses, is
    /// [`TargetError::Forbidden`]. A name that does not resolve (within
    /// `wait`) is accepted: it may exist later, and every delivery checks
    /// again at connect time.
    pub async fn check_url(&self, url: &str, wait: Duration) -> Result<(), TargetError> {
        match target_host(url)? {
            TargetHost::Ip(ip) if self.permits(ip) => Ok(()),
            TargetHost::Ip(_) => Err(TargetError::Forbidden),
            TargetHost::Name(name) => match tokio::time::timeout(wait, self.resolve(&name)).await {
                Ok(Err(Refused::Forbidden)) => Err(TargetError::Forbidden),
                Ok(Ok(_)) | Ok(Err(Refused::Dns)) | Err(_) => Ok(()),
            },
        }
    }
}

impl reqwest::dns::Resolve for Guard {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let guard = self.clone();
        let host = name.as_str().to_owned();
        Box::pin(async move {
            let ips = Guard::resolve(&guard, &host)
                .await
                .map_err(|e| Box::new(e) as Box<dyn std::error::Error + Send + Sync>)?;
            // Port 0: reqwest puts the URL's (or the scheme's) port in.
            let addrs: reqwest::dns::Addrs =
                Box::new(ips.into_iter().map(|ip| SocketAddr::new(ip, 0)));
            Ok(addrs)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    /// Answers from a table; unknown names do not resolve.
    struct Table(HashMap<&'static str, Vec<IpAddr>>);

    impl Lookup for Table {
        fn lookup(&self, host: &str) -> LookupFuture {
            let answer = self.0.get(host).cloned();
            Box::pin(async move { answer.ok_or_else(|| io::Error::other("no such name")) })
        }
    }

    fn guard(allow: &[&str]) -> Guard {
        let ip = |s: &str| s.parse::<IpAddr>().expect("ip");
        let table = HashMap::from([
            ("public.test", vec![ip("93.184.215.14")]),
            ("mixed.test", vec![ip("127.0.0.1"), ip("93.184.215.14")]),
            ("loopback.test", vec![ip("127.0.0.1"), ip("::1")]),
            ("metadata.test", vec![ip("169.254.169.254")]),
            ("empty.test", vec![]),
        ]);
        let allow = crate::cidr::CidrSet::parse(allow.iter().copied()).expect("cidrs");
        Guard::new(AddressPolicy::new(allow), Arc::new(Table(table)))
    }

    #[tokio::test]
    async fn refused_addresses_are_filtered_out_of_every_answer() {
        let g = guard(&[]);
        let public: IpAddr = "93.184.215.14".parse().expect("ip");
        assert_eq!(g.resolve("public.test").await, Ok(vec![public]));
        assert_eq!(
            g.resolve("mixed.test").await,
            Ok(vec![public]),
            "only the public address is handed to the connector"
        );
        assert_eq!(g.resolve("loopback.test").await, Err(Refused::Forbidden));
        assert_eq!(g.resolve("metadata.test").await, Err(Refused::Forbidden));
        assert_eq!(g.resolve("nowhere.test").await, Err(Refused::Dns));
        assert_eq!(g.resolve("empty.test").await, Err(Refused::Dns));
        let allowed = guard(&["127.0.0.0/8"]);
        assert_eq!(
            allowed.resolve("loopback.test").await,
            Ok(vec!["127.0.0.1".parse().expect("ip")]),
            "the allowed range passes, ::1 is still refused"
        );
    }

    #[tokio::test]
    async fn urls_are_checked_when_set() {
        let g = guard(&[]);
        let wait = Duration::from_secs(5);
        for url in [
            "http://127.0.0.1:8080/hook",
            "http://169.254.169.254/latest/meta-data/",
            "http://10.0.0.1/",
            "http://[::1]:9000/",
            "http://[::ffff:127.0.0.1]/",
            "http://2130706433/",
            "http://0x7f.1/",
            "http://0.0.0.0:22/",
            "https://loopback.test/hook",
            "https://metadata.test/",
        ] {
            assert_eq!(
                g.check_url(url, wait).await,
                Err(TargetError::Forbidden),
                "{url}"
            );
        }
        for url in [
            "https://public.test/hook",
            "https://mixed.test/hook",
            "http://93.184.215.14:8080/",
            "https://nowhere.test/hook",
        ] {
            assert_eq!(g.check_url(url, wait).await, Ok(()), "{url}");
        }
        for url in ["http://", "ftp://public.test/", "not a url", "http://[::1/"] {
            assert_eq!(
                g.check_url(url, wait).await,
                Err(TargetError::InvalidUrl),
                "{url}"
            );
        }
    }

    #[test]
    fn literal_hosts_are_told_apart_from_names() {
        assert_eq!(
            target_host("http://[::1]:80/x"),
            Ok(TargetHost::Ip("::1".parse().expect("ip")))
        );
        assert_eq!(
            target_host("http://2130706433/"),
            Ok(TargetHost::Ip("127.0.0.1".parse().expect("ip")))
        );
        assert_eq!(
            target_host("https://Hooks.Example/x"),
            Ok(TargetHost::Name("hooks.example".into()))
        );
    }
}
