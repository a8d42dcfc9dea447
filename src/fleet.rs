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
//!   and when the node gives a tenant up on a drain (its browsers closed
//!   cleanly), the profile's pairing storage is packed, sealed under
//!   `storage.secret_key` and stored, fenced; a new owner restores it
//!   before the supervisor launches the browser.
//! - Accounts are the fleet's ([`NodeAccounts`]): tenants, users, API
//!   keys, revoked tokens and the settings (the JWT secret, the OTP key),
//!   so an account made through any node works on every node and a token
//!   one node signed every node accepts; tenant records are mirrored into
//!   the node's store when it creates or starts hosting a tenant, for the
//!   node-local tables that check them. A tenant is deleted through the
//!   node that hosts it (elsewhere 503 `tenant_moving`): its sessions stop
//!   there, its accounts and profile snapshots go from the fleet, its rows
//!   from that node's store. With the database down no credential can be checked (a revoked token
//!   or key must not pass because its revocation cannot be read): every
//!   authenticated request is 503 `fleet_unavailable` until it is back.
//!
//!   A credential change through any node makes every node's open
//!   WebSockets check theirs again ([`centinela_fleet::credentials`]).
//!
//! Not shared yet (each node keeps its own): messages and the outbox,
//! webhooks, campaigns, OTPs, the audit log.
//! Requests are not forwarded: a call for a tenant hosted elsewhere is a
//! 404 (session) or 503 `tenant_moving` (create) on this node.

use centinela_actors::bus::{Bus, BusEvent};
use centinela_actors::config::Config;
use centinela_actors::engine::EngineKind;
use centinela_actors::ids::{SessionId, TenantId};
use centinela_actors::secret::SecretBox;
use centinela_actors::store::{SessionRecord, Store};
use centinela_actors::supervisor::shared::FleetSeam;
use centinela_actors::supervisor::Supervisor;
use centinela_fleet::{
    Fleet, FleetAdmission, FleetError, FleetSessions, Lease, Leases, Member, MemberConfig,
    MemberHandle, NodeAccounts, NodeId, NodeSpec, Owned, PgSharedAdmission, Release, Snapshots,
    TenantHost,
};
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

/// The largest profile snapshot stored (the pairing storage of a WhatsApp
/// Web profile is kilobytes to a few megabytes).
const SNAPSHOT_LIMIT: u64 = 64 * 1024 * 1024;

