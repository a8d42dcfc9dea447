//! What the page agent (`inject.js`) reports, and how a driver turns those
//! reports into [`EngineEvent`]s. Pure: the mapping is tested without a
//! browser.

use crate::engine::EngineEvent;
use crate::session::DisconnectReason;
use serde::Deserialize;

/// One report from the page, as JSON through the CDP binding.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(tag = "ev", rename_all = "snake_case")]
pub enum PageEvent {
    Injected {
        version: String,
    },
    State {
        state: String,
    },
    Qr {
        qr: String,
    },
    Synced {
        me: Option<String>,
    },
    StreamError {
        code: u16,
    },
    Logout,
    Message {
        id: String,
        from: String,
        text: String,
    },
    Ack {
        id: String,
        ack: i8,
    },
    Error {
        message: String,
    },
}

/// Per-driver memory: has this page been paired, has it been reported ready,
/// has the session ended. Turns page reports into engine events once each.
#[derive(Debug, Default, Clone)]
pub struct PageTracker {
    paired: bool,
    ready: bool,
    ended: bool,
}

fn end(tracker: &mut PageTracker, reason: DisconnectReason, detail: &str) -> Vec<EngineEvent> {
    if tracker.ended {
        return Vec::new();
    }
    tracker.ended = true;
    vec![EngineEvent::Disconnected {
        reason,
        detail: detail.to_owned(),
    }]
}

impl PageTracker {
    pub fn on(&mut self, event: PageEvent) -> Vec<EngineEvent> {
        if self.ended {
            return Vec::new();
        }
        match event {
            PageEvent::Injected { .. } => Vec::new(),
            PageEvent::State { state } => self.on_state(&state),
            PageEvent::Qr { qr } if !self.paired => vec![EngineEvent::Qr { code: qr }],
            PageEvent::Qr { .. } => Vec::new(),
            PageEvent::Synced { me } => {
                let mut out = Vec::new();
                if !self.paired {
                    self.paired = true;
                    out.push(EngineEvent::Authenticated);
                }
                if !self.ready {
                    self.ready = true;
                    out.push(EngineEvent::Ready {
                        me: me.unwrap_or_default(),
                    });
                }
                out
            }
            PageEvent::StreamError { code } => vec![EngineEvent::StreamError { code }],
            PageEvent::Logout => end(self, DisconnectReason::Logout, "logout"),
            PageEvent::Message { id, from, text } => {
                vec![EngineEvent::MessageIn { id, from, text }]
            }
            PageEvent::Ack { id, ack } => vec![EngineEvent::Ack {
                message_id: id,
                ack,
            }],
            PageEvent::Error { message } => end(self, DisconnectReason::EngineError, &message),
        }
    }

    fn on_state(&mut self, state: &str) -> Vec<EngineEvent> {
        match state {
            "CONNECTED" if !self.paired => {
                self.paired = true;
                vec![EngineEvent::Authenticated]
            }
            "UNPAIRED" | "UNPAIRED_IDLE" if self.paired => {
                end(self, DisconnectReason::Logout, state)
            }
            "CONFLICT" => end(self, DisconnectReason::Conflict, state),
            "TOS_BLOCK" | "SMB_TOS_BLOCK" | "PROXYBLOCK" => {
                end(self, DisconnectReason::Banned, state)
            }
            "DEPRECATED_VERSION" => end(self, DisconnectReason::EngineError, state),
            _ => Vec::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state(s: &str) -> PageEvent {
        PageEvent::State { state: s.into() }
    }

    #[test]
    fn a_fresh_page_shows_qrs_then_pairs_then_is_ready_once() {
        let mut t = PageTracker::default();
        assert_eq!(t.on(state("UNPAIRED")), vec![]);
        assert_eq!(
            t.on(PageEvent::Qr {
                qr: "r,a,b,c,web".into()
            }),
            vec![EngineEvent::Qr {
                code: "r,a,b,c,web".into()
            }]
        );
        assert_eq!(t.on(state("CONNECTED")), vec![EngineEvent::Authenticated]);
        assert_eq!(
            t.on(PageEvent::Qr { qr: "late".into() }),
            vec![],
            "no QR after pairing"
        );
        assert_eq!(
            t.on(PageEvent::Synced {
                me: Some("549".into())
            }),
            vec![EngineEvent::Ready { me: "549".into() }]
        );
        assert_eq!(
            t.on(PageEvent::Synced {
                me: Some("549".into())
            }),
            vec![],
            "ready once"
        );
    }

    #[test]
    fn a_restored_page_is_authenticated_and_ready_without_a_qr() {
        let mut t = PageTracker::default();
        assert_eq!(
            t.on(PageEvent::Synced {
                me: Some("549".into())
            }),
            vec![
                EngineEvent::Authenticated,
                EngineEvent::Ready { me: "549".into() }
            ]
        );
    }

    #[test]
    fn states_map_to_disconnect_reasons_once() {
        for (s, reason) in [
            ("CONFLICT", DisconnectReason::Conflict),
            ("TOS_BLOCK", DisconnectReason::Banned),
            ("SMB_TOS_BLOCK", DisconnectReason::Banned),
            ("PROXYBLOCK", DisconnectReason::Banned),
            ("DEPRECATED_VERSION", DisconnectReason::EngineError),
        ] {
            let mut t = PageTracker::default();
            let got = t.on(state(s));
            assert_eq!(
                got,
                vec![EngineEvent::Disconnected {
                    reason,
                    detail: s.into()
                }]
            );
            assert_eq!(t.on(state(s)), vec![], "ended");
        }
    }

    #[test]
    fn logout_after_pairing_ends_once_whichever_signal_comes_first() {
        let mut t = PageTracker::default();
        t.on(state("CONNECTED"));
        let got = t.on(PageEvent::Logout);
        assert!(matches!(
            got.as_slice(),
            [EngineEvent::Disconnected {
                reason: DisconnectReason::Logout,
                ..
            }]
        ));
        assert_eq!(t.on(state("UNPAIRED")), vec![]);
    }

    #[test]
    fn unpaired_before_pairing_is_not_a_logout() {
        let mut t = PageTracker::default();
        assert_eq!(t.on(state("UNPAIRED_IDLE")), vec![]);
    }

    #[test]
    fn stream_errors_messages_and_acks_pass_through() {
        let mut t = PageTracker::default();
        assert_eq!(
            t.on(PageEvent::StreamError { code: 515 }),
            vec![EngineEvent::StreamError { code: 515 }]
        );
        assert_eq!(
            t.on(PageEvent::Ack {
                id: "m1".into(),
                ack: 3
            }),
            vec![EngineEvent::Ack {
                message_id: "m1".into(),
                ack: 3
            }]
        );
        let json = r#"{"ev":"message","id":"x","from":"549","text":"hola"}"#;
        let ev: PageEvent = serde_json::from_str(json).expect("parse");
        assert_eq!(
            t.on(ev),
            vec![EngineEvent::MessageIn {
                id: "x".into(),
                from: "549".into(),
                text: "hola".into()
            }]
        );
    }
}
