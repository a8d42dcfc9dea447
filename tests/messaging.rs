//! The outbox over the API with the scripted engine: messages are durable
//! before the 202, wait (not fail) while the session is not READY, go out
//! in order and paced, are idempotent by key, and follow the engine's acks;
//! an auto-reply marks the chat it answers read before it types and sends.

mod common;

use centinela_actors::engine::scripted::{Action, ScriptedEngine};
use centinela_actors::engine::{ChatState, EngineEvent};
use centinela_actors::ids::SessionId;
use common::api::{api_config, start_api, Cred, Ws, ADMIN, ADMIN_PASSWORD};
use serde_json::json;
use std::time::Duration;

#[tokio::test]
async fn messages_wait_for_ready_then_go_out_in_order_paced_and_once() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut config = api_config(dir.path());
    config.messaging.send_delay_min = Duration::from_millis(150);
    config.messaging.send_delay_max = Duration::from_millis(200);
    let s = start_api(config, ScriptedEngine::new(), None).await;
    let admin = s.api.login(ADMIN, ADMIN_PASSWORD).await;
    let (token, _) = s.api.tenant_with_user(&admin, "clinic").await;
    let id = s.api.create_session(&token, None, "desk").await;
    let sid = SessionId::new(id.clone()).expect("id");
    let mut ws = Ws::connect(&s.api.base, &format!("token={token}")).await;

    let mut ids = Vec::new();
    for i in 0..3 {
        let r = s
            .api
            .call("POST", &format!("/api/v1/sessions/{id}/messages"), Cred::Token(&token), Some(json!({"to": "5491100000000", "text": format!("turno {i}"), "idempotency_key": format!("k{i}")})))
            .await;
        assert_eq!(
            (r.status, r.body["status"].clone()),
            (202, json!("queued")),
            "{}",
            r.text
        );
        ids.push(r.body["id"].as_str().expect("id").to_owned());
    }
    // The same key again: the same message, not a second one.
    let again = s
        .api
        .call(
            "POST",
            &format!("/api/v1/sessions/{id}/messages"),
            Cred::Token(&token),
            Some(json!({"to": "5491100000000", "text": "turno 0", "idempotency_key": "k0"})),
        )
        .await;
    assert_eq!(again.body["id"], ids[0].as_str());
    let list = s
        .api
        .call(
            "GET",
            &format!("/api/v1/sessions/{id}/messages"),
            Cred::Token(&token),
            None,
        )
        .await;
    assert_eq!(list.body["messages"].as_array().map(Vec::len), Some(3));
    assert!(s.engine.sent().is_empty(), "nothing leaves before READY");

    s.api.session_action(&token, &id, "connect").await;
    ws.until_state(&id, "QR").await;
    assert!(s.engine.scan(&sid, "5491122334455"));
    let mut sent_at = Vec::new();
    let mut ready_seen = false;
    while sent_at.len() < 3 {
        let v = ws
            .next(|v| {
                v["type"] == "transition"
                    || (v["type"] == "message_status" && v["status"] == "sent")
            })
            .await;
        if v["type"] == "transition" {
            ready_seen |= v["to"]["state"] == "READY";
            continue;
        }
        assert!(ready_seen, "a message went out before READY: {v}");
        let pos = ids
            .iter()
            .position(|m| v["message_id"] == m.as_str())
            .expect("one of ours");
        assert_eq!(pos, sent_at.len(), "in order");
        sent_at.push(
            centinela_actors::clock::Timestamp::parse_rfc3339(v["at"].as_str().expect("at"))
                .expect("time"),
        );
    }
    for w in sent_at.windows(2) {
        assert!(
            w[1].since(w[0]) >= Duration::from_millis(140),
            "paced: {:?}",
            w[1].since(w[0])
        );
    }
    let texts: Vec<String> = s.engine.sent().into_iter().map(|(_, _, t)| t).collect();
    assert_eq!(texts, ["turno 0", "turno 1", "turno 2"], "each once");
    s.server.shutdown().await.expect("shutdown");
}

