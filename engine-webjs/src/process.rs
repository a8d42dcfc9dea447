//! Owning Chromium's processes: finding every process a session's browser
//! started and killing them, so no Chromium outlives its session — even after
//! the browser's main process was SIGKILLed and its children were re-parented
//! to init. Three nets: the live descendants of the main process, the
//! descendants remembered by the driver's watchdog (for after the main
//! process died), and anything whose command line names the profile.
//! [`sweep`] waits until they are gone; [`sweep_from_drop`] is the same for
//! a `Drop`, without holding an async runtime's thread while it waits.

use std::path::{Path, PathBuf};
use std::process::Command;

/// `(ppid, state)` of `pid`, from `/proc/<pid>/stat`.
fn stat_of(pid: u32) -> Option<(u32, char)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // "pid (comm) S ppid ...": comm may contain spaces or ')'.
    let rest = &stat[stat.rfind(')')? + 2..];
    let mut fields = rest.split_whitespace();
    let state = fields.next()?.chars().next()?;
    let ppid = fields.next()?.parse().ok()?;
    Some((ppid, state))
}

/// `(pid, ppid, state)` of every process, read from `/proc`.
fn processes() -> Vec<(u32, u32, char)> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.filter_map(|e| e.ok())
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter_map(|pid| stat_of(pid).map(|(ppid, state)| (pid, ppid, state)))
        .collect()
}

/// How old a shared reading of the process table may be for
/// [`recent_tree`].
const TABLE_MAX_AGE: std::time::Duration = std::time::Duration::from_millis(900);

/// The process table as read at most [`TABLE_MAX_AGE`] ago: one scan of
/// `/proc` serves every session's watchdog. Each watchdog scanning the whole
/// table itself cost O(sessions²) reads (150 sessions × 900 processes
/// twice a second).
fn recent_processes() -> std::sync::Arc<Vec<(u32, u32, char)>> {
    type Table = Option<(std::time::Instant, std::sync::Arc<Vec<(u32, u32, char)>>)>;
    static TABLE: std::sync::Mutex<Table> = std::sync::Mutex::new(None);
    // Held while scanning, so callers that find it stale together scan once.
    let mut table = TABLE.lock().unwrap_or_else(|e| e.into_inner());
    match table.as_ref() {
        Some((at, all)) if at.elapsed() < TABLE_MAX_AGE => all.clone(),
        _ => {
            let all = std::sync::Arc::new(processes());
            *table = Some((std::time::Instant::now(), all.clone()));
            all
        }
    }
}

/// All live descendants of `root` (children, grandchildren, ...).
pub fn descendants(root: u32) -> Vec<u32> {
    descendants_in(&processes(), root)
}

fn descendants_in(all: &[(u32, u32, char)], root: u32) -> Vec<u32> {
    let mut found = vec![root];
    let mut i = 0;
    while i < found.len() {
        let parent = found[i];
        found.extend(
            all.iter()
                .filter(|(_, pp, _)| *pp == parent)
                .map(|(p, _, _)| *p),
        );
        i += 1;
    }
    found.remove(0);
    found
}

/// Live (not zombie) processes whose command line mentions `profile` (the
/// browser's `--user-data-dir`, its crash handler's database, ...).
pub fn using_profile(profile: &Path) -> Vec<u32> {
    let needle = profile.to_string_lossy().into_owned();
    if needle.len() < 8 {
        return Vec::new(); // never match on something as broad as "/"
    }
    processes()
        .into_iter()
        .filter(|(_, _, state)| *state != 'Z')
        .filter(|(pid, _, _)| {
            std::fs::read(format!("/proc/{pid}/cmdline"))
                .map(|c| String::from_utf8_lossy(&c).contains(&needle))
                .unwrap_or(false)
        })
        .map(|(pid, _, _)| pid)
        .collect()
}

/// Whether `pid` is running (exists and is not a zombie).
pub fn is_alive(pid: u32) -> bool {
    stat_of(pid).is_some_and(|(_, state)| state != 'Z')
}

