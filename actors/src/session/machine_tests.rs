//! Exhaustive tests of the session state machine: every (state, event) pair
//! is listed once in `every_state_event_pair_has_the_specified_outcome` (on
//! a machine that has seen no scan), then the seed-002 guards and the 515
//! grace get a named test each.

use super::*;
use DisconnectReason as R;

const T0: Timestamp = Timestamp::from_millis(1_000_000);

fn timing() -> Timing {
    Timing {
        now: T0,
        qr_window: Duration::from_secs(60),
        qr_code_ttl: Duration::from_secs(20),
        restart_grace: Duration::from_secs(60),
    }
}

/// A machine in `state` that has seen no scan.
fn fresh(state: SessionState) -> Machine {
    Machine::new(state)
}

/// The expected move of a machine that has seen no scan and still has not.
fn moved(to: SessionState, effects: Vec<Effect>) -> Transition {
    moved_keeping(Scan::default(), to, effects)
}

/// The expected move of a scan at `T0`.
fn scanned(to: SessionState, effects: Vec<Effect>) -> Transition {
    moved_keeping(Scan::at(T0), to, effects)
}

fn qr_state() -> SessionState {
    SessionState::Qr {
        code: "ref1,k,i,a,web".into(),
        expires_at: T0.plus(Duration::from_secs(20)),
        window_ends_at: T0.plus(Duration::from_secs(60)),
    }
}

fn ready() -> SessionState {
    SessionState::Ready {
        me: "5491122334455".into(),
    }
}

fn all_states() -> Vec<(&'static str, SessionState)> {
    vec![
        ("disconnected", disconnected(R::Manual)),
        ("connecting", SessionState::Connecting),
        ("qr", qr_state()),
        ("authenticated", SessionState::Authenticated),
        ("ready", ready()),
    ]
}

fn all_events() -> Vec<(&'static str, Event)> {
    vec![
        ("connect", Event::Connect),
        ("force_new", Event::ForceNew),
        (
            "qr",
            Event::Qr {
                code: "ref2,k,i,a,web".into(),
            },
        ),
        ("authenticated", Event::Authenticated),
        (
            "ready",
            Event::Ready {
                me: "5491122334455".into(),
            },
        ),
        (
            "disconnected",
            Event::Disconnected {
                reason: R::Conflict,
            },
        ),
        ("stop", Event::Stop),
        ("logout", Event::Logout),
        ("qr_window_expired", Event::QrWindowExpired),
        ("stream_error_515", Event::StreamError515),
    ]
}

/// The expected outcome of every pair, written out as a table.
fn expected(state: &str, event: &str) -> Transition {
    use Effect::*;
    use SessionState as S;
    let new_qr = S::Qr {
        code: "ref2,k,i,a,web".into(),
        expires_at: T0.plus(Duration::from_secs(20)),
        window_ends_at: T0.plus(Duration::from_secs(60)),
    };
    let i = Transition::Ignored;
    match (state, event) {
        ("disconnected", "connect") => moved(S::Connecting, vec![StartDriver]),
        ("disconnected", "force_new") => moved(S::Connecting, vec![WipeProfile, StartDriver]),
        ("disconnected", "logout") => moved(disconnected(R::Logout), vec![WipeProfile]),
        ("disconnected", "stop") => i(Ignored::AlreadyStopped),
        ("disconnected", "qr_window_expired") => i(Ignored::StaleTimer),
        ("disconnected", _) => i(Ignored::NotLive),

        ("connecting", "connect" | "force_new") => i(Ignored::AlreadyLive),
        ("connecting", "qr") => moved(
            new_qr,
            vec![StartQrTimer {
                at: T0.plus(Duration::from_secs(60)),
            }],
        ),
        ("connecting", "authenticated") => moved(S::Authenticated, vec![]),
        ("connecting", "ready") => moved(ready(), vec![]),
        ("connecting", "disconnected") => moved(disconnected(R::Conflict), vec![StopDriver]),
        ("connecting", "stop") => moved(disconnected(R::Manual), vec![StopDriver]),
        ("connecting", "logout") => moved(disconnected(R::Logout), vec![LogoutDriver, WipeProfile]),
        ("connecting", "qr_window_expired") => i(Ignored::StaleTimer),
        ("connecting", "stream_error_515") => moved(disconnected(R::Banned), vec![StopDriver]),

        ("qr", "connect" | "force_new") => i(Ignored::AlreadyLive),
        ("qr", "qr") => moved(new_qr, vec![]),
        ("qr", "authenticated") => scanned(S::Authenticated, vec![CancelQrTimer]),
        ("qr", "ready") => scanned(ready(), vec![CancelQrTimer]),
        ("qr", "disconnected") => moved(disconnected(R::Conflict), vec![CancelQrTimer, StopDriver]),
        ("qr", "stop") => moved(disconnected(R::Manual), vec![CancelQrTimer, StopDriver]),
        ("qr", "logout") => moved(
            disconnected(R::Logout),
            vec![CancelQrTimer, StopDriver, WipeProfile],
        ),
        ("qr", "stream_error_515") => {
            moved(disconnected(R::Banned), vec![CancelQrTimer, StopDriver])
        }
        ("qr", "qr_window_expired") => moved(disconnected(R::QrTimeout), vec![StopDriver]),

        ("authenticated" | "ready", "connect") => i(Ignored::AlreadyLive),
        ("authenticated" | "ready", "force_new") => Transition::Refused(Refusal::SessionPaired),
        ("authenticated" | "ready", "qr") => i(Ignored::QrAfterAuthenticated),
        ("authenticated" | "ready", "authenticated") => i(Ignored::AlreadyAuthenticated),
        ("authenticated", "ready") => moved(ready(), vec![]),
        ("ready", "ready") => i(Ignored::AlreadyReady),
        ("authenticated" | "ready", "disconnected") => {
            moved(disconnected(R::Conflict), vec![StopDriver])
        }
        ("authenticated" | "ready", "stop") => moved(disconnected(R::Manual), vec![StopDriver]),
        ("authenticated" | "ready", "logout") => {
            moved(disconnected(R::Logout), vec![LogoutDriver, WipeProfile])
        }
        ("authenticated" | "ready", "qr_window_expired") => i(Ignored::StaleTimer),
        ("authenticated" | "ready", "stream_error_515") => {
            moved(disconnected(R::Banned), vec![StopDriver])
        }
        (s, e) => panic!("pair ({s}, {e}) missing from the table"),
    }
}

