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
//!
//! A browser dies with the process that launched it. `kill -9` of the
//! service runs no destructor; Chromium shuts itself down when its DevTools
//! pipe closes, which the kernel does as the service dies, but that is a
//! graceful shutdown of a browser that may be busy or hung, and a browser
//! whose pipe was inherited by anyone else would see no end at all. So each
//! browser is also started with `PR_SET_PDEATHSIG(SIGKILL)`: the kernel
//! SIGKILLs it when its parent goes. That "parent" is the *thread* that
//! forked it, not the process, so every launch forks on one thread that
//! lives as long as the process (the launcher, [`spawn`]): tokio's threads
//! come and go (a worker that ran `block_in_place` ends up in the blocking
//! pool, whose idle threads exit after 10 s, and a `spawn_blocking` thread
//! may exit as soon as it is done), and a browser forked on one of them
//! would be SIGKILLed with it. The `sh` that maps the pipe `exec`s Chromium
//! in the same process, which keeps the signal (it survives `execve` for
//! binaries that are not set-uid). Chromium's own children (zygote,
//! renderers, utilities) end when the main process does. A frozen service
//! (SIGSTOP) is no dead parent and closes no pipe: that case is the page's
//! dead-man switch (see the crate docs).

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
    let mut cmd = tokio::process::Command::new("/bin/sh");
    cmd.arg("-c")
        .arg(PIPE_EXEC)
        .arg(exe)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true);
    let mut child = spawn(cmd).await?;
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

/// One request to the launcher thread: the command, the runtime the child
/// belongs to (its exit is reaped by that runtime's process driver), and
/// where the child goes.
struct SpawnRequest {
    cmd: tokio::process::Command,
    runtime: tokio::runtime::Handle,
    reply: tokio::sync::oneshot::Sender<std::io::Result<tokio::process::Child>>,
}

/// Starts `cmd` on the launcher thread with [`parent_death_signal`]: the
/// child is SIGKILLed when this process dies, and only then (see the module
/// docs on why one long-lived thread forks). Must be called on a tokio
/// runtime. A caller that stops waiting (a cancelled start) drops the child,
/// which `kill_on_drop` (if set) ends.
pub async fn spawn(mut cmd: tokio::process::Command) -> std::io::Result<tokio::process::Child> {
    use std::sync::{mpsc, OnceLock};
    // The sender lives in a static, so the launcher's loop never ends and
    // its thread lives as long as the process.
    static LAUNCHER: OnceLock<Option<mpsc::Sender<SpawnRequest>>> = OnceLock::new();
    let launcher = LAUNCHER.get_or_init(|| {
        let (tx, rx) = mpsc::channel::<SpawnRequest>();
        std::thread::Builder::new()
            .name("centinela-browser-launcher".into())
            .spawn(move || {
                for mut req in rx {
                    let _runtime = req.runtime.enter();
                    let _ = req.reply.send(req.cmd.spawn());
                }
            })
            .ok()
            .map(|_| tx)
    });
    let Some(launcher) = launcher else {
        return Err(std::io::Error::other(
            "the browser launcher thread could not start",
        ));
    };
    parent_death_signal(&mut cmd);
    let (reply, child) = tokio::sync::oneshot::channel();
    let req = SpawnRequest {
        cmd,
        runtime: tokio::runtime::Handle::current(),
        reply,
    };
    let gone = || std::io::Error::other("the browser launcher thread is gone");
    launcher.send(req).map_err(|_| gone())?;
    child.await.map_err(|_| gone())?
}

/// Sets `PR_SET_PDEATHSIG(SIGKILL)` in the child between fork and exec.
/// If the parent died before that (the fork raced the death), the child's
/// parent is already someone else and the signal would never come: it
/// then refuses to exec (`ESRCH`).
#[allow(unsafe_code)]
fn parent_death_signal(cmd: &mut tokio::process::Command) {
    let parent = std::process::id();
    // SAFETY: the closure runs in the forked child before exec, where only
    // async-signal-safe calls are allowed: `prctl` and `getppid` are plain
    // system calls, and both errors are made from an errno without
    // allocating. It touches no memory shared with the parent.
    unsafe {
        cmd.pre_exec(move || {
            let signal = libc::SIGKILL as libc::c_ulong;
            if libc::prctl(libc::PR_SET_PDEATHSIG, signal, 0, 0, 0) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            if u32::try_from(libc::getppid()).ok() != Some(parent) {
                return Err(std::io::Error::from_raw_os_error(libc::ESRCH));
            }
            Ok(())
        });
    }
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
    use std::io::BufRead;
    use std::time::Duration;
    use tokio_tungstenite::tungstenite::Message;

    /// Set in the copy of this test binary that plays the service.
    const CHILD: &str = "CENTINELA_TEST_PDEATHSIG_CHILD";
    const PID_LINE: &str = "spawned pid=";

    /// The service's half of the test below: spawns `sleep` through the
    /// launcher from a runtime on a thread that then exits (a
    /// `spawn_blocking`-like thread), prints its pid, and waits to be
    /// killed.
    fn play_the_service() -> ! {
        let pid = std::thread::spawn(|| {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime");
            rt.block_on(async {
                let mut cmd = tokio::process::Command::new("sleep");
                cmd.arg("600");
                spawn(cmd).await.expect("spawn").id().expect("pid")
            })
        })
        .join()
        .expect("the spawning thread");
        println!("{PID_LINE}{pid}");
        loop {
            std::thread::park();
        }
    }

    fn alive(pid: u32) -> bool {
        crate::process::is_alive(pid)
    }

    #[test]
    fn what_a_process_spawned_dies_with_it_not_with_the_spawning_thread() {
        if std::env::var_os(CHILD).is_some() {
            play_the_service();
        }
        let exe = std::env::current_exe().expect("this test binary");
        let mut service = std::process::Command::new(exe)
            .args([
                "pipe::tests::what_a_process_spawned_dies_with_it_not_with_the_spawning_thread",
                "--exact",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(CHILD, "1")
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("re-run this test binary as the service");
        let out = service.stdout.take().expect("stdout");
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(out).lines().map_while(Result::ok) {
                // libtest's "test … ... " may lead the line.
                if let Some((_, pid)) = line.split_once(PID_LINE) {
                    let _ = tx.send(pid.trim().parse::<u32>().ok());
                }
            }
        });
        let Ok(Some(pid)) = rx.recv_timeout(Duration::from_secs(30)) else {
            let _ = service.kill();
            panic!("the service never said what it spawned");
        };
        assert!(
            alive(pid),
            "the spawning thread exited; the process it started lives on"
        );

        let _ = service.kill(); // SIGKILL: no destructor runs
        let _ = service.wait();
        // Not our child: its exit is waited on through a pidfd.
        let survived = !crate::process::wait_exit(&[pid], Duration::from_secs(10)).is_empty();
        if survived {
            crate::process::kill(&[pid]);
        }
        assert!(!survived, "the parent-death signal killed {pid}");
    }

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