/// Whether `pid` runs a Chromium binary (guards remembered pids against reuse).
pub fn is_chromium(pid: u32) -> bool {
    std::fs::read_link(format!("/proc/{pid}/exe"))
        .map(|exe| exe.to_string_lossy().contains("chromium"))
        .unwrap_or(false)
}

/// `root` and its live descendants.
pub fn tree(root: u32) -> Vec<u32> {
    tree_in(&processes(), root)
}

/// `root` and its descendants as the shared process table saw them at most
/// a second ago (for watchdogs and memory readings; killing uses [`tree`]).
pub fn recent_tree(root: u32) -> Vec<u32> {
    tree_in(&recent_processes(), root)
}

/// `root`, if its own stat file says it lives, then its descendants in `all`.
fn tree_in(all: &[(u32, u32, char)], root: u32) -> Vec<u32> {
    let mut pids = descendants_in(all, root);
    if is_alive(root) {
        pids.insert(0, root);
    }
    pids
}

/// The proportional set size (PSS) of `pids` together, in bytes: each
/// shared page counted once across them, as `/proc/<pid>/smaps_rollup`
/// says. A process gone meanwhile counts nothing.
pub fn pss_bytes(pids: &[u32]) -> u64 {
    pids.iter()
        .filter_map(|pid| std::fs::read_to_string(format!("/proc/{pid}/smaps_rollup")).ok())
        .filter_map(|rollup| {
            let line = rollup.lines().find(|l| l.starts_with("Pss:"))?;
            line.split_whitespace().nth(1)?.parse::<u64>().ok()
        })
        .sum::<u64>()
        * 1024
}

/// SIGKILLs every pid given (best effort; already-gone ones are fine).
pub fn kill(pids: &[u32]) {
    signal(pids, "-KILL");
}

fn signal(pids: &[u32], sig: &str) {
    if pids.is_empty() {
        return;
    }
    let args: Vec<String> = pids.iter().map(|p| p.to_string()).collect();
    let _ = Command::new("kill")
        .arg(sig)
        .args(&args)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status();
}

/// Waits up to `limit` for every one of `pids` to exit, woken by the exits
/// themselves (a pidfd of each becomes readable when it ends — it need not
/// be our child), and answers the ones still running then.
pub fn wait_exit(pids: &[u32], limit: std::time::Duration) -> Vec<u32> {
    use rustix::event::{poll, PollFd, PollFlags, Timespec};
    use rustix::process::{pidfd_open, Pid, PidfdFlags};
    let deadline = std::time::Instant::now() + limit;
    let mut waiting: Vec<(u32, rustix::fd::OwnedFd)> = pids
        .iter()
        .filter_map(|&pid| {
            let raw = Pid::from_raw(i32::try_from(pid).ok()?)?;
            // Gone already (ESRCH): nothing to wait for.
            pidfd_open(raw, PidfdFlags::empty())
                .ok()
                .map(|fd| (pid, fd))
        })
        .collect();
    while !waiting.is_empty() {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        if left.is_zero() {
            break;
        }
        let timeout = Timespec {
            tv_sec: i64::try_from(left.as_secs()).unwrap_or(i64::MAX),
            tv_nsec: i64::from(left.subsec_nanos()),
        };
        let mut fds: Vec<PollFd<'_>> = waiting
            .iter()
            .map(|(_, fd)| PollFd::new(fd, PollFlags::IN))
            .collect();
        if poll(&mut fds, Some(&timeout)).is_err() {
            break;
        }
        let ended: Vec<bool> = fds.iter().map(|f| !f.revents().is_empty()).collect();
        drop(fds);
        let mut ended = ended.into_iter();
        waiting.retain(|_| !ended.next().unwrap_or(false));
    }
    // A zombie is gone for our purpose (it runs nothing).
    waiting
        .into_iter()
        .map(|(pid, _)| pid)
        .filter(|&pid| is_alive(pid))
        .collect()
}

