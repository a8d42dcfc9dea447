//! Admission tests: one focused test per seed-003 reason with exact waits,
//! the queue, persistence across a reload, overrides, the status fields, and
//! a randomized run over simulated weeks checked against an oracle. Time is
//! a plain `Timestamp` passed in: hours pass in microseconds.

use super::*;
use crate::config::Config;
use crate::store::Store;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use std::collections::HashMap;

const T0: Timestamp = Timestamp::from_millis(1_768_590_000_000);
const MIN: Duration = Duration::from_secs(60);

fn cfg() -> AntibanConfig {
    Config::defaults().antiban
}

fn tenant(n: usize) -> TenantId {
    TenantId::new(format!("t{n}")).expect("id")
}

fn req(t: usize, kind: AttemptKind) -> AttemptRequest {
    AttemptRequest {
        tenant: tenant(t),
        session: SessionId::new(format!("s{t}")).expect("id"),
        kind,
        live: 0,
        egress: "server".into(),
        engine: crate::engine::EngineKind::Webjs,
    }
}

struct Fx {
    _dir: tempfile::TempDir,
    store: Store,
    adm: Admission,
}

fn fx(cfg: AntibanConfig) -> Fx {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Store::open(dir.path()).expect("store");
    let adm = Admission::load(cfg, Arc::new(store.clone()), Some(1), T0).expect("load");
    Fx {
        _dir: dir,
        store,
        adm,
    }
}

fn admit(adm: &mut Admission, r: &AttemptRequest, now: Timestamp) -> Decision {
    adm.admit(r, now).expect("store works")
}

fn denial(d: Decision) -> Denial {
    match d {
        Decision::Denied(d) => d,
        other => panic!("expected a denial, got {other:?}"),
    }
}

fn admitted(d: Decision) -> (u64, Timestamp) {
    match d {
        Decision::Admitted { ticket, start_at } => (ticket, start_at),
        other => panic!("expected admission, got {other:?}"),
    }
}

#[test]
fn server_rate_limit_denies_the_fourth_attempt_in_an_hour_with_the_exact_wait() {
    let mut f = fx(cfg());
    for (i, m) in [0u64, 10, 20].iter().enumerate() {
        admitted(admit(
            &mut f.adm,
            &req(i, AttemptKind::Connect),
            T0.plus(MIN * *m as u32),
        ));
    }
    let now = T0.plus(MIN * 30);
    let d = denial(admit(&mut f.adm, &req(9, AttemptKind::Connect), now));
    assert_eq!(d.reason, DenyReason::ServerRateLimit);
    assert_eq!(
        d.block_until,
        T0.plus(MIN * 60),
        "when the oldest leaves the window"
    );
    assert_eq!(d.wait, MIN * 30);
    assert_eq!(d.wait_minutes(), 30);
    // Rolling, not calendar: one minute after the oldest expires, one slot.
    admitted(admit(
        &mut f.adm,
        &req(9, AttemptKind::Connect),
        T0.plus(MIN * 60 + Duration::from_millis(1)),
    ));
}

#[test]
fn daily_limit_denies_a_tenants_third_attempt_in_24_hours() {
    let mut f = fx(cfg());
    admitted(admit(&mut f.adm, &req(1, AttemptKind::Connect), T0));
    admitted(admit(
        &mut f.adm,
        &req(1, AttemptKind::Connect),
        T0.plus(MIN * 90),
    ));
    let now = T0.plus(MIN * 200);
    let d = denial(admit(&mut f.adm, &req(1, AttemptKind::Connect), now));
    assert_eq!(d.reason, DenyReason::DailyLimit);
    assert_eq!(d.block_until, T0.plus(DAY));
    assert_eq!(d.wait, DAY - MIN * 200);
    // Another tenant is not affected.
    admitted(admit(&mut f.adm, &req(2, AttemptKind::Connect), now));
}

