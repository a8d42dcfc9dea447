//! The HTTP listener: accepts connections, speaks HTTP/1.1 and HTTP/2 (over
//! TLS the client picks by ALPN; in clear text by its preface), and keeps a
//! hostile or broken client from using up the process:
//!
//! - at most `max_connections` connections are open at once; while that many
//!   are, further clients wait in the kernel's accept backlog rather than on
//!   a file descriptor of ours (descriptors that Chromium launches need);
//! - a client that has not sent a whole request head within
//!   `header_timeout` is cut: during the TLS handshake, before its first
//!   request, and between keep-alive requests (a slowloris).
//!
//! Every request carries the peer's address as axum's
//! `ConnectInfo<SocketAddr>`, as `into_make_service_with_connect_info` did.
//! On shutdown, no new connection is accepted and the open ones are told to
//! finish (HTTP/1 after the response in flight, HTTP/2 by GOAWAY);
//! dropping the returned future cuts them all. What this file does not own:
//! the routes ([`crate::router`]) and the order in which the service stops
//! (the root crate).

use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::Router;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto::Builder;
use hyper_util::service::TowerToHyperService;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::path::Path;
use std::pin::pin;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{watch, Notify, Semaphore};
use tokio::task::JoinSet;
use tokio::time::Instant;
pub use tokio_rustls::TlsAcceptor;
use tower::ServiceExt;

/// What one client may hold of the server.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// A request head (and, first, the TLS handshake) must arrive within this.
    pub header_timeout: Duration,
    /// Connections open at once.
    pub max_connections: usize,
}

