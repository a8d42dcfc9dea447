//! Centinela's HTTP layer: axum routes that check the caller, validate the
//! input, and then ask the supervisor (through its typed handle), the
//! messaging handles (outbox, webhooks, campaigns), tenant deletion, or the
//! [`Data`] traits.
//! It owns the HTTP shapes and status codes, not the rules; it never opens
//! redb or a browser itself.
//!
//! [`router`] is a plain function of [`AppState`], so route tests use
//! `tower::ServiceExt::oneshot` without a socket.

pub mod accounts;
pub mod auth;
pub mod autoreplies;
pub mod campaigns;
pub mod chats;
pub mod client_addr;
mod dashboard;
pub mod error;
mod extract;
pub mod fleet;
pub mod forward;
mod health;
pub mod logstream;
pub mod messages;
pub mod meta;
pub mod metrics;
pub mod openapi;
pub mod otp;
pub mod qr;
pub mod ratelimit;
pub mod risk;
pub mod security;
pub mod serve;
pub mod sessions;
pub mod sim;
pub mod webhooks;
pub mod ws;

use axum::Router;
use centinela_actors::bus::Bus;
use centinela_actors::clock::SharedClock;
use centinela_actors::config::Config;
use centinela_actors::messaging::risk_watch::RiskStore;
use centinela_actors::messaging::webhooks::{Lookup, SystemLookup};
use centinela_actors::messaging::{self, Campaigns, Outbox, RiskWatch, Webhooks};
use centinela_actors::store::{
    AccountRepo, AuditRepo, AutoReplyRepo, CampaignRepo, InboxRepo, MessageRepo, OtpRepo,
    TenantSettingsRepo, WebhookRepo,
};
use centinela_actors::supervisor::Supervisor;
use std::sync::Arc;

pub use centinela_actors::hub;
pub use error::ApiError;

/// What the HTTP layer is configured with.
#[derive(Debug, Clone, Default)]
pub struct WebConfig {
    pub cors_origins: Vec<String>,
    pub max_body_bytes: usize,
    /// Whose `X-Forwarded-For` names the client ([`client_addr`]).
    pub trusted_proxies: centinela_actors::cidr::CidrSet,
}

/// The node's own data the HTTP layer reads and writes directly: webhook
/// targets and deliveries, auto-reply rules, messages, the inbox and the
/// audit log. Accounts are [`AppState::accounts`], apart, because in fleet
/// mode they are the fleet's while these stay the node's; sessions and
/// admission go through the supervisor instead.
pub trait Data: WebhookRepo + AutoReplyRepo + MessageRepo + InboxRepo + AuditRepo {}

impl<T> Data for T where T: WebhookRepo + AutoReplyRepo + MessageRepo + InboxRepo + AuditRepo {}

/// What every handler can reach.
#[derive(Clone)]
pub struct AppState {
    pub data: Arc<dyn Data>,
    /// Tenants, users, API keys, revoked tokens and settings: the node's
    /// store on a single node, the fleet's database in fleet mode
    /// ([`Injected::accounts`]), so every node knows every account.
    pub accounts: Arc<dyn AccountRepo>,
    /// Each tenant's webhook target and auto-reply rules: the node's store
    /// on a single node, the fleet's database in fleet mode
    /// ([`Injected::settings`]).
    pub settings: Arc<dyn TenantSettingsRepo>,
    pub supervisor: Supervisor,
    pub clock: SharedClock,
    pub auth: Arc<auth::Auth>,
    pub hub: hub::Hub,
    pub metrics: Arc<metrics::Metrics>,
    /// Where accepted messages go (durable, group-committed).
    pub outbox: centinela_actors::messaging::Outbox,
    pub webhooks: centinela_actors::messaging::Webhooks,
    pub campaigns: centinela_actors::messaging::Campaigns,
    /// Each session's ban risk, new-contact budget and campaign outlooks.
    pub risk: centinela_actors::messaging::RiskWatch,
    /// Verification codes.
    pub otp: centinela_actors::otp::Otp,
    /// Deletes a tenant with everything it owns.
    pub tenants: centinela_actors::tenants::Tenants,
    pub web: WebConfig,
    /// Turns true when the server shuts down (WebSockets close).
    pub shutdown: tokio::sync::watch::Receiver<bool>,
    /// Seals a cloud session's secrets before they reach the supervisor.
    pub secrets: Arc<centinela_actors::secret::SecretBox>,
    /// Meta's webhooks go in here (the cloud engine); `None` when the
    /// server has no cloud engine.
    pub cloud: Option<Arc<dyn centinela_actors::engine::cloud::CloudHooks>>,
    /// Fleet mode's status (`GET /api/v1/fleet`); `None` on a single node.
    pub fleet: Option<Arc<dyn fleet::FleetStatus>>,
    /// Fleet mode: requests for tenants another node hosts go there
    /// ([`forward`]); `None` on a single node.
    pub forward: Option<Arc<forward::Forwarder>>,
}

