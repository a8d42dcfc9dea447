//! One attempt against real sockets on 127.0.0.1: what each failure is
//! recorded as, that a refused address is never connected to (the
//! listener's accept queue stays empty), and that redirects are not
//! followed.

use super::lanes::post;
use super::resolve::Guard;
use super::*;
use crate::cidr::CidrSet;
use crate::ids::TenantId;
use crate::store::{DeliveryError, WebhookTarget};
use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

/// Answers from a table; unknown names do not resolve.
struct Table(HashMap<&'static str, IpAddr>);

impl Lookup for Table {
    fn lookup(&self, host: &str) -> LookupFuture {
        let answer = self.0.get(host).copied();
        Box::pin(async move {
            answer
                .map(|ip| vec![ip])
                .ok_or_else(|| std::io::Error::other("no such name"))
        })
    }
}

fn guard(allow_loopback: bool) -> Guard {
    let loopback: IpAddr = "127.0.0.1".parse().expect("ip");
    let table = Table(HashMap::from([("rebound.test", loopback)]));
    let allow = if allow_loopback {
        CidrSet::parse(["127.0.0.0/8"]).expect("cidr")
    } else {
        CidrSet::default()
    };
    Guard::new(AddressPolicy::new(allow), Arc::new(table))
}

async fn attempt_at(guard: &Guard, url: &str, timeout: Duration) -> Result<(), DeliveryError> {
    let client = client(timeout, guard.clone()).expect("client");
    let target = WebhookTarget {
        tenant: TenantId::new("clinic").expect("id"),
        url: url.to_owned(),
        secret: "a-webhook-secret-of-some-length".into(),
    };
    let d = Delivery {
        id: "d_1".into(),
        tenant: target.tenant.clone(),
        body: "{}".into(),
        status: DeliveryStatus::Pending,
        attempts: 0,
        next_at: crate::clock::Timestamp::from_millis(0),
        last_error: None,
        created_at: crate::clock::Timestamp::from_millis(0),
        last_attempt_at: None,
    };
    post(guard, &client, &target, &d).await
}

/// A listener nobody should reach: a plain std socket, so "nothing
/// connected" is a non-blocking `accept` that would block.
fn untouched() -> (std::net::TcpListener, SocketAddr) {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    l.set_nonblocking(true).expect("non-blocking");
    let addr = l.local_addr().expect("addr");
    (l, addr)
}

fn assert_untouched(l: &std::net::TcpListener) {
    match l.accept() {
        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
        other => panic!("something connected: {other:?}"),
    }
}

/// Answers every request with `head` (a status line and headers), or with
/// nothing at all when `head` is None (it closes after reading).
async fn answering(head: Option<String>) -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = l.local_addr().expect("addr");
    tokio::spawn(async move {
        while let Ok((mut sock, _)) = l.accept().await {
            let mut buf = vec![0u8; 8192];
            let mut seen = Vec::new();
            while !seen.windows(4).any(|w| w == b"\r\n\r\n") {
                match sock.read(&mut buf).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => seen.extend_from_slice(&buf[..n]),
                }
            }
            if let Some(head) = &head {
                let reply = format!("{head}\r\ncontent-length: 0\r\nconnection: close\r\n\r\n");
                let _ = sock.write_all(reply.as_bytes()).await;
            }
        }
    });
    addr
}

/// Writes `text` to every connection at once, whatever it is sent (a TLS
/// client's hello gets plain HTTP back).
async fn greeting(text: &'static str) -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = l.local_addr().expect("addr");
    tokio::spawn(async move {
        while let Ok((mut sock, _)) = l.accept().await {
            let _ = sock.write_all(text.as_bytes()).await;
        }
    });
    addr
}

const LONG: Duration = Duration::from_secs(30);

#[tokio::test]
async fn a_literal_refused_address_is_never_connected_to() {
    let (l, addr) = untouched();
    let url = format!("http://{addr}/hook");
    assert_eq!(
        attempt_at(&guard(false), &url, LONG).await,
        Err(DeliveryError::ForbiddenTarget)
    );
    let mapped = format!("http://[::ffff:127.0.0.1]:{}/hook", addr.port());
    assert_eq!(
        attempt_at(&guard(false), &mapped, LONG).await,
        Err(DeliveryError::ForbiddenTarget)
    );
    assert_untouched(&l);
}

#[tokio::test]
async fn a_name_that_resolves_to_a_refused_address_gets_no_connection() {
    let (l, addr) = untouched();
    let url = format!("http://rebound.test:{}/hook", addr.port());
    assert_eq!(
        attempt_at(&guard(false), &url, LONG).await,
        Err(DeliveryError::ForbiddenTarget),
        "the client's own resolver refuses it at connect time"
    );
    assert_untouched(&l);
}

