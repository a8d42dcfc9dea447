//! `/api/v1/sessions/{id}/chats`: a session's conversations, built from
//! what the store already keeps — the inbox (incoming, the last 1,000 per
//! session) and the outbox (outgoing, the last [`OUTGOING_KEPT`] read, so
//! the cost does not grow with the history) — grouped by the other party's
//! number. The chat list is newest first; a thread merges both directions,
//! newest first, paged with an opaque cursor. Nothing is stored here: what
//! a person has already read is the dashboard's to remember (per user, in
//! the browser), so the list gives each chat's incoming count and last
//! incoming sequence number for it to compare with.

use crate::auth::Caller;
use crate::error::ApiError;
use crate::extract::{AppPath, AppQuery};
use crate::messages::normalize_phone;
use crate::openapi::{Access, Doc, Routes};
use crate::sessions::visible;
use crate::AppState;
use axum::extract::State;
use axum::routing::get;
use axum::Json;
use centinela_actors::clock::Timestamp;
use centinela_actors::store::{Deferral, IncomingRecord, MessageRecord, MessageStatus};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use utoipa::{IntoParams, ToSchema};

/// The inbox keeps at most this many incoming messages per session.
const INBOX_KEPT: usize = 1000;
/// The newest outgoing messages of a session the chats are built from:
/// older ones are in the messages API (`GET …/messages`, paged).
pub const OUTGOING_KEPT: usize = 10_000;

pub fn routes() -> Routes {
    const ONE: &[(u16, &str)] = &[
        (200, "ok"),
        (400, "bad input"),
        (401, "no credentials"),
        (403, "another tenant's"),
        (404, "not found"),
    ];
    Routes::new()
        .route(
            "/api/v1/sessions/{id}/chats",
            get(list),
            vec![Doc::new(
                "GET",
                "messages",
                "A session's chats (one per number it exchanged messages with), newest first, with incoming counts",
                Access::Authenticated,
                ONE,
            )
            .reply::<ChatList>()],
        )
        .route(
            "/api/v1/sessions/{id}/chats/{peer}",
            get(thread),
            vec![Doc::new(
                "GET",
                "messages",
                "One chat's messages, both directions, newest first (?limit, ?before)",
                Access::Authenticated,
                ONE,
            )
            .query::<ThreadPage>()
            .reply::<Thread>()],
        )
}

/// One conversation in the list.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct ChatSummary {
    /// The other party's number (digits).
    pub peer: String,
    /// The newest message either way.
    pub last_text: String,
    pub last_at: Timestamp,
    pub last_direction: Direction,
    /// Incoming messages of this chat still in the inbox.
    pub incoming: usize,
    /// The inbox sequence number of its newest incoming message: an
    /// unread count is the incoming ones past what the reader last saw.
    pub last_incoming_seq: Option<u64>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Direction {
    In,
    Out,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ChatList {
    pub chats: Vec<ChatSummary>,
}

/// One message of a thread, either way.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct ThreadItem {
    pub direction: Direction,
    /// The outgoing message's id (for `…/messages/{mid}` and the
    /// `message_status` events), or the incoming one's WhatsApp id.
    pub id: String,
    pub text: String,
    /// When it was accepted (outgoing) or received (incoming).
    pub at: Timestamp,
    /// Outgoing only: queued, deferred, sent, delivered, read, failed...
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status: Option<MessageStatus>,
    /// Outgoing only: why it failed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Outgoing only, while deferred: why and until when.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub deferred: Option<Deferral>,
    /// Incoming only: its inbox sequence number.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub seq: Option<u64>,
    /// Pass as `?before=` to read what came before this message.
    pub cursor: String,
}

/// A page of one chat.
#[derive(Debug, Serialize, ToSchema)]
pub struct Thread {
    pub peer: String,
    pub messages: Vec<ThreadItem>,
    /// Pass as `?before=` for the page before; null on the last.
    pub next_before: Option<String>,
}

/// A page of a thread.
#[derive(Deserialize, IntoParams)]
pub struct ThreadPage {
    /// 1-200, default 30.
    limit: Option<usize>,
    /// The `next_before` of the page before (or any message's `cursor`).
    before: Option<String>,
}

fn item_in(m: &IncomingRecord) -> ThreadItem {
    ThreadItem {
        direction: Direction::In,
        id: m.id.clone(),
        text: m.text.clone(),
        at: m.at,
        status: None,
        error: None,
        deferred: None,
        seq: Some(m.seq),
        cursor: cursor(m.at, &m.id),
    }
}

