//! Exhaustive tests of the session state machine: every (state, event) pair
//! is listed once in `every_state_event_pair_has_the_specified_outcome`, then
//! the seed-002 guards get a named test each.

use super::*;
use DisconnectReason as R;

const T0: Timestamp = Timestamp::from_millis(1_000_000);

fn timing() -> Timing {
    Timing {
        now: T0,
        qr_window: Duration::from_secs(60),
        qr_code_ttl: Duration::from_secs(20),
    }
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
        ("restart_required", Event::RestartRequired),
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
        ("connecting", "restart_required") => moved(S::Connecting, vec![StopDriver, StartDriver]),

        ("qr", "connect" | "force_new") => i(Ignored::AlreadyLive),
        ("qr", "qr") => moved(new_qr, vec![]),
        ("qr", "authenticated") => moved(S::Authenticated, vec![CancelQrTimer]),
        ("qr", "ready") => moved(ready(), vec![CancelQrTimer]),
        ("qr", "disconnected") => moved(disconnected(R::Conflict), vec![CancelQrTimer, StopDriver]),
        ("qr", "stop") => moved(disconnected(R::Manual), vec![CancelQrTimer, StopDriver]),
        ("qr", "logout") => moved(
            disconnected(R::Logout),
            vec![CancelQrTimer, StopDriver, WipeProfile],
        ),
        ("qr", "restart_required") => {
            moved(S::Connecting, vec![CancelQrTimer, StopDriver, StartDriver])
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
        ("authenticated" | "ready", "restart_required") => {
            moved(S::Connecting, vec![StopDriver, StartDriver])
        }
        (s, e) => panic!("pair ({s}, {e}) missing from the table"),
    }
}

#[test]
fn every_state_event_pair_has_the_specified_outcome() {
    let mut checked = 0;
    for (sname, state) in all_states() {
        for (ename, event) in all_events() {
            let got = next(&state, &event, timing());
            assert_eq!(got, expected(sname, ename), "({sname}, {ename})");
            checked += 1;
        }
    }
    assert_eq!(checked, 50);
}

#[test]
fn qr_after_authenticated_is_ignored() {
    let got = next(
        &SessionState::Authenticated,
        &Event::Qr { code: "x".into() },
        timing(),
    );
    assert_eq!(got, Transition::Ignored(Ignored::QrAfterAuthenticated));
}

#[test]
fn qr_after_ready_is_ignored() {
    let got = next(&ready(), &Event::Qr { code: "x".into() }, timing());
    assert_eq!(got, Transition::Ignored(Ignored::QrAfterAuthenticated));
}

#[test]
fn ready_is_processed_once() {
    let first = next(
        &SessionState::Authenticated,
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
    let got = next(&qr_state(), &Event::Authenticated, timing());
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
        let got = next(&state, &Event::Connect, timing());
        assert_eq!(got, Transition::Ignored(Ignored::AlreadyLive), "{state:?}");
    }
}

#[test]
fn force_new_on_ready_is_refused() {
    let got = next(&ready(), &Event::ForceNew, timing());
    assert_eq!(got, Transition::Refused(Refusal::SessionPaired));
}

#[test]
fn qr_rotation_keeps_the_window_and_renews_the_code_expiry() {
    let later = Timing {
        now: T0.plus(Duration::from_secs(50)),
        ..timing()
    };
    let got = next(
        &qr_state(),
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
        &ready(),
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
        &ready(),
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

#[test]
fn only_the_first_515_soon_after_a_scan_is_a_restart() {
    let grace = Duration::from_secs(60);
    let scan = T0;
    let soon = T0.plus(Duration::from_secs(10));
    let late = T0.plus(Duration::from_secs(61));
    assert!(stream_error_515_is_restart(Some(scan), false, soon, grace));
    assert!(
        !stream_error_515_is_restart(Some(scan), true, soon, grace),
        "only once"
    );
    assert!(
        !stream_error_515_is_restart(Some(scan), false, late, grace),
        "outside the grace"
    );
    assert!(
        !stream_error_515_is_restart(None, false, soon, grace),
        "never scanned (restored)"
    );
}