#[test]
fn every_state_event_pair_has_the_specified_outcome() {
    let mut checked = 0;
    for (sname, state) in all_states() {
        for (ename, event) in all_events() {
            let got = next(&fresh(state.clone()), &event, timing());
            assert_eq!(got, expected(sname, ename), "({sname}, {ename})");
            checked += 1;
        }
    }
    assert_eq!(checked, 50);
}

#[test]
fn qr_after_authenticated_is_ignored() {
    let got = next(
        &fresh(SessionState::Authenticated),
        &Event::Qr { code: "x".into() },
        timing(),
    );
    assert_eq!(got, Transition::Ignored(Ignored::QrAfterAuthenticated));
}

#[test]
fn qr_after_ready_is_ignored() {
    let got = next(&fresh(ready()), &Event::Qr { code: "x".into() }, timing());
    assert_eq!(got, Transition::Ignored(Ignored::QrAfterAuthenticated));
}

#[test]
fn ready_is_processed_once() {
    let first = next(
        &fresh(SessionState::Authenticated),
        &Event::Ready { me: "1".into() },
        timing(),
    );
    let Transition::Moved { to, .. } = first else {
        panic!("first ready must move: {first:?}");
    };
    let second = next(&to, &Event::Ready { me: "2".into() }, timing());
    assert_eq!(second, Transition::Ignored(Ignored::AlreadyReady));
}

#[test]
fn qr_timer_is_cancelled_on_scan() {
    let got = next(&fresh(qr_state()), &Event::Authenticated, timing());
    let Transition::Moved { effects, .. } = got else {
        panic!("scan must move");
    };
    assert_eq!(effects, vec![Effect::CancelQrTimer]);
}

#[test]
fn connect_on_a_live_session_never_starts_a_second_driver() {
    for state in [
        SessionState::Connecting,
        qr_state(),
        SessionState::Authenticated,
        ready(),
    ] {
        let got = next(&fresh(state.clone()), &Event::Connect, timing());
        assert_eq!(got, Transition::Ignored(Ignored::AlreadyLive), "{state:?}");
    }
}

#[test]
fn force_new_on_ready_is_refused() {
    let got = next(&fresh(ready()), &Event::ForceNew, timing());
    assert_eq!(got, Transition::Refused(Refusal::SessionPaired));
}