fn item_out(m: &MessageRecord) -> ThreadItem {
    ThreadItem {
        direction: Direction::Out,
        id: m.id.clone(),
        text: m.text.clone(),
        at: m.created_at,
        status: Some(m.status),
        error: m.error.clone(),
        deferred: m.deferred,
        seq: None,
        cursor: cursor(m.created_at, &m.id),
    }
}

/// A position in a thread: its time, then its id (ids break ties).
fn cursor(at: Timestamp, id: &str) -> String {
    format!("{}_{id}", at.as_millis())
}

fn parse_cursor(raw: &str) -> Option<(Timestamp, String)> {
    let (ms, id) = raw.split_once('_')?;
    Some((Timestamp::from_millis(ms.parse().ok()?), id.to_owned()))
}

/// Newest first, by time then id.
fn newest_first(items: &mut [ThreadItem]) {
    items.sort_by(|a, b| b.at.cmp(&a.at).then_with(|| b.id.cmp(&a.id)));
}

/// The chats of these messages, newest first.
pub fn chat_list(incoming: &[IncomingRecord], outgoing: &[MessageRecord]) -> Vec<ChatSummary> {
    // Each chat with the id of its newest message (ids break time ties).
    let mut chats: HashMap<&str, (ChatSummary, String)> = HashMap::new();
    let items = incoming
        .iter()
        .map(|m| (m.from.as_str(), item_in(m)))
        .chain(outgoing.iter().map(|m| (m.to.as_str(), item_out(m))));
    for (peer, item) in items {
        let (chat, last_id) = chats.entry(peer).or_insert_with(|| {
            let chat = ChatSummary {
                peer: peer.to_owned(),
                last_text: item.text.clone(),
                last_at: item.at,
                last_direction: item.direction,
                incoming: 0,
                last_incoming_seq: None,
            };
            (chat, item.id.clone())
        });
        if (item.at, &item.id) > (chat.last_at, &*last_id) {
            chat.last_text = item.text.clone();
            chat.last_at = item.at;
            chat.last_direction = item.direction;
            *last_id = item.id.clone();
        }
        if let Some(seq) = item.seq {
            chat.incoming += 1;
            chat.last_incoming_seq = chat.last_incoming_seq.max(Some(seq));
        }
    }
    let mut list: Vec<ChatSummary> = chats.into_values().map(|(c, _)| c).collect();
    list.sort_by(|a, b| b.last_at.cmp(&a.last_at).then_with(|| a.peer.cmp(&b.peer)));
    list
}

/// One page of the thread with `peer`: up to `limit` messages older than
/// `before`, newest first, and the cursor of the page after, if any.
pub fn thread_page(
    incoming: &[IncomingRecord],
    outgoing: &[MessageRecord],
    peer: &str,
    limit: usize,
    before: Option<&(Timestamp, String)>,
) -> (Vec<ThreadItem>, Option<String>) {
    let mut items: Vec<ThreadItem> = incoming
        .iter()
        .filter(|m| m.from == peer)
        .map(item_in)
        .chain(outgoing.iter().filter(|m| m.to == peer).map(item_out))
        .filter(|i| before.is_none_or(|(at, id)| (i.at, &i.id) < (*at, id)))
        .collect();
    newest_first(&mut items);
    let more = items.len() > limit;
    items.truncate(limit);
    let next = more
        .then(|| items.last().map(|i| i.cursor.clone()))
        .flatten();
    (items, next)
}

/// The session's recent messages, both ways: the whole inbox and the
/// newest [`OUTGOING_KEPT`] outgoing ones.
fn all_messages(
    state: &AppState,
    session: &centinela_actors::ids::SessionId,
) -> Result<(Vec<IncomingRecord>, Vec<MessageRecord>), ApiError> {
    let incoming = state.data.incoming(session, INBOX_KEPT, None)?;
    let outgoing = state.data.messages(session, OUTGOING_KEPT, None)?;
    Ok((incoming, outgoing))
}

async fn list(
    State(state): State<AppState>,
    caller: Caller,
    AppPath(id): AppPath<String>,
) -> Result<Json<ChatList>, ApiError> {
    let d = visible(&state, &caller, &id).await?;
    let (incoming, outgoing) = all_messages(&state, &d.view.id)?;
    Ok(Json(ChatList {
        chats: chat_list(&incoming, &outgoing),
    }))
}