#[test]
fn cooldown_after_failure_lasts_two_hours() {
    let mut f = fx(cfg());
    let (t, s) = (tenant(1), SessionId::new("s1").expect("id"));
    admitted(admit(&mut f.adm, &req(1, AttemptKind::Connect), T0));
    f.adm
        .record(&t, &s, Outcome::Failure, T0.plus(MIN))
        .expect("record");
    let d = denial(admit(
        &mut f.adm,
        &req(1, AttemptKind::Connect),
        T0.plus(MIN * 34),
    ));
    assert_eq!(d.reason, DenyReason::CooldownAfterFailure);
    assert_eq!(d.block_until, T0.plus(MIN * 121));
    assert_eq!(d.wait_minutes(), 87);
    admitted(admit(
        &mut f.adm,
        &req(1, AttemptKind::Connect),
        T0.plus(MIN * 121),
    ));
}

#[test]
fn a_ban_blocks_the_tenant_for_24_hours_even_for_restores() {
    let mut f = fx(cfg());
    let (t, s) = (tenant(2), SessionId::new("s2").expect("id"));
    f.adm.record(&t, &s, Outcome::Banned, T0).expect("record");
    for kind in [
        AttemptKind::Connect,
        AttemptKind::Restore,
        AttemptKind::CrashRestart,
    ] {
        let d = denial(admit(&mut f.adm, &req(2, kind), T0.plus(MIN)));
        assert_eq!(d.reason, DenyReason::Error515Block, "{kind:?}");
        assert_eq!(d.block_until, T0.plus(DAY));
        assert_eq!(d.wait, DAY - MIN);
    }
}

#[test]
fn capacity_denies_when_live_sessions_fill_the_server() {
    let mut f = fx(cfg());
    let mut r = req(1, AttemptKind::Connect);
    r.live = 6;
    let d = denial(admit(&mut f.adm, &r, T0));
    assert_eq!(d.reason, DenyReason::Capacity);
    r.live = 5;
    admitted(admit(&mut f.adm, &r, T0));
}

#[test]
fn session_limits_apply_at_creation() {
    let c = cfg();
    assert!(check_create(&c, 4, 99, T0).is_ok());
    assert_eq!(
        check_create(&c, 5, 10, T0).map_err(|d| d.reason),
        Err(DenyReason::TenantSessionLimit)
    );
    assert_eq!(
        check_create(&c, 0, 100, T0).map_err(|d| d.reason),
        Err(DenyReason::Capacity)
    );
}

#[test]
fn the_queue_applies_delay_jitter_and_spacing_in_order() {
    let mut f = fx(cfg());
    let (t1, a) = admitted(admit(&mut f.adm, &req(1, AttemptKind::Connect), T0));
    let (t2, b) = admitted(admit(&mut f.adm, &req(2, AttemptKind::Connect), T0));
    let lo = T0.plus(Duration::from_secs(31));
    let hi = T0.plus(Duration::from_secs(33));
    assert!(a >= lo && a <= hi, "30 s delay + 1–3 s jitter: {a}");
    assert!(
        b >= a.plus(Duration::from_secs(2)),
        "2 s spacing: {a} then {b}"
    );
    assert_eq!(f.adm.position(t1), Some(1));
    assert_eq!(f.adm.position(t2), Some(2));
    let q = f.adm.queue();
    assert_eq!(q.iter().map(|q| q.ticket).collect::<Vec<_>>(), vec![t1, t2]);
    f.adm.started(t1);
    assert_eq!(f.adm.position(t2), Some(1));
}

#[test]
fn restores_skip_the_connect_delay_and_spend_no_budget() {
    let mut f = fx(cfg());
    for i in 0..5 {
        let (_, at) = admitted(admit(&mut f.adm, &req(i, AttemptKind::Restore), T0));
        assert!(
            at <= T0.plus(Duration::from_secs(3 + 2 * i as u64 + 3)),
            "{at}"
        );
    }
    assert_eq!(f.adm.global_status(T0).global_attempts_last_hour, 0);
    let mut counting = cfg();
    counting.restore_counts_as_attempt = true;
    let mut g = fx(counting);
    for i in 0..3 {
        admitted(admit(&mut g.adm, &req(i, AttemptKind::Restore), T0));
    }
    let d = denial(admit(&mut g.adm, &req(7, AttemptKind::Restore), T0));
    assert_eq!(d.reason, DenyReason::ServerRateLimit);
}