/// Why a node could not join its fleet.
#[derive(Debug, thiserror::Error)]
pub enum FleetStartError {
    #[error("fleet: {0}")]
    Fleet(#[from] FleetError),
    #[error("fleet: {0}")]
    Config(#[from] centinela_actors::config::ConfigError),
}

/// The fleet's side of a node, before its supervisor starts.
pub struct Joining {
    fleet: Fleet,
    spec: NodeSpec,
    ttl: std::time::Duration,
    owned: Owned,
    leases: Leases,
    pub seam: FleetSeam,
    pub sessions: FleetSessions,
    /// The fleet's accounts, as this node uses them.
    pub accounts: NodeAccounts,
}

/// Connects to the fleet's database (migrating it) and readies this node's
/// admission, session records and accounts; nothing is claimed yet.
pub async fn connect(config: &Config, store: &Store) -> Result<Joining, FleetStartError> {
    let f = &config.fleet;
    let fleet = Fleet::connect(&f.database_url, 8).await?;
    let id = NodeId::new(f.node_id()?).expect("fleet.node_id is checked by the config");
    let egress = f.egress()?;
    let spec = NodeSpec {
        id: id.clone(),
        advertise_url: f.advertise_url.clone(),
        egress: egress.clone(),
        capacity: f.capacity,
    };
    let owned = Owned::default();
    let leases = Leases::new(&fleet, id, f.lease_ttl);
    let admission = FleetAdmission::new(&fleet, config.antiban.clone());
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
    tracing::info!(node = %spec.id, egress = %spec.egress, capacity = spec.capacity, "joining the fleet");
    Ok(Joining {
        fleet,
        spec,
        ttl: f.lease_ttl,
        owned,
        leases,
        seam,
        sessions,
        accounts,
    })
}

impl Joining {
    /// What `GET /api/v1/fleet` shows, read from the fleet's database.
    pub fn status(&self) -> Arc<dyn centinela_web::fleet::FleetStatus> {
        Arc::new(Status {
            fleet: self.fleet.clone(),
            node: self.spec.id.to_string(),
        })
    }
}

/// The fleet as the database has it, from this node.
struct Status {
    fleet: Fleet,
    node: String,
}

#[async_trait::async_trait]
impl centinela_web::fleet::FleetStatus for Status {
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
                        .map(|(tenant, epoch, lease_until)| OwnedTenant {
                            tenant,
                            epoch,
                            lease_until,
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
    snapshots: tokio::task::JoinHandle<()>,
    fleet: Fleet,
    /// The listener for other nodes' credential changes, once started.
    credentials: Option<tokio::task::JoinHandle<()>>,
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
        };
        let host = Arc::new(Host {
            supervisor: supervisor.clone(),
            sessions: self.sessions.clone(),
            accounts: self.accounts.clone(),
            profiles: profiles.clone(),
            held: Mutex::default(),
        });
        let fleet = self.fleet.clone();
        let member = Member::new(
            self.fleet,
            self.spec,
            MemberConfig::new(self.ttl),
            self.owned.clone(),
            host.clone(),
        )
        .spawn();
        let snapshots = tokio::spawn(snapshot_durable_pairings(
            bus.subscribe(),
            self.owned,
            profiles,
        ));
        let supervisor = supervisor.with_claim(Arc::new(member.claimer()));
        let joined = Joined {
            member,
            snapshots,
            fleet,
            credentials: None,
        };
        (joined, supervisor)
    }
}

impl Joined {
    /// Leaves the fleet: every tenant's browsers stop (a clean close), its
    /// profiles are stored, its lease is given back for another node.
    pub async fn drain(self) {
        self.member.drain().await;
        self.snapshots.abort();
        if let Some(listener) = self.credentials {
            listener.abort();
        }
    }

    /// Makes this node's open WebSockets check their credential whenever a
    /// node of the fleet announces a credential change
    /// ([`centinela_fleet::credentials`]).
    pub fn follow_credentials(&mut self, auth: Arc<centinela_web::auth::Auth>) {
        let listener =
            centinela_fleet::credentials::follow(&self.fleet, move || auth.credentials_changed());
        if let Some(old) = self.credentials.replace(listener) {
            old.abort();
        }
    }
}

/// Where profiles are, and how they are stored.
#[derive(Clone)]
struct Profiles {
    dir: PathBuf,
    snapshots: Snapshots,
    leases: Leases,
    sealing: Arc<SecretBox>,
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
        let sealed =
            centinela_fleet::snapshot::seal(&self.sealing, &lease.tenant, session, &packed);
        let size = u64::try_from(sealed.len()).unwrap_or(u64::MAX);
        match self
            .snapshots
            .put(&self.leases, lease, session, &sealed, &packed.sha256, size)
            .await
        {
            Ok(()) => {
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
                tracing::info!(session = %session, files, epoch = %snapshot.epoch, "profile restored from the fleet")
            }
            Ok(Err(e)) => tracing::warn!(session = %session, error = %e, "profile not restored"),
            Err(e) => tracing::warn!(session = %session, error = %e, "profile not restored"),
        }
    }
}

/// The supervisor as the membership loop's host.
struct Host {
    supervisor: Supervisor,
    sessions: FleetSessions,
    accounts: NodeAccounts,
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
        // tenant's rows once its record is here.
        if let Err(e) = self.accounts.mirror_tenant(tenant).await {
            tracing::error!(tenant = %tenant, error = %e, "tenant's record not mirrored");
        }
        if let Err(e) = self.sessions.mirror_tenant(tenant).await {
            tracing::error!(tenant = %tenant, error = %e, "tenant's records not mirrored");
        }
        match self.sessions.tenant_records(tenant).await {
            Ok(records) => {
                for session in browser_sessions(&records) {
                    self.profiles.restore(session).await;
                }
            }
            Err(e) => tracing::error!(tenant = %tenant, error = %e, "tenant's records unreadable"),
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
        // Only a drain still holds the lease once the browsers are closed:
        // the profiles as they closed are the ones the next owner starts on.
        if let (Release::Drain, Some(lease)) = (why, lease) {
            if let Ok(records) = self.sessions.tenant_records(tenant).await {
                for session in browser_sessions(&records) {
                    self.profiles.store(&lease, session).await;
                }
            }
        }
    }
}

/// Stores a session's profile each time its pairing becomes durable (the
/// page wrote it with strict durability), while this node holds the tenant.
async fn snapshot_durable_pairings(
    mut events: tokio::sync::broadcast::Receiver<BusEvent>,
    owned: Owned,
    profiles: Profiles,
) {
    use tokio::sync::broadcast::error::RecvError;
    loop {
        let event = match events.recv().await {
            Ok(e) => e,
            Err(RecvError::Lagged(n)) => {
                tracing::warn!(missed = n, "profile snapshots lagged behind the bus");
                continue;
            }
            Err(RecvError::Closed) => return,
        };
        let BusEvent::PairingDurable(durable) = event else {
            continue;
        };
        let Some(lease) = owned.get(&durable.tenant) else {
            continue;
        };
        profiles.store(&lease, &durable.session).await;
    }
}
