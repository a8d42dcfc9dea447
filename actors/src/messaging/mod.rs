//! Messaging: the durable outbox ([`outbox`]) that accepts messages with a
//! group commit, and the pacing rules ([`pacing`]) a session actor follows to
//! send them like a person would.

pub mod autoreply;
pub mod campaigns;
pub mod outbox;
pub mod pacing;
pub mod webhooks;

pub use campaigns::Campaigns;
pub use outbox::{Outbox, OutboxError};
pub use pacing::Pacing;
pub use webhooks::Webhooks;
