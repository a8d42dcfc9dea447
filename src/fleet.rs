//! Fleet mode's wiring (`[fleet] database_url` set): this node joins the
//! fleet on PostgreSQL and hosts only the tenants whose lease it holds.
//!
//! - Admission is the fleet's ([`PgSharedAdmission`]): the hourly limit per
//!   egress, the daily limit, cooldowns and blocks per tenant, counted over
//!   every node, fenced by this node's leases.
//! - Session records are the fleet's ([`FleetSessions`]), mirrored into the
//!   node's own store for what stays node-local.
//! - The membership loop ([`Member`]) renews, claims orphans and tells the
//!   [`Host`] which tenants to start and stop; a create for a tenant
//!   nobody holds claims it through the loop.
//! - Profiles move with the tenant: after a session's pairing is durable,
//!   every [`SNAPSHOT_EVERY`] if it changed, and when the node gives a
//!   tenant up on a drain (its browsers closed cleanly), the profile's
//!   pairing storage is packed, sealed under `storage.secret_key` and
//!   stored, fenced; a new owner restores it before the supervisor launches
//!   the browser (not a snapshot of its own: its profile may be newer).
//! - Accounts are the fleet's ([`NodeAccounts`]): tenants, users, API
//!   keys, revoked tokens and the settings (the JWT secret, the OTP key),
//!   so an account made through any node works on every node and a token
//!   one node signed every node accepts; tenant records are mirrored into
//!   the node's store when it creates or starts hosting a tenant, for the
//!   node-local tables that check them. A tenant is deleted through the
//!   node that hosts it (elsewhere 503 `tenant_moving`): its sessions stop
//!   there, its accounts and profile snapshots go from the fleet, its rows
//!   from that node's store. With the database down no credential can be
//!   checked (a revoked token or key must not pass because its revocation
//!   cannot be read): every authenticated request is 503
//!   `fleet_unavailable` until it is back.
//!
//!   A credential change through any node makes every node's open
//!   WebSockets check theirs again ([`centinela_fleet::credentials`]).
//!
//! - Any node answers any request: one for a tenant another node hosts is
//!   sent on to it ([`centinela_web::forward`], the owner found by
//!   [`Owners`]), and the session list is every live node's.
//! - Every node's `/ws` shows the fleet's events
//!   ([`centinela_fleet::events`]: this node's published, the others'
//!   handed to its clients).
//!
//! - Each tenant's webhook target and auto-reply rules are the fleet's
//!   ([`FleetSettings`]), copied into the store of the node that hosts the
//!   tenant (where deliveries and replies read them) when it starts
//!   hosting it: they follow the tenant.
//! - Verification codes are the fleet's ([`FleetOtps`]): sent through the
//!   owner (its session carries them), read, verified and voided through
//!   any node, their limits counted over every node's sends.
//!
//! - An operator moves a tenant to a named node
//!   ([`centinela_fleet::moves`]): its owner gives it up as on a drain
//!   ([`Release::Move`]), the target claims it.
//! - `centinela fleet import` ([`import`]) brings a stopped single node's
//!   store into the fleet once.
//!
//! - Messages (the outbox, history, inbox, contacts, activity), campaigns
//!   and webhook deliveries are the fleet's, handed to every messaging path
//!   as one [`FleetStore`] with the node's own store beside them.
//!
//! Not shared (each node keeps its own): the audit log.

use centinela_actors::bus::{Bus, BusEvent};
use centinela_actors::config::Config;
use centinela_actors::engine::{DisconnectReason, EngineKind};
use centinela_actors::ids::{SessionId, TenantId};
use centinela_actors::secret::SecretBox;
use centinela_actors::store::{SessionRecord, Store};
use centinela_actors::supervisor::shared::FleetSeam;
use centinela_actors::supervisor::Supervisor;
use centinela_fleet::{
    Fleet, FleetAdmission, FleetCampaigns, FleetDeliveries, FleetError, FleetMessages, FleetOtps,
    FleetSessions, FleetSettings, FleetStore, Lease, Leases, Member, MemberConfig, MemberHandle,
    NodeAccounts, NodeId, NodeSpec, Owned, PgSharedAdmission, Release, SessionRows, Snapshots,
    TenantHost,
};
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

/// The largest profile snapshot stored (the pairing storage of a WhatsApp
/// Web profile is kilobytes to a few megabytes).
const SNAPSHOT_LIMIT: u64 = 64 * 1024 * 1024;

/// The page's dead-man switch (`engine.deadman`) a node runs with. Set,
/// it is what the config says. Unset in a fleet, it is the lease less the
/// membership loop's margin and one renewal period (at least 2 s): a frozen
/// node's pages leave WhatsApp before its lease can end and another node
/// starts the same pairing. Unset on a single node: off.
pub fn deadman(config: &Config) -> std::time::Duration {
    let set = config.engine.deadman;
    if !set.is_zero() || !config.fleet.enabled() {
        return set;
    }
    let ttl = config.fleet.lease_ttl;
    let member = MemberConfig::new(ttl);
    ttl.saturating_sub(member.margin + member.period)
        .max(std::time::Duration::from_secs(2))
}