#[tokio::test]
async fn failures_are_generic_codes() {
    let g = guard(true);
    let closed = {
        let (l, addr) = untouched();
        drop(l);
        addr
    };
    assert_eq!(
        attempt_at(&g, &format!("http://{closed}/"), LONG).await,
        Err(DeliveryError::ConnectionRefused)
    );
    assert_eq!(
        attempt_at(&g, "http://nowhere.test/", LONG).await,
        Err(DeliveryError::Dns)
    );
    let ok = answering(Some("HTTP/1.1 204 No Content".into())).await;
    assert_eq!(attempt_at(&g, &format!("http://{ok}/"), LONG).await, Ok(()));
    let down = answering(Some("HTTP/1.1 503 Service Unavailable".into())).await;
    assert_eq!(
        attempt_at(&g, &format!("http://{down}/"), LONG).await,
        Err(DeliveryError::Http5xx(503))
    );
    let missing = answering(Some("HTTP/1.1 404 Not Found".into())).await;
    assert_eq!(
        attempt_at(&g, &format!("http://{missing}/"), LONG).await,
        Err(DeliveryError::Http4xx)
    );
    let hangs_up = answering(None).await;
    assert_eq!(
        attempt_at(&g, &format!("http://{hangs_up}/"), LONG).await,
        Err(DeliveryError::RequestFailed)
    );
    let plain = greeting("HTTP/1.1 400 Bad Request\r\n\r\n").await;
    assert_eq!(
        attempt_at(&g, &format!("https://{plain}/"), LONG).await,
        Err(DeliveryError::Tls),
        "HTTPS to a server that does not speak TLS"
    );
}

#[tokio::test]
async fn a_receiver_that_never_answers_is_a_timeout() {
    let l = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = l.local_addr().expect("addr");
    let holder = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((sock, _)) = l.accept().await {
            held.push(sock);
        }
    });
    assert_eq!(
        attempt_at(
            &guard(true),
            &format!("http://{addr}/"),
            Duration::from_millis(300)
        )
        .await,
        Err(DeliveryError::Timeout)
    );
    holder.abort();
}

#[tokio::test]
async fn redirects_are_not_followed() {
    let (l, elsewhere) = untouched();
    let head = format!("HTTP/1.1 307 Temporary Redirect\r\nlocation: http://{elsewhere}/");
    let redirecting = answering(Some(head)).await;
    assert_eq!(
        attempt_at(&guard(true), &format!("http://{redirecting}/"), LONG).await,
        Err(DeliveryError::Http3xx)
    );
    assert_untouched(&l);
}

#[tokio::test]
async fn a_delivery_listed_before_its_tenant_was_purged_never_reaches_a_later_target() {
    use crate::clock::{ManualClock, Timestamp};
    use crate::ids::{SessionId, TenantId};
    use crate::store::WebhookTarget;
    use crate::store::{AccountRepo, SessionRecord, SessionRepo, Store, TenantRecord};
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Store::open(dir.path()).expect("open");
    let clinic = TenantId::new("clinic").expect("id");
    let create = |store: &Store| {
        store
            .create_tenant(&TenantRecord {
                id: clinic.clone(),
                name: "clinic".into(),
                created_at: Timestamp::from_millis(1),
            })
            .expect("tenant");
    };
    create(&store);
    let s1 = SessionId::new("s1").expect("id");
    store
        .put_session(&SessionRecord::of(&clinic, &s1))
        .expect("session");
    let old = WebhookTarget {
        tenant: clinic.clone(),
        url: "http://127.0.0.1:9/old-customer".into(),
        secret: "the-old-customers-secret".into(),
    };
    assert!(store.set_target(&old).expect("set"));
    let d = Delivery {
        id: "d1".into(),
        tenant: clinic.clone(),
        body: "{\"text\":\"the old customer's message\"}".into(),
        status: DeliveryStatus::Pending,
        attempts: 0,
        next_at: Timestamp::from_millis(1),
        last_error: None,
        created_at: Timestamp::from_millis(1),
        last_attempt_at: None,
    };
    assert!(store.queue_delivery(&d, &s1).expect("queue"));
    // The task lists what is due, then the tenant is purged and
    // re-created with a target of its own before the attempt.
    let listed = store.pending().expect("list");
    store.purge_tenant(&clinic).expect("purge");
    create(&store);
    let new_customer = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    new_customer.set_nonblocking(true).expect("nonblocking");
    let url = format!("http://{}/hook", new_customer.local_addr().expect("addr"));
    let new = WebhookTarget {
        tenant: clinic.clone(),
        url,
        secret: "the-new-customers-secret".into(),
    };
    assert!(store.set_target(&new).expect("set"));

    // Loopback allowed: only the purge stands between the delivery and
    // the new customer's listener.
    let guard = guard(true);
    let me = Webhooks {
        repo: Arc::new(store.clone()),
        clock: Arc::new(ManualClock::new(Timestamp::from_millis(1_000))),
        kick: Arc::new(Notify::new()),
        guard: guard.clone(),
        events: broadcast::channel(16).0,
        check_wait: Duration::from_secs(1),
    };
    let mut events = me.events.subscribe();
    let cfg = Arc::new(WebhooksConfig {
        max_attempts: 3,
        backoff_base: Duration::from_secs(5),
        backoff_max: Duration::from_secs(60),
        timeout: Duration::from_millis(500),
        allow_private: CidrSet::parse(["127.0.0.0/8"]).expect("cidr"),
        retention: Duration::from_secs(7 * 86_400),
        max_in_flight: 4,
    });
    let http = client(cfg.timeout, guard).expect("client");
    for d in listed {
        lanes::attempt(me.clone(), http.clone(), cfg.clone(), d).await;
    }
    assert!(events.try_recv().is_err(), "no attempt was recorded");
    // Had it been sent, its connection would be waiting by now.
    assert_eq!(
        new_customer.accept().map_err(|e| e.kind()).err(),
        Some(std::io::ErrorKind::WouldBlock),
        "nothing connected to the new customer's URL"
    );
    assert_eq!(
        store.delivery("d1").expect("read"),
        None,
        "not written back"
    );
}
