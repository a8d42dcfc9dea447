//! A throwaway PostgreSQL cluster per test: `initdb` into a temp dir,
//! `pg_ctl start` on a free loopback port with its unix socket in that dir,
//! one database, a URL; stopped and deleted on drop.
//!
//! PostgreSQL refuses to run as root, and CI runs the tests as root: then
//! the temp dir is given to the `postgres` user (Debian's package creates
//! it) and every server command runs through `runuser -u postgres --`. As
//! anyone else the commands run as that user. The binaries are found as
//! `$PG_BIN`, else Debian's newest `/usr/lib/postgresql/<ver>/bin`, else
//! on `PATH` (`scripts/ensure-deps.sh` installs the package).
//! Readiness is `pg_ctl start -w` (pg_ctl polls the server itself) and then
//! `pg_isready`, never a sleep.

#![allow(dead_code)]

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// The superuser the clusters are made with (trust authentication, loopback only).
const SUPERUSER: &str = "centinela";
const DATABASE: &str = "fleet";

pub struct PgCluster {
    dir: tempfile::TempDir,
    bin: PathBuf,
    port: u16,
    /// `Some("postgres")` when the commands run through `runuser` (we are root).
    run_as: Option<String>,
    /// Set: the server speaks TLS only, with this certificate (PEM file).
    tls: Option<PathBuf>,
}

/// A node registered in a test's fleet (its name as its egress, room for
/// 10 tenants, leases of a minute), with its own redb store: what the
/// tests of the fleet's repositories build theirs on.
pub struct Member {
    pub fleet: centinela_fleet::Fleet,
    pub leases: centinela_fleet::Leases,
    pub owned: centinela_fleet::Owned,
    pub local: centinela_actors::store::Store,
    _dir: tempfile::TempDir,
}

impl Member {
    pub async fn join(pg: &PgCluster, name: &str) -> Self {
        let fleet = centinela_fleet::Fleet::connect(&pg.url(), 2)
            .await
            .expect("connect");
        let id = centinela_fleet::NodeId::new(name).expect("id");
        let spec = centinela_fleet::NodeSpec {
            id: id.clone(),
            advertise_url: format!("http://{name}.invalid"),
            egress: name.into(),
            capacity: 10,
        };
        fleet.register(&spec).await.expect("register");
        let leases = centinela_fleet::Leases::new(&fleet, id, std::time::Duration::from_secs(60));
        let dir = tempfile::tempdir().expect("tempdir");
        let local = centinela_actors::store::Store::open(dir.path()).expect("store");
        Self {
            fleet,
            leases,
            owned: centinela_fleet::Owned::default(),
            local,
            _dir: dir,
        }
    }

    /// Claims `tenant` (nobody may hold it) and holds it.
    pub async fn hold(&self, tenant: &centinela_actors::ids::TenantId) {
        let lease = self
            .leases
            .claim(tenant)
            .await
            .expect("claim")
            .expect("won");
        self.owned.insert(lease);
    }
}

impl PgCluster {
    /// Starts a cluster and creates its database. Panics with the tool's
    /// output if anything fails (a test cannot go on without it).
    pub fn start() -> Self {
        Self::start_with(false)
    }

    /// [`PgCluster::start`], the server refusing every connection without
    /// TLS (`hostssl` only), its certificate self-signed for 127.0.0.1 and
    /// `localhost` ([`PgCluster::certificate`]).
    pub fn start_tls() -> Self {
        Self::start_with(true)
    }

    /// The server's certificate (PEM), for a client's `sslrootcert`.
    pub fn certificate(&self) -> &Path {
        self.tls
            .as_deref()
            .expect("a cluster started with start_tls")
    }

