//! The purge against a real store, read whole before and after: two
//! tenants with a row in every table, one of them purged. The neighbour's
//! id starts with the purged one's, so a prefix match would show.

use super::*;
use crate::clock::Timestamp;
use crate::ids::{SessionId, UserId};
use crate::store::rows::Rows;
use crate::store::*;
use std::collections::BTreeMap;

const T: Timestamp = Timestamp::from_millis(1_000);
const PURGED: &str = "clinic";
/// Sorts after `PURGED/` (`_` > `/`): a key range one too wide would reach it.
const NEIGHBOUR: &str = "clinic_2";

/// Tables that hold no tenant's rows.
const NOT_TENANTS: [&str; 3] = ["meta", "revoked_tokens", "settings"];
/// Kept on purpose (see the module doc): the admission ledger.
const KEPT: [&str; 1] = ["admission_ledger"];

/// Whether a row names `PURGED` (and not only `NEIGHBOUR`).
fn of_purged(row: &str) -> bool {
    row.replace(NEIGHBOUR, "").contains(PURGED)
}

fn tenant(id: &str) -> TenantId {
    TenantId::new(id).expect("id")
}

fn session_of(tenant: &str) -> SessionId {
    SessionId::new(format!("s_{tenant}")).expect("id")
}

/// The whole store; fails if the file has a table no module lists.
fn rows(store: &Store) -> Rows {
    let (rows, unlisted) = store.rows().expect("read");
    assert_eq!(unlisted, Vec::<String>::new(), "every table is listed");
    rows
}

/// `rows` without the purged tenant's rows, except in the kept tables.
fn without_purged(mut rows: Rows) -> Rows {
    for (table, rows) in rows.iter_mut() {
        if !KEPT.contains(&table.as_str()) {
            rows.retain(|r| !of_purged(r));
        }
    }
    rows
}

/// One row of `tenant` in every table keyed by tenant, each naming it.
fn fill(store: &Store, id: &str) {
    let t = tenant(id);
    let s = session_of(id);
    store
        .create_tenant(&TenantRecord {
            id: t.clone(),
            name: id.into(),
            created_at: T,
        })
        .expect("tenant");
    store
        .create_user(&UserRecord {
            id: UserId::generate(),
            username: format!("{id}-user"),
            password_hash: "$argon2id$fake".into(),
            role: Role::Tenant,
            tenant: Some(t.clone()),
            created_at: T,
            password_version: 0,
        })
        .expect("user");
    store
        .create_api_key(&ApiKeyRecord {
            id: format!("k_{id}"),
            tenant: t.clone(),
            name: "crm".into(),
            hash: format!("hash-{id}"),
            prefix: "cnt_".into(),
            created_at: T,
            revoked_at: None,
        })
        .expect("key");
    store
        .put_session(&SessionRecord::of(&t, &s))
        .expect("session");
    fill_messaging(store, &t, &s);
    fill_messages(store, &t, &s);
    fill_otp(store, &t, &s);
    store
        .append(&LedgerEvent::Attempt {
            id: 1,
            tenant: t.clone(),
            session: s.clone(),
            kind: AttemptKind::Connect,
            counted: true,
            at: T,
            cloud: false,
        })
        .expect("ledger");
    store
        .audit(&AuditEntry {
            seq: 0,
            at: T,
            actor: "system".into(),
            action: "session.transition".into(),
            tenant: Some(t),
            data: serde_json::json!({"session_id": s}),
        })
        .expect("audit");
}

/// The webhook target, a pending and a finished delivery, auto-replies
/// and a running campaign.
fn fill_messaging(store: &Store, t: &TenantId, s: &SessionId) {
    store
        .set_target(&WebhookTarget {
            tenant: t.clone(),
            url: "https://crm.example/hook".into(),
            secret: format!("secret-{t}"),
        })
        .expect("target");
    store
        .put_delivery(&Delivery {
            id: format!("d_{t}"),
            tenant: t.clone(),
            body: "{}".into(),
            status: DeliveryStatus::Pending,
            attempts: 0,
            next_at: T,
            last_error: None,
            created_at: T,
            last_attempt_at: None,
        })
        .expect("delivery");
    // A finished one, in the finished index.
    store
        .put_delivery(&Delivery {
            id: format!("d_done_{t}"),
            tenant: t.clone(),
            body: "{}".into(),
            status: DeliveryStatus::Delivered,
            attempts: 1,
            next_at: T,
            last_error: None,
            created_at: T,
            last_attempt_at: Some(T),
        })
        .expect("delivery");
    let rules = AutoReplyRules {
        enabled: true,
        rules: vec![],
    };
    store.set_auto_replies(t, &rules).expect("rules");
    store
        .put_campaign(&CampaignRecord {
            id: format!("c_{t}"),
            tenant: t.clone(),
            session: s.clone(),
            name: "turnos".into(),
            template: "Hola".into(),
            recipients: vec![Recipient {
                to: "5491100000000".into(),
                vars: BTreeMap::new(),
            }],
            // Running: it has a row in the running index.
            status: CampaignStatus::Running,
            next: 0,
            sent: 0,
            failed: 0,
            created_at: T,
            updated_at: T,
            paused: None,
        })
        .expect("campaign");
}

