//! A tenant session: its typed state machine ([`machine`]) and the actor that
//! executes the machine's effects against one engine driver ([`actor`]).

pub mod actor;
pub mod machine;
pub mod memory;
mod outgoing;

pub use actor::{SessionActor, SessionArgs, SessionMsg, SessionView};
pub use machine::{DisconnectReason, Effect, Event, Refusal, SessionState, Transition};
pub use memory::MemoryGuard;
