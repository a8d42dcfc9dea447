//! `[fleet]`: running more than one node on one PostgreSQL database
//! (`centinela-fleet`, wired by `serve` in `src/fleet.rs`). Empty
//! `database_url` — the default — is a single node on its own redb file,
//! and nothing else here is read. Parsed and checked like every section;
//! a fleet also requires `storage.secret_key` (checked by
//! `Config::validate`).

use super::{invalid, ConfigError};
use serde::{Deserialize, Serialize};
use std::time::Duration;

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct FleetConfig {
    /// `postgres://user:password@host:port/database`; empty = single node.
    pub database_url: String,
    /// This node's id in the fleet; empty = the host name.
    pub node_id: String,
    /// Where the other nodes (and a router in front) reach this one;
    /// empty = the listener's own address as seen on this machine (nodes
    /// on one machine only).
    pub advertise_url: String,
    /// How long a tenant stays this node's without a renewal.
    #[serde(with = "humantime_serde")]
    pub lease_ttl: Duration,
    /// Tenants this node owns at most.
    pub capacity: u32,
    /// The egress identity of this node's direct sessions (the hourly
    /// budget is per egress); empty = the node id.
    pub egress: String,
}

/// Shortest lease: a renewal must fit in it with room to spare.
const MIN_LEASE: Duration = Duration::from_secs(3);
/// Longest lease: a dead node's tenants wait this long for a new owner.
const MAX_LEASE: Duration = Duration::from_secs(600);

impl FleetConfig {
    /// Whether this node is part of a fleet.
    pub fn enabled(&self) -> bool {
        !self.database_url.is_empty()
    }

    /// `node_id`, or the host name when it is empty. Fails when the host
    /// name cannot be read.
    pub fn node_id(&self) -> Result<String, ConfigError> {
        if !self.node_id.is_empty() {
            return Ok(self.node_id.clone());
        }
        hostname().ok_or_else(|| {
            invalid(
                "fleet.node_id",
                "\"\"",
                "the host name cannot be read: set fleet.node_id",
            )
        })
    }

    /// `egress`, or the node id when it is empty.
    pub fn egress(&self) -> Result<String, ConfigError> {
        if self.egress.is_empty() {
            return self.node_id();
        }
        Ok(self.egress.clone())
    }

    /// The checks of `[fleet]`; the ones that need a fleet only when
    /// `database_url` is set.
    pub(super) fn validate(&self) -> Result<(), ConfigError> {
        if !(MIN_LEASE..=MAX_LEASE).contains(&self.lease_ttl) {
            return Err(invalid(
                "fleet.lease_ttl",
                humantime::format_duration(self.lease_ttl),
                "must be between 3s and 10m",
            ));
        }
        if !self.enabled() {
            return Ok(());
        }
        let scheme = self.database_url.split("://").next().unwrap_or_default();
        if !matches!(scheme, "postgres" | "postgresql") || !self.database_url.contains("://") {
            return Err(invalid(
                "fleet.database_url",
                self.masked_url(),
                "must be empty (single node) or a postgres:// URL",
            ));
        }
        let id = self.node_id()?;
        if id.trim().is_empty() || id.chars().count() > 255 || id.chars().any(char::is_whitespace) {
            return Err(invalid(
                "fleet.node_id",
                format!("{id:?}"),
                "must be 1-255 characters without spaces",
            ));
        }
        if !(self.advertise_url.is_empty()
            || self.advertise_url.starts_with("http://")
            || self.advertise_url.starts_with("https://"))
        {
            return Err(invalid(
                "fleet.advertise_url",
                format!("{:?}", self.advertise_url),
                "must be empty (the listener's address) or an http:// or https:// URL",
            ));
        }
        if self.capacity == 0 {
            return Err(invalid("fleet.capacity", 0, "must be at least 1"));
        }
        Ok(())
    }

    /// `database_url` with its password replaced by `********`.
    pub fn masked_url(&self) -> String {
        let url = &self.database_url;
        let Some((scheme, rest)) = url.split_once("://") else {
            return url.clone();
        };
        let Some((userinfo, host)) = rest.rsplit_once('@') else {
            return url.clone();
        };
        match userinfo.split_once(':') {
            Some((user, _)) => format!("{scheme}://{user}:********@{host}"),
            None => url.clone(),
        }
    }
}

/// The kernel's host name (Linux), trimmed; `None` if unreadable or blank.
fn hostname() -> Option<String> {
    ["/proc/sys/kernel/hostname", "/etc/hostname"]
        .iter()
        .filter_map(|p| std::fs::read_to_string(p).ok())
        .map(|s| s.trim().to_owned())
        .find(|s| !s.is_empty())
}

#[cfg(test)]
// figment's `Jail::expect_with` closures return its (large) `figment::Error`.
#[allow(clippy::result_large_err)]
mod tests {
    use crate::config::{Config, Profile};
    use figment::Jail;
    use std::time::Duration;