#[test]
fn a_cancelled_attempt_refunds_its_budget() {
    let mut f = fx(cfg());
    let (ticket, _) = admitted(admit(&mut f.adm, &req(1, AttemptKind::Connect), T0));
    admitted(admit(&mut f.adm, &req(1, AttemptKind::Connect), T0));
    assert!(f.adm.cancel(ticket, T0).expect("cancel"));
    assert!(!f.adm.cancel(ticket, T0).expect("cancel twice"));
    admitted(admit(&mut f.adm, &req(1, AttemptKind::Connect), T0));
}

#[test]
fn limits_survive_a_reload_from_the_store() {
    let mut f = fx(cfg());
    for i in 0..3 {
        admitted(admit(&mut f.adm, &req(i, AttemptKind::Connect), T0));
    }
    f.adm
        .record(
            &tenant(5),
            &SessionId::new("s5").expect("id"),
            Outcome::Banned,
            T0,
        )
        .expect("record");
    let mut again =
        Admission::load(cfg(), Arc::new(f.store.clone()), Some(2), T0.plus(MIN)).expect("reload");
    let d = denial(admit(
        &mut again,
        &req(8, AttemptKind::Connect),
        T0.plus(MIN),
    ));
    assert_eq!(d.reason, DenyReason::ServerRateLimit);
    let d = denial(admit(
        &mut again,
        &req(5, AttemptKind::Connect),
        T0.plus(MIN),
    ));
    assert_eq!(d.reason, DenyReason::Error515Block);
}

#[test]
fn admin_overrides_lift_blocks_and_cooldowns() {
    let mut f = fx(cfg());
    let s = SessionId::new("s").expect("id");
    f.adm
        .record(&tenant(1), &s, Outcome::Banned, T0)
        .expect("record");
    f.adm
        .record(&tenant(2), &s, Outcome::Failure, T0)
        .expect("record");
    assert!(f.adm.unblock(&tenant(1), "root", T0).expect("unblock"));
    assert!(f.adm.reset_cooldown(&tenant(2), "root", T0).expect("reset"));
    admitted(admit(&mut f.adm, &req(1, AttemptKind::Connect), T0));
    admitted(admit(&mut f.adm, &req(2, AttemptKind::Connect), T0));
    assert!(!f
        .adm
        .unblock(&tenant(1), "root", T0)
        .expect("unblock again"));
}

#[test]
fn status_has_seed_003_fields() {
    let mut f = fx(cfg());
    let s = SessionId::new("s").expect("id");
    admitted(admit(&mut f.adm, &req(2, AttemptKind::Connect), T0));
    f.adm
        .record(&tenant(2), &s, Outcome::Failure, T0.plus(MIN))
        .expect("record");
    let now = T0.plus(MIN * 34);
    let global = serde_json::to_value(f.adm.global_status(now)).expect("json");
    assert_eq!(
        global,
        serde_json::json!({"global_attempts_last_hour": 1, "global_limit": 3, "global_blocked": false,
            "global_attempt_times": [T0.to_rfc3339()]})
    );
    let t = serde_json::to_value(f.adm.tenant_status(&tenant(2), 0, now)).expect("json");
    assert_eq!(
        t,
        serde_json::json!({
            "organization_id": "t2",
            "can_connect": false,
            "block_reason": "cooldown_after_failure",
            "wait_time_minutes": 87,
            "attempts_last_24h": 1,
            "daily_limit": 2,
            "is_blocked_515": false,
            "last_failure": T0.plus(MIN).to_rfc3339(),
            "block_until": T0.plus(MIN * 121).to_rfc3339(),
            "proxy_blocked": [],
            "attempt_times": [T0.to_rfc3339()],
            "cooldown_until": T0.plus(MIN * 121).to_rfc3339(),
            "blocked_until": null,
        })
    );
    let free = serde_json::to_value(f.adm.tenant_status(&tenant(3), 0, now)).expect("json");
    assert_eq!(free["can_connect"], true);
    assert_eq!(free["block_reason"], serde_json::Value::Null);
    assert_eq!(free["wait_time_minutes"], 0);
    assert_eq!(free["block_until"], serde_json::Value::Null);
}