/// Kills `root` (if any) with its descendants, the `remembered` pids that
/// still run Chromium, and every process using `profile`; then waits (up to
/// 3 s) until none of them runs.
pub fn sweep(root: Option<u32>, remembered: &[u32], profile: &Path) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(3);
    loop {
        let pids = sweep_targets(root, remembered, profile);
        if pids.is_empty() || std::time::Instant::now() > deadline {
            return;
        }
        kill(&pids);
        // A SIGKILLed process takes a moment to die; look again.
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

/// What [`sweep`] kills now: `root`'s tree, the remembered pids still
/// running Chromium, and every live process using `profile`.
fn sweep_targets(root: Option<u32>, remembered: &[u32], profile: &Path) -> Vec<u32> {
    let mut pids = root.map(tree).unwrap_or_default();
    pids.extend(
        remembered
            .iter()
            .copied()
            .filter(|p| is_alive(*p) && is_chromium(*p)),
    );
    pids.extend(using_profile(profile));
    pids.sort_unstable();
    pids.dedup();
    pids
}

/// [`sweep`] for a `Drop`, which must not hold an async runtime's thread for
/// the sweep's up to 3 s. On a tokio runtime, what runs now is SIGKILLed at
/// once (one look at `/proc`, no waiting) and the sweep proper — looking
/// again until nothing is left — runs on the blocking pool; outside a
/// runtime the whole sweep runs here. It runs to the end either way: a
/// runtime shutting down drops a blocking task it has not started, and the
/// sweep then runs where that task is dropped.
pub fn sweep_from_drop(root: Option<u32>, remembered: Vec<u32>, profile: PathBuf) {
    let due = DueSweep {
        root,
        remembered,
        profile,
    };
    match tokio::runtime::Handle::try_current() {
        Ok(runtime) => {
            kill(&sweep_targets(due.root, &due.remembered, &due.profile));
            runtime.spawn_blocking(move || drop(due));
        }
        Err(_) => drop(due),
    }
}

/// A sweep that is due: it runs when this is dropped, wherever that is.
struct DueSweep {
    root: Option<u32>,
    remembered: Vec<u32>,
    profile: PathBuf,
}

impl Drop for DueSweep {
    fn drop(&mut self) {
        sweep(self.root, &self.remembered, &self.profile);
    }
}

/// Ends a browser left running on `profile` by a process that died
/// (`kill -9` leaves its children): SIGTERM first, so Chromium writes its
/// storage (the pairing) to disk; up to `grace` later, SIGKILL what is left.
pub fn retire_stale(profile: &Path, grace: std::time::Duration) {
    let stale = using_profile(profile);
    if stale.is_empty() {
        return;
    }
    signal(&stale, "-TERM");
    let deadline = std::time::Instant::now() + grace;
    while stale.iter().any(|p| is_alive(*p)) && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    sweep(None, &[], profile);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_pss_of_a_live_process_is_read_and_a_gone_one_counts_nothing() {
        let me = std::process::id();
        let own = pss_bytes(&[me]);
        assert!(
            own > 1024 * 1024,
            "this test process uses over 1 MiB: {own}"
        );
        assert_eq!(pss_bytes(&[u32::MAX - 1]), 0);
        assert!(
            pss_bytes(&[me, u32::MAX - 1]) > 1024 * 1024,
            "the live one still counts"
        );
    }

    #[test]
    fn finds_and_kills_a_process_tree() {
        let mut child = Command::new("sh")
            .args(["-c", "sleep 300 & sleep 300 & wait"])
            .spawn()
            .expect("spawn sh");
        let root = child.id();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        while descendants(root).len() < 2 {
            assert!(
                std::time::Instant::now() < deadline,
                "children did not appear"
            );
            std::thread::yield_now();
        }
        let kids = descendants(root);
        assert!(kids.iter().all(|p| is_alive(*p)));
        kill(&kids);
        let _ = child.wait();
        assert!(!kids.iter().any(|p| is_alive(*p)), "all killed");
    }

    /// A shell with two sleeping children: the shell and its children.
    fn a_process_tree() -> (std::process::Child, Vec<u32>) {
        let child = Command::new("sh")
            .args(["-c", "sleep 300 & sleep 300 & wait"])
            .spawn()
            .expect("spawn sh");
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        while descendants(child.id()).len() < 2 {
            assert!(
                std::time::Instant::now() < deadline,
                "children did not appear"
            );
            std::thread::yield_now();
        }
        let mut pids = descendants(child.id());
        pids.push(child.id());
        (child, pids)
    }

    #[test]
    fn a_recent_tree_is_the_shared_tables_view_of_a_live_root() {
        let (mut child, pids) = a_process_tree();
        let root = child.id();
        // The table may be up to TABLE_MAX_AGE old: the children show once
        // it is read again.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        let mut seen = recent_tree(root);
        while seen.len() < 3 {
            assert!(std::time::Instant::now() < deadline, "tree seen: {seen:?}");
            std::thread::yield_now();
            seen = recent_tree(root);
        }
        seen.sort_unstable();
        let mut want = pids.clone();
        want.sort_unstable();
        assert_eq!(seen, want, "the root first found, then its children");
        kill(&pids);
        let _ = child.wait();
        assert!(!is_alive(root), "a reaped root is not alive");
        assert!(
            !recent_tree(root).contains(&root),
            "a dead root is never in its recent tree, however old the table"
        );
    }

    #[test]
    fn off_a_runtime_a_sweep_from_a_drop_is_done_when_it_returns() {
        let profile = tempfile::tempdir().expect("tempdir");
        let (mut child, pids) = a_process_tree();
        sweep_from_drop(Some(child.id()), Vec::new(), profile.path().to_path_buf());
        let _ = child.wait();
        assert!(!pids.iter().any(|p| is_alive(*p)), "all killed");
    }

    /// Gone, a zombie, or with SIGKILL already pending (`/proc/PID/status`
    /// `SigPnd`/`ShdPnd`, bit 9): what a process is the moment it was killed.
    fn dead_or_killed(pid: u32) -> bool {
        let Ok(status) = std::fs::read_to_string(format!("/proc/{pid}/status")) else {
            return true;
        };
        status.lines().any(|l| {
            let (key, value) = l.split_once(':').unwrap_or_default();
            let value = value.trim();
            match key {
                "State" => value.starts_with('Z') || value.starts_with('X'),
                "SigPnd" | "ShdPnd" => {
                    u64::from_str_radix(value, 16).is_ok_and(|m| m & (1 << 8) != 0)
                }
                _ => false,
            }
        })
    }

    #[tokio::test]
    async fn on_a_runtime_a_sweep_from_a_drop_kills_at_once_and_finishes_off_the_runtime() {
        let profile = tempfile::tempdir().expect("tempdir");
        let (mut child, pids) = a_process_tree();
        sweep_from_drop(Some(child.id()), Vec::new(), profile.path().to_path_buf());
        // Killed before it returned: every process is dead or has SIGKILL pending.
        let left: Vec<u32> = pids
            .iter()
            .copied()
            .filter(|p| !dead_or_killed(*p))
            .collect();
        assert!(left.is_empty(), "not killed yet: {left:?}");
        let reaped = tokio::task::spawn_blocking(move || child.wait());
        let status = tokio::time::timeout(std::time::Duration::from_secs(10), reaped)
            .await
            .expect("the shell ends within the wait")
            .expect("join")
            .expect("wait");
        assert!(!status.success(), "killed, not finished: {status}");
    }
}

/// The browser binary behind a launcher script. Debian's `chromium` and
/// `chromium-headless-shell` on the PATH are shell scripts that start the
/// real binary as a child, so the pid we track would be the shell's, not
/// the browser's (and killing it leaves the browser running). A file
/// starting with `#!` is read: its `NAME=value` assignments are expanded in
/// every word, and the first absolute path that is an ELF executable named
/// like a Chromium is taken (Debian's `chromium` script also names gdb).
/// Anything else is returned unchanged.
pub fn unwrap_launcher(path: &Path) -> std::path::PathBuf {
    let Ok(text) = std::fs::read(path) else {
        return path.to_path_buf();
    };
    if !text.starts_with(b"#!") || text.len() > 64 * 1024 {
        return path.to_path_buf();
    }
    let text = String::from_utf8_lossy(&text);
    let lines: Vec<&str> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.starts_with('#'))
        .collect();
    let vars: Vec<(String, String)> = lines
        .iter()
        .filter_map(|l| {
            let (name, value) = l.split_once('=')?;
            let ok = !name.is_empty()
                && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
                && !value.contains(char::is_whitespace);
            ok.then(|| (name.to_owned(), value.trim_matches(['"', '\'']).to_owned()))
        })
        .collect();
    let expand = |word: &str| {
        let mut w = word.to_owned();
        for _ in 0..4 {
            for (name, value) in &vars {
                w = w
                    .replace(&format!("${{{name}}}"), value)
                    .replace(&format!("${name}"), value);
            }
        }
        w
    };
    let is_browser = |p: &Path| {
        let named = p
            .file_name()
            .is_some_and(|n| n.to_string_lossy().contains("chrom"));
        named
            && std::fs::read(p)
                .map(|b| b.starts_with(b"\x7fELF"))
                .unwrap_or(false)
    };
    lines
        .iter()
        .flat_map(|l| l.split(|c: char| c.is_whitespace() || c == '"' || c == '\'' || c == '='))
        .map(expand)
        .filter(|w| w.starts_with('/'))
        .map(std::path::PathBuf::from)
        .find(|p| is_browser(p))
        .unwrap_or_else(|| path.to_path_buf())
}

