//! Fleet failover with real browsers, shared by `tests/fleet_failover.rs`
//! and `benches/fleet.rs`: one throwaway PostgreSQL and one `centinela sim`
//! process (WhatsApp: it does not die with a node); each run starts two
//! `serve` processes (`a{run}`, `b{run}`), pairs a session on the first
//! through the simulator, waits until the owner stored its profile, kills
//! the owner (`kill -9` of its pid or its process group) or freezes it
//! (SIGSTOP, then SIGCONT) and waits for the session to be READY on the
//! other node.

#[path = "../../fleet/tests/common/mod.rs"]
pub mod pg;

use super::api::{Api, Cred, Ws};
use super::proc::{spawn_serve_logged, spawn_until, terminate, until_logged};
use centinela_actors::clock::{Clock, SystemClock, Timestamp};
use pg::PgCluster;
use serde_json::{json, Value};
use std::time::{Duration, Instant};

const PASSWORD: &str = "fleet-test-password";
/// `storage.secret_key`: the same on every node of a fleet.
pub const KEY: &str = "3f6c1d0a9b8e7f6a5c4b3a29181706f5e4d3c2b1a09f8e7d6c5b4a3928170605";

/// The database and the simulator every run shares.
pub struct Rig {
    pub pg: PgCluster,
    sim: std::process::Child,
    sim_api: Api,
    wa_url: String,
    dir: tempfile::TempDir,
}

/// What one failover came to.
#[derive(Debug)]
pub struct Failover {
    /// From the kill to READY on the other node.
    pub elapsed: Duration,
    /// The session's states on the new owner, in order.
    pub states: Vec<String>,
    /// The session as the new owner shows it.
    pub view: Value,
    /// The tenant's owner and epoch afterwards (the database's view).
    pub owner: (String, i64),
}

impl Drop for Rig {
    fn drop(&mut self) {
        let _ = self.sim.kill();
        let _ = self.sim.wait();
    }
}

impl Rig {
    pub fn start() -> Rig {
        let pg = PgCluster::start();
        let (sim, sim_listen, _) = spawn_until(
            &["sim", "--listen", "127.0.0.1:0"],
            &[],
            "simulator serving",
        );
        Rig {
            pg,
            sim,
            sim_api: Api::new(&format!("http://{sim_listen}")),
            wa_url: format!("http://{sim_listen}/sim/wa/"),
            dir: tempfile::tempdir().expect("tempdir"),
        }
    }

    fn node(&self, name: &str) -> (std::process::Child, Api, std::sync::mpsc::Receiver<String>) {
        let env = [
            ("CENTINELA_ADMIN_PASSWORD", PASSWORD.to_owned()),
            ("CENTINELA__ENGINE__WA_URL", self.wa_url.clone()),
            ("CENTINELA__ANTIBAN__CONNECT_DELAY", "0s".into()),
            ("CENTINELA__ANTIBAN__CONNECT_JITTER_MIN", "0s".into()),
            ("CENTINELA__ANTIBAN__CONNECT_JITTER_MAX", "0s".into()),
            ("CENTINELA__ANTIBAN__QUEUE_SPACING", "0s".into()),
            (
                "CENTINELA__ANTIBAN__GLOBAL_ATTEMPTS_PER_HOUR",
                "1000".into(),
            ),
            ("CENTINELA__STORAGE__SECRET_KEY", KEY.into()),
            ("CENTINELA__FLEET__DATABASE_URL", self.pg.url()),
            ("CENTINELA__FLEET__NODE_ID", name.into()),
            ("CENTINELA__FLEET__LEASE_TTL", "3s".into()),
            ("CENTINELA__FLEET__EGRESS", "203.0.113.7".into()),
            // Sends at once, and one new contact a day: what the queue's
            // failover shows (`Rig::queue_failover`).
            ("CENTINELA__MESSAGING__SEND_DELAY_MIN", "0s".into()),
            ("CENTINELA__MESSAGING__SEND_DELAY_MAX", "0s".into()),
            ("CENTINELA__MESSAGING__TYPING_CHARS_PER_SECOND", "0".into()),
            ("CENTINELA__MESSAGING__WARMUP_DAYS", "0".into()),
            ("CENTINELA__MESSAGING__WARMUP_START", "1".into()),
            ("CENTINELA__MESSAGING__NEW_CONTACTS_PER_DAY", "1".into()),
        ];
        let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let data = self.dir.path().join(name).to_string_lossy().into_owned();
        // In a process group of its own: a kill of the group is a
        // container's kill (the node and every browser it started).
        let (child, listen, lines) = spawn_serve_logged(&data, &env, true);
        (child, Api::new(&format!("http://{listen}")), lines)
    }

