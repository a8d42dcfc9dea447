//! The store a fleet node hands its messaging out to ([`FleetStore`]):
//! one value for every path that writes or reads messages — the outbox
//! writer, the sessions' senders and inboxes, campaigns, the verification
//! codes' withdrawals, retention, the ban-risk view and the handlers — so
//! none of them is left writing only into the node's store. Messages, the
//! inbox, contacts and activity ([`FleetMessages`]), campaigns
//! ([`FleetCampaigns`]) and webhook deliveries ([`FleetDeliveries`]) are
//! the fleet's; what stays with the node (the audit log, the mirrors of the
//! hosted tenants' session records and settings) is its own [`Store`].

use crate::campaigns::FleetCampaigns;
use crate::deliveries::FleetDeliveries;
use crate::messages::FleetMessages;
use centinela_actors::clock::Timestamp;
use centinela_actors::ids::{SessionId, TenantId};
use centinela_actors::store::{
    ActivityRepo, AuditEntry, AuditRepo, AutoReplyRepo, AutoReplyRules, CampaignRecord,
    CampaignRepo, ContactRepo, Counts, Delivery, DeliveryStatus, InboxRepo, Incoming,
    IncomingRecord, MessageRecord, MessageRepo, NewContacts, SessionRecord, SessionRepo, Store,
    StoreError, WebhookRepo, WebhookTarget,
};

/// The node's store with the fleet's messages, campaigns and deliveries in
/// place of its own.
#[derive(Clone, Debug)]
pub struct FleetStore {
    local: Store,
    messages: FleetMessages,
    campaigns: FleetCampaigns,
    deliveries: FleetDeliveries,
}

impl FleetStore {
    pub fn new(
        local: Store,
        messages: FleetMessages,
        campaigns: FleetCampaigns,
        deliveries: FleetDeliveries,
    ) -> Self {
        Self {
            local,
            messages,
            campaigns,
            deliveries,
        }
    }

    /// The fleet's messages.
    pub fn messages(&self) -> &FleetMessages {
        &self.messages
    }
}

/// Methods answered by one of the two, unchanged.
macro_rules! delegate {
    ($to:ident: $(fn $name:ident(&self $(, $arg:ident: $ty:ty)*) -> $ret:ty;)*) => {
        $(fn $name(&self $(, $arg: $ty)*) -> $ret {
            self.$to.$name($($arg),*)
        })*
    };
}

impl MessageRepo for FleetStore {
    delegate! { messages:
        fn accept(&self, batch: &[MessageRecord]) -> Result<Vec<Option<MessageRecord>>, StoreError>;
        fn message(&self, id: &str) -> Result<Option<MessageRecord>, StoreError>;
        fn messages(&self, session: &SessionId, limit: usize, before: Option<&str>) -> Result<Vec<MessageRecord>, StoreError>;
        fn next_queued(&self, session: &SessionId, now: Timestamp) -> Result<Option<MessageRecord>, StoreError>;
        fn update(&self, m: &MessageRecord) -> Result<(), StoreError>;
        fn by_engine_id(&self, session: &SessionId, engine_id: &str) -> Result<Option<MessageRecord>, StoreError>;
        fn by_idempotency_key(&self, tenant: &TenantId, key: &str) -> Result<Option<MessageRecord>, StoreError>;
        fn in_flight(&self, session: &SessionId) -> Result<Vec<MessageRecord>, StoreError>;
        fn prune_finished(&self, cutoff: Timestamp, max: usize) -> Result<usize, StoreError>;
    }
}

impl InboxRepo for FleetStore {
    delegate! { messages:
        fn store_incoming(&self, m: &IncomingRecord) -> Result<Incoming, StoreError>;
        fn incoming(&self, session: &SessionId, limit: usize, before: Option<u64>) -> Result<Vec<IncomingRecord>, StoreError>;
    }
}

impl ContactRepo for FleetStore {
    delegate! { messages:
        fn is_known(&self, session: &SessionId, peer: &str) -> Result<bool, StoreError>;
        fn known(&self, session: &SessionId, peers: &[&str]) -> Result<Vec<bool>, StoreError>;
        fn note_exchange(&self, session: &SessionId, peer: &str, at: Timestamp, outgoing: bool) -> Result<(), StoreError>;
        fn new_contacts(&self, session: &SessionId, since: Timestamp) -> Result<NewContacts, StoreError>;
    }
}

impl ActivityRepo for FleetStore {
    delegate! { messages:
        fn activity(&self, session: &SessionId, since: Timestamp) -> Result<Counts, StoreError>;
    }
}

impl WebhookRepo for FleetStore {
    delegate! { deliveries:
        fn set_target(&self, t: &WebhookTarget) -> Result<bool, StoreError>;
        fn target(&self, tenant: &TenantId) -> Result<Option<WebhookTarget>, StoreError>;
        fn delete_target(&self, tenant: &TenantId) -> Result<bool, StoreError>;
        fn put_delivery(&self, d: &Delivery) -> Result<(), StoreError>;
        fn queue_delivery(&self, d: &Delivery, session: &SessionId) -> Result<bool, StoreError>;
        fn delivery_and_target(&self, id: &str) -> Result<Option<(Delivery, Option<WebhookTarget>)>, StoreError>;
        fn update_delivery(&self, d: &Delivery) -> Result<bool, StoreError>;
        fn delivery(&self, id: &str) -> Result<Option<Delivery>, StoreError>;
        fn deliveries(&self, tenant: &TenantId, status: Option<DeliveryStatus>) -> Result<Vec<Delivery>, StoreError>;
        fn pending(&self) -> Result<Vec<Delivery>, StoreError>;
        fn prune_deliveries(&self, cutoff: Timestamp) -> Result<usize, StoreError>;
    }
}

impl AutoReplyRepo for FleetStore {
    delegate! { local:
        fn auto_replies(&self, tenant: &TenantId) -> Result<AutoReplyRules, StoreError>;
        fn set_auto_replies(&self, tenant: &TenantId, rules: &AutoReplyRules) -> Result<bool, StoreError>;
    }
}

impl AuditRepo for FleetStore {
    delegate! { local:
        fn audit(&self, entry: &AuditEntry) -> Result<u64, StoreError>;
        fn audit_batch(&self, entries: &[AuditEntry], durable: bool) -> Result<Vec<u64>, StoreError>;
        fn audit_since(&self, since: u64, limit: usize) -> Result<Vec<AuditEntry>, StoreError>;
    }
}

impl CampaignRepo for FleetStore {
    delegate! { campaigns:
        fn put_campaign(&self, c: &CampaignRecord) -> Result<(), StoreError>;
        fn campaign(&self, id: &str) -> Result<Option<CampaignRecord>, StoreError>;
        fn campaigns(&self) -> Result<Vec<CampaignRecord>, StoreError>;
        fn running_campaigns(&self) -> Result<Vec<CampaignRecord>, StoreError>;
    }
}

/// The records of the sessions this node hosts, mirrored from the fleet.
impl SessionRepo for FleetStore {
    delegate! { local:
        fn put_session(&self, record: &SessionRecord) -> Result<(), StoreError>;
        fn get_session(&self, id: &SessionId) -> Result<Option<SessionRecord>, StoreError>;
        fn list_sessions(&self) -> Result<Vec<SessionRecord>, StoreError>;
        fn delete_session(&self, id: &SessionId) -> Result<bool, StoreError>;
    }
}
