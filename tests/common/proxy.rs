//! A small HTTP forward proxy for tests that demands a login (407 with
//! `Proxy-Authenticate: Basic`), then forwards plain requests and CONNECT
//! tunnels. It counts what it saw, so a test can tell that the browser
//! answered the proxy's challenge with the right credentials.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

#[derive(Default, Debug)]
pub struct ProxyStats {
    /// 407s sent (no or wrong credentials).
    pub challenged: AtomicU64,
    /// Requests forwarded with the right credentials.
    pub forwarded: AtomicU64,
}

pub struct AuthProxy {
    pub addr: SocketAddr,
    pub stats: Arc<ProxyStats>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for AuthProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl AuthProxy {
    pub async fn start(user: &str, pass: &str) -> AuthProxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let stats = Arc::new(ProxyStats::default());
        let expected = centinela_web::sim::b64(format!("{user}:{pass}").as_bytes());
        let s = stats.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((conn, _)) = listener.accept().await else {
                    return;
                };
                tokio::spawn(serve(conn, expected.clone(), s.clone()));
            }
        });
        AuthProxy { addr, stats, task }
    }
}

async fn serve(mut client: TcpStream, expected: String, stats: Arc<ProxyStats>) {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        match client.read(&mut byte).await {
            Ok(1) => head.push(byte[0]),
            _ => return,
        }
        if head.len() > 64 * 1024 {
            return;
        }
    }
    let text = String::from_utf8_lossy(&head).to_string();
    let mut lines = text.split("\r\n");
    let request = lines.next().unwrap_or_default().to_owned();
    let headers: Vec<&str> = lines.filter(|l| !l.is_empty()).collect();
    let authorized = headers.iter().any(|h| {
        h.split_once(':').is_some_and(|(k, v)| {
            let mut value = v.split_whitespace();
            k.trim().eq_ignore_ascii_case("proxy-authorization")
                && value
                    .next()
                    .is_some_and(|s| s.eq_ignore_ascii_case("basic"))
                && value.next() == Some(expected.as_str())
        })
    });
    if !authorized {
        stats.challenged.fetch_add(1, Ordering::SeqCst);
        let _ = client
            .write_all(b"HTTP/1.1 407 Proxy Authentication Required\r\nProxy-Authenticate: Basic realm=\"test\"\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
            .await;
        return;
    }
    stats.forwarded.fetch_add(1, Ordering::SeqCst);
    let mut parts = request.split(' ');
    let (method, target) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    if method == "CONNECT" {
        let Ok(mut upstream) = TcpStream::connect(target).await else {
            let _ = client.write_all(b"HTTP/1.1 502 Bad Gateway\r\n\r\n").await;
            return;
        };
        if client
            .write_all(b"HTTP/1.1 200 Connection Established\r\n\r\n")
            .await
            .is_err()
        {
            return;
        }
        let _ = tokio::io::copy_bidirectional(&mut client, &mut upstream).await;
        return;
    }
    // Absolute form: http://host:port/path → origin form to the host.
    let Some(rest) = target.strip_prefix("http://") else {
        return;
    };
    let (host, path) = rest
        .split_once('/')
        .map_or((rest, "/".to_owned()), |(h, p)| (h, format!("/{p}")));
    let Ok(mut upstream) = TcpStream::connect(host).await else {
        let _ = client.write_all(b"HTTP/1.1 502 Bad Gateway\r\n\r\n").await;
        return;
    };
    let mut forwarded = format!("{method} {path} HTTP/1.1\r\n");
    for h in headers {
        let name = h
            .split(':')
            .next()
            .unwrap_or("")
            .trim()
            .to_ascii_lowercase();
        if name.starts_with("proxy-") || name == "connection" {
            continue;
        }
        forwarded.push_str(h);
        forwarded.push_str("\r\n");
    }
    forwarded.push_str("Connection: close\r\n\r\n");
    if upstream.write_all(forwarded.as_bytes()).await.is_err() {
        return;
    }
    let _ = tokio::io::copy_bidirectional(&mut client, &mut upstream).await;
}