/// An independent model of the rules, written from the spec, not the code.
#[derive(Default)]
struct Oracle {
    global: Vec<(u64, Timestamp)>,
    tenant: HashMap<usize, Vec<(u64, Timestamp)>>,
    blocked: HashMap<usize, Timestamp>,
    cooling: HashMap<usize, Timestamp>,
}

impl Oracle {
    fn expect(
        &self,
        c: &AntibanConfig,
        t: usize,
        live: u32,
        now: Timestamp,
    ) -> Option<(DenyReason, Timestamp)> {
        if let Some(u) = self.blocked.get(&t).filter(|u| **u > now) {
            return Some((DenyReason::Error515Block, *u));
        }
        if let Some(u) = self.cooling.get(&t).filter(|u| **u > now) {
            return Some((DenyReason::CooldownAfterFailure, *u));
        }
        let recent = |v: &Vec<(u64, Timestamp)>, w: Duration| -> Vec<Timestamp> {
            let mut x: Vec<Timestamp> = v
                .iter()
                .map(|p| p.1)
                .filter(|a| *a > now.minus(w) && *a <= now)
                .collect();
            x.sort();
            x
        };
        let day = recent(self.tenant.get(&t).unwrap_or(&Vec::new()), DAY);
        if day.len() >= c.tenant_attempts_per_day as usize {
            return Some((
                DenyReason::DailyLimit,
                day[day.len() - c.tenant_attempts_per_day as usize].plus(DAY),
            ));
        }
        let hour = recent(&self.global, HOUR);
        if hour.len() >= c.global_attempts_per_hour as usize {
            return Some((
                DenyReason::ServerRateLimit,
                hour[hour.len() - c.global_attempts_per_hour as usize].plus(HOUR),
            ));
        }
        if live >= c.max_live_sessions {
            return Some((DenyReason::Capacity, now));
        }
        None
    }

    fn max_in_any_window(v: &[(u64, Timestamp)], w: Duration) -> usize {
        let mut ts: Vec<Timestamp> = v.iter().map(|p| p.1).collect();
        ts.sort();
        (0..ts.len())
            .map(|i| ts[i..].iter().take_while(|t| **t < ts[i].plus(w)).count())
            .max()
            .unwrap_or(0)
    }
}

