use super::*;
use crate::store::Store;

const DAY: i64 = 86_400_000;

fn delivery(id: &str, status: DeliveryStatus, created: i64, last: Option<i64>) -> Delivery {
    Delivery {
        id: id.into(),
        tenant: TenantId::new("clinic").expect("id"),
        body: "{}".into(),
        status,
        attempts: u32::from(last.is_some()),
        next_at: Timestamp::from_millis(created),
        last_error: None,
        created_at: Timestamp::from_millis(created),
        last_attempt_at: last.map(Timestamp::from_millis),
    }
}

#[test]
fn only_finished_deliveries_older_than_the_cutoff_are_expired() {
    let cutoff = Timestamp::from_millis(10 * DAY);
    let old = Some(9 * DAY);
    assert!(delivery("a", DeliveryStatus::Delivered, 0, old).finished_before(cutoff));
    assert!(delivery("b", DeliveryStatus::Dead, 0, old).finished_before(cutoff));
    assert!(
        !delivery("c", DeliveryStatus::Pending, 0, old).finished_before(cutoff),
        "a pending delivery is never pruned, however old"
    );
    assert!(
        !delivery("d", DeliveryStatus::Delivered, 0, Some(10 * DAY)).finished_before(cutoff),
        "the cutoff itself is kept"
    );
    assert!(
        !delivery("e", DeliveryStatus::Dead, 0, Some(11 * DAY)).finished_before(cutoff),
        "an old delivery redelivered lately counts from its last attempt"
    );
    assert!(
        delivery("f", DeliveryStatus::Dead, 9 * DAY, None).finished_before(cutoff),
        "an older version's record without the field counts from its creation"
    );
}

#[test]
fn pruning_deletes_the_expired_rows_and_keeps_the_rest() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Store::open(dir.path()).expect("open");
    let rows = [
        delivery("old_delivered", DeliveryStatus::Delivered, 0, Some(DAY)),
        delivery("old_dead", DeliveryStatus::Dead, 0, Some(DAY)),
        delivery("old_pending", DeliveryStatus::Pending, 0, Some(DAY)),
        delivery("new_delivered", DeliveryStatus::Delivered, 0, Some(5 * DAY)),
    ];
    for d in &rows {
        store.put_delivery(d).expect("put");
    }
    assert_eq!(
        store
            .prune_deliveries(Timestamp::from_millis(2 * DAY))
            .expect("prune"),
        2
    );
    let tenant = TenantId::new("clinic").expect("id");
    let mut left: Vec<String> = store
        .deliveries(&tenant, None)
        .expect("list")
        .into_iter()
        .map(|d| d.id)
        .collect();
    left.sort();
    assert_eq!(left, ["new_delivered", "old_pending"]);
    assert_eq!(
        store
            .prune_deliveries(Timestamp::from_millis(2 * DAY))
            .expect("prune"),
        0,
        "nothing left to prune"
    );
}

#[test]
fn delivery_errors_are_stored_as_codes_and_free_text_never_comes_back() {
    let all = [
        DeliveryError::ConnectionRefused,
        DeliveryError::Timeout,
        DeliveryError::Dns,
        DeliveryError::ForbiddenTarget,
        DeliveryError::Tls,
        DeliveryError::ConnectFailed,
        DeliveryError::RequestFailed,
        DeliveryError::Http3xx,
        DeliveryError::Http4xx,
        DeliveryError::Http5xx(503),
        DeliveryError::HttpOther,
        DeliveryError::NoTarget,
        DeliveryError::InvalidUrl,
        DeliveryError::Failed,
    ];
    for e in all {
        let json = serde_json::to_string(&e).expect("serialize");
        assert_eq!(json, format!("\"{}\"", e.code()));
        assert_eq!(serde_json::from_str::<DeliveryError>(&json).ok(), Some(e));
    }
    assert_eq!(DeliveryError::Http5xx(500).code(), "http_500");
    // What versions before the codes stored: reqwest's text.
    let legacy = r#"{"id":"d_1","tenant":"clinic","body":"{}","status":"dead","attempts":8,
        "next_at":"2026-01-16T20:33:00.000Z","created_at":"2026-01-16T20:33:00.000Z",
        "last_error":"error sending request for url (http://127.0.0.1:22/): tcp connect error"}"#;
    let d: Delivery = serde_json::from_str(legacy).expect("an older record still reads");
    assert_eq!(d.last_error, Some(DeliveryError::Failed));
    assert_eq!(d.last_attempt_at, None);
    for text in ["HTTP 500", "http_5000", "http_404", "http_abc", ""] {
        assert_eq!(
            DeliveryError::from_code(text),
            DeliveryError::Failed,
            "{text:?}"
        );
    }
}

#[test]
fn statuses_map_to_their_class() {
    assert_eq!(DeliveryError::from_status(200), None);
    assert_eq!(DeliveryError::from_status(204), None);
    assert_eq!(
        DeliveryError::from_status(302),
        Some(DeliveryError::Http3xx)
    );
    assert_eq!(
        DeliveryError::from_status(404),
        Some(DeliveryError::Http4xx)
    );
    assert_eq!(
        DeliveryError::from_status(502),
        Some(DeliveryError::Http5xx(502))
    );
    assert_eq!(
        DeliveryError::from_status(101),
        Some(DeliveryError::HttpOther)
    );
    assert_eq!(
        DeliveryError::from_status(600),
        Some(DeliveryError::HttpOther)
    );
}
