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
