//! Address ranges an operator lists in the configuration — the private
//! ranges webhooks may reach anyway (`webhooks.allow_private`) and the
//! reverse proxies whose `X-Forwarded-For` is believed
//! (`server.trusted_proxies`): CIDR blocks (`"10.1.2.0/24"`,
//! `"fd00::/8"`), and whether an address falls in one.
//!
//! An IPv4-mapped IPv6 address (`::ffff:10.1.2.3`, what a dual-stack
//! socket reports for an IPv4 peer) is in a range when the IPv4 address it
//! carries is. It does not decide what a range means: that is the
//! address policy's and the client-address rule's business.

use ipnet::IpNet;
use serde::{Deserialize, Serialize};
use std::net::IpAddr;

/// A list of CIDR blocks; in the configuration, an array of strings.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct CidrSet(Vec<IpNet>);

/// A string that is not a CIDR block (`10.1.2.0/33`, `10.1.2.0` without
/// a prefix length).
pub use ipnet::AddrParseError as CidrError;

impl CidrSet {
    pub fn new(nets: Vec<IpNet>) -> Self {
        Self(nets)
    }

    /// Parses CIDR blocks as the configuration does; tests and tools use it.
    pub fn parse<'a>(cidrs: impl IntoIterator<Item = &'a str>) -> Result<Self, CidrError> {
        cidrs
            .into_iter()
            .map(str::parse)
            .collect::<Result<_, _>>()
            .map(Self)
    }

    /// Whether `ip` is in one of the blocks (an IPv4-mapped IPv6 address
    /// also when the IPv4 address it carries is).
    pub fn contains(&self, ip: IpAddr) -> bool {
        let canonical = ip.to_canonical();
        self.0
            .iter()
            .any(|net| net.contains(&ip) || net.contains(&canonical))
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn blocks(&self) -> &[IpNet] {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().expect("an address")
    }

    #[test]
    fn a_block_holds_exactly_its_addresses() {
        let set = CidrSet::parse(["10.1.2.0/24", "127.0.0.1/32", "fd00:1::/64"]).expect("cidrs");
        for inside in ["10.1.2.0", "10.1.2.255", "127.0.0.1", "fd00:1::5"] {
            assert!(set.contains(ip(inside)), "{inside}");
        }
        for outside in ["10.1.3.0", "10.1.1.255", "127.0.0.2", "fd00:2::5", "::1"] {
            assert!(!set.contains(ip(outside)), "{outside}");
        }
    }

    #[test]
    fn a_mapped_address_is_the_ipv4_address_it_carries() {
        let set = CidrSet::parse(["127.0.0.1/32"]).expect("cidr");
        assert!(set.contains(ip("::ffff:127.0.0.1")));
        assert!(!set.contains(ip("::ffff:127.0.0.2")));
        let v6 = CidrSet::parse(["::ffff:0:0/96"]).expect("cidr");
        assert!(
            v6.contains(ip("::ffff:10.0.0.1")),
            "a mapped block holds its own"
        );
    }

    #[test]
    fn an_empty_set_holds_nothing_and_bad_blocks_do_not_parse() {
        let empty = CidrSet::default();
        assert!(empty.is_empty());
        assert!(!empty.contains(ip("127.0.0.1")));
        for bad in ["10.1.2.0/33", "10.1.2.0", "", "fd00::/129", "example.com/8"] {
            assert!(CidrSet::parse([bad]).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn it_reads_and_writes_as_an_array_of_strings() {
        let set: CidrSet = serde_json::from_str(r#"["10.1.2.0/24","fd00::/8"]"#).expect("json");
        assert_eq!(
            set,
            CidrSet::parse(["10.1.2.0/24", "fd00::/8"]).expect("cidrs")
        );
        assert_eq!(
            serde_json::to_string(&set).expect("json"),
            r#"["10.1.2.0/24","fd00::/8"]"#
        );
    }
}