    fn start_with(tls: bool) -> Self {
        let bin = bin_dir();
        let run_as = is_root().then(|| "postgres".to_owned());
        let dir = tempfile::Builder::new()
            .prefix("centinela-pg-")
            .tempdir()
            .expect("temp dir for the cluster");
        if let Some(user) = &run_as {
            give_to(dir.path(), user);
        }
        let mut cluster = Self {
            dir,
            bin,
            port: 0,
            run_as,
            tls: None,
        };
        cluster.initdb();
        if tls {
            cluster.tls = Some(cluster.serve_tls_only());
        }
        // A port found free may be taken before the server binds it: retry.
        let mut last = None;
        for _ in 0..5 {
            cluster.port = free_port();
            match cluster.pg_ctl_start() {
                Ok(()) => {
                    cluster.wait_ready();
                    cluster.createdb();
                    return cluster;
                }
                Err(out) => last = Some(out),
            }
        }
        panic!(
            "pg_ctl start failed five times: {}",
            last.unwrap_or_default()
        );
    }

    /// `postgres://centinela@127.0.0.1:<port>/fleet`
    pub fn url(&self) -> String {
        format!("postgres://{SUPERUSER}@127.0.0.1:{}/{DATABASE}", self.port)
    }

    /// Makes `tenant`'s lease run out now, through SQL (the database's
    /// clock): a node paused past its lease, without the wait.
    pub async fn expire_lease(&self, tenant: &centinela_actors::ids::TenantId) {
        let fleet = centinela_fleet::Fleet::connect(&self.url(), 1)
            .await
            .expect("connect");
        sqlx::query(
            "UPDATE tenant_owners SET lease_until = now() - interval '1 second' WHERE tenant = $1",
        )
        .bind(tenant.as_str())
        .execute(fleet.pool())
        .await
        .expect("expire");
    }

    /// Stops the server (`pg_ctl stop -m fast`: open connections are cut),
    /// keeping its data dir and port: the database is down until
    /// [`PgCluster::start_again`]. Blocks until the server has exited.
    pub fn stop(&self) {
        let out = self
            .tool("pg_ctl")
            .arg("-D")
            .arg(self.data())
            .args(["-m", "fast", "-w", "-t", "60", "stop"])
            .output()
            .expect("run pg_ctl stop");
        check("pg_ctl stop", &out);
    }

    /// Starts the stopped server again on the same port and data dir, and
    /// waits until it accepts connections. Panics if the port was taken
    /// meanwhile (the test cannot go on).
    pub fn start_again(&self) {
        if let Err(out) = self.pg_ctl_start() {
            panic!("pg_ctl start (again) failed: {out}");
        }
        self.wait_ready();
    }

    fn data(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    fn tool(&self, name: &str) -> Command {
        let path = self.bin.join(name);
        let mut cmd = match &self.run_as {
            Some(user) => {
                let mut c = Command::new("runuser");
                c.args(["-u", user, "--"]).arg(path);
                c
            }
            None => Command::new(path),
        };
        // The server user may not be allowed into the test's directory.
        cmd.current_dir(self.dir.path()).env("LC_ALL", "C");
        cmd
    }

    fn initdb(&self) {
        let out = self
            .tool("initdb")
            .arg("-D")
            .arg(self.data())
            .args([
                "-U",
                SUPERUSER,
                "-A",
                "trust",
                "-E",
                "UTF8",
                "--no-locale",
                "--no-sync",
            ])
            .output()
            .expect("run initdb");
        check("initdb", &out);
    }

    /// Writes a certificate and key for 127.0.0.1 into the cluster's dir
    /// (the server's user owns them, the key private) and lets clients in
    /// over TLS only; answers the certificate's path.
    fn serve_tls_only(&self) -> PathBuf {
        let certified = rcgen::generate_simple_self_signed(vec![
            "127.0.0.1".to_owned(),
            "localhost".to_owned(),
        ])
        .expect("certificate");
        let (cert, key) = (
            self.dir.path().join("server.crt"),
            self.dir.path().join("server.key"),
        );
        std::fs::write(&cert, certified.cert.pem()).expect("write cert");
        std::fs::write(&key, certified.signing_key.serialize_pem()).expect("write key");
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).expect("chmod key");
        if let Some(user) = &self.run_as {
            give_to(&cert, user);
            give_to(&key, user);
        }
        std::fs::write(
            self.data().join("pg_hba.conf"),
            "local all all trust\nhostssl all all 127.0.0.1/32 trust\n",
        )
        .expect("write pg_hba.conf");
        cert
    }

