//! What the page agent (`inject.js`) reports, how each report is bounded
//! and typed before anything else sees it, and how a driver turns reports
//! into [`EngineEvent`]s. Pure apart from the counters: the mapping is
//! tested without a browser.
//!
//! The page is not trusted: WhatsApp Web (or whoever serves a page on its
//! address) can call the binding with anything. A report over
//! [`MAX_REPORT`] bytes, of an unknown shape, or with a field out of bounds
//! is dropped and counted, and never logged whole.

use centinela_actors::engine::stats::count_skipped;
use centinela_actors::engine::EngineEvent;
use centinela_actors::session::DisconnectReason;
use serde::Deserialize;

/// Largest page report read (bytes of JSON).
pub const MAX_REPORT: usize = 64 * 1024;
/// Longest text a message may carry (WhatsApp's own limit).
const MAX_TEXT: usize = 65_536;
/// Longest id, jid, version, state or detail string.
const MAX_ID: usize = 256;

/// One report from the page, as JSON through the CDP binding.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(tag = "ev", rename_all = "snake_case", deny_unknown_fields)]
pub enum PageEvent {
    /// The agent found `Debug.VERSION` and the socket module.
    Injected { version: String },
    /// `Socket.state` changed (or its value at attach).
    State { state: String },
    /// A QR to show, built from the page's own key material.
    Qr { qr: String },
    /// `hasSynced`: ready; `me` is the linked number's digits.
    Synced { me: Option<String> },
    /// After `synced`: every write the page made to its IndexedDB so far
    /// has committed (a read transaction on each of its databases
    /// completed after them), so the pairing survives a kill.
    Durable,
    /// The page's logout: `Cmd` `logout`/`logout_from_bridge`, or a document
    /// loaded at `?post_logout=1`.
    Logout { why: String },
    /// A new 1:1 text message.
    Message {
        id: String,
        from: String,
        jid: String,
        text: String,
    },
    /// A new message that is not a 1:1 text (group, status, other types,
    /// history): counted, not reported.
    Skipped { kind: String },
    /// A sent message's ack moved.
    Ack { id: String, ack: i8 },
    /// A module the agent needs never registered.
    Missing { module: String },
    /// The agent failed.
    Error { message: String },
}

/// Why a report was dropped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rejected {
    TooLarge,
    Malformed,
    OutOfBounds,
}

fn bounded(s: &str, max: usize) -> bool {
    s.len() <= max
}

fn phone_ok(p: &str) -> bool {
    (6..=15).contains(&p.len()) && p.bytes().all(|b| b.is_ascii_digit())
}

impl PageEvent {
    /// Reads one report: size-capped, typed, every field bounded.
    pub fn parse(payload: &str) -> Result<PageEvent, Rejected> {
        if payload.len() > MAX_REPORT {
            return Err(Rejected::TooLarge);
        }
        let event: PageEvent = serde_json::from_str(payload).map_err(|_| Rejected::Malformed)?;
        if event.in_bounds() {
            Ok(event)
        } else {
            Err(Rejected::OutOfBounds)
        }
    }

