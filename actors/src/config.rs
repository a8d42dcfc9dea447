//! The one typed configuration tree, loaded in layers: the embedded
//! `config/default.toml` < (for `--demo`) the embedded `config/demo.toml` <
//! an optional file < `CENTINELA__SECTION__KEY` environment variables.
//! Loading fails with a message naming the key and the value for unknown
//! keys, wrong types and out-of-range values.
//!
//! Every default lives in `config/default.toml` alone (no serde defaults),
//! so the file users read is the truth; the demo's relaxed values are
//! defaults too, never above what a file or the environment says.

use crate::cidr::CidrSet;
use figment::providers::{Env, Format, Toml};
use figment::Figment;
use serde::{Deserialize, Serialize};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

mod fleet;
pub use fleet::FleetConfig;

/// The defaults, as shipped.
pub const DEFAULT_TOML: &str = include_str!("../../config/default.toml");

/// `--demo`'s defaults, over [`DEFAULT_TOML`] and under everything else.
pub const DEMO_TOML: &str = include_str!("../../config/demo.toml");

/// Which shipped defaults a configuration starts from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Profile {
    /// `config/default.toml`: WhatsApp's own limits (seed 003).
    Standard,
    /// `config/default.toml`, then `config/demo.toml` (`--demo`): the
    /// simulator bans no one, so its limits are relaxed.
    Demo,
}

impl Profile {
    /// The shipped layers of this profile, lowest first.
    fn defaults(self) -> Figment {
        let standard = Figment::from(Toml::string(DEFAULT_TOML));
        match self {
            Profile::Standard => standard,
            Profile::Demo => standard.merge(Toml::string(DEMO_TOML)),
        }
    }
}