/// What the background tasks take from outside, injected so tests can
/// script it: the clock, and the resolver webhook hosts are looked up with.
#[derive(Clone)]
pub struct Injected {
    pub clock: SharedClock,
    pub webhook_dns: Arc<dyn Lookup>,
    /// The server's secret box (`storage.secret_key` or its key file).
    pub secrets: Arc<centinela_actors::secret::SecretBox>,
    /// The cloud engine's webhook end, when there is a cloud engine.
    pub cloud: Option<Arc<dyn centinela_actors::engine::cloud::CloudHooks>>,
    /// Fleet mode: what `GET /api/v1/fleet` shows; `None` on a single node.
    pub fleet: Option<Arc<dyn fleet::FleetStatus>>,
    /// Fleet mode: the accounts every node shares, used by the handlers,
    /// [`auth::Auth`] and tenant deletion instead of the store's; `None`
    /// on a single node (the store's own).
    pub accounts: Option<Arc<dyn AccountRepo>>,
    /// Fleet mode: the tenants' webhook targets and auto-reply rules every
    /// node shares, read and written by the handlers instead of the
    /// store's; `None` on a single node.
    pub settings: Option<Arc<dyn TenantSettingsRepo>>,
    /// Fleet mode: the verification codes every node shares (a code sent
    /// through the owner is read and verified through any node); `None` on
    /// a single node.
    pub otps: Option<Arc<dyn OtpRepo>>,
    /// Fleet mode: the forwarder to the nodes that host other tenants.
    pub forward: Option<Arc<forward::Forwarder>>,
}

impl Injected {
    /// `clock`, the system's resolver, a key for this process only and no
    /// cloud engine.
    pub fn new(clock: SharedClock) -> Self {
        Self {
            clock,
            webhook_dns: Arc::new(SystemLookup),
            secrets: Arc::new(centinela_actors::secret::SecretBox::ephemeral()),
            cloud: None,
            fleet: None,
            accounts: None,
            settings: None,
            otps: None,
            forward: None,
        }
    }
}

/// The server's keys: the JWT signing secret and the HMAC key
/// verification codes are stored under (each from the config, or made
/// once and kept in the store).
#[derive(Clone)]
pub struct Secrets {
    pub jwt: Vec<u8>,
    pub otp: Vec<u8>,
}

/// The HTTP layer's state wired on one store, with the background tasks
/// behind it.
pub struct Wired {
    pub state: AppState,
    /// Send `true` to close the WebSockets and stop the campaign runner.
    pub stop: tokio::sync::watch::Sender<bool>,
    /// In the order they are to end once the bus is gone: the hub (the
    /// audit log's last writes), the auto-replies, campaigns and the OTP
    /// follower (the outbox's last users), the outbox writer, webhook
    /// delivery.
    pub tasks: Vec<tokio::task::JoinHandle<()>>,
}

