//! Purging a tenant: one write transaction that removes every row keyed by
//! it, table by table through each module's own `purge` (the tables stay
//! private to their modules). Rows keyed by session (the send queue, the
//! inbox) go for every session the tenant had — from its session records
//! and from the sessions its messages name, since the supervisor may have
//! deleted the records already. The admission ledger is not touched: its
//! budgets protect the server's address and phone numbers, not a tenant's
//! data. Who calls it, and after what, is `tenants.rs`'s business.

use super::{accounts, audit, campaigns, inbox, messages, sessions, webhooks};
use super::{Store, StoreError};
use crate::ids::TenantId;
use std::collections::BTreeSet;

/// What a purge removed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TenantPurged {
    /// The tenant record itself was there.
    pub existed: bool,
    pub users: usize,
    pub api_keys: usize,
    /// Session records left (the supervisor deletes them first).
    pub sessions: usize,
    pub webhook: bool,
    pub deliveries: usize,
    pub auto_replies: bool,
    pub campaigns: usize,
    pub messages: usize,
    pub incoming: usize,
    pub audit_entries: usize,
}

pub(super) fn purge_tenant(store: &Store, tenant: &TenantId) -> Result<TenantPurged, StoreError> {
    let txn = store.db().begin_write()?;
    let (existed, users, api_keys) = accounts::purge(&txn, tenant)?;
    let session_ids = sessions::purge(&txn, tenant)?;
    let mut of_tenant: BTreeSet<String> = session_ids.iter().cloned().collect();
    let (webhook, deliveries, auto_replies) = webhooks::purge(&txn, tenant)?;
    let purged = TenantPurged {
        existed,
        users,
        api_keys,
        sessions: session_ids.len(),
        webhook,
        deliveries,
        auto_replies,
        campaigns: campaigns::purge(&txn, tenant)?,
        incoming: inbox::purge(&txn, tenant, &mut of_tenant)?,
        messages: messages::purge(&txn, tenant, &mut of_tenant)?,
        audit_entries: audit::purge(&txn, tenant)?,
    };
    txn.commit()?;
    Ok(purged)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::Timestamp;
    use crate::engine::EngineKind;
    use crate::ids::{SessionId, UserId};
    use crate::store::*;
    use std::collections::BTreeMap;

    const T: Timestamp = Timestamp::from_millis(1_000);

    /// One row of `tenant` in every table, on session `session`.
    fn fill(store: &Store, tenant: &str, session: &str) {
        let t = TenantId::new(tenant).expect("id");
        let s = SessionId::new(session).expect("id");
        store
            .create_tenant(&TenantRecord {
                id: t.clone(),
                name: tenant.into(),
                created_at: T,
            })
            .expect("tenant");
        store
            .create_user(&UserRecord {
                id: UserId::generate(),
                username: format!("{tenant}-user"),
                password_hash: "$argon2id$fake".into(),
                role: Role::Tenant,
                tenant: Some(t.clone()),
                created_at: T,
                password_version: 0,
            })
            .expect("user");
        store
            .create_api_key(&ApiKeyRecord {
                id: format!("k_{tenant}"),
                tenant: t.clone(),
                name: "crm".into(),
                hash: format!("hash-{tenant}"),
                prefix: "cnt_".into(),
                created_at: T,
                revoked_at: None,
            })
            .expect("key");
        store
            .put_session(&SessionRecord {
                id: s.clone(),
                tenant: t.clone(),
                name: "desk".into(),
                engine: EngineKind::Webjs,
                desired: DesiredState::Stopped,
                user_agent: None,
                proxy: None,
                last_reason: None,
                paired: false,
                created_at: T,
            })
            .expect("session");
        store
            .set_target(&WebhookTarget {
                tenant: t.clone(),
                url: "https://crm.example/hook".into(),
                secret: format!("secret-{tenant}"),
            })
            .expect("target");
        store
            .put_delivery(&Delivery {
                id: format!("d_{tenant}"),
                tenant: t.clone(),
                body: "{}".into(),
                status: DeliveryStatus::Pending,
                attempts: 0,
                next_at: T,
                last_error: None,
                created_at: T,
            })
            .expect("delivery");
        store
            .set_auto_replies(
                &t,
                &AutoReplyRules {
                    enabled: true,
                    rules: vec![],
                },
            )
            .expect("rules");
        store
            .put_campaign(&CampaignRecord {
                id: format!("c_{tenant}"),
                tenant: t.clone(),
                session: s.clone(),
                name: "turnos".into(),
                template: "Hola".into(),
                recipients: vec![Recipient {
                    to: "5491100000000".into(),
                    vars: BTreeMap::new(),
                }],
                status: CampaignStatus::Draft,
                next: 0,
                sent: 0,
                failed: 0,
                created_at: T,
                updated_at: T,
            })
            .expect("campaign");
        let queued = |id: &str| {
            let mut m = MessageRecord::queued(
                t.clone(),
                s.clone(),
                "5491100000000".into(),
                "hola".into(),
                T,
            )
            .with_key(Some("k1".into()));
            m.id = id.into();
            m
        };
        store
            .accept(&[queued(&format!("m_{tenant}_sent"))])
            .expect("accept");
        let mut sent = store
            .message(&format!("m_{tenant}_sent"))
            .expect("read")
            .expect("stored");
        sent.status = MessageStatus::Sent;
        sent.engine_id = Some(format!("true_{tenant}"));
        store.update(&sent).expect("update");
        let mut waiting = queued(&format!("m_{tenant}_queued"));
        waiting.idempotency_key = Some("k2".into());
        store.accept(&[waiting]).expect("accept");
        store
            .store_incoming(&IncomingRecord {
                seq: 0,
                id: format!("in_{tenant}"),
                tenant: t.clone(),
                session: s.clone(),
                from: "5491100000000".into(),
                jid: None,
                text: "hola".into(),
                at: T,
            })
            .expect("incoming");
        store
            .audit(&AuditEntry {
                seq: 0,
                at: T,
                actor: "system".into(),
                action: "session.transition".into(),
                tenant: Some(t),
                data: serde_json::json!({"session_id": session}),
            })
            .expect("audit");
    }

    /// What of `tenant` (session `session`) can still be read.
    fn left(store: &Store, tenant: &str, session: &str) -> Vec<&'static str> {
        let t = TenantId::new(tenant).expect("id");
        let s = SessionId::new(session).expect("id");
        let mut out = Vec::new();
        let mut check = |what: &'static str, there: bool| {
            if there {
                out.push(what);
            }
        };
        check("tenant", store.tenant(&t).expect("r").is_some());
        check(
            "user",
            store
                .user_by_name(&format!("{tenant}-user"))
                .expect("r")
                .is_some(),
        );
        check(
            "api key",
            store
                .api_key_by_hash(&format!("hash-{tenant}"))
                .expect("r")
                .is_some(),
        );
        check("session", store.get_session(&s).expect("r").is_some());
        check("webhook", store.target(&t).expect("r").is_some());
        check(
            "deliveries",
            !store.deliveries(&t, None).expect("r").is_empty(),
        );
        check("auto-replies", store.auto_replies(&t).expect("r").enabled);
        check(
            "campaign",
            store.campaign(&format!("c_{tenant}")).expect("r").is_some(),
        );
        check(
            "messages",
            !store.messages(&s, 10, None).expect("r").is_empty(),
        );
        check(
            "idempotency",
            store.by_idempotency_key(&t, "k1").expect("r").is_some(),
        );
        check(
            "engine id",
            store
                .by_engine_id(&s, &format!("true_{tenant}"))
                .expect("r")
                .is_some(),
        );
        check("queue", store.next_queued(&s, T).expect("r").is_some());
        check(
            "inbox",
            !store.incoming(&s, 10, None).expect("r").is_empty(),
        );
        let audit = store.audit_since(0, 100).expect("r");
        check("audit", audit.iter().any(|e| e.tenant.as_ref() == Some(&t)));
        out
    }

    const EVERYTHING: [&str; 14] = [
        "tenant",
        "user",
        "api key",
        "session",
        "webhook",
        "deliveries",
        "auto-replies",
        "campaign",
        "messages",
        "idempotency",
        "engine id",
        "queue",
        "inbox",
        "audit",
    ];

    #[test]
    fn purging_a_tenant_removes_every_row_keyed_by_it_and_nothing_else() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(dir.path()).expect("open");
        fill(&store, "clinic", "s_clinic");
        fill(&store, "clinic-2", "s_other");
        assert_eq!(
            left(&store, "clinic", "s_clinic"),
            EVERYTHING,
            "all there first"
        );

        let purged = store
            .purge_tenant(&TenantId::new("clinic").expect("id"))
            .expect("purge");
        assert_eq!(
            purged,
            TenantPurged {
                existed: true,
                users: 1,
                api_keys: 1,
                sessions: 1,
                webhook: true,
                deliveries: 1,
                auto_replies: true,
                campaigns: 1,
                messages: 2,
                incoming: 1,
                audit_entries: 1,
            }
        );
        assert_eq!(left(&store, "clinic", "s_clinic"), Vec::<&str>::new());
        assert_eq!(
            left(&store, "clinic-2", "s_other"),
            EVERYTHING,
            "a tenant whose id starts with the same letters keeps everything"
        );
        drop(store);
        let store = Store::open(dir.path()).expect("reopen");
        assert_eq!(
            left(&store, "clinic", "s_clinic"),
            Vec::<&str>::new(),
            "durable"
        );
        assert_eq!(
            store.purge_tenant(&TenantId::new("clinic").expect("id")),
            Ok(TenantPurged::default()),
            "nothing left to purge"
        );
    }

    #[test]
    fn a_session_record_already_deleted_still_has_its_rows_purged() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(dir.path()).expect("open");
        fill(&store, "clinic", "s_clinic");
        let s = SessionId::new("s_clinic").expect("id");
        assert!(
            store.delete_session(&s).expect("delete"),
            "as the supervisor does"
        );
        let purged = store
            .purge_tenant(&TenantId::new("clinic").expect("id"))
            .expect("purge");
        assert_eq!((purged.sessions, purged.messages), (0, 2));
        assert_eq!(left(&store, "clinic", "s_clinic"), Vec::<&str>::new());
    }
}