#[tokio::test]
async fn acks_move_the_status_forward() {
    let dir = tempfile::tempdir().expect("tempdir");
    let s = start_api(api_config(dir.path()), ScriptedEngine::new(), None).await;
    let common::api::Ready {
        token,
        id,
        sid,
        mut ws,
    } = s.ready_session("shop").await;
    let r = s
        .api
        .call(
            "POST",
            &format!("/api/v1/sessions/{id}/messages"),
            Cred::Token(&token),
            Some(json!({"to": "5491100000000", "text": "hola"})),
        )
        .await;
    let mid = r.body["id"].as_str().expect("id").to_owned();
    ws.next(|v| {
        v["type"] == "message_status" && v["message_id"] == mid.as_str() && v["status"] == "sent"
    })
    .await;
    // The scripted engine numbers its messages msg1, msg2, ...
    for (ack, status) in [(2, "delivered"), (3, "read"), (2, "read")] {
        assert!(s.engine.emit(
            &sid,
            EngineEvent::Ack {
                message_id: "msg1".into(),
                ack
            }
        ));
        let ev = ws.next(|v| v["type"] == "ack").await;
        assert_eq!(ev["ack"], ack);
        let m = s
            .api
            .call(
                "GET",
                &format!("/api/v1/sessions/{id}/messages/{mid}"),
                Cred::Token(&token),
                None,
            )
            .await;
        assert_eq!(m.body["status"], status, "after ack {ack}");
    }
    s.server.shutdown().await.expect("shutdown");
}

