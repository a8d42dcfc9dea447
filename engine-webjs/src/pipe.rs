//! DevTools over a pipe, not a TCP port. With `--remote-debugging-port` any
//! local process can attach to a session's browser and run code in the
//! tenant's WhatsApp; with `--remote-debugging-pipe` Chromium opens no port
//! at all and speaks only on its file descriptors 3 (commands in) and 4
//! (replies and events out), each message ended by a NUL byte.
//!
//! chromiumoxide speaks WebSocket only, so each launch gets a bridge: a
//! WebSocket listener on loopback at a path with a random token of 128 bits,
//! which accepts exactly one connection (ours, made at once) and then stops
//! listening, relaying frames to and from the pipe. The browser itself
//! listens on nothing.

use std::path::Path;
use std::process::Stdio;
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

/// Chromium's pipe fds are 3 and 4: the shell maps our stdin and stdout
/// onto them, then `exec`s the browser (so the pid we hold is the
/// browser's) with stdin and stdout on /dev/null.
const PIPE_EXEC: &str = r#"exec "$0" "$@" 3<&0 4>&1 </dev/null >/dev/null"#;

/// A browser launched with its DevTools on a pipe.
pub struct PipedBrowser {
    pub child: tokio::process::Child,
    /// Where chromiumoxide connects (once).
    pub ws_url: String,
    pub bridge: JoinHandle<()>,
    /// `Browser.getVersion`'s product, e.g. `HeadlessChrome/143.0.7499.169`.
    pub product: String,
}

/// The first command, answered by the browser before anyone attaches: it
/// proves the browser runs and speaks on its pipe.
const HANDSHAKE: &[u8] = b"{\"id\":0,\"method\":\"Browser.getVersion\"}\0";

/// Starts `exe` with `args` (which must include `--remote-debugging-pipe`
/// and no debugging port), waits up to `timeout` for it to answer on its
/// pipe (a browser that exits or never answers is an error at once, with
/// its exit status), then starts the bridge.
pub async fn launch(
    exe: &Path,
    args: &[String],
    timeout: std::time::Duration,
) -> std::io::Result<PipedBrowser> {
    let mut child = tokio::process::Command::new("/bin/sh")
        .arg("-c")
        .arg(PIPE_EXEC)
        .arg(exe)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()?;
    let (Some(mut to_browser), Some(from_browser)) = (child.stdin.take(), child.stdout.take())
    else {
        return Err(std::io::Error::other("the browser's pipe was not opened"));
    };
    let mut from_browser = BufReader::new(from_browser);
    let mut first = Vec::new();
    let answered = tokio::time::timeout(timeout, async {
        to_browser.write_all(HANDSHAKE).await?;
        to_browser.flush().await?;
        from_browser.read_until(0, &mut first).await
    })
    .await;
    match answered {
        Err(_) => {
            let _ = child.kill().await;
            return Err(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                "the browser did not answer on its DevTools pipe",
            ));
        }
        Ok(Ok(n)) if n > 0 => {}
        Ok(_) => {
            let status =
                tokio::time::timeout(std::time::Duration::from_secs(5), child.wait()).await;
            let why = match status {
                Ok(Ok(s)) => format!("it exited ({s})"),
                _ => "its pipe closed".to_owned(),
            };
            let _ = child.kill().await;
            return Err(std::io::Error::other(format!(
                "the browser did not start: {why}"
            )));
        }
    }
    first.pop();
    let product = serde_json::from_slice::<serde_json::Value>(&first)
        .ok()
        .and_then(|v| {
            v.pointer("/result/product")
                .and_then(|p| p.as_str())
                .map(str::to_owned)
        })
        .unwrap_or_default();
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let token = uuid::Uuid::new_v4().simple().to_string();
    let ws_url = format!("ws://{}/devtools/{token}", listener.local_addr()?);
    let bridge = tokio::spawn(bridge(listener, token, to_browser, from_browser));
    Ok(PipedBrowser {
        child,
        ws_url,
        bridge,
        product,
    })
}

/// Waits a moment for a browser asked to close to exit, then kills it.
pub async fn reap(child: &mut tokio::process::Child) {
    if tokio::time::timeout(std::time::Duration::from_secs(5), child.wait())
        .await
        .is_err()
    {
        let _ = child.kill().await;
    }
}

