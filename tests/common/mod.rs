//! Shared setup for end-to-end tests: a real server from [`centinela::run`]
//! on `127.0.0.1:0` with a temp data dir.

#![allow(dead_code)] // each test binary uses a different part

pub mod api;
pub mod browser;
pub mod fleet;
pub mod hook;
pub mod load;
pub mod page;
pub mod proc;
pub mod proxy;
pub mod tls;

use centinela::config::Config;
use centinela::{RunError, Services};
use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// Generous: CI shares two cores between many tests.
pub const WAIT: Duration = Duration::from_secs(60);

pub struct Server {
    pub addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<Result<(), RunError>>,
}

impl Server {
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    /// Triggers a graceful shutdown and waits for `run` to return.
    pub async fn shutdown(mut self) -> Result<(), RunError> {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        tokio::time::timeout(WAIT, self.task)
            .await
            .expect("shutdown within the timeout")
            .expect("run task did not panic")
    }
}

pub fn config_for(data_dir: &Path) -> Config {
    let mut c = Config::defaults();
    c.storage.data_dir = data_dir.to_path_buf();
    c
}

/// Starts `run` in-process and returns once the listener is bound.
pub async fn start(config: Config, services: Services) -> Server {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind 127.0.0.1:0");
    start_on(listener, config, services)
}

/// Starts `run` on a listener the caller bound (to know the address first).
pub fn start_on(listener: tokio::net::TcpListener, config: Config, services: Services) -> Server {
    let addr = listener.local_addr().expect("local addr");
    let (tx, rx) = oneshot::channel::<()>();
    let task = tokio::spawn(centinela::run(config, services, listener, async move {
        let _ = rx.await;
    }));
    Server {
        addr,
        stop: Some(tx),
        task,
    }
}