#[test]
fn randomized_weeks_of_traffic_never_exceed_a_window_and_every_denial_is_exact() {
    let c = cfg();
    let mut rng = StdRng::seed_from_u64(0xC3_17);
    let mut f = fx(c.clone());
    let mut oracle = Oracle::default();
    let mut now = T0;
    let (mut admits, mut denials, mut restarts) = (0, 0, 0);
    let mut queued: Vec<(u64, usize)> = Vec::new();
    for step in 0..6000 {
        now = now.plus(Duration::from_secs(rng.random_range(0..=40 * 60)));
        let t = rng.random_range(0..300usize);
        match rng.random_range(0..100) {
            0..=79 => {
                let mut r = req(t, AttemptKind::Connect);
                r.live = rng.random_range(0..8);
                let expected = oracle.expect(&c, t, r.live, now);
                match (admit(&mut f.adm, &r, now), expected) {
                    (Decision::Admitted { ticket, .. }, None) => {
                        admits += 1;
                        oracle.global.push((ticket, now));
                        oracle.tenant.entry(t).or_default().push((ticket, now));
                        queued.push((ticket, t));
                    }
                    (Decision::Denied(d), Some((reason, until))) => {
                        denials += 1;
                        assert_eq!((d.reason, d.block_until), (reason, until), "step {step}");
                        assert_eq!(d.wait, until.since(now), "step {step}");
                    }
                    (got, want) => panic!("step {step}: got {got:?}, oracle {want:?}"),
                }
            }
            80..=89 => {
                let s = SessionId::new(format!("s{t}")).expect("id");
                f.adm
                    .record(&tenant(t), &s, Outcome::Failure, now)
                    .expect("record");
                let u = now.plus(c.cooldown_after_failure);
                let e = oracle.cooling.entry(t).or_insert(u);
                *e = (*e).max(u);
            }
            90..=93 => {
                let s = SessionId::new(format!("s{t}")).expect("id");
                f.adm
                    .record(&tenant(t), &s, Outcome::Banned, now)
                    .expect("record");
                let u = now.plus(c.ban_block);
                let e = oracle.blocked.entry(t).or_insert(u);
                *e = (*e).max(u);
            }
            94..=96 => {
                if let Some((ticket, t)) = queued.pop() {
                    if f.adm.cancel(ticket, now).expect("cancel") {
                        oracle.global.retain(|p| p.0 != ticket);
                        if let Some(v) = oracle.tenant.get_mut(&t) {
                            v.retain(|p| p.0 != ticket);
                        }
                    }
                }
            }
            _ => {
                // The process dies and comes back: only the store survives.
                restarts += 1;
                queued.clear();
                f.adm = Admission::load(c.clone(), Arc::new(f.store.clone()), Some(step), now)
                    .expect("reload");
            }
        }
        assert!(
            Oracle::max_in_any_window(&oracle.global, HOUR) <= c.global_attempts_per_hour as usize
        );
    }
    for v in oracle.tenant.values() {
        assert!(Oracle::max_in_any_window(v, DAY) <= c.tenant_attempts_per_day as usize);
    }
    assert!(
        now.since(T0) > Duration::from_secs(14 * 24 * 3600),
        "weeks simulated"
    );
    assert!(
        admits > 500 && denials > 1000 && restarts > 100,
        "{admits} {denials} {restarts}"
    );
}

#[test]
fn pairing_codes_are_admitted_per_phone_and_per_egress_and_survive_a_restart() {
    let mut f = fx(cfg());
    let t = tenant(1);
    let code = |adm: &mut Admission, phone: &str, egress: &str, at: Timestamp| {
        adm.admit_pairing_code(&t, phone, egress, at)
            .expect("store works")
    };
    // Three codes an hour for one number (the default)...
    for m in [0u32, 10, 20] {
        assert_eq!(
            code(&mut f.adm, "5491100000001", "server", T0.plus(MIN * m)),
            Ok(())
        );
    }
    // ...the fourth waits until the first leaves the hour.
    let d = code(&mut f.adm, "5491100000001", "server", T0.plus(MIN * 30)).expect_err("refused");
    assert_eq!(d.reason, DenyReason::PairingCodeLimit);
    assert_eq!(d.reason.as_str(), "pairing_code_limit");
    assert_eq!(d.block_until, T0.plus(MIN * 60));
    assert_eq!(d.wait, MIN * 30);
    // Another number through the same path is still fine.
    assert_eq!(
        code(&mut f.adm, "5491100000002", "server", T0.plus(MIN * 30)),
        Ok(())
    );
    // A restart rebuilds the windows from the ledger.
    let mut again = Admission::load(cfg(), Arc::new(f.store.clone()), Some(2), T0.plus(MIN * 31))
        .expect("reload");
    assert!(code(&mut again, "5491100000001", "server", T0.plus(MIN * 31)).is_err());
    assert_eq!(
        code(&mut again, "5491100000001", "server", T0.plus(MIN * 61)),
        Ok(())
    );
}

#[test]
fn pairing_codes_through_one_egress_path_are_capped_whatever_the_number() {
    let mut c = cfg();
    c.pairing_codes_per_egress_per_hour = 2;
    let mut f = fx(c);
    let t = tenant(1);
    let proxy = "http://proxy.local:3128";
    for (n, m) in [(1u32, 0u32), (2, 5)] {
        let phone = format!("549110000000{n}");
        assert_eq!(
            f.adm
                .admit_pairing_code(&t, &phone, proxy, T0.plus(MIN * m))
                .expect("store"),
            Ok(())
        );
    }
    let d = f
        .adm
        .admit_pairing_code(&t, "5491100000003", proxy, T0.plus(MIN * 6))
        .expect("store")
        .expect_err("the path is capped");
    assert_eq!(
        (d.reason, d.block_until),
        (DenyReason::PairingCodeLimit, T0.plus(MIN * 60))
    );
    assert_eq!(
        f.adm
            .admit_pairing_code(&t, "5491100000003", "server", T0.plus(MIN * 6))
            .expect("store"),
        Ok(()),
        "another path is not"
    );
}

