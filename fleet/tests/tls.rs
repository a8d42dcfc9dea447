//! The fleet's database over TLS: a server that lets nobody in without
//! TLS is reached with `sslmode=verify-full` and the server's certificate
//! as `sslrootcert` (the connection is encrypted: `pg_stat_ssl` says so),
//! and refused — with the reason — without TLS or with a certificate the
//! client was not told to trust.

mod common;

use centinela_fleet::{Fleet, FleetError};
use common::PgCluster;

fn verified(pg: &PgCluster, root: &std::path::Path) -> String {
    format!(
        "{}?sslmode=verify-full&sslrootcert={}",
        pg.url(),
        root.display()
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_reaches_a_tls_only_database_with_its_certificate_verified_and_never_without() {
    let pg = PgCluster::start_tls();
    let fleet = Fleet::connect(&verified(&pg, pg.certificate()), 1)
        .await
        .expect("connected over TLS, migrated");
    let encrypted: bool =
        sqlx::query_scalar("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()")
            .fetch_one(fleet.pool())
            .await
            .expect("ssl");
    assert!(encrypted);

    let plain = Fleet::connect(&format!("{}?sslmode=disable", pg.url()), 1).await;
    let Err(FleetError::Db(e)) = plain else {
        panic!("a connection without TLS got in");
    };
    assert!(e.to_string().contains("pg_hba.conf"), "{e}");

    // A certificate nobody told the node to trust: refused at the handshake.
    let other = tempfile::tempdir().expect("tempdir");
    let stranger = other.path().join("other.crt");
    let cert = rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_owned()]).expect("cert");
    std::fs::write(&stranger, cert.cert.pem()).expect("write");
    let unverified = Fleet::connect(&verified(&pg, &stranger), 1).await;
    let Err(FleetError::Db(e)) = unverified else {
        panic!("a server with an untrusted certificate was accepted");
    };
    assert!(format!("{e:?}").contains("InvalidCertificate"), "{e:?}");
}