    /// Two nodes and a session paired on the first, its profile stored.
    async fn paired(&self, run: usize) -> Pair {
        let tenant = format!("clinic{run}");
        let phone = format!("54911223300{run:02}");
        let (a, api_a, log_a) = self.node(&format!("a{run}"));
        let (b, api_b, _log_b) = self.node(&format!("b{run}"));
        // The accounts are the fleet's: the tenant is made once, and the
        // admin logs in on either node.
        let admin_a = admin_with_tenant(&api_a, &tenant).await;
        let admin_b = api_b.login("admin", PASSWORD).await;
        let session = api_a.create_session(&admin_a, Some(&tenant), "desk").await;
        let mut ws_a = Ws::connect(&api_a.base, &format!("token={admin_a}")).await;
        let ws_b = Ws::connect(&api_b.base, &format!("token={admin_b}")).await;
        api_a.session_action(&admin_a, &session, "connect").await;
        let qr = ws_a.until_state(&session, "QR").await;
        let r = self
            .sim_api
            .call(
                "POST",
                "/sim/scan",
                Cred::None,
                Some(json!({"qr": qr["to"]["code"], "phone": phone})),
            )
            .await;
        assert_eq!(r.status, 200, "{}", r.text);
        ws_a.until_state(&session, "READY").await;
        // The owner stores the profile once the page says the pairing is
        // durable. (A new node may adopt earlier runs' tenants too: this
        // session's.)
        until_logged(
            &log_a,
            "profile stored in the fleet",
            |f| f["session"] == session.as_str(),
            super::WAIT,
        );
        Pair {
            tenant,
            session,
            a,
            api_a,
            admin_a,
            log_a,
            b,
            api_b,
            admin_b,
            ws_b,
        }
    }

    /// One failover, run `run` (its nodes and tenant are its own): the
    /// owner is killed with `kill -9` — its process group (a container's
    /// kill) when `group`, else the service's pid alone (its browsers must
    /// die with it).
    pub async fn failover(&self, run: usize, group: bool) -> Failover {
        let mut p = self.paired(run).await;
        let target = if group {
            format!("-{}", p.a.id())
        } else {
            p.a.id().to_string()
        };
        signal(&target, "-KILL");
        let at = Instant::now();
        let _ = p.a.wait();
        let states = p.until_ready_on_b().await;
        let elapsed = at.elapsed();
        let f = p.outcome(&self.pg, elapsed, states).await;
        p.finish();
        f
    }

    /// The owner is frozen (SIGSTOP) past its lease: the other node takes
    /// the session over; then the owner is woken (SIGCONT) and must let the
    /// tenant go (its log says so) without writing anything about it.
    pub async fn freeze(&self, run: usize) -> Frozen {
        let mut p = self.paired(run).await;
        let pid = p.a.id().to_string();
        signal(&pid, "-STOP");
        let at = Instant::now();
        let states = p.until_ready_on_b().await;
        let elapsed = at.elapsed();
        signal(&pid, "-CONT");
        let released = until_logged(
            &p.log_a,
            "tenant released",
            |f| f["tenant"] == p.tenant.as_str(),
            super::WAIT,
        );
        let seen = p
            .api_a
            .call(
                "GET",
                &format!("/api/v1/sessions/{}", p.session),
                Cred::Token(&p.admin_a),
                None,
            )
            .await;
        let by = seen
            .headers
            .get("x-centinela-node")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned();
        let on_a = (seen.status, by);
        let record = session_record(&self.pg, &p.session).await;
        let overlaps = self
            .sim_api
            .call("GET", "/sim/overlaps", Cred::None, None)
            .await;
        let failover = p.outcome(&self.pg, elapsed, states).await;
        let _ = p.a.kill();
        let _ = p.a.wait();
        p.finish();
        Frozen {
            failover,
            released: released["fields"].clone(),
            on_a,
            record,
            overlaps: overlaps.body,
        }
    }

