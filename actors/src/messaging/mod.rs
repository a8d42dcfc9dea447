//! Messaging around the sessions: the durable outbox writer ([`outbox`],
//! group commit), the pacing and typing rules a session actor's sender
//! follows ([`pacing`], [`typing`]; the sender itself is
//! `session/outgoing.rs`), webhook
//! delivery with signatures and retries ([`webhooks`]), campaigns
//! ([`campaigns`], their texts rendered by [`template`]) and keyword
//! auto-replies ([`autoreply`], rationed by [`reply_limit`]), and the
//! anti-ban for sending: the new-contact budget ([`budget`]), a campaign's
//! outlook under it ([`outlook`]) and each session's ban risk ([`risk`],
//! followed by [`risk_watch`]), and old-data retention ([`retention`]). It does not
//! talk to an engine: messages reach WhatsApp only through a session actor.

pub mod autoreply;
pub mod budget;
pub mod campaigns;
pub mod outbox;
pub mod outlook;
pub mod pacing;
pub mod reply_limit;
pub mod retention;
pub mod risk;
pub mod risk_watch;
pub mod template;
pub mod typing;
pub mod webhooks;

pub use campaigns::Campaigns;
pub use outbox::{Outbox, OutboxError};
pub use pacing::Pacing;
pub use risk_watch::RiskWatch;
pub use typing::Typing;
pub use webhooks::Webhooks;