/// Where the other nodes reach this one: `fleet.advertise_url`, or, when
/// it is empty, `listening` (the URL a client on this machine uses for
/// the listener: enough for nodes on one machine, not across machines).
pub fn advertise_url(config: &Config, listening: &str) -> String {
    match config.fleet.advertise_url.is_empty() {
        true => listening.to_owned(),
        false => config.fleet.advertise_url.clone(),
    }
}

/// Why a node could not join its fleet.
#[derive(Debug, thiserror::Error)]
pub enum FleetStartError {
    #[error("fleet: {0}")]
    Fleet(#[from] FleetError),
    #[error("fleet: {0}")]
    Config(#[from] centinela_actors::config::ConfigError),
    #[error("the node's store: {0}")]
    Store(#[from] centinela_actors::store::StoreError),
}

/// The fleet's side of a node, before its supervisor starts.
pub struct Joining {
    fleet: Fleet,
    /// The ledger, as the pruning task sees it.
    pruning: FleetAdmission,
    spec: NodeSpec,
    ttl: std::time::Duration,
    owned: Owned,
    leases: Leases,
    pub seam: FleetSeam,
    pub sessions: FleetSessions,
    /// The fleet's accounts, as this node uses them.
    pub accounts: NodeAccounts,
    /// The tenants' webhook targets and auto-reply rules.
    pub settings: FleetSettings,
    /// The verification codes.
    pub otps: FleetOtps,
    /// The node's store with the fleet's messages, inbox, contacts,
    /// activity, campaigns and webhook deliveries in place of its own: what
    /// the messaging paths are given.
    pub store: FleetStore,
}

/// Connects to the fleet's database (migrating it) and readies this node's
/// admission, session records and accounts; nothing is claimed yet.
pub async fn connect(
    config: &Config,
    store: &Store,
    sealing: &Arc<SecretBox>,
    listening: &str,
) -> Result<Joining, FleetStartError> {
    let f = &config.fleet;
    let fleet = Fleet::connect(&f.database_url, 8).await?;
    let id = NodeId::new(f.node_id()?).expect("fleet.node_id is checked by the config");
    let egress = f.egress()?;
    let spec = NodeSpec {
        id: id.clone(),
        advertise_url: advertise_url(config, listening),
        egress: egress.clone(),
        capacity: f.capacity,
    };
    let owned = Owned::default();
    let leases = Leases::new(&fleet, id, f.lease_ttl);
    let admission = FleetAdmission::new(&fleet, config.antiban.clone());
    let pruning = admission.clone();
    let seam = FleetSeam {
        admission: Arc::new(PgSharedAdmission::new(
            admission,
            leases.clone(),
            owned.clone(),
        )),
        egress,
    };
    let sessions = FleetSessions::new(&fleet, leases.clone(), owned.clone(), store.clone());
    let accounts = NodeAccounts::new(&fleet, leases.clone(), owned.clone(), store.clone());
    let otps = FleetOtps::new(&fleet);
    let settings = FleetSettings::new(
        &fleet,
        leases.clone(),
        owned.clone(),
        store.clone(),
        sealing.clone(),
    );
    let store = FleetStore::new(
        store.clone(),
        FleetMessages::new(&fleet, leases.clone(), owned.clone()),
        FleetCampaigns::new(&fleet, leases.clone(), owned.clone()),
        FleetDeliveries::new(&fleet, leases.clone(), owned.clone(), store.clone()),
    );
    tracing::info!(node = %spec.id, egress = %spec.egress, capacity = spec.capacity, "joining the fleet");
    Ok(Joining {
        fleet,
        pruning,
        spec,
        ttl: f.lease_ttl,
        owned,
        leases,
        seam,
        sessions,
        accounts,
        settings,
        otps,
        store,
    })
}

impl Joining {
    /// Sends requests for tenants other nodes host to them
    /// ([`centinela_web::forward`]), signed under `secret` (the fleet's
    /// `storage.secret_key`).
    pub fn forwarder(&self, secret: &str) -> Arc<centinela_web::forward::Forwarder> {
        Arc::new(centinela_web::forward::Forwarder::new(
            self.spec.id.to_string(),
            secret.as_bytes(),
            Arc::new(Owners(self.fleet.clone(), self.ttl)),
        ))
    }

    /// What `GET /api/v1/fleet` shows, read from the fleet's database.
    pub fn status(&self) -> Arc<dyn centinela_web::fleet::FleetStatus> {
        Arc::new(Status {
            fleet: self.fleet.clone(),
            node: self.spec.id.to_string(),
            ttl: self.ttl,
        })
    }
}

/// Who hosts a tenant, from the fleet's database.
struct Owners(Fleet, std::time::Duration);

#[async_trait::async_trait]
impl centinela_web::forward::Owners for Owners {
    async fn owner(
        &self,
        tenant: &TenantId,
    ) -> Result<Option<centinela_web::forward::Peer>, String> {
        let found = self.0.owner_at(tenant).await.map_err(|e| e.to_string())?;
        Ok(found.map(|(node, url)| centinela_web::forward::Peer { node, url }))
    }

    async fn peers(&self) -> Result<Vec<centinela_web::forward::Peer>, String> {
        let live = self.0.live_nodes(self.1).await.map_err(|e| e.to_string())?;
        Ok(live
            .into_iter()
            .map(|(node, url)| centinela_web::forward::Peer { node, url })
            .collect())
    }
}

/// What `centinela fleet import` brought from a node's own store into the
/// fleet (what was there already is not counted).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Imported {
    pub tenants: usize,
    pub users: usize,
    pub api_keys: usize,
    /// Settings (the JWT secret, the OTP key) the fleet had none of yet.
    pub settings: usize,
    pub sessions: usize,
    /// Tenants whose webhook target or auto-reply rules were brought.
    pub tenant_settings: usize,
    pub profiles: usize,
    /// Rows of the sessions' messages, inbox, contacts and activity hours.
    pub messages: usize,
    pub incoming: usize,
    pub contacts: usize,
    pub activity_hours: usize,
    pub campaigns: usize,
    /// Webhook deliveries (pending or finished).
    pub deliveries: usize,
    /// Tenants another node hosts now: their sessions were left alone.
    pub skipped: Vec<TenantId>,
}

impl Joining {
    /// Brings what a single node kept in its own store into the fleet, once,
    /// before the node (stopped) first serves in the fleet: the tenants,
    /// users (their password hashes), API keys (hashed) and server settings
    /// the fleet lacks; then, tenant by tenant, under a lease this node
    /// takes for the purpose, the session records, each tenant's webhook
    /// target and auto-reply rules, and each paired profile as a sealed
    /// snapshot, each session's messages (the queue with them: what was
    /// still queued is sent by the tenant's next owner), inbox, contacts
    /// and activity, the tenant's campaigns and webhook deliveries — and
    /// gives the lease back, so the first node to claim the tenant
    /// restores the sessions without a QR. A tenant another node hosts is
    /// skipped (the fleet has it already). Nothing already in the fleet is
    /// replaced, so it runs again harmlessly. Verification codes stay in
    /// the store (short-lived: ask for a new one).
    pub async fn import(
        &self,
        config: &Config,
        store: &Store,
        sealing: Arc<SecretBox>,
    ) -> Result<Imported, FleetStartError> {
        use centinela_actors::store::{
            AccountError, AccountRepo, AutoReplyRepo, CampaignRepo, InboxRepo, MessageRepo,
            SessionRepo, StoreError, TenantSettingsRepo, WebhookRepo, INBOX_CAPACITY,
        };
        fn fresh(made: Result<(), AccountError>) -> Result<bool, FleetStartError> {
            match made {
                Ok(()) => Ok(true),
                Err(AccountError::Exists(_)) => Ok(false),
                Err(e) => Err(store_failed(StoreError::Db(e.to_string()))),
            }
        }
        let mut done = Imported::default();
        self.fleet.register(&self.spec).await?;
        let local = store.clone();
        let tenants = local.tenants().map_err(store_failed)?;
        for tenant in &tenants {
            done.tenants += usize::from(fresh(self.accounts.create_tenant(tenant))?);
            for key in local.api_keys(&tenant.id).map_err(store_failed)? {
                done.api_keys += usize::from(fresh(self.accounts.create_api_key(&key))?);
            }
        }
        for user in local.users().map_err(store_failed)? {
            done.users += usize::from(fresh(self.accounts.create_user(&user))?);
        }
        for key in ["jwt_secret", "otp_secret"] {
            // A fleet that has one keeps it: tokens its nodes signed stay good.
            let value = local.setting(key).map_err(store_failed)?;
            let theirs = self.accounts.setting(key).map_err(store_failed)?;
            if let Some(value) = value.filter(|_| theirs.is_none()) {
                let kept = self
                    .accounts
                    .setting_or_insert(key, &value)
                    .map_err(store_failed)?;
                done.settings += usize::from(kept == value);
            }
        }
        let profiles = Profiles {
            dir: config.storage.data_dir.join("profiles"),
            snapshots: Snapshots::new(&self.fleet),
            leases: self.leases.clone(),
            sealing,
            known: Arc::default(),
        };
        let sessions = local.list_sessions().map_err(store_failed)?;
        let campaigns = local.campaigns().map_err(store_failed)?;
        for tenant in &tenants {
            let mine: Vec<&SessionRecord> =
                sessions.iter().filter(|r| r.tenant == tenant.id).collect();
            let target = local.target(&tenant.id).map_err(store_failed)?;
            let rules = local.auto_replies(&tenant.id).map_err(store_failed)?;
            if mine.is_empty() && target.is_none() && rules == Default::default() {
                continue;
            }
            let Some(lease) = self.leases.claim(&tenant.id).await? else {
                tracing::warn!(tenant = %tenant.id, "another node hosts this tenant: its sessions are not imported");
                done.skipped.push(tenant.id.clone());
                continue;
            };
            self.owned.insert(lease.clone());
            let imported = async {
                for record in &mine {
                    if self
                        .sessions
                        .get_session(&record.id)
                        .map_err(store_failed)?
                        .is_none()
                    {
                        self.sessions.put_session(record).map_err(store_failed)?;
                        done.sessions += 1;
                    }
                }
                let mut brought = false;
                if let Some(t) = &target {
                    if self
                        .settings
                        .webhook_target(&tenant.id)
                        .map_err(store_failed)?
                        .is_none()
                    {
                        brought |= self.settings.set_webhook_target(t).map_err(store_failed)?;
                    }
                }
                if rules != Default::default()
                    && self
                        .settings
                        .auto_reply_rules(&tenant.id)
                        .map_err(store_failed)?
                        == Default::default()
                {
                    brought |= self
                        .settings
                        .set_auto_reply_rules(&tenant.id, &rules)
                        .map_err(store_failed)?;
                }
                done.tenant_settings += usize::from(brought);
                for record in &mine {
                    let mut messages = local
                        .messages(&record.id, usize::MAX, None)
                        .map_err(store_failed)?;
                    messages.reverse();
                    let rows = SessionRows {
                        messages,
                        inbox: local
                            .incoming(&record.id, INBOX_CAPACITY as usize, None)
                            .map_err(store_failed)?,
                        contacts: local.contacts_of(&record.id).map_err(store_failed)?,
                        activity: local.activity_hours(&record.id).map_err(store_failed)?,
                    };
                    let got = self
                        .store
                        .messages()
                        .import(&tenant.id, &record.id, &rows)
                        .await?;
                    done.messages += got.messages;
                    done.incoming += got.incoming;
                    done.contacts += got.contacts;
                    done.activity_hours += got.activity_hours;
                }
                for c in campaigns.iter().filter(|c| c.tenant == tenant.id) {
                    if self.store.campaign(&c.id).map_err(store_failed)?.is_none() {
                        self.store.put_campaign(c).map_err(store_failed)?;
                        done.campaigns += 1;
                    }
                }
                for d in local.deliveries(&tenant.id, None).map_err(store_failed)? {
                    if self.store.delivery(&d.id).map_err(store_failed)?.is_none() {
                        self.store.put_delivery(&d).map_err(store_failed)?;
                        done.deliveries += 1;
                    }
                }
                for record in mine
                    .iter()
                    .filter(|r| r.engine == EngineKind::Webjs && r.paired)
                {
                    if profiles.snapshots.get(&record.id).await?.is_none() {
                        profiles.store(&lease, &record.id).await;
                        done.profiles +=
                            usize::from(profiles.snapshots.get(&record.id).await?.is_some());
                    }
                }
                Ok::<(), FleetStartError>(())
            }
            .await;
            self.owned.remove(&tenant.id);
            self.leases.release(&lease).await?;
            imported?;
        }
        Ok(done)
    }
}

/// `centinela fleet import`: opens the node's store (refused while its
/// server runs) and brings it into the fleet ([`Joining::import`]).
pub async fn import(config: &Config) -> Result<Imported, crate::RunError> {
    let store = Store::open(&config.storage.data_dir)?;
    let sealing = Arc::new(
        SecretBox::load(
            config.storage.secret_key.as_deref(),
            &config.storage.data_dir,
        )?
        .with_previous(config.storage.previous_secret_key.as_deref())?,
    );
    let listening = format!("http://{}", config.server.listen);
    let joining = connect(config, &store, &sealing, &listening).await?;
    Ok(joining.import(config, &store, sealing).await?)
}

fn store_failed(e: centinela_actors::store::StoreError) -> FleetStartError {
    FleetStartError::Store(e)
}

/// The fleet as the database has it, from this node.
struct Status {
    fleet: Fleet,
    node: String,
    ttl: std::time::Duration,
}

#[async_trait::async_trait]
impl centinela_web::fleet::FleetStatus for Status {
    async fn move_tenant(
        &self,
        tenant: &TenantId,
        to: &str,
    ) -> Result<centinela_web::fleet::MoveView, centinela_web::fleet::MoveRefusal> {
        use centinela_fleet::MoveRefused as Why;
        use centinela_web::fleet::MoveRefusal;
        match self.fleet.move_tenant(tenant, to, self.ttl).await {
            Ok(asked) => Ok(centinela_web::fleet::MoveView {
                tenant: asked.tenant.to_string(),
                from: asked.from.map(|n| n.to_string()),
                to: asked.to.to_string(),
                until: asked.until,
            }),
            Err(Why::UnknownNode(node)) => Err(MoveRefusal::UnknownNode(node)),
            Err(e @ Why::NotLive(_)) => Err(MoveRefusal::Refused("node_not_live", e.to_string())),
            Err(e @ Why::Full(_)) => Err(MoveRefusal::Refused("node_full", e.to_string())),
            Err(e @ Why::AlreadyThere(..)) => {
                Err(MoveRefusal::Refused("already_there", e.to_string()))
            }
            Err(e @ Why::NotHosted(_)) => Err(MoveRefusal::Refused("not_hosted", e.to_string())),
            Err(Why::Fleet(e)) => Err(MoveRefusal::Unavailable(e.to_string())),
        }
    }

    async fn status(&self) -> Result<centinela_web::fleet::FleetView, String> {
        use centinela_web::fleet::{FleetView, NodeView, OwnedTenant};
        let nodes = self.fleet.nodes().await.map_err(|e| e.to_string())?;
        Ok(FleetView {
            enabled: true,
            node: Some(self.node.clone()),
            nodes: nodes
                .into_iter()
                .map(|n| NodeView {
                    id: n.spec.id.to_string(),
                    advertise_url: n.spec.advertise_url,
                    egress: n.spec.egress,
                    capacity: n.spec.capacity,
                    heartbeat_at: n.heartbeat_at,
                    owned: n.tenants.len(),
                    tenants: n
                        .tenants
                        .into_iter()
                        .map(|t| OwnedTenant {
                            tenant: t.tenant,
                            epoch: t.epoch,
                            lease_until: t.lease_until,
                            moving_to: t.moving_to,
                        })
                        .collect(),
                })
                .collect(),
        })
    }
}

/// A node in its fleet: the membership loop and the profile snapshots.
pub struct Joined {
    member: MemberHandle,
    fleet: Fleet,
    /// This node's id.
    node: String,
    /// Ended on a drain: the profile snapshots, the ledger's pruning
    /// (every [`PRUNE_EVERY`]) and, once [`Joined::follow`] ran, the
    /// listeners and the events' publisher.
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Joining {
    /// Starts the membership loop over `supervisor` and the snapshots of
    /// durable pairings; answers the supervisor handle whose creates claim
    /// a tenant nobody holds.
    pub fn start(
        self,
        config: &Config,
        supervisor: Supervisor,
        bus: &Bus,
        sealing: Arc<SecretBox>,
    ) -> (Joined, Supervisor) {
        let profiles = Profiles {
            dir: config.storage.data_dir.join("profiles"),
            snapshots: Snapshots::new(&self.fleet),
            leases: self.leases.clone(),
            sealing,
            known: Arc::default(),
        };
        let host = Arc::new(Host {
            supervisor: supervisor.clone(),
            sessions: self.sessions.clone(),
            accounts: self.accounts.clone(),
            settings: self.settings.clone(),
            profiles: profiles.clone(),
            held: Mutex::default(),
        });
        let fleet = self.fleet.clone();
        let node = self.spec.id.to_string();
        let member = Member::new(
            self.fleet,
            self.spec,
            MemberConfig::new(self.ttl),
            self.owned.clone(),
            host.clone(),
        )
        .spawn();
        let snapshots = tokio::spawn(snapshot_profiles(
            bus.subscribe(),
            self.owned,
            self.sessions.clone(),
            profiles,
        ));
        let supervisor = supervisor.with_claim(Arc::new(member.claimer()));
        let pruning = tokio::spawn(prune_ledger(self.pruning));
        let joined = Joined {
            member,
            fleet,
            node,
            tasks: vec![snapshots, pruning],
        };
        (joined, supervisor)
    }
}

impl Joined {
    /// Leaves the fleet: every tenant's browsers stop (a clean close), its
    /// profiles are stored, its lease is given back for another node.
    pub async fn drain(self) {
        self.member.drain().await;
        for task in self.tasks {
            task.abort();
        }
    }

    /// Follows the rest of the fleet: this node's open WebSockets check
    /// their credential whenever a node announces a credential change
    /// ([`centinela_fleet::credentials`]), and every node's `/ws` shows the
    /// fleet's events — this node's hub events are published to the
    /// others, theirs handed to this node's clients
    /// ([`centinela_fleet::events`]).
    pub fn follow(&mut self, auth: Arc<centinela_web::auth::Auth>, hub: &centinela_web::hub::Hub) {
        let credentials =
            centinela_fleet::credentials::follow(&self.fleet, move || auth.credentials_changed());
        let publisher = tokio::spawn(publish_events(
            self.fleet.clone(),
            self.node.clone(),
            hub.subscribe(),
        ));
        let hub = hub.clone();
        let follower = centinela_fleet::events::follow(&self.fleet, self.node.clone(), move |e| {
            let tenant = e.tenant.as_deref().and_then(|t| TenantId::new(t).ok());
            if !hub.relay(&e.node, tenant, &e.json) {
                tracing::warn!(node = %e.node, "a relayed event that is not an event object");
            }
        });
        self.tasks.extend([credentials, publisher, follower]);
    }
}

/// How often a node prunes the fleet's ledger (every node does: a delete
/// of what is already gone is nothing).
const PRUNE_EVERY: std::time::Duration = std::time::Duration::from_secs(600);

/// Prunes the fleet's ledger every [`PRUNE_EVERY`], the first time one
/// period after the start.
async fn prune_ledger(admission: FleetAdmission) {
    let mut every = tokio::time::interval(PRUNE_EVERY);
    every.tick().await;
    loop {
        every.tick().await;
        match admission.prune().await {
            Ok(0) => {}
            Ok(n) => tracing::info!(rows = n, "fleet ledger pruned"),
            Err(e) => tracing::warn!(error = %e, "fleet ledger: cannot prune"),
        }
    }
}

/// Most events one notification statement carries.
const RELAY_BATCH: usize = 256;

/// Publishes this node's own hub events (not its log lines, not events
/// relayed from other nodes), in order, a batch of what is waiting at a
/// time. With the database down they are dropped (said once per outage).
async fn publish_events(
    fleet: Fleet,
    node: String,
    mut events: tokio::sync::broadcast::Receiver<Arc<centinela_web::hub::HubEvent>>,
) {
    use tokio::sync::broadcast::error::{RecvError, TryRecvError};
    let own = |e: &centinela_web::hub::HubEvent| e.log_level.is_none() && e.relayed_from.is_none();
    let relayed = |e: &centinela_web::hub::HubEvent| centinela_fleet::events::Relayed {
        node: node.clone(),
        tenant: e.tenant.as_ref().map(ToString::to_string),
        json: e.json.clone(),
    };
    let mut down = false;
    loop {
        let mut batch = Vec::new();
        match events.recv().await {
            Ok(e) if own(&e) => batch.push(relayed(&e)),
            Ok(_) => continue,
            Err(RecvError::Lagged(n)) => {
                tracing::warn!(
                    missed = n,
                    "relayed events: fell behind the hub; some are not relayed"
                );
                continue;
            }
            Err(RecvError::Closed) => return,
        }
        while batch.len() < RELAY_BATCH {
            match events.try_recv() {
                Ok(e) if own(&e) => batch.push(relayed(&e)),
                Ok(_) | Err(TryRecvError::Lagged(_)) => {}
                Err(_) => break,
            }
        }
        match centinela_fleet::events::publish(fleet.pool(), &batch).await {
            Ok(()) if down => {
                down = false;
                tracing::info!("relayed events: publishing again");
            }
            Ok(()) => {}
            Err(e) if !down => {
                down = true;
                tracing::warn!(error = %e, dropped = batch.len(), "relayed events: cannot publish to the fleet's database");
            }
            Err(_) => {}
        }
    }
}

/// How often a hosted session's profile is stored again if it changed
/// (WhatsApp Web's storage moves on while READY: a new owner must not start
/// from a pairing hours old).
const SNAPSHOT_EVERY: std::time::Duration = std::time::Duration::from_secs(300);

/// Where profiles are, and how they are stored.
#[derive(Clone)]
struct Profiles {
    dir: PathBuf,
    snapshots: Snapshots,
    leases: Leases,
    sealing: Arc<SecretBox>,
    /// Per session, the SHA-256 of the snapshot this node last stored or
    /// restored: what its own profile is, or grew from. A snapshot with
    /// that hash is not stored again, and not restored over the profile
    /// (which may have moved on since).
    known: Arc<Mutex<HashMap<SessionId, [u8; 32]>>>,
}

impl Profiles {
    /// Packs, seals and stores a session's pairing storage, fenced on
    /// `lease`. A profile with nothing to carry is not stored (it would
    /// replace a good snapshot with an empty one).
    async fn store(&self, lease: &Lease, session: &SessionId) {
        let dir = self.dir.join(session.as_str());
        let packed =
            tokio::task::spawn_blocking(move || centinela_fleet::pack(&dir, SNAPSHOT_LIMIT)).await;
        let packed = match packed {
            Ok(Ok(p)) if p.files > 0 => p,
            Ok(Ok(_)) => return,
            Ok(Err(e)) => {
                return tracing::warn!(session = %session, error = %e, "profile not packed")
            }
            Err(e) => return tracing::warn!(session = %session, error = %e, "profile not packed"),
        };
        if self.known(session) == Some(packed.sha256) {
            return; // what the fleet has already
        }
        let sealed =
            centinela_fleet::snapshot::seal(&self.sealing, &lease.tenant, session, &packed);
        let size = u64::try_from(sealed.len()).unwrap_or(u64::MAX);
        match self
            .snapshots
            .put(&self.leases, lease, session, &sealed, &packed.sha256, size)
            .await
        {
            Ok(()) => {
                self.remember(session, packed.sha256);
                tracing::info!(tenant = %lease.tenant, session = %session, files = packed.files, bytes = size, "profile stored in the fleet")
            }
            Err(e) => {
                tracing::warn!(tenant = %lease.tenant, session = %session, error = %e, "profile not stored")
            }
        }
    }

    /// Restores a session's stored profile before its browser starts. No
    /// snapshot: the session starts on what the node has (a QR if nothing).
    async fn restore(&self, session: &SessionId) {
        let snapshot = match self.snapshots.get(session).await {
            Ok(Some(s)) => s,
            Ok(None) => return,
            Err(e) => {
                return tracing::warn!(session = %session, error = %e, "profile snapshot unreadable")
            }
        };
        if self.known(session) == Some(snapshot.sha256) {
            // This node's own profile is that snapshot, or newer.
            return;
        }
        let sha = snapshot.sha256;
        let plain = match snapshot.open(&self.sealing, session) {
            Ok(p) => p,
            Err(e) => {
                return tracing::error!(session = %session, error = %e, "profile snapshot does not open (storage.secret_key differs between nodes?)")
            }
        };
        let dir = self.dir.join(session.as_str());
        let restored = tokio::task::spawn_blocking(move || {
            std::fs::create_dir_all(dir.parent().unwrap_or(&dir)).map_err(|e| e.to_string())?;
            centinela_fleet::unpack(&plain, &dir, SNAPSHOT_LIMIT).map_err(|e| e.to_string())
        })
        .await;
        match restored {
            Ok(Ok(files)) => {
                self.remember(session, sha);
                tracing::info!(session = %session, files, epoch = %snapshot.epoch, "profile restored from the fleet")
            }
            Ok(Err(e)) => tracing::warn!(session = %session, error = %e, "profile not restored"),
            Err(e) => tracing::warn!(session = %session, error = %e, "profile not restored"),
        }
    }
}

impl Profiles {
    /// A logout: the pairing is gone for good, so its snapshot goes from
    /// the fleet (fenced on `lease`), and no node restores it.
    async fn forget(&self, lease: &Lease, session: &SessionId) {
        self.known
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(session);
        match self.snapshots.delete(&self.leases, lease, session).await {
            Ok(true) => {
                tracing::info!(session = %session, "logged out: profile snapshot removed from the fleet")
            }
            Ok(false) => {}
            Err(e) => {
                tracing::warn!(session = %session, error = %e, "a logged-out session's profile snapshot not removed")
            }
        }
    }

    fn known(&self, session: &SessionId) -> Option<[u8; 32]> {
        let known = self.known.lock().unwrap_or_else(|e| e.into_inner());
        known.get(session).copied()
    }

    fn remember(&self, session: &SessionId, sha: [u8; 32]) {
        let mut known = self.known.lock().unwrap_or_else(|e| e.into_inner());
        known.insert(session.clone(), sha);
    }
}

/// The supervisor as the membership loop's host.
struct Host {
    supervisor: Supervisor,
    sessions: FleetSessions,
    accounts: NodeAccounts,
    settings: FleetSettings,
    profiles: Profiles,
    /// The lease each hosted tenant came with (a drain stores its profiles
    /// under it after the tenant left `Owned`).
    held: Mutex<HashMap<TenantId, Lease>>,
}

fn browser_sessions(records: &[SessionRecord]) -> impl Iterator<Item = &SessionId> {
    records
        .iter()
        .filter(|r| r.engine == EngineKind::Webjs)
        .map(|r| &r.id)
}

#[async_trait::async_trait]
impl TenantHost for Host {
    async fn adopt(&self, lease: &Lease) {
        let tenant = &lease.tenant;
        // The node-local tables (webhooks, auto-replies) accept the
        // tenant's rows once its record is here; its settings are copied
        // before any message of its sessions arrives.
        if let Err(e) = self.accounts.mirror_tenant(tenant).await {
            tracing::error!(tenant = %tenant, error = %e, "tenant's record not mirrored");
        }
        if let Err(e) = self.settings.mirror_tenant(tenant).await {
            tracing::error!(tenant = %tenant, error = %e, "tenant's webhook and auto-replies not mirrored");
        }
        match self.sessions.mirror_tenant(tenant).await {
            Ok(records) => {
                for session in browser_sessions(&records) {
                    self.profiles.restore(session).await;
                }
            }
            Err(e) => {
                tracing::error!(tenant = %tenant, error = %e, "tenant's records not mirrored")
            }
        }
        self.held
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(tenant.clone(), lease.clone());
        match self.supervisor.adopt_tenant(tenant.clone()).await {
            Ok(n) => {
                tracing::info!(tenant = %tenant, epoch = %lease.epoch, sessions = n, "tenant hosted here")
            }
            Err(e) => tracing::error!(tenant = %tenant, error = %e, "tenant not adopted"),
        }
    }

    async fn release(&self, tenant: &TenantId, why: Release) {
        let lease = self
            .held
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(tenant);
        let why_text = match why {
            Release::Lost => "lease lost",
            Release::Deadline => "lease not renewed in time",
            Release::Drain => "node draining",
            Release::Move => "moved to another node",
        };
        match self
            .supervisor
            .release_tenant(tenant.clone(), why_text)
            .await
        {
            Ok(n) => {
                tracing::info!(tenant = %tenant, sessions = n, reason = why_text, "tenant released")
            }
            Err(e) => tracing::error!(tenant = %tenant, error = %e, "tenant not released"),
        }
        // Only a drain or a move still holds the lease once the browsers
        // are closed: the profiles as they closed are the ones the next
        // owner starts on.
        if let (Release::Drain | Release::Move, Some(lease)) = (why, lease) {
            if let Ok(records) = self.sessions.tenant_records(tenant).await {
                for session in browser_sessions(&records) {
                    self.profiles.store(&lease, session).await;
                }
            }
        }
    }
}

/// What a bus event means for a hosted session's snapshot: a durable
/// pairing is stored, a logout removes it.
async fn on_event(event: &BusEvent, owned: &Owned, profiles: &Profiles) {
    match event {
        BusEvent::PairingDurable(durable) => {
            if let Some(lease) = owned.get(&durable.tenant) {
                profiles.store(&lease, &durable.session).await;
            }
        }
        BusEvent::Transition(t) if t.reason == Some(DisconnectReason::Logout) => {
            if let Some(lease) = owned.get(&t.tenant) {
                profiles.forget(&lease, &t.session).await;
            }
        }
        _ => {}
    }
}

/// Stores a session's profile each time its pairing becomes durable (the
/// page wrote it with strict durability), and every [`SNAPSHOT_EVERY`] each
/// hosted session's profile if it changed, while this node holds the tenant.
async fn snapshot_profiles(
    mut events: tokio::sync::broadcast::Receiver<BusEvent>,
    owned: Owned,
    sessions: FleetSessions,
    profiles: Profiles,
) {
    use tokio::sync::broadcast::error::RecvError;
    let mut every = tokio::time::interval(SNAPSHOT_EVERY);
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    every.tick().await; // the first tick is now: nothing to store yet
    loop {
        tokio::select! {
            event = events.recv() => match event {
                Ok(event) => on_event(&event, &owned, &profiles).await,
                Err(RecvError::Lagged(n)) => {
                    tracing::warn!(missed = n, "profile snapshots lagged behind the bus");
                }
                Err(RecvError::Closed) => return,
            },
            _ = every.tick() => {
                for lease in owned.leases() {
                    let Ok(records) = sessions.tenant_records(&lease.tenant).await else {
                        continue;
                    };
                    for session in browser_sessions(&records) {
                        profiles.store(&lease, session).await;
                    }
                }
            }
        }
    }
}

/// The fleet crate's throwaway PostgreSQL, for the tests below.
#[cfg(test)]
#[path = "../fleet/tests/common/mod.rs"]
mod test_pg;

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    /// The row's version (`xmin` changes with every write).
    async fn version(fleet: &Fleet, session: &SessionId) -> String {
        sqlx::query_scalar("SELECT xmin::text FROM profile_snapshots WHERE session = $1")
            .bind(session.as_str())
            .fetch_one(fleet.pool())
            .await
            .expect("row")
    }

    fn write(dir: &std::path::Path, text: &str) {
        let db = dir.join("Default/IndexedDB/http_127.0.0.1_1.indexeddb.leveldb");
        std::fs::create_dir_all(&db).expect("mkdir");
        std::fs::write(db.join("000003.log"), text).expect("write");
    }

    fn read(dir: &std::path::Path) -> String {
        let db = dir.join("Default/IndexedDB/http_127.0.0.1_1.indexeddb.leveldb");
        std::fs::read_to_string(db.join("000003.log")).expect("read")
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_profile_is_stored_when_it_changed_and_never_restored_over_its_own_newer_self() {
        let pg = super::test_pg::PgCluster::start();
        let fleet = Fleet::connect(&pg.url(), 2).await.expect("connect");
        let id = NodeId::new("node-a").expect("id");
        let spec = NodeSpec {
            id: id.clone(),
            advertise_url: "http://node-a.invalid".into(),
            egress: "node-a".into(),
            capacity: 10,
        };
        fleet.register(&spec).await.expect("register");
        let leases = Leases::new(&fleet, id, Duration::from_secs(60));
        let tenant = TenantId::new("clinic").expect("id");
        let lease = leases.claim(&tenant).await.expect("claim").expect("won");
        let dir = tempfile::tempdir().expect("tempdir");
        let profiles = Profiles {
            dir: dir.path().to_path_buf(),
            snapshots: Snapshots::new(&fleet),
            leases: leases.clone(),
            sealing: Arc::new(SecretBox::new([7; 32])),
            known: Arc::default(),
        };
        let session = SessionId::new("s1").expect("id");
        let profile = dir.path().join("s1");

        write(&profile, "one");
        profiles.store(&lease, &session).await;
        let first = version(&fleet, &session).await;
        profiles.store(&lease, &session).await;
        assert_eq!(
            version(&fleet, &session).await,
            first,
            "unchanged: not written again"
        );
        write(&profile, "two");
        profiles.store(&lease, &session).await;
        assert_ne!(version(&fleet, &session).await, first, "changed: stored");

        // The profile moves on and the node re-adopts the tenant before it
        // stored it (the database was away): its own snapshot is older than
        // the profile, so it is not restored over it.
        write(&profile, "three");
        profiles.restore(&session).await;
        assert_eq!(read(&profile), "three");

        // A node that does not know the snapshot (another one, or this one
        // restarted) starts from it.
        let fresh = Profiles {
            known: Arc::default(),
            ..profiles.clone()
        };
        fresh.restore(&session).await;
        assert_eq!(read(&profile), "two");

        // Logged out: the snapshot goes, and nothing comes back from it.
        let owned = Owned::default();
        owned.insert(lease.clone());
        let at = centinela_actors::clock::Timestamp::from_millis(1_800_000_000_000);
        let logout = BusEvent::Transition(centinela_actors::bus::TransitionEvent {
            tenant: tenant.clone(),
            session: session.clone(),
            from: centinela_actors::session::SessionState::Ready {
                me: "5491122334455".into(),
            },
            to: centinela_actors::session::SessionState::Disconnected {
                reason: DisconnectReason::Logout,
            },
            reason: Some(DisconnectReason::Logout),
            at,
        });
        on_event(&logout, &owned, &fresh).await;
        let left: i64 =
            sqlx::query_scalar("SELECT count(*) FROM profile_snapshots WHERE session = 's1'")
                .fetch_one(fleet.pool())
                .await
                .expect("count");
        assert_eq!(left, 0);
        write(&profile, "four");
        fresh.restore(&session).await;
        assert_eq!(read(&profile), "four", "no snapshot to restore");
    }

    #[test]
    fn a_fleet_node_runs_a_dead_man_switch_shorter_than_its_lease_unless_told() {
        let mut c = Config::defaults();
        assert_eq!(deadman(&c), Duration::ZERO, "off on a single node");
        c.fleet.database_url = "postgres://db/fleet".into();
        c.fleet.lease_ttl = Duration::from_secs(15);
        // 15 s less the margin (3 s) and a round (5 s).
        assert_eq!(deadman(&c), Duration::from_secs(7));
        c.fleet.lease_ttl = Duration::from_secs(3);
        assert_eq!(deadman(&c), Duration::from_secs(2), "never under 2 s");
        c.engine.deadman = Duration::from_secs(9);
        assert_eq!(deadman(&c), Duration::from_secs(9), "what the config says");
    }
}
