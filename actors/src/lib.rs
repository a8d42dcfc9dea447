//! Centinela's domain: tenant session actors and their state machine, the root
//! supervisor, the engines that drive WhatsApp, and the store.
//!
//! The web crate talks to this crate only through actor messages
//! ([`supervisor::SupervisorMsg`]) and the read types it exports; it never
//! touches redb or a browser.

pub mod bus;
pub mod clock;
pub mod config;
pub mod engine;
pub mod ids;
pub mod messaging;
pub mod proxy;
pub mod session;
pub mod store;
pub mod supervisor;

pub use ractor;
