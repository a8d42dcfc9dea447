//! Why a session is not connected: the one vocabulary engines report in
//! and the state machine, store and API read. It owns the names and which
//! reasons end the wish to run; it does not decide admission outcomes.

use serde::{Deserialize, Serialize};

/// Why a session is not connected. Serialized in snake_case (`qr_timeout`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum DisconnectReason {
    NeverConnected,
    Manual,
    /// Unpaired: from the phone, or by our logout.
    Logout,
    /// The account was opened elsewhere.
    Conflict,
    QrTimeout,
    /// The account is banned: TOS_BLOCK, SMB_TOS_BLOCK, or (for engines
    /// that see stream errors) a 515 outside the restart grace.
    Banned,
    /// PROXYBLOCK: WhatsApp refuses the network path (IP or proxy), not the
    /// account. Reconnecting on the same path cannot help.
    ProxyBlocked,
    BrowserCrashed,
    EngineError,
    /// The Cloud API refused the access token (error 190, HTTP 401):
    /// reconnecting with the same token cannot help.
    TokenInvalid,
    /// Our memory guard closed the browser: its process tree outgrew
    /// `engine.max_session_memory`. A local fault: a paired session is
    /// restored (no QR) through admission.
    MemoryLimit,
}

impl DisconnectReason {
    /// Ours, not WhatsApp's verdict: the browser crashed, the engine
    /// failed, or the memory guard closed it. A paired session is restored
    /// after one (`supervisor.restore_local_faults`).
    pub fn is_local_fault(self) -> bool {
        matches!(
            self,
            Self::BrowserCrashed | Self::EngineError | Self::MemoryLimit
        )
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::NeverConnected => "never_connected",
            Self::Manual => "manual",
            Self::Logout => "logout",
            Self::Conflict => "conflict",
            Self::QrTimeout => "qr_timeout",
            Self::Banned => "banned",
            Self::ProxyBlocked => "proxy_blocked",
            Self::BrowserCrashed => "browser_crashed",
            Self::EngineError => "engine_error",
            Self::TokenInvalid => "token_invalid",
            Self::MemoryLimit => "memory_limit",
        }
    }

    /// Reasons after which restoring the session makes no sense (unpaired,
    /// banned, taken elsewhere, or never scanned): its desired state becomes
    /// stopped.
    pub fn ends_desire_to_run(self) -> bool {
        match self {
            Self::Manual
            | Self::Logout
            | Self::Conflict
            | Self::QrTimeout
            | Self::Banned
            | Self::ProxyBlocked
            | Self::TokenInvalid => true,
            Self::NeverConnected | Self::BrowserCrashed | Self::EngineError | Self::MemoryLimit => {
                false
            }
        }
    }
}
