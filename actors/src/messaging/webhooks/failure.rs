//! What a failed send is called: a reqwest error reduced to the generic
//! [`DeliveryError`] a tenant may see, read from the error's source chain
//! (our resolver's refusal, the socket's connection refused, rustls) — the
//! error's text, which names addresses, ports and the resolver's words, is
//! never kept. It decides nothing about retries.

use super::resolve::Refused;
use crate::store::DeliveryError;
use std::error::Error as StdError;
use std::io;

/// The failure code of a request that got no HTTP answer.
pub fn classify(e: &reqwest::Error) -> DeliveryError {
    let mut refused_socket = false;
    let mut tls = false;
    let mut todo: Vec<&(dyn StdError + 'static)> = vec![e];
    while let Some(err) = todo.pop() {
        match err.downcast_ref::<Refused>() {
            Some(Refused::Forbidden) => return DeliveryError::ForbiddenTarget,
            Some(Refused::Dns) => return DeliveryError::Dns,
            None => {}
        }
        tls |= err.downcast_ref::<rustls::Error>().is_some();
        if let Some(io) = err.downcast_ref::<io::Error>() {
            refused_socket |= io.kind() == io::ErrorKind::ConnectionRefused;
            // io::Error's `source` skips the error it wraps (tokio-rustls
            // wraps rustls's in two): look inside too.
            if let Some(inner) = io.get_ref() {
                todo.push(inner);
            }
        }
        todo.extend(err.source());
    }
    if e.is_timeout() {
        DeliveryError::Timeout
    } else if refused_socket {
        DeliveryError::ConnectionRefused
    } else if tls {
        DeliveryError::Tls
    } else if e.is_connect() {
        DeliveryError::ConnectFailed
    } else {
        DeliveryError::RequestFailed
    }
}