impl Default for Limits {
    /// `config/default.toml`'s `server.header_timeout` and
    /// `server.max_connections`, for a listener without a config
    /// (`centinela sim`).
    fn default() -> Self {
        Self {
            header_timeout: Duration::from_secs(10),
            max_connections: 512,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("reading {path}: {source}")]
    Pem {
        path: String,
        source: rustls::pki_types::pem::Error,
    },
    #[error("{path} holds no certificate")]
    NoCertificate { path: String },
    #[error("configuring TLS: {0}")]
    Config(#[from] rustls::Error),
    #[error("making the self-signed certificate: {0}")]
    Certificate(#[from] rcgen::Error),
}

/// TLS for the service from PEM files: the certificate chain (leaf first)
/// and its private key (PKCS#8, PKCS#1 or SEC1). Offers HTTP/2 and
/// HTTP/1.1 by ALPN. Errors name the file, so a bad path stops the start
/// with a message the operator can act on.
pub fn tls_from_pem(cert: &Path, key: &Path) -> Result<TlsAcceptor, TlsError> {
    fn pem(path: &Path) -> impl Fn(rustls::pki_types::pem::Error) -> TlsError + '_ {
        move |source| TlsError::Pem {
            path: path.display().to_string(),
            source,
        }
    }
    let chain = CertificateDer::pem_file_iter(cert)
        .map_err(pem(cert))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(pem(cert))?;
    if chain.is_empty() {
        return Err(TlsError::NoCertificate {
            path: cert.display().to_string(),
        });
    }
    let key = PrivateKeyDer::from_pem_file(key).map_err(pem(key))?;
    acceptor(chain, key, &[b"h2", b"http/1.1"])
}

/// A TLS acceptor for `chain` and `key`, offering `alpn` in that order.
pub fn acceptor(
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
    alpn: &[&[u8]],
) -> Result<TlsAcceptor, TlsError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(chain, key)?;
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    Ok(TlsAcceptor::from(Arc::new(config)))
}

/// Serves `app` on `listener` (through `tls` when given) until `shutdown`
/// completes, then waits for the open connections to finish.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    tls: Option<TlsAcceptor>,
    limits: Limits,
    shutdown: impl Future<Output = ()>,
) -> io::Result<()> {
    let slots = Arc::new(Semaphore::new(limits.max_connections.max(1)));
    let (stop, stopped) = watch::channel(());
    let mut connections = JoinSet::new();
    let mut shutdown = pin!(shutdown);
    loop {
        // A slot first: while every slot is taken, nothing is accepted.
        let slot = tokio::select! {
            slot = slots.clone().acquire_owned() => slot.expect("the semaphore is never closed"),
            Some(_) = connections.join_next(), if !connections.is_empty() => continue,
            () = &mut shutdown => break,
        };
        let (tcp, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(pair) => pair,
                Err(e) => {
                    // Out of descriptors and the like: back off, as axum does.
                    tracing::warn!(error = %e, "accepting a connection failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            Some(_) = connections.join_next(), if !connections.is_empty() => continue,
            () = &mut shutdown => break,
        };
        let conn = Connection {
            app: app.clone(),
            peer,
            deadline: Instant::now() + limits.header_timeout,
            header_timeout: limits.header_timeout,
            stopped: stopped.clone(),
        };
        let tls = tls.clone();
        connections.spawn(async move {
            conn.run(tcp, tls).await;
            drop(slot);
        });
    }
    drop(listener);
    let _ = stop.send(());
    while connections.join_next().await.is_some() {}
    Ok(())
}

/// One accepted client.
struct Connection {
    app: Router,
    peer: SocketAddr,
    /// When its first request head must have arrived.
    deadline: Instant,
    header_timeout: Duration,
    stopped: watch::Receiver<()>,
}

impl Connection {
    async fn run(self, tcp: TcpStream, tls: Option<TlsAcceptor>) {
        let _ = tcp.set_nodelay(true);
        let Some(tls) = tls else {
            return self.http(tcp).await;
        };
        match tokio::time::timeout_at(self.deadline, tls.accept(tcp)).await {
            Ok(Ok(stream)) => self.http(stream).await,
            Ok(Err(e)) => tracing::debug!(peer = %self.peer, error = %e, "TLS handshake failed"),
            Err(_) => tracing::debug!(peer = %self.peer, "TLS handshake timed out"),
        }
    }

    /// Serves requests on `io` until the client leaves, is too slow, or the
    /// server stops.
    async fn http<I>(mut self, io: I)
    where
        I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let first = Arc::new(Notify::new());
        let service = {
            let (app, peer, first) = (self.app.clone(), self.peer, first.clone());
            tower::service_fn(move |mut req: hyper::Request<Incoming>| {
                first.notify_one();
                req.extensions_mut().insert(ConnectInfo(peer));
                app.clone().oneshot(req.map(Body::new))
            })
        };
        let mut builder = Builder::new(TokioExecutor::new());
        // hyper's own timer cuts a head that is slow to arrive once HTTP/1
        // is under way (also between keep-alive requests); the deadline
        // below covers the bytes before, when the version is not yet known.
        builder
            .http1()
            .timer(TokioTimer::new())
            .header_read_timeout(self.header_timeout);
        // The CONNECT protocol: WebSockets over HTTP/2.
        builder
            .http2()
            .timer(TokioTimer::new())
            .enable_connect_protocol();
        let conn = builder
            .serve_connection_with_upgrades(TokioIo::new(io), TowerToHyperService::new(service));
        let mut conn = pin!(conn);
        let mut first_request = pin!(tokio::time::timeout_at(self.deadline, first.notified()));
        let (mut waiting, mut stopping) = (true, false);
        loop {
            tokio::select! {
                served = conn.as_mut() => {
                    if let Err(e) = served {
                        tracing::debug!(peer = %self.peer, error = %e, "connection ended with an error");
                    }
                    return;
                }
                came = &mut first_request, if waiting => match came {
                    Ok(()) => waiting = false,
                    Err(_) => {
                        tracing::debug!(peer = %self.peer, "no request head within the header timeout; closing");
                        return;
                    }
                },
                _ = self.stopped.changed(), if !stopping => {
                    stopping = true;
                    conn.as_mut().graceful_shutdown();
                }
            }
        }
    }
}
