//! Centinela's domain: tenant session actors and their state machine, the root
//! supervisor, the engines that drive WhatsApp, the store, and the deletion
//! of a tenant with everything it owns ([`tenants`]).
//!
//! The web crate talks to the supervisor only through its typed handle
//! ([`supervisor::Supervisor`], one async method per command), and to the
//! data through the store's accessors and the messaging handles; it never
//! touches redb or a browser, and ractor is not part of its vocabulary.

pub mod bus;
pub mod cidr;
pub mod clock;
pub mod config;
pub mod engine;
pub mod hub;
pub mod ids;
pub mod messaging;
pub mod otp;
pub mod proxy;
pub mod secret;
pub mod session;
pub mod store;
pub mod supervisor;
pub mod tenants;