#[tokio::test]
async fn incoming_messages_are_stored_and_pushed() {
    let dir = tempfile::tempdir().expect("tempdir");
    let s = start_api(api_config(dir.path()), ScriptedEngine::new(), None).await;
    let common::api::Ready {
        token,
        id,
        sid,
        mut ws,
    } = s.ready_session("shop").await;
    for (n, text) in ["hola", "¿abren el sábado?"].iter().enumerate() {
        let ev = EngineEvent::MessageIn {
            id: format!("in{n}"),
            from: "5491100000000".into(),
            jid: "5491100000000@c.us".into(),
            text: (*text).into(),
        };
        assert!(s.engine.emit(&sid, ev));
        let pushed = ws.next(|v| v["type"] == "message_in").await;
        assert_eq!(pushed["text"], *text);
    }
    let r = s
        .api
        .call(
            "GET",
            &format!("/api/v1/sessions/{id}/inbox"),
            Cred::Token(&token),
            None,
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    let texts: Vec<&str> = r.body["messages"]
        .as_array()
        .expect("list")
        .iter()
        .filter_map(|m| m["text"].as_str())
        .collect();
    assert_eq!(texts, ["¿abren el sábado?", "hola"], "stored, newest first");
    let r = s
        .api
        .call(
            "GET",
            &format!("/api/v1/sessions/{id}/inbox?limit=1&before=2"),
            Cred::Token(&token),
            None,
        )
        .await;
    assert_eq!(r.body["messages"][0]["text"], "hola");
    s.server.shutdown().await.expect("shutdown");
}

#[tokio::test]
async fn auto_replies_answer_matching_messages_through_the_outbox() {
    let dir = tempfile::tempdir().expect("tempdir");
    let s = start_api(api_config(dir.path()), ScriptedEngine::new(), None).await;
    let admin = s.api.login(ADMIN, ADMIN_PASSWORD).await;
    let (token, _) = s.api.tenant_with_user(&admin, "shop").await;
    let rules =
        json!({"enabled": true, "rules": [{"keyword": "horario", "reply": "Abrimos de 9 a 18"}]});
    let r = s
        .api
        .call(
            "PUT",
            "/api/v1/tenants/shop/auto-replies",
            Cred::Token(&token),
            Some(rules),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    let bad = s
        .api
        .call(
            "PUT",
            "/api/v1/tenants/shop/auto-replies",
            Cred::Token(&token),
            Some(json!({"enabled": true, "rules": [{"keyword": "", "reply": "x"}]})),
        )
        .await;
    assert_eq!(bad.status, 400);
    let id = s.api.create_session(&token, None, "desk").await;
    let sid = SessionId::new(id.clone()).expect("id");
    s.engine.pair(&sid, "5491122334455");
    let mut ws = Ws::connect(&s.api.base, &format!("token={token}")).await;
    s.api.session_action(&token, &id, "connect").await;
    ws.until_state(&id, "READY").await;
    assert!(s.engine.emit(
        &sid,
        EngineEvent::MessageIn {
            id: "in1".into(),
            from: "5491100000007".into(),
            jid: "5491100000007@c.us".into(),
            text: "hola, ¿qué horario tienen?".into()
        }
    ));
    ws.next(|v| v["type"] == "message_status" && v["status"] == "sent")
        .await;
    assert_eq!(
        s.engine
            .sent()
            .into_iter()
            .map(|(_, to, t)| (to, t))
            .collect::<Vec<_>>(),
        vec![("5491100000007".to_owned(), "Abrimos de 9 a 18".to_owned())]
    );
    // Read, typed, sent: the incoming message's chat is marked seen first.
    let actions: Vec<Action> = s.engine.actions(&sid).into_iter().map(|(_, a)| a).collect();
    let typing = |state| Action::ChatState {
        to: "5491100000007".into(),
        state,
    };
    assert_eq!(
        actions,
        [
            Action::Seen {
                chat: "5491100000007@c.us".into()
            },
            typing(ChatState::Composing),
            Action::Sent {
                to: "5491100000007".into(),
                text: "Abrimos de 9 a 18".into()
            },
            typing(ChatState::Paused),
        ]
    );
    assert!(s.engine.emit(
        &sid,
        EngineEvent::MessageIn {
            id: "in2".into(),
            from: "5491100000007".into(),
            jid: "5491100000007@c.us".into(),
            text: "gracias".into()
        }
    ));
    ws.next(|v| v["type"] == "message_in" && v["id"] == "in2")
        .await;
    let list = s
        .api
        .call(
            "GET",
            &format!("/api/v1/sessions/{id}/messages"),
            Cred::Token(&token),
            None,
        )
        .await;
    assert_eq!(
        list.body["messages"].as_array().map(Vec::len),
        Some(1),
        "no rule matched the second"
    );
    s.server.shutdown().await.expect("shutdown");
}

#[tokio::test]
async fn a_scheduled_message_waits_for_its_time() {
    let dir = tempfile::tempdir().expect("tempdir");
    let s = start_api(api_config(dir.path()), ScriptedEngine::new(), None).await;
    let common::api::Ready {
        token, id, mut ws, ..
    } = s.ready_session("clinic").await;
    let send_at = centinela_actors::clock::Clock::now(&centinela_actors::clock::SystemClock)
        .plus(Duration::from_millis(800));
    let later = s.api.call("POST", &format!("/api/v1/sessions/{id}/messages"), Cred::Token(&token), Some(json!({"to": "5491100000000", "text": "recordatorio", "send_at": send_at.to_rfc3339()}))).await;
    assert_eq!(later.status, 202, "{}", later.text);
    let sent = ws
        .next(|v| v["type"] == "message_status" && v["status"] == "sent")
        .await;
    let at = centinela_actors::clock::Timestamp::parse_rfc3339(sent["at"].as_str().expect("at"))
        .expect("time");
    assert!(at >= send_at, "sent at {at}, scheduled for {send_at}");
    s.server.shutdown().await.expect("shutdown");
}

#[tokio::test]
async fn a_number_without_whatsapp_fails_its_message_once_and_the_next_goes_out() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut config = api_config(dir.path());
    config.messaging.send_delay_min = Duration::ZERO;
    config.messaging.send_delay_max = Duration::from_millis(2);
    let s = start_api(config, ScriptedEngine::new(), None).await;
    s.engine.not_on_whatsapp("5491199999999");
    let mut ready = s.ready_session("clinic").await;
    let (token, id) = (ready.token.clone(), ready.id.clone());
    let post = |to: &'static str| {
        let (api, token, id) = (s.api.clone(), token.clone(), id.clone());
        async move {
            let r = api
                .call(
                    "POST",
                    &format!("/api/v1/sessions/{id}/messages"),
                    Cred::Token(&token),
                    Some(json!({"to": to, "text": "hola"})),
                )
                .await;
            assert_eq!(r.status, 202, "{}", r.text);
            r.body["id"].as_str().expect("id").to_owned()
        }
    };
    let lost = post("5491199999999").await;
    let fine = post("5491100000000").await;
    ready
        .ws
        .next(|v| {
            v["type"] == "message_status"
                && v["message_id"] == lost.as_str()
                && v["status"] == "failed"
        })
        .await;
    ready
        .ws
        .next(|v| {
            v["type"] == "message_status"
                && v["message_id"] == fine.as_str()
                && v["status"] == "sent"
        })
        .await;
    let r = s
        .api
        .call(
            "GET",
            &format!("/api/v1/sessions/{id}/messages/{lost}"),
            Cred::Token(&token),
            None,
        )
        .await;
    assert_eq!(
        (r.body["status"].clone(), r.body["error"].clone()),
        (json!("failed"), json!("not_on_whatsapp")),
        "{}",
        r.text
    );
    let sent = s.engine.sent();
    assert_eq!(sent.len(), 1, "tried once, never retried: {sent:?}");
    assert_eq!(sent[0].1, "5491100000000");
}