    /// The owner sends to a new contact (the day's one), accepts a message
    /// scheduled `delay` ahead under an idempotency key and is killed
    /// (`kill -9`) before it is due; the other node takes the session
    /// over. Through the new owner, the same key is sent again and a
    /// message to a second new contact; the new owner sends the scheduled
    /// message when it is due and answers its status.
    pub async fn queue_failover(&self, run: usize, delay: Duration) -> QueueFailover {
        let mut p = self.paired(run).await;
        let path = format!("/api/v1/sessions/{}/messages", p.session);
        let send = |api: &Api, token: &str, body: Value| {
            let (api, token, path) = (api.clone(), token.to_owned(), path.clone());
            async move {
                let r = api
                    .call("POST", &path, Cred::Token(&token), Some(body))
                    .await;
                assert_eq!(r.status, 202, "{}", r.text);
                r.body
            }
        };
        let mut ws_a = Ws::connect(&p.api_a.base, &format!("token={}", p.admin_a)).await;
        let first = send(
            &p.api_a,
            &p.admin_a,
            json!({"to": "5491100000001", "text": "first, on a"}),
        )
        .await;
        until_status(&mut ws_a, &first["id"], "sent").await;
        let due = SystemClock.now().plus(delay);
        let scheduled = json!({"to": "5491100000001", "text": "scheduled, due after the kill",
            "idempotency_key": "reminder-1", "send_at": due.to_rfc3339()});
        let accepted = send(&p.api_a, &p.admin_a, scheduled.clone()).await;
        signal(&p.a.id().to_string(), "-KILL");
        let _ = p.a.wait();
        let killed_at = SystemClock.now();
        drop(ws_a);
        p.until_ready_on_b().await;
        let again = send(&p.api_b, &p.admin_b, scheduled).await;
        let stranger = send(
            &p.api_b,
            &p.admin_b,
            json!({"to": "5491100000002", "text": "a second new contact, on b"}),
        )
        .await;
        let mut seen = Vec::new();
        for _ in 0..2 {
            let event = p
                .ws_b
                .next(|v| {
                    v["type"] == "message_status"
                        && v.get("node").is_none()
                        && ((v["message_id"] == accepted["id"] && v["status"] == "sent")
                            || (v["message_id"] == stranger["id"] && v["status"] == "deferred"))
                })
                .await;
            seen.push(event);
        }
        let sent_at = seen
            .iter()
            .find(|e| e["message_id"] == accepted["id"])
            .map(|e| e["at"].clone())
            .expect("the scheduled message was sent");
        let read = |id: &Value| {
            let (api, token, path) = (p.api_b.clone(), p.admin_b.clone(), path.clone());
            let id = id.as_str().expect("id").to_owned();
            async move {
                let r = api
                    .call("GET", &format!("{path}/{id}"), Cred::Token(&token), None)
                    .await;
                assert_eq!(r.status, 200, "{}", r.text);
                r.body
            }
        };
        let (scheduled_now, stranger_now) =
            (read(&accepted["id"]).await, read(&stranger["id"]).await);
        let on_phone = self.sim_api.sim_sent(&format!("54911223300{run:02}")).await;
        let out = QueueFailover {
            accepted,
            again,
            scheduled: scheduled_now,
            stranger: stranger_now,
            due,
            killed_at,
            sent_at,
            on_phone,
        };
        p.finish();
        out
    }

    /// The simulator's count of two pages of one device alive at once.
    pub async fn overlaps(&self) -> Value {
        self.sim_api
            .call("GET", "/sim/overlaps", Cred::None, None)
            .await
            .body
    }
}

/// What [`Rig::queue_failover`] saw.
#[derive(Debug)]
pub struct QueueFailover {
    /// The scheduled message as the owner accepted it.
    pub accepted: Value,
    /// The same idempotency key sent again through the new owner.
    pub again: Value,
    /// The scheduled message, read through the new owner at the end.
    pub scheduled: Value,
    /// The message to a second new contact, read through the new owner.
    pub stranger: Value,
    /// When the scheduled message was due, and when the owner was killed.
    pub due: Timestamp,
    pub killed_at: Timestamp,
    /// The `at` of the scheduled message's `sent` event on the new owner.
    pub sent_at: Value,
    /// Every message the simulator's device sent.
    pub on_phone: Vec<Value>,
}

/// Waits for `message`'s `status` event on `ws` (this node's own).
async fn until_status(ws: &mut Ws, message: &Value, status: &str) -> Value {
    ws.next(|v| {
        v["type"] == "message_status"
            && v.get("node").is_none()
            && v["message_id"] == *message
            && v["status"] == status
    })
    .await
}