/// Prefix of the environment overrides.
pub const ENV_PREFIX: &str = "CENTINELA__";

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// Unknown key, wrong type, unreadable file: figment names the key.
    #[error("configuration error: {0}")]
    Load(String),
    /// A value of the right type but outside what makes sense.
    #[error("configuration error: {key} = {value}: {why}")]
    Invalid {
        key: &'static str,
        value: String,
        why: &'static str,
    },
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Config {
    pub server: ServerConfig,
    pub storage: StorageConfig,
    pub engine: EngineConfig,
    pub antiban: AntibanConfig,
    pub messaging: MessagingConfig,
    /// The ban-risk view's thresholds (`messaging/risk.rs`).
    pub risk: crate::messaging::risk::RiskPolicy,
    pub autoreply: AutoReplyConfig,
    pub webhooks: WebhooksConfig,
    pub supervisor: SupervisorConfig,
    pub auth: AuthConfig,
    pub otp: OtpConfig,
    /// More than one node on PostgreSQL (`centinela-fleet`); off by default.
    pub fleet: FleetConfig,
    pub log: LogConfig,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ServerConfig {
    pub listen: SocketAddr,
    #[serde(with = "humantime_serde")]
    pub shutdown_timeout: Duration,
    pub cors_origins: Vec<String>,
    pub max_body_bytes: usize,
    /// A client must send a whole request head (and finish its TLS
    /// handshake) within this, else it is cut: slowloris.
    #[serde(with = "humantime_serde")]
    pub header_timeout: Duration,
    /// Connections open at once; more clients wait in the accept backlog.
    pub max_connections: usize,
    /// PEM certificate chain: with `tls_key`, the service speaks HTTPS
    /// (HTTP/2 and HTTP/1.1) instead of plain HTTP.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls_cert: Option<PathBuf>,
    /// PEM private key of `tls_cert`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls_key: Option<PathBuf>,
    /// Reverse proxies whose `X-Forwarded-For` is believed; from any other
    /// peer (and with none listed) the socket's peer is the client, so a
    /// spoofed header cannot dodge a per-address limit.
    pub trusted_proxies: CidrSet,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct StorageConfig {
    pub data_dir: PathBuf,
    /// 64 hex digits: the AES-256-GCM key that seals cloud sessions'
    /// secrets. Unset: a key made once in `<data_dir>.secret-key` (0600).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_key: Option<String>,
    /// During a key rotation: the key before `secret_key`. What it sealed
    /// is sealed again under the current key on start.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previous_secret_key: Option<String>,
    /// Finished outgoing messages (sent, delivered, read, played, failed)
    /// last changed longer ago than this are deleted, hourly. Unset: kept
    /// for ever. At least an hour.
    #[serde(
        default,
        with = "humantime_serde",
        skip_serializing_if = "Option::is_none"
    )]
    pub message_retention: Option<Duration>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct EngineConfig {
    pub chromium_path: PathBuf,
    pub headless_shell: bool,
    pub headless_shell_path: PathBuf,
    pub wa_url: String,
    #[serde(with = "humantime_serde")]
    pub qr_window: Duration,
    #[serde(with = "humantime_serde")]
    pub qr_code_ttl: Duration,
    #[serde(with = "humantime_serde")]
    pub launch_timeout: Duration,
    #[serde(with = "humantime_serde")]
    pub page_timeout: Duration,
    pub lean_flags: bool,
    pub extra_args: Vec<String>,
    #[serde(with = "humantime_serde")]
    pub sim_qr_rotation: Duration,
    /// The Graph API's address (Meta's Cloud API).
    pub cloud_base_url: String,
    /// The Graph API version a cloud session uses unless it names its own.
    pub cloud_api_version: String,
    /// Messages per second one cloud number sends at most (Meta's default
    /// throughput is 80, inbound and outbound together).
    pub cloud_max_per_second: u32,
    /// The least time between two messages to one recipient (Meta's pair
    /// rate: about one per 6 s).
    #[serde(with = "humantime_serde")]
    pub cloud_pair_interval: Duration,
    /// A session's browser (its whole process tree, PSS) over this many
    /// bytes is restarted at a quiet moment, as a restore (no QR). 0: off.
    #[serde(with = "byte_size")]
    pub max_session_memory: u64,
    /// How often each READY session's browser memory is read.
    #[serde(with = "humantime_serde")]
    pub memory_check_interval: Duration,
    /// A session READY for less than this is not restarted for memory
    /// (a browser just loaded WhatsApp Web peaks, then settles).
    #[serde(with = "humantime_serde")]
    pub memory_min_uptime: Duration,
    /// The page's dead-man switch: a webjs page that hears no ping from
    /// this process for this long leaves WhatsApp Web for `about:blank`
    /// (its socket closes, the pairing stays in the profile), so a frozen
    /// node (SIGSTOP, a hung host) stops acting as the tenant's device.
    /// The engine pings every second. 0: off (single-node default); fleet
    /// mode sets it below the lease's length. Otherwise at least 2s.
    #[serde(with = "humantime_serde")]
    pub deadman: Duration,
}

/// Sizes in config: `"512MiB"`, `"2GiB"`, `"800MB"`, a plain number of
/// bytes, or `"off"` / `0` for none (read as 0).
pub mod byte_size {
    use serde::{de, Deserializer, Serializer};

    /// Parses a size; `None` when it is not one.
    pub fn parse(raw: &str) -> Option<u64> {
        let raw = raw.trim();
        if raw.eq_ignore_ascii_case("off") {
            return Some(0);
        }
        let split = raw.find(|c: char| !c.is_ascii_digit()).unwrap_or(raw.len());
        let (digits, unit) = raw.split_at(split);
        let n: u64 = digits.parse().ok()?;
        let scale: u64 = match unit.trim().to_ascii_lowercase().as_str() {
            "" | "b" => 1,
            "k" | "kib" => 1 << 10,
            "m" | "mib" => 1 << 20,
            "g" | "gib" => 1 << 30,
            "kb" => 1_000,
            "mb" => 1_000_000,
            "gb" => 1_000_000_000,
            _ => return None,
        };
        n.checked_mul(scale)
    }

    /// The size as config writes it: the largest binary unit it is a
    /// whole number of, or `"off"`.
    pub fn format(bytes: u64) -> String {
        if bytes == 0 {
            return "off".into();
        }
        for (unit, scale) in [("GiB", 1u64 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)] {
            if bytes.is_multiple_of(scale) {
                return format!("{}{unit}", bytes / scale);
            }
        }
        bytes.to_string()
    }

    pub fn serialize<S: Serializer>(bytes: &u64, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&format(*bytes))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
        struct Size;
        impl de::Visitor<'_> for Size {
            type Value = u64;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a size such as \"512MiB\", a number of bytes, or \"off\"")
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<u64, E> {
                Ok(v)
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<u64, E> {
                u64::try_from(v).map_err(|_| E::custom("a size cannot be negative"))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<u64, E> {
                parse(v).ok_or_else(|| {
                    E::custom(format!("{v:?} is not a size (e.g. \"512MiB\" or \"off\")"))
                })
            }
        }
        d.deserialize_any(Size)
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct AntibanConfig {
    pub global_attempts_per_hour: u32,
    pub tenant_attempts_per_day: u32,
    /// Connects of a tenant's Cloud API sessions per rolling hour. They
    /// are no WhatsApp Web pairing (no QR, no browser, nothing WhatsApp
    /// reads as a new device): they spend none of the budgets above, wait
    /// for no connection queue, and are held by no pairing block; this cap
    /// only keeps a connect loop from hammering Meta's Graph API.
    pub cloud_connects_per_hour: u32,
    #[serde(with = "humantime_serde")]
    pub cooldown_after_failure: Duration,
    #[serde(with = "humantime_serde")]
    pub connect_delay: Duration,
    #[serde(with = "humantime_serde")]
    pub connect_jitter_min: Duration,
    #[serde(with = "humantime_serde")]
    pub connect_jitter_max: Duration,
    #[serde(with = "humantime_serde")]
    pub queue_spacing: Duration,
    #[serde(with = "humantime_serde")]
    pub ban_block: Duration,
    #[serde(with = "humantime_serde")]
    pub restart_grace: Duration,
    pub max_live_sessions: u32,
    pub max_sessions_per_tenant: u32,
    pub max_sessions: u32,
    pub auto_reconnect: bool,
    #[serde(with = "humantime_serde")]
    pub reconnect_backoff_base: Duration,
    #[serde(with = "humantime_serde")]
    pub reconnect_backoff_max: Duration,
    pub reconnect_max_tries: u32,
    pub restore_counts_as_attempt: bool,
    /// Pairing codes requested for one phone number within a rolling hour.
    pub pairing_codes_per_phone_per_hour: u32,
    /// Pairing codes requested through one egress path (a tenant's proxy,
    /// or the server's own address) within a rolling hour.
    pub pairing_codes_per_egress_per_hour: u32,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct MessagingConfig {
    #[serde(with = "humantime_serde")]
    pub send_delay_min: Duration,
    #[serde(with = "humantime_serde")]
    pub send_delay_max: Duration,
    pub sends_per_minute: u32,
    pub max_running_campaigns: u32,
    /// "typing…" is shown before each send for the text's length at this
    /// speed (at most 8 s); 0 sends without it.
    pub typing_chars_per_second: u32,
    /// An incoming message is marked read before an auto-reply answers it.
    pub send_seen: bool,
    /// Messages one session sends in any rolling 24 h to numbers it never
    /// exchanged a message with (see `messaging/budget.rs`); over it they
    /// wait, `deferred`.
    pub new_contacts_per_day: u32,
    /// A number paired less than this many days ago gets a budget ramping
    /// up from `warmup_start`; 0: the full budget at once.
    pub warmup_days: u32,
    /// The new-contact budget of a number's first day after pairing (at
    /// most `new_contacts_per_day`).
    pub warmup_start: u32,
}

impl MessagingConfig {
    /// The pacing these settings give.
    pub fn pacing(&self) -> crate::messaging::Pacing {
        crate::messaging::Pacing {
            min_delay: self.send_delay_min,
            max_delay: self.send_delay_max,
            per_minute: self.sends_per_minute,
        }
    }

    /// The typing these settings give.
    pub fn typing(&self) -> crate::messaging::Typing {
        crate::messaging::Typing {
            chars_per_second: self.typing_chars_per_second,
        }
    }

    /// The new-contact budget these settings give.
    pub fn contact_budget(&self) -> crate::messaging::budget::ContactBudget {
        crate::messaging::budget::ContactBudget {
            per_day: self.new_contacts_per_day,
            warmup_days: self.warmup_days,
            warmup_start: self.warmup_start,
        }
    }
}

/// How often keyword auto-replies may go out (see `messaging/reply_limit.rs`).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct AutoReplyConfig {
    /// One reply per sender per session within this long; 0s answers every
    /// matching message (within the hourly cap).
    #[serde(with = "humantime_serde")]
    pub per_sender_cooldown: Duration,
    /// Auto-replies one session sends in any rolling hour.
    pub max_per_session_per_hour: u32,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct WebhooksConfig {
    pub max_attempts: u32,
    #[serde(with = "humantime_serde")]
    pub backoff_base: Duration,
    #[serde(with = "humantime_serde")]
    pub backoff_max: Duration,
    #[serde(with = "humantime_serde")]
    pub timeout: Duration,
    /// Non-public ranges (loopback, RFC 1918, link-local, ...) that
    /// deliveries may reach anyway; every other such address is refused.
    pub allow_private: CidrSet,
    /// Delivered and dead deliveries are deleted this long after their
    /// last attempt.
    #[serde(with = "humantime_serde")]
    pub retention: Duration,
    /// Deliveries in flight at once, server-wide (each tenant has its own
    /// lane with one at a time).
    pub max_in_flight: u32,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct SupervisorConfig {
    pub restart_budget: u32,
    #[serde(with = "humantime_serde")]
    pub restart_window: Duration,
    #[serde(with = "humantime_serde")]
    pub restart_backoff: Duration,
    /// Restore a paired session by itself after a local fault (browser
    /// crash, engine error), as a restore through admission.
    pub restore_local_faults: bool,
    #[serde(with = "humantime_serde")]
    pub restore_backoff_base: Duration,
    #[serde(with = "humantime_serde")]
    pub restore_backoff_max: Duration,
    /// Consecutive failed restores that open a session's circuit breaker.
    pub breaker_failures: u32,
    /// How long an open breaker waits before its one half-open try.
    #[serde(with = "humantime_serde")]
    pub breaker_open_for: Duration,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct AuthConfig {
    #[serde(with = "humantime_serde")]
    pub token_ttl: Duration,
    pub jwt_secret: String,
}

/// Verification codes (`/api/v1/otp`, seed 004's numbers).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct OtpConfig {
    /// The Cloud API authentication template a cloud session sends the
    /// code with (its body parameter and its URL button carry the code).
    pub template: String,
    /// The language of the text a webjs session sends, and the template's.
    pub language: OtpLanguage,
    /// The app named in the text: "<code> es tu código de verificación de <app>".
    pub app: String,
    /// How long a code is valid.
    #[serde(with = "humantime_serde")]
    pub ttl: Duration,
    /// How soon a code may be sent again (a new code).
    #[serde(with = "humantime_serde")]
    pub resend_after: Duration,
    /// Wrong codes before a code is voided.
    pub max_attempts: u32,
    /// Codes sent to one phone number in any rolling 24 h, server-wide.
    pub per_phone_per_day: u32,
    /// Codes requested from one client address in any rolling hour.
    pub per_address_per_hour: u32,
    /// How long an OTP's record (status, times, never the code) is kept
    /// after it expired, for `GET /api/v1/otp/{id}`; then it is pruned.
    #[serde(with = "humantime_serde")]
    pub retention: Duration,
    /// The HMAC-SHA256 key codes are stored under; empty = generate one on
    /// first start and keep it in the store.
    pub secret: String,
}

/// The language of a verification text.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum OtpLanguage {
    Es,
    En,
}

impl OtpLanguage {
    /// The language code a template is sent with.
    pub fn code(self) -> &'static str {
        match self {
            OtpLanguage::Es => "es",
            OtpLanguage::En => "en",
        }
    }
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Pretty,
    Json,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct LogConfig {
    pub format: LogFormat,
    pub filter: String,
}

impl EngineConfig {
    /// The browser binary to launch: the headless shell when preferred and
    /// installed, else `chromium_path`.
    pub fn browser_binary(&self) -> &Path {
        if self.headless_shell && self.headless_shell_path.exists() {
            &self.headless_shell_path
        } else {
            &self.chromium_path
        }
    }
}

impl Config {
    /// The layered figment: `profile`'s defaults, then `file`, then the
    /// environment.
    pub fn figment(file: Option<&Path>, profile: Profile) -> Figment {
        let mut f = profile.defaults();
        if let Some(path) = file {
            f = f.merge(Toml::file_exact(path));
        }
        f.merge(Env::prefixed(ENV_PREFIX).split("__"))
    }

    /// Loads and validates the effective configuration.
    pub fn load(file: Option<&Path>, profile: Profile) -> Result<Config, ConfigError> {
        if let Some(path) = file {
            std::fs::metadata(path).map_err(|e| {
                ConfigError::Load(format!("cannot read config file {}: {e}", path.display()))
            })?;
        }
        Self::from_figment(Self::figment(file, profile))
    }

    pub fn from_figment(f: Figment) -> Result<Config, ConfigError> {
        let config: Config = f.extract().map_err(|e| describe(&f, e))?;
        config.validate()?;
        Ok(config)
    }

    /// The shipped defaults alone (tests start from these).
    pub fn defaults() -> Config {
        Self::defaults_of(Profile::Standard)
    }

    /// `profile`'s shipped defaults alone, without file or environment.
    pub fn defaults_of(profile: Profile) -> Config {
        Self::from_figment(profile.defaults())
            .expect("config/default.toml and config/demo.toml are valid: checked by unit tests")
    }

    /// Range checks that types alone cannot express.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let a = &self.antiban;
        if self.messaging.send_delay_min > self.messaging.send_delay_max {
            return Err(invalid(
                "messaging.send_delay_min",
                humantime::format_duration(self.messaging.send_delay_min),
                "must not exceed messaging.send_delay_max",
            ));
        }
        if self.messaging.warmup_start > self.messaging.new_contacts_per_day {
            return Err(invalid(
                "messaging.warmup_start",
                self.messaging.warmup_start,
                "must not exceed messaging.new_contacts_per_day",
            ));
        }
        let r = &self.risk;
        for (key, rate) in [
            ("risk.high_reply_rate", r.high_reply_rate),
            ("risk.elevated_reply_rate", r.elevated_reply_rate),
            ("risk.high_not_on_whatsapp", r.high_not_on_whatsapp),
            ("risk.elevated_not_on_whatsapp", r.elevated_not_on_whatsapp),
        ] {
            if !(0.0..=1.0).contains(&rate) {
                return Err(invalid(key, rate, "must be a share between 0 and 1"));
            }
        }
        if r.high_reply_rate > r.elevated_reply_rate {
            return Err(invalid(
                "risk.high_reply_rate",
                r.high_reply_rate,
                "must not exceed risk.elevated_reply_rate",
            ));
        }
        if r.elevated_not_on_whatsapp > r.high_not_on_whatsapp {
            return Err(invalid(
                "risk.elevated_not_on_whatsapp",
                r.elevated_not_on_whatsapp,
                "must not exceed risk.high_not_on_whatsapp",
            ));
        }
        let positive: [(&'static str, u32); 20] = [
            ("antiban.cloud_connects_per_hour", a.cloud_connects_per_hour),
            ("risk.min_sample", r.min_sample),
            ("otp.max_attempts", self.otp.max_attempts),
            ("otp.per_phone_per_day", self.otp.per_phone_per_day),
            ("otp.per_address_per_hour", self.otp.per_address_per_hour),
            (
                "messaging.new_contacts_per_day",
                self.messaging.new_contacts_per_day,
            ),
            (
                "messaging.max_running_campaigns",
                self.messaging.max_running_campaigns,
            ),
            (
                "autoreply.max_per_session_per_hour",
                self.autoreply.max_per_session_per_hour,
            ),
            ("webhooks.max_attempts", self.webhooks.max_attempts),
            ("webhooks.max_in_flight", self.webhooks.max_in_flight),
            (
                "messaging.sends_per_minute",
                self.messaging.sends_per_minute,
            ),
            (
                "antiban.global_attempts_per_hour",
                a.global_attempts_per_hour,
            ),
            ("antiban.tenant_attempts_per_day", a.tenant_attempts_per_day),
            ("antiban.max_live_sessions", a.max_live_sessions),
            ("antiban.max_sessions_per_tenant", a.max_sessions_per_tenant),
            ("antiban.max_sessions", a.max_sessions),
            (
                "antiban.pairing_codes_per_phone_per_hour",
                a.pairing_codes_per_phone_per_hour,
            ),
            (
                "antiban.pairing_codes_per_egress_per_hour",
                a.pairing_codes_per_egress_per_hour,
            ),
            ("supervisor.restart_budget", self.supervisor.restart_budget),
            (
                "supervisor.breaker_failures",
                self.supervisor.breaker_failures,
            ),
        ];
        for (key, value) in positive {
            if value == 0 {
                return Err(invalid(key, value, "must be at least 1"));
            }
        }
        let s = &self.server;
        if s.max_connections == 0 {
            return Err(invalid("server.max_connections", 0, "must be at least 1"));
        }
        if s.header_timeout.is_zero() {
            return Err(invalid(
                "server.header_timeout",
                "0s",
                "must be more than 0s",
            ));
        }
        match (&s.tls_cert, &s.tls_key) {
            (Some(_), None) => {
                return Err(invalid(
                    "server.tls_key",
                    "(unset)",
                    "is needed with server.tls_cert",
                ))
            }
            (None, Some(_)) => {
                return Err(invalid(
                    "server.tls_cert",
                    "(unset)",
                    "is needed with server.tls_key",
                ))
            }
            _ => {}
        }
        if a.connect_jitter_min > a.connect_jitter_max {
            return Err(invalid(
                "antiban.connect_jitter_min",
                humantime::format_duration(a.connect_jitter_min),
                "must not exceed antiban.connect_jitter_max",
            ));
        }
        if a.max_sessions_per_tenant > a.max_sessions {
            return Err(invalid(
                "antiban.max_sessions_per_tenant",
                a.max_sessions_per_tenant,
                "must not exceed antiban.max_sessions",
            ));
        }
        if self.engine.memory_check_interval < Duration::from_secs(1) {
            return Err(invalid(
                "engine.memory_check_interval",
                humantime::format_duration(self.engine.memory_check_interval),
                "must be at least 1s",
            ));
        }
        let deadman = self.engine.deadman;
        if !deadman.is_zero() && deadman < Duration::from_secs(2) {
            return Err(invalid(
                "engine.deadman",
                humantime::format_duration(deadman),
                "must be 0s (off) or at least 2s: the engine pings every second",
            ));
        }
        if let Some(r) = self.storage.message_retention {
            if r < Duration::from_secs(3_600) {
                return Err(invalid(
                    "storage.message_retention",
                    humantime::format_duration(r),
                    "must be at least 1h (or unset, to keep messages)",
                ));
            }
        }
        let nonzero: [(&'static str, Duration); 13] = [
            ("otp.ttl", self.otp.ttl),
            ("otp.retention", self.otp.retention),
            ("webhooks.timeout", self.webhooks.timeout),
            ("webhooks.retention", self.webhooks.retention),
            ("engine.qr_window", self.engine.qr_window),
            ("engine.qr_code_ttl", self.engine.qr_code_ttl),
            ("engine.launch_timeout", self.engine.launch_timeout),
            ("engine.page_timeout", self.engine.page_timeout),
            ("engine.sim_qr_rotation", self.engine.sim_qr_rotation),
            ("supervisor.restart_window", self.supervisor.restart_window),
            (
                "supervisor.breaker_open_for",
                self.supervisor.breaker_open_for,
            ),
            ("auth.token_ttl", self.auth.token_ttl),
            ("server.shutdown_timeout", self.server.shutdown_timeout),
        ];
        for (key, value) in nonzero {
            if value.is_zero() {
                return Err(invalid(
                    key,
                    humantime::format_duration(value),
                    "must be longer than 0s",
                ));
            }
        }
        if !(self.engine.wa_url.starts_with("http://")
            || self.engine.wa_url.starts_with("https://"))
        {
            return Err(invalid(
                "engine.wa_url",
                &self.engine.wa_url,
                "must be an http:// or https:// URL",
            ));
        }
        if !self.otp.secret.is_empty() && self.otp.secret.len() < 32 {
            return Err(invalid(
                "otp.secret",
                "(hidden)",
                "must be empty (generated) or at least 32 characters",
            ));
        }
        if self.otp.app.trim().is_empty() || self.otp.app.chars().count() > 60 {
            return Err(invalid("otp.app", &self.otp.app, "must be 1-60 characters"));
        }
        if self.otp.template.trim().is_empty() {
            return Err(invalid("otp.template", "\"\"", "must not be empty"));
        }
        if !self.auth.jwt_secret.is_empty() && self.auth.jwt_secret.len() < 32 {
            return Err(invalid(
                "auth.jwt_secret",
                "(hidden)",
                "must be empty (generated) or at least 32 characters",
            ));
        }
        let hex64 = |k: &str| k.len() == 64 && k.chars().all(|c| c.is_ascii_hexdigit());
        for (key, value) in [
            ("storage.secret_key", &self.storage.secret_key),
            (
                "storage.previous_secret_key",
                &self.storage.previous_secret_key,
            ),
        ] {
            if value.as_deref().is_some_and(|k| !hex64(k)) {
                return Err(invalid(key, "(hidden)", "must be 64 hex digits (32 bytes)"));
            }
        }
        if !(self.engine.cloud_base_url.starts_with("http://")
            || self.engine.cloud_base_url.starts_with("https://"))
        {
            return Err(invalid(
                "engine.cloud_base_url",
                &self.engine.cloud_base_url,
                "must be an http:// or https:// URL",
            ));
        }
        if self.engine.cloud_max_per_second == 0 {
            return Err(invalid(
                "engine.cloud_max_per_second",
                "0",
                "must be at least 1",
            ));
        }
        self.fleet.validate()?;
        if self.fleet.enabled() && self.storage.secret_key.is_none() {
            // Each node would make its own key file: a profile snapshot or a
            // sealed secret written by one node would not open on another.
            return Err(invalid(
                "storage.secret_key",
                "(unset)",
                "must be set, the same on every node, when fleet.database_url is set",
            ));
        }
        Ok(())
    }

    /// The effective configuration as TOML, secrets masked.
    pub fn to_masked_toml(&self) -> String {
        let mut shown = self.clone();
        if !shown.auth.jwt_secret.is_empty() {
            shown.auth.jwt_secret = "********".into();
        }
        for key in [
            &mut shown.storage.secret_key,
            &mut shown.storage.previous_secret_key,
        ] {
            if key.is_some() {
                *key = Some("********".into());
            }
        }
        if !shown.otp.secret.is_empty() {
            shown.otp.secret = "********".into();
        }
        shown.fleet.database_url = shown.fleet.masked_url();
        toml::to_string_pretty(&shown).unwrap_or_else(|e| format!("# cannot render config: {e}\n"))
    }
}

/// Rewrites figment's errors as `key = value: problem (source)`, with keys in
/// the lower case of default.toml whatever layer they came from.
fn describe(f: &Figment, err: figment::Error) -> ConfigError {
    let msgs: Vec<String> = err
        .into_iter()
        .map(|e| {
            let mut key = e.path.join(".").to_lowercase();
            let value = match &e.kind {
                figment::error::Kind::UnknownField(field, _) => {
                    key = if key.is_empty() {
                        field.clone()
                    } else {
                        format!("{key}.{field}")
                    };
                    None
                }
                _ if key.is_empty() => None,
                _ => f.find_value(&key).ok().map(|v| match v.as_str() {
                    Some(s) => format!("{s:?}"),
                    None => serde_json::to_string(&v).unwrap_or_default(),
                }),
            };
            let source = e
                .metadata
                .as_ref()
                .map(|m| format!(" (from {})", m.name))
                .unwrap_or_default();
            match value {
                Some(v) => format!("{key} = {v}: {}{source}", e.kind),
                None if key.is_empty() => format!("{}{source}", e.kind),
                None => format!("{key}: {}{source}", e.kind),
            }
        })
        .collect();
    ConfigError::Load(msgs.join("; "))
}

fn invalid(key: &'static str, value: impl std::fmt::Display, why: &'static str) -> ConfigError {
    ConfigError::Invalid {
        key,
        value: value.to_string(),
        why,
    }
}

#[cfg(test)]
// figment's `Jail::expect_with` closures return its (large) `figment::Error`.
#[allow(clippy::result_large_err)]
mod tests {
    #[test]
    fn message_retention_is_off_by_default_reads_durations_and_is_at_least_an_hour() {
        assert_eq!(Config::defaults().storage.message_retention, None);
        Jail::expect_with(|jail| {
            jail.create_file(
                "c.toml",
                "[storage]\ndata_dir = \"d\"\nmessage_retention = \"90d\"\n",
            )?;
            let c = Config::load(Some(&jail.directory().join("c.toml")), Profile::Standard)
                .expect("valid");
            assert_eq!(
                c.storage.message_retention,
                Some(Duration::from_secs(90 * 86_400))
            );
            Ok(())
        });
        Jail::expect_with(|jail| {
            jail.set_env("CENTINELA__STORAGE__MESSAGE_RETENTION", "30m");
            let e = load_err(jail, None);
            assert!(e.contains("storage.message_retention"), "{e}");
            Ok(())
        });
    }

    #[test]
    fn the_session_memory_limit_reads_sizes_with_units_and_off() {
        assert_eq!(Config::defaults().engine.max_session_memory, 512 << 20);
        for (raw, bytes) in [
            ("512MiB", Some(512 << 20)),
            ("2GiB", Some(2 << 30)),
            ("800MB", Some(800_000_000)),
            ("1048576", Some(1 << 20)),
            ("off", Some(0)),
            ("0", Some(0)),
            ("12 parsecs", None),
            ("", None),
        ] {
            assert_eq!(super::byte_size::parse(raw), bytes, "{raw:?}");
        }
        assert_eq!(super::byte_size::format(512 << 20), "512MiB");
        assert_eq!(super::byte_size::format(0), "off");
        Jail::expect_with(|jail| {
            jail.set_env("CENTINELA__ENGINE__MAX_SESSION_MEMORY", "off");
            let c = Config::load(None, Profile::Standard).expect("valid");
            assert_eq!(c.engine.max_session_memory, 0);
            assert!(c.to_masked_toml().contains("max_session_memory = \"off\""));
            Ok(())
        });
        Jail::expect_with(|jail| {
            jail.set_env("CENTINELA__ENGINE__MAX_SESSION_MEMORY", "lots");
            let e = load_err(jail, None);
            assert!(e.contains("max_session_memory"), "{e}");
            Ok(())
        });
        Jail::expect_with(|jail| {
            jail.set_env("CENTINELA__ENGINE__MEMORY_CHECK_INTERVAL", "10ms");
            let e = load_err(jail, None);
            assert!(e.contains("engine.memory_check_interval"), "{e}");
            Ok(())
        });
    }

    #[test]
    fn the_dead_man_switch_is_off_by_default_and_never_shorter_than_two_pings() {
        Jail::expect_with(|_| {
            let c = Config::load(None, Profile::Standard).expect("valid");
            assert_eq!(c.engine.deadman, Duration::ZERO, "off in single-node mode");
            Ok(())
        });
        Jail::expect_with(|jail| {
            jail.set_env("CENTINELA__ENGINE__DEADMAN", "25s");
            let c = Config::load(None, Profile::Standard).expect("valid");
            assert_eq!(c.engine.deadman, Duration::from_secs(25));
            Ok(())
        });
        Jail::expect_with(|jail| {
            jail.set_env("CENTINELA__ENGINE__DEADMAN", "1500ms");
            let e = load_err(jail, None);
            assert!(e.contains("engine.deadman"), "{e}");
            Ok(())
        });
    }

    #[test]
    fn a_secret_key_must_be_64_hex_digits_and_is_masked() {
        let mut c = Config::defaults();
        c.storage.secret_key = Some("abc".into());
        let e = c.validate().expect_err("short key");
        assert!(e.to_string().contains("storage.secret_key"), "{e}");
        assert!(!e.to_string().contains("abc"), "{e}");
        c.storage.secret_key = Some("0f".repeat(32));
        assert!(c.validate().is_ok());
        assert!(!c.to_masked_toml().contains(&"0f".repeat(32)));
    }

    use super::*;
    use figment::Jail;

    fn load_err(jail: &Jail, file: Option<&str>) -> String {
        let path = file.map(|f| jail.directory().join(f));
        match Config::load(path.as_deref(), Profile::Standard) {
            Ok(_) => panic!("expected a configuration error"),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn shipped_defaults_match_the_design() {
        let c = Config::defaults();
        assert_eq!(c.server.listen.to_string(), "127.0.0.1:3012");
        assert_eq!(c.antiban.global_attempts_per_hour, 3);
        assert_eq!(c.antiban.cloud_connects_per_hour, 12);
        assert_eq!(c.antiban.tenant_attempts_per_day, 2);
        assert_eq!(c.antiban.cooldown_after_failure, Duration::from_secs(7200));
        assert_eq!(c.antiban.connect_delay, Duration::from_secs(30));
        assert_eq!(c.antiban.queue_spacing, Duration::from_secs(2));
        assert_eq!(c.antiban.ban_block, Duration::from_secs(86_400));
        assert_eq!(c.antiban.max_live_sessions, 6);
        assert_eq!(c.antiban.max_sessions_per_tenant, 5);
        assert_eq!(c.antiban.max_sessions, 100);
        assert!(!c.antiban.auto_reconnect);
        assert!(!c.antiban.restore_counts_as_attempt);
        assert_eq!(c.engine.qr_window, Duration::from_secs(60));
        assert_eq!(c.auth.token_ttl, Duration::from_secs(12 * 3600));
        assert_eq!(c.auth.jwt_secret, "");
        assert_eq!(c.messaging.typing_chars_per_second, 15);
        assert!(c.messaging.send_seen);
        assert_eq!(c.messaging.new_contacts_per_day, 20);
        assert_eq!(c.messaging.warmup_days, 7);
        assert_eq!(c.messaging.warmup_start, 5);
        assert_eq!(c.autoreply.per_sender_cooldown, Duration::from_secs(600));
        assert_eq!(c.autoreply.max_per_session_per_hour, 30);
        assert!(c.webhooks.allow_private.is_empty(), "no private range");
        assert!(c.server.trusted_proxies.is_empty(), "no proxy trusted");
        assert_eq!(c.webhooks.retention, Duration::from_secs(7 * 86_400));
        // Seed 004: 10 minutes, 60 s between sends, 3 tries, 5 a day per
        // phone, 10 an hour per address.
        assert_eq!(c.otp.ttl, Duration::from_secs(600));
        assert_eq!(c.otp.resend_after, Duration::from_secs(60));
        assert_eq!(c.otp.max_attempts, 3);
        assert_eq!(c.otp.per_phone_per_day, 5);
        assert_eq!(c.otp.per_address_per_hour, 10);
        assert_eq!(c.otp.retention, Duration::from_secs(7 * 86_400));
        assert_eq!(c.otp.language, OtpLanguage::Es);
        assert_eq!(c.otp.secret, "");
    }

    #[test]
    fn webhook_private_ranges_load_as_cidrs_and_a_bad_one_is_named() {
        Jail::expect_with(|jail| {
            jail.create_file(
                "c.toml",
                "[webhooks]\nallow_private = [\"10.1.2.0/24\", \"fd00::/8\"]\n",
            )?;
            let c = Config::load(Some(&jail.directory().join("c.toml")), Profile::Standard)
                .expect("valid");
            let want = CidrSet::parse(["10.1.2.0/24", "fd00::/8"]).expect("cidrs");
            assert_eq!(c.webhooks.allow_private, want);
            assert!(c.to_masked_toml().contains("\"10.1.2.0/24\""));
            Ok(())
        });
        Jail::expect_with(|jail| {
            jail.set_env("CENTINELA__WEBHOOKS__ALLOW_PRIVATE", "[\"127.0.0.0/8\"]");
            let c = Config::load(None, Profile::Standard).expect("valid");
            assert_eq!(c.webhooks.allow_private.blocks().len(), 1);
            Ok(())
        });
        Jail::expect_with(|jail| {
            jail.set_env("CENTINELA__WEBHOOKS__ALLOW_PRIVATE", "[\"10.1.2.0/33\"]");
            let e = load_err(jail, None);
            assert!(e.contains("webhooks.allow_private"), "{e}");
            Ok(())
        });
    }

    #[test]
    fn trusted_proxies_load_as_cidrs_and_a_bare_address_is_named() {
        Jail::expect_with(|jail| {
            jail.create_file(
                "c.toml",
                "[server]\ntrusted_proxies = [\"127.0.0.1/32\", \"10.0.0.0/8\"]\n",
            )?;
            let c = Config::load(Some(&jail.directory().join("c.toml")), Profile::Standard)
                .expect("valid");
            let want = CidrSet::parse(["127.0.0.1/32", "10.0.0.0/8"]).expect("cidrs");
            assert_eq!(c.server.trusted_proxies, want);
            Ok(())
        });
        Jail::expect_with(|jail| {
            jail.set_env("CENTINELA__SERVER__TRUSTED_PROXIES", "[\"127.0.0.1\"]");
            let e = load_err(jail, None);
            assert!(e.contains("server.trusted_proxies"), "{e}");
            Ok(())
        });
    }

    #[test]
    fn auto_reply_limits_load_from_the_environment_and_are_checked() {
        Jail::expect_with(|jail| {
            jail.set_env("CENTINELA__AUTOREPLY__PER_SENDER_COOLDOWN", "1h");
            jail.set_env("CENTINELA__AUTOREPLY__MAX_PER_SESSION_PER_HOUR", "5");
            let c = Config::load(None, Profile::Standard).expect("valid");
            assert_eq!(c.autoreply.per_sender_cooldown, Duration::from_secs(3600));
            assert_eq!(c.autoreply.max_per_session_per_hour, 5);
            Ok(())
        });
        Jail::expect_with(|jail| {
            jail.set_env("CENTINELA__AUTOREPLY__MAX_PER_SESSION_PER_HOUR", "0");
            let e = load_err(jail, None);
            assert!(e.contains("autoreply.max_per_session_per_hour = 0"), "{e}");
            Ok(())
        });
    }

    #[test]
    fn typing_and_seen_marks_can_be_turned_off_from_the_environment() {
        Jail::expect_with(|jail| {
            jail.set_env("CENTINELA__MESSAGING__TYPING_CHARS_PER_SECOND", "0");
            jail.set_env("CENTINELA__MESSAGING__SEND_SEEN", "false");
            let c = Config::load(None, Profile::Standard).expect("loads");
            assert_eq!(c.messaging.typing_chars_per_second, 0);
            assert!(!c.messaging.send_seen);
            Ok(())
        });
        Jail::expect_with(|jail| {
            jail.set_env("CENTINELA__MESSAGING__TYPING_CHARS_PER_SECOND", "-1");
            let e = load_err(jail, None);
            assert!(e.contains("typing_chars_per_second"), "{e}");
            Ok(())
        });
    }

    #[test]
    fn the_new_contact_budget_is_at_least_one_and_starts_within_itself() {
        Jail::expect_with(|jail| {
            jail.set_env("CENTINELA__MESSAGING__NEW_CONTACTS_PER_DAY", "40");
            jail.set_env("CENTINELA__MESSAGING__WARMUP_DAYS", "0");
            let c = Config::load(None, Profile::Standard).expect("loads");
            assert_eq!(c.messaging.contact_budget().per_day, 40);
            assert_eq!(c.messaging.contact_budget().warmup_days, 0);
            Ok(())
        });
        Jail::expect_with(|jail| {
            jail.set_env("CENTINELA__MESSAGING__NEW_CONTACTS_PER_DAY", "0");
            jail.set_env("CENTINELA__MESSAGING__WARMUP_START", "0");
            let e = load_err(jail, None);
            assert!(e.contains("messaging.new_contacts_per_day = 0"), "{e}");
            Ok(())
        });
        Jail::expect_with(|jail| {
            jail.set_env("CENTINELA__MESSAGING__NEW_CONTACTS_PER_DAY", "3");
            let e = load_err(jail, None);
            assert!(e.contains("messaging.warmup_start = 5"), "{e}");
            Ok(())
        });
    }

    #[test]
    fn every_default_key_has_a_comment() {
        let lines: Vec<&str> = DEFAULT_TOML.lines().collect();
        for (i, line) in lines.iter().enumerate() {
            let is_key = line.contains(" = ") && !line.trim_start().starts_with('#');
            if is_key {
                let prev = lines[i - 1].trim_start();
                assert!(prev.starts_with('#'), "key without a comment: {line}");
            }
        }
    }

    #[test]
    fn layers_apply_file_then_environment() {
        Jail::expect_with(|jail| {
            jail.create_file(
                "c.toml",
                "[antiban]\nconnect_delay = \"5s\"\nmax_sessions = 50\n",
            )?;
            jail.set_env("CENTINELA__ANTIBAN__CONNECT_DELAY", "0s");
            let c = Config::load(Some(&jail.directory().join("c.toml")), Profile::Standard)
                .expect("valid");
            assert_eq!(c.antiban.connect_delay, Duration::ZERO);
            assert_eq!(c.antiban.max_sessions, 50);
            assert_eq!(c.antiban.max_live_sessions, 6);
            Ok(())
        });
    }

    #[test]
    fn the_demo_relaxes_only_what_nobody_set() {
        let demo = Config::defaults_of(Profile::Demo);
        assert_eq!(demo.antiban.global_attempts_per_hour, 60);
        assert_eq!(demo.antiban.tenant_attempts_per_day, 50);
        assert_eq!(demo.antiban.cooldown_after_failure, Duration::from_secs(60));
        assert_eq!(demo.antiban.connect_delay, Duration::from_secs(2));
        // Everything else is the standard default.
        let mut standard = Config::defaults();
        standard.antiban.global_attempts_per_hour = 60;
        standard.antiban.tenant_attempts_per_day = 50;
        standard.antiban.cooldown_after_failure = Duration::from_secs(60);
        standard.antiban.connect_delay = Duration::from_secs(2);
        assert_eq!(demo, standard);
    }

    #[test]
    fn a_file_and_the_environment_beat_the_demo() {
        Jail::expect_with(|jail| {
            jail.create_file(
                "c.toml",
                "[antiban]\ntenant_attempts_per_day = 7\nconnect_delay = \"9s\"\n",
            )?;
            jail.set_env("CENTINELA__ANTIBAN__GLOBAL_ATTEMPTS_PER_HOUR", "3");
            jail.set_env("CENTINELA__ANTIBAN__CONNECT_DELAY", "0s");
            let c =
                Config::load(Some(&jail.directory().join("c.toml")), Profile::Demo).expect("valid");
            assert_eq!(c.antiban.global_attempts_per_hour, 3, "environment");
            assert_eq!(c.antiban.tenant_attempts_per_day, 7, "file");
            assert_eq!(
                c.antiban.connect_delay,
                Duration::ZERO,
                "environment over file"
            );
            assert_eq!(
                c.antiban.cooldown_after_failure,
                Duration::from_secs(60),
                "the demo's, as nobody set it"
            );
            Ok(())
        });
    }

    #[test]
    fn every_demo_key_has_a_comment_and_a_default() {
        let standard = Figment::from(Toml::string(DEFAULT_TOML));
        let lines: Vec<&str> = DEMO_TOML.lines().collect();
        let mut section = "";
        for (i, line) in lines.iter().enumerate() {
            if let Some(s) = line.strip_prefix('[') {
                section = s.trim_end_matches(']');
            }
            let Some((key, _)) = line.split_once(" = ") else {
                continue;
            };
            if line.trim_start().starts_with('#') {
                continue;
            }
            assert!(
                lines[i - 1].trim_start().starts_with('#'),
                "key without a comment: {line}"
            );
            let path = format!("{section}.{}", key.trim());
            assert!(
                standard.find_value(&path).is_ok(),
                "{path} is not in default.toml"
            );
        }
    }

    #[test]
    fn unknown_key_is_named() {
        Jail::expect_with(|jail| {
            jail.create_file("c.toml", "[antiban]\nconect_delay = \"5s\"\n")?;
            let e = load_err(jail, Some("c.toml"));
            assert!(e.contains("antiban.conect_delay"), "{e}");
            Ok(())
        });
    }

    #[test]
    fn unknown_env_key_is_named() {
        Jail::expect_with(|jail| {
            jail.set_env("CENTINELA__ANTIBAN__MAX_SESIONS", "3");
            let e = load_err(jail, None);
            assert!(e.contains("antiban.max_sesions"), "{e}");
            Ok(())
        });
    }

    #[test]
    fn wrong_type_names_key_and_value() {
        Jail::expect_with(|jail| {
            jail.set_env("CENTINELA__ANTIBAN__MAX_SESSIONS", "lots");
            let e = load_err(jail, None);
            assert!(e.contains("antiban.max_sessions = \"lots\""), "{e}");
            Ok(())
        });
    }

    #[test]
    fn bad_duration_names_key_and_value() {
        Jail::expect_with(|jail| {
            jail.set_env("CENTINELA__ANTIBAN__COOLDOWN_AFTER_FAILURE", "two hours");
            let e = load_err(jail, None);
            assert!(
                e.contains("antiban.cooldown_after_failure = \"two hours\""),
                "{e}"
            );
            Ok(())
        });
    }

    #[test]
    fn a_tls_certificate_needs_its_key_and_the_server_limits_are_positive() {
        Jail::expect_with(|jail| {
            jail.set_env("CENTINELA__SERVER__TLS_CERT", "/etc/centinela/cert.pem");
            let e = load_err(jail, None);
            assert!(
                e.contains("server.tls_key") && e.contains("server.tls_cert"),
                "{e}"
            );
            jail.set_env("CENTINELA__SERVER__TLS_KEY", "/etc/centinela/key.pem");
            let both = Config::load(None, Profile::Standard).expect("cert and key together load");
            assert_eq!(
                both.server.tls_key.as_deref(),
                Some(Path::new("/etc/centinela/key.pem"))
            );
            jail.set_env("CENTINELA__SERVER__MAX_CONNECTIONS", "0");
            assert!(load_err(jail, None).contains("server.max_connections = 0"));
            jail.set_env("CENTINELA__SERVER__MAX_CONNECTIONS", "8");
            jail.set_env("CENTINELA__SERVER__HEADER_TIMEOUT", "0s");
            assert!(load_err(jail, None).contains("server.header_timeout"));
            Ok(())
        });
    }

    #[test]
    fn out_of_range_value_names_key_and_value() {
        Jail::expect_with(|jail| {
            jail.set_env("CENTINELA__ANTIBAN__MAX_LIVE_SESSIONS", "0");
            let e = load_err(jail, None);
            assert!(e.contains("antiban.max_live_sessions = 0"), "{e}");
            Ok(())
        });
        Jail::expect_with(|jail| {
            jail.set_env("CENTINELA__ANTIBAN__CONNECT_JITTER_MIN", "10s");
            let e = load_err(jail, None);
            assert!(e.contains("antiban.connect_jitter_min = 10s"), "{e}");
            Ok(())
        });
    }

    #[test]
    fn bad_listen_address_is_named() {
        Jail::expect_with(|jail| {
            jail.set_env("CENTINELA__SERVER__LISTEN", "localhost:abc");
            let e = load_err(jail, None);
            assert!(e.contains("server.listen = \"localhost:abc\""), "{e}");
            Ok(())
        });
    }

    #[test]
    fn missing_config_file_is_an_error() {
        Jail::expect_with(|jail| {
            let e = load_err(jail, Some("nope.toml"));
            assert!(e.contains("nope.toml"), "{e}");
            Ok(())
        });
    }

    #[test]
    fn otp_settings_out_of_range_are_named() {
        Jail::expect_with(|jail| {
            jail.set_env("CENTINELA__OTP__MAX_ATTEMPTS", "0");
            let e = load_err(jail, None);
            assert!(e.contains("otp.max_attempts"), "{e}");
            Ok(())
        });
        Jail::expect_with(|jail| {
            jail.set_env("CENTINELA__OTP__SECRET", "short");
            let e = load_err(jail, None);
            assert!(e.contains("otp.secret") && !e.contains("short"), "{e}");
            Ok(())
        });
        Jail::expect_with(|jail| {
            jail.set_env("CENTINELA__OTP__LANGUAGE", "fr");
            let e = load_err(jail, None);
            assert!(e.contains("otp.language"), "{e}");
            Ok(())
        });
    }

    #[test]
    fn printed_config_masks_the_secret() {
        let mut c = Config::defaults();
        c.auth.jwt_secret = "a-very-long-secret-value-of-forty-chars!!".into();
        c.otp.secret = "the-otp-hmac-key-of-at-least-32-chars".into();
        let shown = c.to_masked_toml();
        assert!(!shown.contains("a-very-long-secret"));
        assert!(!shown.contains("the-otp-hmac-key"));
        assert!(shown.contains("********"));
        assert!(shown.contains("global_attempts_per_hour = 3"));
    }
}