/// Accepts the one connection at `/devtools/<token>` (anything else is
/// refused), stops listening, and relays until either side closes.
pub async fn bridge<W, R>(listener: TcpListener, token: String, mut to_browser: W, from_browser: R)
where
    W: AsyncWrite + Unpin,
    R: AsyncRead + Unpin,
{
    use futures::{SinkExt, StreamExt};
    use subtle::ConstantTimeEq;
    use tokio_tungstenite::tungstenite::handshake::server::{ErrorResponse, Request, Response};
    use tokio_tungstenite::tungstenite::Message;
    let path = format!("/devtools/{token}");
    let ws = loop {
        let Ok((stream, _)) = listener.accept().await else {
            return;
        };
        // The signature is tungstenite's handshake callback.
        #[allow(clippy::result_large_err)]
        let check = |req: &Request, resp: Response| -> Result<Response, ErrorResponse> {
            // The token is a secret: compared in constant time.
            if bool::from(req.uri().path().as_bytes().ct_eq(path.as_bytes())) {
                Ok(resp)
            } else {
                let mut refused = ErrorResponse::new(Some("not found".into()));
                *refused.status_mut() = tokio_tungstenite::tungstenite::http::StatusCode::NOT_FOUND;
                Err(refused)
            }
        };
        if let Ok(ws) = tokio_tungstenite::accept_hdr_async(stream, check).await {
            break ws;
        }
    };
    drop(listener);
    let (mut sink, mut stream) = ws.split();
    let commands = async {
        while let Some(Ok(msg)) = stream.next().await {
            let bytes: &[u8] = match &msg {
                Message::Text(t) => t.as_str().as_bytes(),
                Message::Binary(b) => b,
                Message::Close(_) => return,
                _ => continue,
            };
            if to_browser.write_all(bytes).await.is_err()
                || to_browser.write_all(&[0]).await.is_err()
                || to_browser.flush().await.is_err()
            {
                return;
            }
        }
    };
    let replies = async {
        let mut reader = BufReader::new(from_browser);
        loop {
            let mut buf = Vec::new();
            match reader.read_until(0, &mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
            if buf.last() == Some(&0) {
                buf.pop();
            }
            // DevTools speaks UTF-8 JSON: no copy unless it does not.
            let text = String::from_utf8(buf)
                .unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned());
            if sink.send(Message::Text(text.into())).await.is_err() {
                return;
            }
        }
    };
    tokio::select! {
        () = commands => {}
        () = replies => {}
    }
    let _ = sink.close().await;
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::{SinkExt, StreamExt};
    use tokio_tungstenite::tungstenite::Message;

    #[tokio::test]
    async fn the_bridge_takes_one_connection_at_its_token_and_relays_nul_framed_messages() {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        // A fake browser: what the bridge writes to it, and what it says.
        let (to_browser, mut browser_in) = tokio::io::duplex(4096);
        let (mut browser_out, from_browser) = tokio::io::duplex(4096);
        let bridge = tokio::spawn(bridge(listener, "secret".into(), to_browser, from_browser));

        let wrong = tokio_tungstenite::connect_async(format!("ws://{addr}/devtools/guess")).await;
        assert!(wrong.is_err(), "a wrong token is refused");
        let (mut ws, _) = tokio_tungstenite::connect_async(format!("ws://{addr}/devtools/secret"))
            .await
            .expect("our connection");
        let second = tokio_tungstenite::connect_async(format!("ws://{addr}/devtools/secret")).await;
        assert!(second.is_err(), "nobody else attaches, token or not");

        ws.send(Message::Text(
            r#"{"id":1,"method":"Browser.getVersion"}"#.into(),
        ))
        .await
        .expect("send");
        let mut got = vec![0u8; 64];
        let n = tokio::io::AsyncReadExt::read(&mut browser_in, &mut got)
            .await
            .expect("read");
        assert_eq!(&got[..n], b"{\"id\":1,\"method\":\"Browser.getVersion\"}\0");

        browser_out
            .write_all(b"{\"id\":1,\"result\":{}}\0{\"method\":\"Target.targetCreated\"}\0")
            .await
            .expect("write");
        let first = ws.next().await.expect("a reply").expect("ok");
        let second = ws.next().await.expect("an event").expect("ok");
        assert_eq!(first, Message::Text(r#"{"id":1,"result":{}}"#.into()));
        assert_eq!(
            second,
            Message::Text(r#"{"method":"Target.targetCreated"}"#.into())
        );

        drop(browser_out);
        tokio::time::timeout(std::time::Duration::from_secs(10), bridge)
            .await
            .expect("the bridge ends with the browser")
            .expect("no panic");
    }
}