/// A frozen owner's failover and what the owner did when it woke.
#[derive(Debug)]
pub struct Frozen {
    pub failover: Failover,
    /// The woken owner's log line letting the tenant go.
    pub released: Value,
    /// `GET` of the session through the woken owner afterwards: the
    /// status and the node that answered.
    pub on_a: (u16, String),
    /// The session's record in the fleet afterwards.
    pub record: Value,
    /// `GET /sim/overlaps` afterwards.
    pub overlaps: Value,
}

/// One run's two nodes and its paired session.
struct Pair {
    tenant: String,
    session: String,
    a: std::process::Child,
    api_a: Api,
    admin_a: String,
    log_a: std::sync::mpsc::Receiver<String>,
    b: std::process::Child,
    api_b: Api,
    admin_b: String,
    ws_b: Ws,
}

impl Pair {
    /// The session's states on node b until READY.
    async fn until_ready_on_b(&mut self) -> Vec<String> {
        let mut states = Vec::new();
        loop {
            let session = self.session.as_str();
            let t = self
                .ws_b
                .next(|v| {
                    // This node's own, not node a's relayed to it.
                    v["type"] == "transition"
                        && v["session_id"] == session
                        && v.get("node").is_none()
                })
                .await;
            let state = t["to"]["state"].as_str().unwrap_or_default().to_owned();
            states.push(state.clone());
            if state == "READY" {
                return states;
            }
        }
    }

    async fn outcome(&self, pg: &PgCluster, elapsed: Duration, states: Vec<String>) -> Failover {
        let view = self
            .api_b
            .call(
                "GET",
                &format!("/api/v1/sessions/{}", self.session),
                Cred::Token(&self.admin_b),
                None,
            )
            .await;
        assert_eq!(view.status, 200, "{}", view.text);
        Failover {
            elapsed,
            states,
            view: view.body,
            owner: owner_of(pg, &self.tenant).await,
        }
    }

    /// Deletes the session before its last node leaves, so no run's
    /// session is handed to the next run's nodes.
    fn finish(self) {
        let (api, admin, session) = (
            self.api_b.clone(),
            self.admin_b.clone(),
            self.session.clone(),
        );
        let deleted = std::thread::spawn(move || {
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime")
                .block_on(async move {
                    api.call(
                        "DELETE",
                        &format!("/api/v1/sessions/{session}"),
                        Cred::Token(&admin),
                        None,
                    )
                    .await
                })
        })
        .join()
        .expect("delete");
        assert!(
            deleted.status == 200 || deleted.status == 204,
            "{}",
            deleted.text
        );
        terminate(self.b);
    }
}

fn signal(target: &str, sig: &str) {
    // `--` before the pid: a negative one is a process group, not an option.
    let sent = std::process::Command::new("kill")
        .args([sig, "--", target])
        .status()
        .expect("kill");
    assert!(sent.success(), "kill {sig} {target}");
}

/// A session's record as the fleet's database holds it.
pub async fn session_record(pg: &PgCluster, session: &str) -> Value {
    let fleet = centinela_fleet::Fleet::connect(&pg.url(), 1)
        .await
        .expect("connect");
    let text: String = sqlx::query_scalar("SELECT record::text FROM sessions WHERE id = $1")
        .bind(session)
        .fetch_one(fleet.pool())
        .await
        .expect("record");
    serde_json::from_str(&text).expect("json")
}

async fn admin_with_tenant(api: &Api, tenant: &str) -> String {
    let admin = api.login("admin", PASSWORD).await;
    let r = api
        .call(
            "POST",
            "/api/v1/tenants",
            Cred::Token(&admin),
            Some(json!({"id": tenant, "name": tenant})),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text);
    admin
}

/// Who owns `tenant` now (a live lease) and at which epoch.
pub async fn owner_of(pg: &PgCluster, tenant: &str) -> (String, i64) {
    let fleet = centinela_fleet::Fleet::connect(&pg.url(), 1)
        .await
        .expect("connect");
    let reader = centinela_fleet::NodeId::new("reader").expect("id");
    let leases = centinela_fleet::Leases::new(&fleet, reader, Duration::from_secs(3));
    let tenant = centinela_actors::ids::TenantId::new(tenant).expect("tenant");
    let (node, epoch) = leases
        .owner_of(&tenant)
        .await
        .expect("owner")
        .expect("owned");
    (node.to_string(), epoch.0)
}
