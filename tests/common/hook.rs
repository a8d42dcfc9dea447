//! A local webhook receiver: answers with the status in `respond` and
//! reports every request, so a test sees each delivery and checks its
//! signature against the secret it expects.

use axum::body::Bytes;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use centinela_actors::messaging::webhooks::{hmac_sha256_hex, verify_signature};
use serde_json::Value;
use std::sync::atomic::{AtomicU16, Ordering};
use std::sync::Arc;
use tokio::sync::mpsc;

pub struct Receiver {
    pub url: String,
    pub respond: Arc<AtomicU16>,
    rx: mpsc::UnboundedReceiver<(String, String)>,
}

/// A receiver on `127.0.0.1:0`, answering 200 until told otherwise.
pub async fn receiver() -> Receiver {
    let respond = Arc::new(AtomicU16::new(200));
    let (tx, rx) = mpsc::unbounded_channel();
    let status = respond.clone();
    let app = axum::Router::new().route(
        "/hook",
        post(move |headers: HeaderMap, body: Bytes| {
            let (tx, status) = (tx.clone(), status.clone());
            async move {
                let sig = headers
                    .get("x-centinela-signature")
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or_default()
                    .to_owned();
                let _ = tx.send((sig, String::from_utf8_lossy(&body).into_owned()));
                StatusCode::from_u16(status.load(Ordering::SeqCst)).unwrap_or(StatusCode::OK)
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let url = format!("http://{}/hook", listener.local_addr().expect("addr"));
    tokio::spawn(async move { axum::serve(listener, app).await });
    Receiver { url, respond, rx }
}

impl Receiver {
    /// The next delivery within the wait, its signature checked against
    /// `secret`: (signature header, JSON body).
    pub async fn next(&mut self, secret: &str) -> (String, Value) {
        let (sig, body) = tokio::time::timeout(super::WAIT, self.rx.recv())
            .await
            .expect("a delivery")
            .expect("open");
        assert_eq!(
            sig,
            format!(
                "sha256={}",
                hmac_sha256_hex(secret.as_bytes(), body.as_bytes())
            ),
            "signature verifies"
        );
        assert!(
            verify_signature(secret.as_bytes(), body.as_bytes(), &sig),
            "and the receiver's check accepts it"
        );
        (sig, serde_json::from_str(&body).expect("json body"))
    }

    /// The next delivery whose body matches `pred` (others are skipped).
    pub async fn next_matching(&mut self, secret: &str, pred: impl Fn(&Value) -> bool) -> Value {
        loop {
            let (_, body) = self.next(secret).await;
            if pred(&body) {
                return body;
            }
        }
    }
}