#[test]
fn qr_rotation_keeps_the_window_and_renews_the_code_expiry() {
    let later = Timing {
        now: T0.plus(Duration::from_secs(50)),
        ..timing()
    };
    let got = next(
        &fresh(qr_state()),
        &Event::Qr {
            code: "ref3".into(),
        },
        later,
    );
    let expected = SessionState::Qr {
        code: "ref3".into(),
        // capped by the window end, not now + ttl
        expires_at: T0.plus(Duration::from_secs(60)),
        window_ends_at: T0.plus(Duration::from_secs(60)),
    };
    assert_eq!(got, moved(expected, vec![]));
}

#[test]
fn engine_reported_logout_wipes_the_profile() {
    let got = next(
        &fresh(ready()),
        &Event::Disconnected { reason: R::Logout },
        timing(),
    );
    assert_eq!(
        got,
        moved(
            disconnected(R::Logout),
            vec![Effect::StopDriver, Effect::WipeProfile]
        )
    );
}

#[test]
fn ban_keeps_the_profile() {
    let got = next(
        &fresh(ready()),
        &Event::Disconnected { reason: R::Banned },
        timing(),
    );
    assert_eq!(
        got,
        moved(disconnected(R::Banned), vec![Effect::StopDriver])
    );
}

#[test]
fn reasons_serialize_in_snake_case() {
    let json = serde_json::to_string(&disconnected(R::QrTimeout)).expect("serialize");
    assert_eq!(json, r#"{"state":"DISCONNECTED","reason":"qr_timeout"}"#);
    for r in [
        R::NeverConnected,
        R::Manual,
        R::Logout,
        R::Conflict,
        R::QrTimeout,
        R::Banned,
        R::BrowserCrashed,
        R::EngineError,
    ] {
        let json = serde_json::to_string(&r).expect("serialize");
        assert_eq!(json, format!("\"{}\"", r.as_str()));
    }
}

/// `timing()` at `now`.
fn timing_at(now: Timestamp) -> Timing {
    Timing { now, ..timing() }
}

/// Whether `next` read the 515 as a restart (rather than a ban).
fn is_restart(transition: &Transition) -> bool {
    match transition {
        Transition::Moved { to, .. } => to.state == SessionState::Connecting,
        other => panic!("a 515 on a live session must move: {other:?}"),
    }
}

#[test]
fn only_the_first_515_soon_after_a_scan_is_a_restart() {
    // grace: 60 s (timing()); the scan is at T0.
    let Transition::Moved { to: paired, .. } =
        next(&fresh(qr_state()), &Event::Authenticated, timing())
    else {
        panic!("a scan must move");
    };
    let soon = timing_at(T0.plus(Duration::from_secs(10)));
    let late = timing_at(T0.plus(Duration::from_secs(61)));
    let first = next(&paired, &Event::StreamError515, soon);
    assert!(is_restart(&first));
    let Transition::Moved { to: restarted, .. } = first else {
        unreachable!("checked above");
    };
    let Transition::Moved { to: restored, .. } = next(&restarted, &Event::Authenticated, soon)
    else {
        panic!("the restarted driver's restored pairing must move");
    };
    assert!(
        !is_restart(&next(&restored, &Event::StreamError515, soon)),
        "only once"
    );
    assert!(
        !is_restart(&next(&paired, &Event::StreamError515, late)),
        "outside the grace"
    );
    assert!(
        !is_restart(&next(
            &fresh(SessionState::Authenticated),
            &Event::StreamError515,
            soon
        )),
        "never scanned (restored)"
    );
}

#[test]
fn a_granted_515_restarts_the_driver_on_the_same_pairing_from_every_live_state() {
    use Effect::*;
    let just_scanned = Scan::at(T0);
    let spent = just_scanned.restart_spent();
    for (state, effects) in [
        (SessionState::Connecting, vec![StopDriver, StartDriver]),
        (qr_state(), vec![CancelQrTimer, StopDriver, StartDriver]),
        (SessionState::Authenticated, vec![StopDriver, StartDriver]),
        (ready(), vec![StopDriver, StartDriver]),
    ] {
        let m = Machine {
            state: state.clone(),
            scan: just_scanned,
        };
        let got = next(&m, &Event::StreamError515, timing());
        assert_eq!(
            got,
            moved_keeping(spent, SessionState::Connecting, effects),
            "{state:?}"
        );
    }
}

#[test]
fn the_scan_memory_never_reaches_the_json() {
    let m = next(
        &fresh(qr_state()),
        &Event::Ready { me: "1".into() },
        timing(),
    );
    let Transition::Moved { to, .. } = m else {
        panic!("a scan must move");
    };
    let json = serde_json::to_string(&to.state).expect("serialize");
    assert_eq!(json, r#"{"state":"READY","me":"1"}"#);
}