/// Starts the hub, the outbox writer (which tells `supervisor` about new
/// messages), campaigns, auto-replies, the OTP service, webhook delivery
/// and (when configured) the old-message retention on `store`, and
/// builds the state every handler sees. `logs` is the tracing layer's
/// receiver (subscribed before anything worth logging starts). `store`
/// is what holds the messages (the node's store, or in fleet mode the
/// fleet's messages beside it); accounts, tenant settings and codes are
/// `injected`'s when set (fleet mode), else `local`'s, the node's store.
pub fn wire<S>(
    (store, local): (S, &centinela_actors::store::Store),
    supervisor: Supervisor,
    bus: &Bus,
    injected: Injected,
    secrets: &Secrets,
    logs: tokio::sync::mpsc::Receiver<hub::LogEvent>,
    config: &Config,
) -> Wired
where
    S: Data + CampaignRepo + RiskStore + centinela_actors::otp::OtpStore + Clone,
{
    let Injected {
        clock,
        webhook_dns,
        secrets: sealing,
        cloud,
        fleet,
        accounts,
        settings,
        otps,
        forward,
    } = injected;
    let accounts: Arc<dyn AccountRepo> = accounts.unwrap_or_else(|| Arc::new(local.clone()));
    let settings: Arc<dyn TenantSettingsRepo> = settings.unwrap_or_else(|| Arc::new(local.clone()));
    let auth = auth::Auth::new(
        accounts.clone(),
        clock.clone(),
        &secrets.jwt,
        config.auth.token_ttl,
    );
    let (hub, hub_task) = hub::Hub::start(bus, logs, Arc::new(store.clone()), 4096);
    let (stop, stop_rx) = tokio::sync::watch::channel(false);
    let (outbox, outbox_task) =
        Outbox::start(Arc::new(store.clone()), Some(Arc::new(supervisor.clone())));
    let (campaigns, campaigns_task) = Campaigns::start(
        Arc::new(store.clone()),
        outbox.clone(),
        bus,
        clock.clone(),
        config.messaging.max_running_campaigns as usize,
        stop_rx.clone(),
    );
    let autoreply_task = messaging::autoreply::start(
        Arc::new(store.clone()),
        outbox.clone(),
        bus,
        clock.clone(),
        &config.autoreply,
    );
    let (webhooks, webhooks_task) = Webhooks::start_with(
        Arc::new(store.clone()),
        bus,
        clock.clone(),
        config.webhooks.clone(),
        webhook_dns,
    );
    let retention_task = messaging::retention::start(
        Arc::new(store.clone()),
        clock.clone(),
        config.storage.message_retention,
        stop_rx.clone(),
    );
    let risk = RiskWatch::new(Arc::new(store.clone()), clock.clone(), config);
    let risk_task = risk.start(bus, campaigns.clone(), stop_rx.clone());
    let (otp, otp_task) = centinela_actors::otp::Otp::start(
        centinela_actors::otp::service::OtpParts {
            otps: otps.unwrap_or_else(|| Arc::new(local.clone())),
            store: Arc::new(store.clone()),
            outbox: outbox.clone(),
            clock: clock.clone(),
            config: config.otp.clone(),
            budget: config.messaging.contact_budget(),
            secret: secrets.otp.clone(),
        },
        bus,
    );
    let metrics = Arc::new(metrics::Metrics::default());
    metrics.follow(bus);
    let tenants = centinela_actors::tenants::Tenants::new(
        supervisor.clone(),
        hub.clone(),
        campaigns.clone(),
        accounts.clone(),
    );
    let state = AppState {
        data: Arc::new(store),
        accounts,
        settings,
        supervisor,
        clock,
        auth: Arc::new(auth),
        hub,
        metrics,
        outbox,
        webhooks,
        campaigns,
        risk,
        otp,
        tenants,
        web: WebConfig {
            cors_origins: config.server.cors_origins.clone(),
            max_body_bytes: config.server.max_body_bytes,
            trusted_proxies: config.server.trusted_proxies.clone(),
        },
        shutdown: stop_rx,
        secrets: sealing,
        cloud,
        fleet,
        forward,
    };
    Wired {
        state,
        stop,
        tasks: vec![
            hub_task,
            autoreply_task,
            campaigns_task,
            risk_task,
            otp_task,
            outbox_task,
            webhooks_task,
        ]
        .into_iter()
        .chain(retention_task)
        .collect(),
    }
}

/// Every documented route.
pub fn routes() -> openapi::Routes {
    openapi::Routes::new()
        .merge(dashboard::routes())
        .merge(health::routes())
        .merge(auth::routes::routes())
        .merge(accounts::routes())
        .merge(sessions::routes())
        .merge(messages::routes())
        .merge(meta::routes())
        .merge(chats::routes())
        .merge(webhooks::routes())
        .merge(autoreplies::routes())
        .merge(campaigns::routes())
        .merge(risk::routes())
        .merge(otp::routes())
        .merge(ratelimit::routes())
        .merge(fleet::routes())
        .merge(ws::routes())
}

/// The whole HTTP surface (without the simulator, which `serve --demo` adds).
pub fn router(state: AppState) -> Router {
    let web = state.web.clone();
    let mut all = routes();
    all.docs.push((
        "/api/openapi.json",
        openapi::Doc::new(
            "GET",
            "meta",
            "This OpenAPI document",
            openapi::Access::Public,
            &[(200, "the document")],
        )
        .reply::<openapi::Document>(),
    ));
    let spec = Arc::new(openapi::document(&all.docs));
    let api = all
        .router
        .route(
            "/api/openapi.json",
            axum::routing::get(move || async move { axum::Json((*spec).clone()) }),
        )
        .fallback(error::not_found)
        .method_not_allowed_fallback(error::method_not_allowed)
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            forward::forward,
        ))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            metrics::track,
        ))
        .with_state(state);
    security::cors(security::harden(api, web.max_body_bytes), &web.cors_origins)
}