/// A chat is named by its number; one that is not a number, or that the
/// session never exchanged a message with, is not found.
async fn thread(
    State(state): State<AppState>,
    caller: Caller,
    AppPath((id, peer)): AppPath<(String, String)>,
    AppQuery(p): AppQuery<ThreadPage>,
) -> Result<Json<Thread>, ApiError> {
    let d = visible(&state, &caller, &id).await?;
    let not_found = || ApiError::NotFound(format!("no chat with {peer}"));
    let number = normalize_phone(&peer).map_err(|_| not_found())?;
    let before = p
        .before
        .as_deref()
        .map(|b| {
            parse_cursor(b).ok_or_else(|| {
                ApiError::bad_request(
                    "invalid_cursor",
                    "before must be a next_before or a message's cursor",
                )
            })
        })
        .transpose()?;
    let limit = p.limit.unwrap_or(30).clamp(1, 200);
    let (incoming, outgoing) = all_messages(&state, &d.view.id)?;
    let known =
        incoming.iter().any(|m| m.from == number) || outgoing.iter().any(|m| m.to == number);
    if !known {
        return Err(not_found());
    }
    let (messages, next_before) =
        thread_page(&incoming, &outgoing, &number, limit, before.as_ref());
    Ok(Json(Thread {
        peer: number,
        messages,
        next_before,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use centinela_actors::ids::{SessionId, TenantId};

    fn tenant() -> TenantId {
        TenantId::new("t1").expect("tenant")
    }

    fn session() -> SessionId {
        SessionId::new("s1").expect("session")
    }

    fn inc(seq: u64, from: &str, text: &str, ms: i64) -> IncomingRecord {
        IncomingRecord {
            seq,
            id: format!("in{seq}"),
            tenant: tenant(),
            session: session(),
            from: from.into(),
            jid: None,
            text: text.into(),
            at: Timestamp::from_millis(ms),
        }
    }

    fn out(id: &str, to: &str, text: &str, ms: i64) -> MessageRecord {
        let mut m = MessageRecord::queued(
            tenant(),
            session(),
            to.into(),
            text.into(),
            Timestamp::from_millis(ms),
        );
        m.id = id.into();
        m
    }

    #[test]
    fn chats_are_newest_first_with_their_last_message_and_incoming_count() {
        let incoming = [
            inc(1, "111111", "hola", 10),
            inc(2, "111111", "¿hay turno?", 30),
            inc(3, "222222", "buenas", 20),
        ];
        let outgoing = [
            out("m1", "111111", "sí, el lunes", 40),
            out("m2", "333333", "recordatorio", 5),
        ];
        let chats = chat_list(&incoming, &outgoing);
        let peers: Vec<&str> = chats.iter().map(|c| c.peer.as_str()).collect();
        assert_eq!(peers, ["111111", "222222", "333333"]);
        assert_eq!(chats[0].last_text, "sí, el lunes");
        assert_eq!(chats[0].last_direction, Direction::Out);
        assert_eq!(
            (chats[0].incoming, chats[0].last_incoming_seq),
            (2, Some(2))
        );
        assert_eq!((chats[2].incoming, chats[2].last_incoming_seq), (0, None));
    }

    #[test]
    fn a_thread_merges_both_ways_and_pages_back_without_gaps_or_repeats() {
        let incoming = [
            inc(1, "111111", "a", 10),
            inc(2, "111111", "c", 30),
            inc(3, "222222", "other", 15),
        ];
        let outgoing = [
            out("m1", "111111", "b", 20),
            out("m2", "111111", "d", 30),
            out("m3", "222222", "x", 1),
        ];
        let (first, next) = thread_page(&incoming, &outgoing, "111111", 3, None);
        let texts: Vec<&str> = first.iter().map(|i| i.text.as_str()).collect();
        assert_eq!(texts, ["d", "c", "b"], "same time: the id breaks the tie");
        assert_eq!(first[0].status, Some(MessageStatus::Queued));
        assert_eq!(first[1].seq, Some(2));
        let before = parse_cursor(&next.expect("a page after")).expect("cursor");
        let (second, next) = thread_page(&incoming, &outgoing, "111111", 3, Some(&before));
        let texts: Vec<&str> = second.iter().map(|i| i.text.as_str()).collect();
        assert_eq!(texts, ["a"]);
        assert_eq!(next, None);
    }

    #[test]
    fn a_cursor_is_its_time_then_its_id() {
        assert_eq!(
            parse_cursor(&cursor(Timestamp::from_millis(42), "a_b")),
            Some((Timestamp::from_millis(42), "a_b".into()))
        );
        assert_eq!(parse_cursor("nope"), None);
        assert_eq!(parse_cursor("x_y"), None);
    }
}
