//! HTTPS for `centinela sim --tls`: a self-signed certificate for
//! `web.whatsapp.com`, `localhost` and `127.0.0.1`, made at start. With it,
//! a browser started with
//! `--host-resolver-rules=MAP web.whatsapp.com ADDR --ignore-certificate-errors`
//! loads the simulator exactly where it would load WhatsApp Web — which is
//! how an unmodified whatsapp-web.js is pointed at it. The simulator only;
//! the service's own TLS comes from the operator's PEM files
//! ([`crate::serve::tls_from_pem`]).

use crate::serve::{acceptor, TlsError};
use tokio_rustls::TlsAcceptor;

/// An acceptor under a fresh self-signed certificate; HTTP/1.1 only, as
/// the page's event streams expect.
pub fn self_signed() -> Result<TlsAcceptor, TlsError> {
    let names = ["web.whatsapp.com", "localhost", "127.0.0.1"].map(String::from);
    let certified = rcgen::generate_simple_self_signed(names.to_vec())?;
    let cert = certified.cert.der().clone();
    let key = rustls::pki_types::PrivateKeyDer::Pkcs8(certified.signing_key.serialize_der().into());
    acceptor(vec![cert], key, &[b"http/1.1"])
}