    /// A fleet needs one secret key on every node.
    const KEY: &str = "[storage]\nsecret_key = \"3f6c1d0a9b8e7f6a5c4b3a29181706f5e4d3c2b1a09f8e7d6c5b4a3928170605\"\n";

    fn load(jail: &Jail, toml: &str) -> Result<Config, String> {
        jail.create_file("c.toml", toml).expect("write");
        Config::load(Some(&jail.directory().join("c.toml")), Profile::Standard)
            .map_err(|e| e.to_string())
    }

    #[test]
    fn the_default_is_a_single_node() {
        let f = Config::defaults().fleet;
        assert!(!f.enabled());
        assert_eq!(f.lease_ttl, Duration::from_secs(15));
        assert_eq!(f.node_id, "");
        assert_eq!(f.egress, "");
    }

    #[test]
    fn a_fleet_reads_its_keys_and_falls_back_to_the_host_name() {
        Jail::expect_with(|jail| {
            let c = load(
                jail,
                &format!(
                    "{KEY}[fleet]\ndatabase_url = \"postgres://c:pw@db:5432/fleet\"\n\
                     advertise_url = \"http://10.0.0.5:3012\"\ncapacity = 40\nlease_ttl = \"20s\"\n"
                ),
            )
            .expect("valid");
            assert!(c.fleet.enabled());
            assert_eq!(c.fleet.capacity, 40);
            assert_eq!(c.fleet.lease_ttl, Duration::from_secs(20));
            let host = c.fleet.node_id().expect("host name");
            assert!(!host.is_empty());
            assert_eq!(
                c.fleet.egress().expect("egress"),
                host,
                "egress defaults to the node"
            );
            Ok(())
        });
        Jail::expect_with(|jail| {
            jail.set_env("CENTINELA__FLEET__DATABASE_URL", "postgresql://db/fleet");
            jail.set_env("CENTINELA__FLEET__ADVERTISE_URL", "https://n1.example");
            jail.set_env("CENTINELA__FLEET__NODE_ID", "n1");
            jail.set_env("CENTINELA__FLEET__EGRESS", "198.51.100.4");
            jail.set_env(
                "CENTINELA__STORAGE__SECRET_KEY",
                "3f6c1d0a9b8e7f6a5c4b3a29181706f5e4d3c2b1a09f8e7d6c5b4a3928170605",
            );
            let c = Config::load(None, Profile::Standard).expect("valid");
            assert_eq!(c.fleet.node_id().expect("id"), "n1");
            assert_eq!(c.fleet.egress().expect("egress"), "198.51.100.4");
            Ok(())
        });
    }

    #[test]
    fn a_fleet_is_refused_with_the_key_that_is_wrong() {
        let url = "database_url = \"postgres://c:pw@db/fleet\"\n";
        let http = "advertise_url = \"http://n1:3012\"\n";
        for (body, key, why) in [
            (
                "database_url = \"mysql://db/x\"\n",
                "fleet.database_url",
                "postgres://",
            ),
            (
                &format!("{url}advertise_url = \"n1:3012\"\n"),
                "fleet.advertise_url",
                "http://",
            ),
            (
                &format!("{url}{http}capacity = 0\n"),
                "fleet.capacity",
                "at least 1",
            ),
            (
                &format!("{url}{http}node_id = \"a b\"\n"),
                "fleet.node_id",
                "without spaces",
            ),
            (
                "lease_ttl = \"1s\"\n",
                "fleet.lease_ttl",
                "between 3s and 10m",
            ),
            ("lease_ttl = \"soon\"\n", "fleet.lease_ttl", ""),
            ("databse_url = \"\"\n", "fleet.databse_url", "unknown field"),
            (
                &format!("{url}{http}"),
                "storage.secret_key",
                "the same on every node",
            ),
        ] {
            Jail::expect_with(|jail| {
                let e = load(jail, &format!("[fleet]\n{body}")).expect_err("invalid");
                assert!(e.contains(key) && e.contains(why), "{body:?}: {e}");
                assert!(!e.contains("pw@"), "no password in errors: {e}");
                Ok(())
            });
        }
    }

    #[test]
    fn the_database_password_is_masked() {
        Jail::expect_with(|jail| {
            let c = load(
                jail,
                &format!(
                    "{KEY}[fleet]\ndatabase_url = \"postgres://c:s3cret@db:5432/fleet\"\n\
                     advertise_url = \"http://n1:3012\"\n"
                ),
            )
            .expect("valid");
            let shown = c.to_masked_toml();
            assert!(!shown.contains("s3cret"), "{shown}");
            assert!(
                shown.contains("postgres://c:********@db:5432/fleet"),
                "{shown}"
            );
            Ok(())
        });
    }
}