#[test]
fn a_refused_proxy_holds_the_tenant_on_that_path_until_an_admin_unblocks_it() {
    let mut f = fx(cfg());
    let (t, s) = (tenant(3), SessionId::new("s3").expect("id"));
    let path = "http://proxy.example:3128";
    f.adm
        .record_proxy_block(&t, &s, path, T0)
        .expect("record the hold");
    let through = |egress: &str, kind| AttemptRequest {
        egress: egress.into(),
        ..req(3, kind)
    };
    // No end time: a week later, restores included, it is still held.
    for kind in [AttemptKind::Connect, AttemptKind::Restore] {
        let d = denial(admit(&mut f.adm, &through(path, kind), T0.plus(7 * DAY)));
        assert_eq!(d.reason, DenyReason::ProxyBlock, "{kind:?}");
        assert_eq!(d.proxy.as_deref(), Some(path));
        assert!(d.is_hold());
    }
    let status = f.adm.tenant_status(&t, 0, T0.plus(MIN));
    assert_eq!(status.proxy_blocked, vec![path.to_owned()]);
    // Another path is another network: not held.
    admitted(admit(
        &mut f.adm,
        &through("http://other.example:3128", AttemptKind::Connect),
        T0.plus(MIN),
    ));
    // The hold survives a restart.
    let mut again = Admission::load(cfg(), Arc::new(f.store.clone()), Some(2), T0.plus(8 * DAY))
        .expect("reload");
    let d = denial(admit(
        &mut again,
        &through(path, AttemptKind::Connect),
        T0.plus(8 * DAY),
    ));
    assert_eq!(d.reason, DenyReason::ProxyBlock);
    assert!(again
        .unblock(&t, "root", T0.plus(8 * DAY))
        .expect("unblock"));
    admitted(admit(
        &mut again,
        &through(path, AttemptKind::Connect),
        T0.plus(8 * DAY),
    ));
    assert!(again
        .tenant_status(&t, 0, T0.plus(8 * DAY))
        .proxy_blocked
        .is_empty());
}

#[test]
fn a_stop_is_an_outcome_only_for_bans_and_failed_pairings() {
    use crate::session::SessionState as S;
    use DisconnectReason as R;
    let qr = S::Qr {
        code: "ref".into(),
        expires_at: T0,
        window_ends_at: T0,
    };
    let ready = S::Ready { me: "549".into() };
    for (from, paired) in [(&S::Connecting, false), (&qr, false), (&ready, true)] {
        assert_eq!(outcome_of(from, R::Banned, paired), Some(Outcome::Banned));
    }
    for reason in [R::QrTimeout, R::EngineError, R::BrowserCrashed] {
        assert_eq!(
            outcome_of(&qr, reason, false),
            Some(Outcome::Failure),
            "{reason:?} while pairing"
        );
        assert_eq!(
            outcome_of(&S::Connecting, reason, false),
            Some(Outcome::Failure)
        );
    }
    for reason in [R::EngineError, R::BrowserCrashed] {
        assert_eq!(
            outcome_of(&S::Connecting, reason, true),
            None,
            "paired: restored"
        );
        assert_eq!(outcome_of(&ready, reason, false), None, "after READY");
    }
    for reason in [R::Manual, R::Logout, R::Conflict, R::ProxyBlocked] {
        assert_eq!(outcome_of(&qr, reason, false), None, "{reason:?}");
    }
}

#[test]
fn backoff_doubles_up_to_the_cap() {
    let (b, m) = (Duration::from_secs(30), Duration::from_secs(300));
    assert_eq!(backoff(b, m, 0), Duration::from_secs(30));
    assert_eq!(backoff(b, m, 1), Duration::from_secs(60));
    assert_eq!(backoff(b, m, 3), Duration::from_secs(240));
    assert_eq!(backoff(b, m, 4), Duration::from_secs(300));
    assert_eq!(backoff(b, m, 40), Duration::from_secs(300));
}

