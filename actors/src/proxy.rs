//! Proxy URLs: the server a browser connects through, its credentials, and
//! the egress path admission counts per (the proxy without credentials, or
//! the server's own connection).

/// Splits `scheme://user:pass@host:port` into the server and its credentials.
pub fn split(proxy: &str) -> (String, Option<(String, String)>) {
    let (scheme, rest) = proxy.split_once("://").unwrap_or(("http", proxy));
    match rest.rsplit_once('@') {
        Some((creds, host)) => {
            let (user, pass) = creds.split_once(':').unwrap_or((creds, ""));
            (
                format!("{scheme}://{host}"),
                Some((user.to_owned(), pass.to_owned())),
            )
        }
        None => (format!("{scheme}://{rest}"), None),
    }
}

/// The network path of a session: its proxy without credentials, or
/// `server` for the server's own connection.
pub fn egress(proxy: Option<&str>) -> String {
    proxy.map_or_else(|| "server".to_owned(), |p| split(p).0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proxies_split_into_server_and_credentials() {
        assert_eq!(
            split("http://proxy.example:8080"),
            ("http://proxy.example:8080".into(), None)
        );
        assert_eq!(
            split("http://user:p%40ss@proxy.local:3128"),
            (
                "http://proxy.local:3128".into(),
                Some(("user".into(), "p%40ss".into()))
            )
        );
        assert_eq!(
            split("proxy.local:3128"),
            ("http://proxy.local:3128".into(), None)
        );
    }

    #[test]
    fn the_egress_never_carries_credentials() {
        assert_eq!(egress(None), "server");
        assert_eq!(
            egress(Some("socks5://u:secret@10.0.0.1:1080")),
            "socks5://10.0.0.1:1080"
        );
    }
}