#[cfg(test)]
mod launcher_tests {
    use super::*;

    #[test]
    fn a_launcher_script_resolves_to_the_binary_it_starts() {
        let dir = tempfile::tempdir().expect("tempdir");
        let elf = |name: &str| {
            let p = dir.path().join(name);
            std::fs::write(&p, b"\x7fELF\x02\x01").expect("write");
            p
        };
        let real = elf("chromium-headless-shell");
        let script = dir.path().join("shell-wrapper");
        std::fs::write(
            &script,
            format!(
                "#!/bin/sh -e\n# comment /not/this\n{} \"$@\"\n",
                real.display()
            ),
        )
        .expect("write");
        assert_eq!(unwrap_launcher(&script), real);
        assert_eq!(unwrap_launcher(&real), real, "a binary is itself");
        let missing = dir.path().join("none");
        assert_eq!(unwrap_launcher(&missing), missing);

        // Debian's /usr/bin/chromium: variables, and gdb named first.
        let gdb = elf("gdb");
        std::fs::create_dir_all(dir.path().join("lib/chromium")).expect("dir");
        let browser = dir.path().join("lib/chromium/chromium");
        std::fs::write(&browser, b"\x7fELF\x02\x01").expect("write");
        let debian = dir.path().join("chromium");
        std::fs::write(
            &debian,
            format!(
                "#!/bin/sh\nAPPNAME=chromium\nGDB={}\nLIBDIR={}/lib/$APPNAME\nif [ $want_debug -eq 1 ] ; then\n  $GDB \"$LIBDIR/$APPNAME\" -x $tmpfile\nelse\n  exec $LIBDIR/$APPNAME $CHROMIUM_FLAGS \"$@\"\nfi\n",
                gdb.display(),
                dir.path().display()
            ),
        )
        .expect("write");
        assert_eq!(unwrap_launcher(&debian), browser);

        // And the machine's own launchers, where installed.
        for launcher in ["/usr/bin/chromium", "/usr/bin/chromium-headless-shell"] {
            let launcher = Path::new(launcher);
            if launcher.exists() {
                let real = unwrap_launcher(launcher);
                let head = std::fs::read(&real).expect("read the binary");
                assert!(head.starts_with(b"\x7fELF"), "{}", real.display());
                assert!(
                    real.to_string_lossy().contains("chrom"),
                    "{}",
                    real.display()
                );
            }
        }
    }
}