#[test]
fn auto_reconnect_retries_only_local_faults_of_a_running_session_a_few_times() {
    use DesiredState::{Running, Stopped};
    use DisconnectReason as R;
    let on = AntibanConfig {
        auto_reconnect: true,
        reconnect_backoff_base: Duration::from_secs(30),
        reconnect_backoff_max: Duration::from_secs(300),
        reconnect_max_tries: 3,
        ..cfg()
    };
    for reason in [R::BrowserCrashed, R::EngineError] {
        assert_eq!(
            auto_reconnect_after(&on, reason, Running, 0),
            Some(Duration::from_secs(30)),
            "{reason:?}"
        );
        assert_eq!(
            auto_reconnect_after(&on, reason, Running, 2),
            Some(Duration::from_secs(120)),
            "the wait doubles per try"
        );
        assert_eq!(
            auto_reconnect_after(&on, reason, Running, 3),
            None,
            "tries spent"
        );
        assert_eq!(
            auto_reconnect_after(&on, reason, Stopped, 0),
            None,
            "nobody wants it running"
        );
        let off = AntibanConfig {
            auto_reconnect: false,
            ..on.clone()
        };
        assert_eq!(auto_reconnect_after(&off, reason, Running, 0), None, "off");
    }
    for reason in [
        R::NeverConnected,
        R::Manual,
        R::Logout,
        R::Conflict,
        R::QrTimeout,
        R::Banned,
        R::ProxyBlocked,
    ] {
        assert_eq!(
            auto_reconnect_after(&on, reason, Running, 0),
            None,
            "{reason:?} is not a local fault"
        );
    }
}

fn cloud(t: usize) -> AttemptRequest {
    AttemptRequest {
        engine: crate::engine::EngineKind::Cloud,
        ..req(t, AttemptKind::Connect)
    }
}

#[test]
fn cloud_connects_have_their_own_hourly_cap_and_spend_no_pairing_budget() {
    let mut f = fx(cfg());
    let cap = cfg().cloud_connects_per_hour;
    assert_eq!(cap, 12);
    // A banned tenant with its WhatsApp Web budgets spent...
    let (t, s) = (tenant(1), SessionId::new("s1").expect("id"));
    admitted(admit(&mut f.adm, &req(1, AttemptKind::Connect), T0));
    admitted(admit(&mut f.adm, &req(1, AttemptKind::Connect), T0));
    f.adm.record(&t, &s, Outcome::Banned, T0).expect("record");
    // ...still connects its cloud sessions, at once, outside the queue.
    for i in 0..cap {
        let now = T0.plus(MIN * i);
        let (_, start_at) = admitted(admit(&mut f.adm, &cloud(1), now));
        assert_eq!(start_at, now, "no connect delay, no queue spacing");
    }
    let d = denial(admit(&mut f.adm, &cloud(1), T0.plus(MIN * 30)));
    assert_eq!(d.reason, DenyReason::CloudConnectLimit);
    assert_eq!(
        d.block_until,
        T0.plus(HOUR),
        "when the first leaves the hour"
    );
    // Another tenant's cloud cap is its own, and the server's WhatsApp Web
    // budget is untouched by the twelve: one webjs slot is still free.
    admitted(admit(&mut f.adm, &cloud(2), T0.plus(MIN * 30)));
    admitted(admit(
        &mut f.adm,
        &req(3, AttemptKind::Connect),
        T0.plus(MIN * 30),
    ));
    // Persisted: a reload (a restart) keeps the count.
    let mut again = Admission::load(cfg(), Arc::new(f.store.clone()), Some(1), T0.plus(MIN * 31))
        .expect("load");
    let d = denial(admit(&mut again, &cloud(1), T0.plus(MIN * 31)));
    assert_eq!(d.reason, DenyReason::CloudConnectLimit);
    admitted(admit(&mut again, &cloud(1), T0.plus(HOUR + MIN)));
}
