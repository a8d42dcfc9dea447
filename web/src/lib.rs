//! Centinela's HTTP layer: axum routes that only send messages to the actors
//! (or read through them). It never opens redb or a browser itself.
//!
//! [`router`] is a plain function of [`AppState`], so route tests use
//! `tower::ServiceExt::oneshot` without a socket.

pub mod error;
mod extract;
mod health;
pub mod sim;

use axum::Router;
use centinela_actors::clock::SharedClock;
use centinela_actors::ractor::ActorRef;
use centinela_actors::supervisor::SupervisorMsg;

pub use error::ApiError;

/// What every handler can reach.
#[derive(Clone)]
pub struct AppState {
    pub supervisor: ActorRef<SupervisorMsg>,
    pub clock: SharedClock,
}

/// The whole HTTP surface.
pub fn router(state: AppState) -> Router {
    Router::new()
        .merge(health::routes())
        .fallback(error::not_found)
        .with_state(state)
}