    fn pg_ctl_start(&self) -> Result<(), String> {
        let mut options = format!(
            "-p {} -c listen_addresses=127.0.0.1 -k {} -c fsync=off -c synchronous_commit=off \
             -c full_page_writes=off -c max_connections=100",
            self.port,
            self.dir.path().display()
        );
        if let Some(cert) = &self.tls {
            let key = self.dir.path().join("server.key");
            options.push_str(&format!(
                " -c ssl=on -c ssl_cert_file={} -c ssl_key_file={}",
                cert.display(),
                key.display()
            ));
        }
        let out = self
            .tool("pg_ctl")
            .arg("-D")
            .arg(self.data())
            .arg("-l")
            .arg(self.dir.path().join("server.log"))
            .args(["-w", "-t", "60", "-o", &options, "start"])
            .output()
            .expect("run pg_ctl start");
        if out.status.success() {
            return Ok(());
        }
        let log = std::fs::read_to_string(self.dir.path().join("server.log")).unwrap_or_default();
        Err(format!("{}\n{log}", describe(&out)))
    }

    /// `pg_isready` until it answers, bounded (pg_ctl -w has waited already).
    fn wait_ready(&self) {
        let out = self
            .tool("pg_isready")
            .args(["-h", "127.0.0.1", "-p", &self.port.to_string(), "-t", "30"])
            .output()
            .expect("run pg_isready");
        check("pg_isready", &out);
    }

    fn createdb(&self) {
        let out = self
            .tool("createdb")
            .args([
                "-h",
                "127.0.0.1",
                "-p",
                &self.port.to_string(),
                "-U",
                SUPERUSER,
                DATABASE,
            ])
            .output()
            .expect("run createdb");
        check("createdb", &out);
    }
}

impl Drop for PgCluster {
    fn drop(&mut self) {
        // Immediate: the data is thrown away anyway. The temp dir goes after.
        let _ = self
            .tool("pg_ctl")
            .arg("-D")
            .arg(self.data())
            .args(["-m", "immediate", "-w", "stop"])
            .output();
    }
}

/// `$PG_BIN`, Debian's newest `/usr/lib/postgresql/<ver>/bin`, or the
/// directory of `initdb` on `PATH`.
fn bin_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("PG_BIN") {
        return PathBuf::from(dir);
    }
    let mut debian: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let version = e.file_name().to_str()?.parse::<u32>().ok()?;
            let bin = e.path().join("bin");
            bin.join("initdb").exists().then_some((version, bin))
        })
        .collect();
    debian.sort();
    if let Some((_, bin)) = debian.pop() {
        return bin;
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .find(|d| d.join("initdb").exists() && d.join("pg_ctl").exists())
        .expect("PostgreSQL's initdb and pg_ctl: run scripts/ensure-deps.sh (Debian's postgresql)")
}

fn is_root() -> bool {
    let out = Command::new("id").arg("-u").output().expect("run id -u");
    String::from_utf8_lossy(&out.stdout).trim() == "0"
}

/// As root: the cluster's dir belongs to the server's user.
fn give_to(dir: &Path, user: &str) {
    let known = Command::new("id")
        .arg("-u")
        .arg(user)
        .output()
        .expect("run id");
    assert!(
        known.status.success(),
        "running as root, PostgreSQL needs the {user:?} user (Debian's postgresql package \
         creates it: scripts/ensure-deps.sh)"
    );
    let out = Command::new("chown")
        .arg(format!("{user}:"))
        .arg(dir)
        .output()
        .expect("run chown");
    check("chown", &out);
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free loopback port")
        .port()
}

fn check(what: &str, out: &Output) {
    assert!(out.status.success(), "{what} failed: {}", describe(out));
}

fn describe(out: &Output) -> String {
    format!(
        "{}\nstdout: {}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}