    fn in_bounds(&self) -> bool {
        match self {
            PageEvent::Injected { version: s }
            | PageEvent::State { state: s }
            | PageEvent::Logout { why: s }
            | PageEvent::Skipped { kind: s }
            | PageEvent::Missing { module: s } => bounded(s, MAX_ID),
            PageEvent::Error { message } => bounded(message, 4 * MAX_ID),
            PageEvent::Qr { qr } => bounded(qr, 4 * MAX_ID),
            PageEvent::Synced { me } => me.as_deref().is_none_or(phone_ok),
            PageEvent::Durable => true,
            PageEvent::Message {
                id,
                from,
                jid,
                text,
            } => {
                !id.is_empty()
                    && bounded(id, MAX_ID)
                    && phone_ok(from)
                    && bounded(jid, MAX_ID)
                    && text.chars().count() <= MAX_TEXT
            }
            PageEvent::Ack { id, ack } => bounded(id, MAX_ID) && (-1..=4).contains(ack),
        }
    }
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
            PageEvent::Durable if self.ready => vec![EngineEvent::PairingDurable],
            PageEvent::Durable => Vec::new(),
            // A logout before pairing is the page starting over (e.g. the
            // document after our own logout); nothing was paired to lose.
            PageEvent::Logout { why } if self.paired => end(self, DisconnectReason::Logout, &why),
            PageEvent::Logout { .. } => Vec::new(),
            PageEvent::Message {
                id,
                from,
                jid,
                text,
            } => vec![EngineEvent::MessageIn {
                id,
                from,
                jid,
                text,
            }],
            PageEvent::Skipped { kind } => {
                count_skipped(&kind);
                Vec::new()
            }
            PageEvent::Ack { id, ack } => vec![EngineEvent::Ack {
                message_id: id,
                ack,
            }],
            PageEvent::Missing { module } => end(
                self,
                DisconnectReason::EngineError,
                &format!("WhatsApp Web has no module {module}"),
            ),
            PageEvent::Error { message } => end(self, DisconnectReason::EngineError, &message),
        }
    }

    /// `Socket.state` → disconnect reasons (WAWEB-CONTRACT.md, logout,
    /// conflict, bans; whatsapp-web.js `Constants.js` `WAState`).
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
            "TOS_BLOCK" | "SMB_TOS_BLOCK" => end(self, DisconnectReason::Banned, state),
            "PROXYBLOCK" => end(self, DisconnectReason::ProxyBlocked, state),
            "DEPRECATED_VERSION" => end(self, DisconnectReason::EngineError, state),
            _ => Vec::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use centinela_actors::engine::stats::counters;

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
                me: Some("5491122334455".into())
            }),
            vec![EngineEvent::Ready {
                me: "5491122334455".into()
            }]
        );
        assert_eq!(
            t.on(PageEvent::Synced {
                me: Some("5491122334455".into())
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
                me: Some("5491122334455".into())
            }),
            vec![
                EngineEvent::Authenticated,
                EngineEvent::Ready {
                    me: "5491122334455".into()
                }
            ]
        );
    }

    #[test]
    fn states_map_to_disconnect_reasons_once() {
        for (s, reason) in [
            ("CONFLICT", DisconnectReason::Conflict),
            ("TOS_BLOCK", DisconnectReason::Banned),
            ("SMB_TOS_BLOCK", DisconnectReason::Banned),
            ("PROXYBLOCK", DisconnectReason::ProxyBlocked),
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
        let got = t.on(PageEvent::Logout {
            why: "logout_from_bridge".into(),
        });
        assert_eq!(
            got,
            vec![EngineEvent::Disconnected {
                reason: DisconnectReason::Logout,
                detail: "logout_from_bridge".into()
            }]
        );
        assert_eq!(t.on(state("UNPAIRED")), vec![]);
        assert_eq!(
            t.on(PageEvent::Logout {
                why: "post_logout".into()
            }),
            vec![]
        );
    }

    #[test]
    fn unpaired_or_logout_before_pairing_is_not_a_logout() {
        let mut t = PageTracker::default();
        assert_eq!(t.on(state("UNPAIRED_IDLE")), vec![]);
        assert_eq!(
            t.on(PageEvent::Logout {
                why: "post_logout".into()
            }),
            vec![]
        );
    }

    #[test]
    fn a_missing_module_ends_the_session_naming_it() {
        let mut t = PageTracker::default();
        assert_eq!(
            t.on(PageEvent::Missing {
                module: "WAWebMsgKey".into()
            }),
            vec![EngineEvent::Disconnected {
                reason: DisconnectReason::EngineError,
                detail: "WhatsApp Web has no module WAWebMsgKey".into()
            }]
        );
    }

    #[test]
    fn messages_and_acks_pass_through_and_skips_are_counted() {
        let mut t = PageTracker::default();
        assert_eq!(
            t.on(PageEvent::Ack {
                id: "true_549@c.us_3EB0".into(),
                ack: 3
            }),
            vec![EngineEvent::Ack {
                message_id: "true_549@c.us_3EB0".into(),
                ack: 3
            }]
        );
        let json = r#"{"ev":"message","id":"false_1234567@lid_3A","from":"5491100000003","jid":"1234567@lid","text":"hola"}"#;
        let ev = PageEvent::parse(json).expect("parse");
        assert_eq!(
            t.on(ev),
            vec![EngineEvent::MessageIn {
                id: "false_1234567@lid_3A".into(),
                from: "5491100000003".into(),
                jid: "1234567@lid".into(),
                text: "hola".into()
            }]
        );
        let before = counters().skipped_group;
        assert_eq!(
            t.on(PageEvent::Skipped {
                kind: "group".into()
            }),
            vec![]
        );
        assert!(counters().skipped_group > before);
    }

    #[test]
    fn reports_are_capped_typed_and_bounded() {
        let big = format!(
            r#"{{"ev":"message","id":"x","from":"5491100000003","jid":"j","text":"{}"}}"#,
            "a".repeat(MAX_REPORT)
        );
        assert_eq!(PageEvent::parse(&big), Err(Rejected::TooLarge));
        assert_eq!(PageEvent::parse("not json"), Err(Rejected::Malformed));
        assert_eq!(
            PageEvent::parse(r#"{"ev":"state","state":"X","extra":1}"#),
            Err(Rejected::Malformed)
        );
        assert_eq!(
            PageEvent::parse(r#"{"ev":"ack","id":"x","ack":"3"}"#),
            Err(Rejected::Malformed)
        );
        for bad in [
            r#"{"ev":"message","id":"x","from":"12ab","jid":"j","text":"t"}"#,
            r#"{"ev":"message","id":"","from":"5491100000003","jid":"j","text":"t"}"#,
            r#"{"ev":"ack","id":"x","ack":9}"#,
            r#"{"ev":"synced","me":"not digits"}"#,
        ] {
            assert_eq!(PageEvent::parse(bad), Err(Rejected::OutOfBounds), "{bad}");
        }
        let long_id = format!(
            r#"{{"ev":"ack","id":"{}","ack":1}}"#,
            "i".repeat(MAX_ID + 1)
        );
        assert_eq!(PageEvent::parse(&long_id), Err(Rejected::OutOfBounds));
    }
}