/// A sent message (idempotency key, engine id) and a queued one (the send
/// queue and its sequence), and an incoming one; both are the session's
/// exchanges with the one peer (its contacts row).
fn fill_messages(store: &Store, t: &TenantId, s: &SessionId) {
    let queued = |id: String, key: &str| {
        let mut m = MessageRecord::queued(
            t.clone(),
            s.clone(),
            "5491100000000".into(),
            "hola".into(),
            T,
        )
        .with_key(Some(key.into()));
        m.id = id;
        m
    };
    let sent_id = format!("m_{t}_sent");
    store
        .accept(&[queued(sent_id.clone(), "k1")])
        .expect("accept");
    let mut sent = store.message(&sent_id).expect("read").expect("stored");
    sent.status = MessageStatus::Sent;
    sent.engine_id = Some(format!("true_{t}"));
    store.update(&sent).expect("update");
    store
        .accept(&[queued(format!("m_{t}_queued"), "k2")])
        .expect("accept");
    store
        .store_incoming(&IncomingRecord {
            seq: 0,
            id: format!("in_{t}"),
            tenant: t.clone(),
            session: s.clone(),
            from: "5491100000000".into(),
            jid: None,
            text: "hola".into(),
            at: T,
        })
        .expect("incoming");
}

/// A pending verification code to a phone both tenants verify (its
/// record, the latest-code index, its sends under the phone and the address).
fn fill_otp(store: &Store, t: &TenantId, s: &SessionId) {
    let otp = OtpRecord {
        id: format!("otp_{t}"),
        tenant: t.clone(),
        session: s.clone(),
        phone: "+5491100000000".into(),
        purpose: OtpPurpose::Login,
        digest: "ab".into(),
        status: OtpStatus::Pending,
        attempts_left: 3,
        created_at: T,
        issued_at: T,
        expires_at: T,
        resend_at: T,
        sends: 1,
        message_id: None,
        updated_at: T,
    };
    let limits = [
        SendLimit {
            scope: "phone:+5491100000000".into(),
            max: 5,
            window: std::time::Duration::from_secs(86_400),
        },
        SendLimit {
            scope: "addr:203.0.113.7".into(),
            max: 10,
            window: std::time::Duration::from_secs(3_600),
        },
    ];
    let out = store
        .issue_otp(&otp, &limits, T, &mut |_| true)
        .expect("otp");
    assert!(matches!(out, Issue::Stored { .. }), "{out:?}");
}

/// Both tenants, and rows that belong to no tenant.
fn filled(dir: &std::path::Path) -> Store {
    let store = Store::open(dir).expect("open");
    fill(&store, PURGED);
    fill(&store, NEIGHBOUR);
    store
        .setting_or_insert("jwt_secret", "s3cret")
        .expect("set");
    store
        .revoke_token("jti-1", Timestamp::from_millis(i64::MAX / 2), T)
        .expect("revoke");
    store
}

#[test]
fn the_fill_puts_rows_of_both_tenants_in_every_table_keyed_by_tenant() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = filled(dir.path());
    for (table, rows) in rows(&store) {
        let purged = rows.iter().any(|r| of_purged(r));
        let neighbour = rows.iter().any(|r| r.contains(NEIGHBOUR));
        if NOT_TENANTS.contains(&table.as_str()) {
            assert!(!purged && !neighbour, "{table} holds no tenant's rows");
            assert!(!rows.is_empty(), "{table} has a row to keep");
        } else {
            assert!(purged && neighbour, "{table} has rows of both: {rows:?}");
        }
    }
}

#[test]
fn purging_a_tenant_leaves_no_row_of_it_in_any_table_and_every_other_row_as_it_was() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = filled(dir.path());
    let before = rows(&store);

    let purged = store.purge_tenant(&tenant(PURGED)).expect("purge");
    assert_eq!(
        purged,
        TenantPurged {
            existed: true,
            users: 1,
            api_keys: 1,
            sessions: 1,
            webhook: true,
            deliveries: 2,
            auto_replies: true,
            campaigns: 1,
            messages: 2,
            incoming: 1,
            audit_entries: 1,
            contacts: 1,
            activity_hours: 1,
            otps: 1,
        }
    );
    let after = rows(&store);
    assert_eq!(after, without_purged(before.clone()));
    for table in KEPT {
        assert_eq!(after[table], before[table], "{table} is kept whole");
    }

    drop(store);
    let store = Store::open(dir.path()).expect("reopen");
    assert_eq!(rows(&store), after, "durable");
    assert_eq!(
        store.purge_tenant(&tenant(PURGED)),
        Ok(TenantPurged::default()),
        "nothing left to purge"
    );
}

#[test]
fn a_session_record_already_deleted_still_has_its_rows_purged() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = filled(dir.path());
    let before = rows(&store);
    assert!(
        store.delete_session(&session_of(PURGED)).expect("delete"),
        "as the supervisor does first"
    );
    let purged = store.purge_tenant(&tenant(PURGED)).expect("purge");
    assert_eq!((purged.sessions, purged.messages), (0, 2));
    assert_eq!(rows(&store), without_purged(before));
}
