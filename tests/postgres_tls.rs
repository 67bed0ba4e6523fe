//! PostgreSQL over TLS, as a user runs `hrmig` against a server that
//! refuses plain connections: each `sslmode`, a certificate from another
//! CA, a host name the certificate does not name, and bad TLS settings.
//!
//! Each test starts a private server (initdb + pg_ctl) with `ssl=on`, a
//! certificate from a CA made in the test, and a `pg_hba.conf` that rejects
//! TCP connections without TLS (one test starts a server without TLS, for
//! `prefer`'s fallback). Where no server can start the tests say so
//! and pass, except under `CI=true`, where they fail.

mod common {
    pub mod pg_admin;
    pub mod pg_server;
    pub mod port;
}

use common::pg_server::{PrivateServer, or_skip, private_server};
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, SanType};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

/// The test's PKI: the CA that signed the server's certificate and one that
/// did not, as PEM files.
struct Pki {
    dir: tempfile::TempDir,
    server_cert: String,
    server_key: String,
}

impl Pki {
    fn new() -> Pki {
        let dir = tempfile::tempdir().unwrap();
        let (issuer, ca_pem) = make_ca("hrmig test CA");
        let (_, other_pem) = make_ca("some other CA");
        std::fs::write(dir.path().join("ca.pem"), ca_pem).unwrap();
        std::fs::write(dir.path().join("other-ca.pem"), other_pem).unwrap();
        let mut params = CertificateParams::new(vec!["localhost".to_owned()]).unwrap();
        params
            .subject_alt_names
            .push(SanType::IpAddress("127.0.0.1".parse().unwrap()));
        params
            .distinguished_name
            .push(DnType::CommonName, "localhost");
        let key = KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, &issuer).unwrap();
        Pki {
            dir,
            server_cert: cert.pem(),
            server_key: key.serialize_pem(),
        }
    }

    fn ca(&self) -> PathBuf {
        self.dir.path().join("ca.pem")
    }

    fn other_ca(&self) -> PathBuf {
        self.dir.path().join("other-ca.pem")
    }

    /// A private server with this PKI's certificate, or `None` (said loudly).
    fn server(&self) -> Option<PrivateServer> {
        or_skip(PrivateServer::start_with(|pgdata| {
            serve_tls_only(pgdata, &self.server_cert, &self.server_key)
        }))
    }
}

/// `ssl=on` with this certificate, and a `pg_hba.conf` that refuses every
/// TCP connection that is not TLS (Unix sockets stay open, for the test's
/// own checks).
fn serve_tls_only(pgdata: &Path, cert_pem: &str, key_pem: &str) -> Result<(), String> {
    use std::os::unix::fs::PermissionsExt;
    let write = |name: &str, content: &str| {
        std::fs::write(pgdata.join(name), content).map_err(|e| format!("{name}: {e}"))
    };
    write("server.crt", cert_pem)?;
    write("server.key", key_pem)?;
    // PostgreSQL refuses a key that others may read.
    std::fs::set_permissions(
        pgdata.join("server.key"),
        std::fs::Permissions::from_mode(0o600),
    )
    .map_err(|e| format!("server.key: {e}"))?;
    let conf = pgdata.join("postgresql.conf");
    let mut text = std::fs::read_to_string(&conf).map_err(|e| e.to_string())?;
    text.push_str("\nssl = on\nssl_cert_file = 'server.crt'\nssl_key_file = 'server.key'\n");
    std::fs::write(&conf, text).map_err(|e| e.to_string())?;
    write(
        "pg_hba.conf",
        "local all all trust\n\
         hostssl all all 127.0.0.1/32 trust\n\
         hostssl all all ::1/128 trust\n\
         hostnossl all all 0.0.0.0/0 reject\n\
         hostnossl all all ::/0 reject\n",
    )
}

fn make_ca(name: &str) -> (Issuer<'static, KeyPair>, String) {
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.distinguished_name.push(DnType::CommonName, name);
    let key = KeyPair::generate().unwrap();
    let pem = params.self_signed(&key).unwrap().pem();
    (Issuer::new(params, key), pem)
}

/// Runs `hrmig` with `HRMIG_DATABASE_URL=database` in `dir`.
fn hrmig(dir: &Path, database: &str, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_hrmig"))
        .current_dir(dir)
        .env("HRMIG_DATABASE_URL", database)
        .env_remove("HRMIG_STORAGE_URL")
        .env("HRMIG_LOG", "warn")
        .args(args)
        .output()
        .unwrap()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// The reference files beside the project, or generated ones, and the
/// counts (inserted, rejected) per table that loading them must give, or
/// `None` where only the load's own report can tell.
fn data_files(work: &Path) -> (PathBuf, Option<[(u64, u64); 3]>) {
    let reference = Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/data/globant");
    if reference.join("hired_employees.csv").is_file() {
        return (reference, Some([(12, 0), (183, 0), (1929, 70)]));
    }
    eprintln!(
        "reference data not found at {}; loading generated files",
        reference.display()
    );
    let out = work.join("generated");
    let o = hrmig(
        work,
        "sqlite://unused.db",
        &["gen", "--out", out.to_str().unwrap()],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    (out, None)
}

/// `hrmig load --json` from `from`: (table, inserted, rejected) per table.
fn load(work: &Path, database: &str, from: &Path) -> Result<Vec<(String, u64, u64)>, Output> {
    let o = hrmig(
        work,
        database,
        &["load", "--json", "--from", from.to_str().unwrap()],
    );
    if !o.status.success() {
        return Err(o);
    }
    Ok(String::from_utf8_lossy(&o.stdout)
        .lines()
        .map(|l| {
            let r: Value = serde_json::from_str(l).unwrap();
            (
                r["table"].as_str().unwrap().to_owned(),
                r["inserted"].as_u64().unwrap(),
                r["rejected"].as_u64().unwrap(),
            )
        })
        .collect())
}

async fn create_database(server: &PrivateServer, name: &str) {
    server
        .admin("postgres")
        .await
        .batch_execute(&format!("CREATE DATABASE {name}"))
        .await
        .unwrap();
}

/// Rows per table as the server holds them, read over the Unix socket.
async fn counts(server: &PrivateServer, db: &str) -> Vec<i64> {
    let client = server.admin(db).await;
    let mut out = Vec::new();
    for table in ["departments", "jobs", "hired_employees"] {
        let row = client
            .query_one(&format!("SELECT COUNT(*) FROM {table}"), &[])
            .await
            .unwrap();
        out.push(row.get(0));
    }
    out
}

/// Tables in a database's public schema.
async fn tables(server: &PrivateServer, db: &str) -> i64 {
    server
        .admin(db)
        .await
        .query_one(
            "SELECT COUNT(*) FROM information_schema.tables WHERE table_schema = 'public'",
            &[],
        )
        .await
        .unwrap()
        .get(0)
}

/// The server's URL with another host name, database and query.
fn url(server: &PrivateServer, host: &str, db: &str, query: &str) -> String {
    let mut url = url::Url::parse(&server.url()).unwrap();
    url.set_host(Some(host)).unwrap();
    url.set_path(db);
    url.set_query(Some(query));
    url.to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verify_full_with_the_servers_ca_loads_the_reference_files() {
    let pki = Pki::new();
    let Some(server) = pki.server() else { return };
    let work = tempfile::tempdir().unwrap();
    let (files, expected) = data_files(work.path());
    create_database(&server, "verified").await;
    let database = url(
        &server,
        "localhost",
        "verified",
        &format!("sslmode=verify-full&sslrootcert={}", pki.ca().display()),
    );
    let report = load(work.path(), &database, &files).unwrap_or_else(|o| panic!("{}", stderr(&o)));
    let reported: Vec<(u64, u64)> = report.iter().map(|r| (r.1, r.2)).collect();
    if let Some(expected) = expected {
        assert_eq!(reported, expected);
    }
    let inserted: Vec<i64> = reported.iter().map(|r| r.0 as i64).collect();
    assert_eq!(counts(&server, "verified").await, inserted);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn require_and_the_default_connect_over_tls_without_a_root_file() {
    let pki = Pki::new();
    let Some(server) = pki.server() else { return };
    let work = tempfile::tempdir().unwrap();
    let (files, _) = data_files(work.path());
    let keyword = format!(
        "host=127.0.0.1 port={} user=postgres dbname=keyword sslmode=verify-full sslrootcert='{}'",
        server.port,
        pki.ca().display()
    );
    for (db, database) in [
        (
            "required",
            url(&server, "localhost", "required", "sslmode=require"),
        ),
        ("preferred", url(&server, "127.0.0.1", "preferred", "")),
        ("keyword", keyword),
    ] {
        create_database(&server, db).await;
        let report = load(work.path(), &database, &files)
            .unwrap_or_else(|o| panic!("{database}: {}", stderr(&o)));
        let inserted: Vec<i64> = report.iter().map(|r| r.1 as i64).collect();
        assert_eq!(counts(&server, db).await, inserted, "{database}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn disable_is_refused_by_the_server() {
    let pki = Pki::new();
    let Some(server) = pki.server() else { return };
    let work = tempfile::tempdir().unwrap();
    let o = hrmig(
        work.path(),
        &url(&server, "localhost", "postgres", "sslmode=disable"),
        &["rejections"],
    );
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(
        err.contains("pg_hba.conf") && err.contains("no encryption"),
        "{err}"
    );
    assert!(!err.contains("panicked"), "{err}");
    assert_eq!(tables(&server, "postgres").await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_certificate_that_does_not_verify_is_named_with_its_host() {
    let pki = Pki::new();
    let Some(server) = pki.server() else { return };
    let work = tempfile::tempdir().unwrap();
    let other = pki.other_ca().display().to_string();
    // `require` with a root file checks the chain, as libpq does.
    for mode in ["verify-full", "verify-ca", "require"] {
        let database = url(
            &server,
            "localhost",
            "postgres",
            &format!("sslmode={mode}&sslrootcert={other}"),
        );
        let started = Instant::now();
        let o = hrmig(work.path(), &database, &["rejections"]);
        let err = stderr(&o);
        assert_eq!(o.status.code(), Some(1), "{mode}: {err}");
        let host = format!(
            "the server certificate of localhost:{} did not verify",
            server.port
        );
        assert!(err.contains(&host), "{mode}: {err}");
        assert!(
            err.contains("not signed by a trusted certificate authority"),
            "{mode}: {err}"
        );
        assert!(err.contains("sslrootcert"), "{mode}: {err}");
        assert!(!err.contains("db error"), "{mode}: {err}");
        // Not taken for a transient failure and tried again.
        assert!(
            started.elapsed() < Duration::from_secs(3),
            "{mode}: {:?}",
            started.elapsed()
        );
    }
    assert_eq!(tables(&server, "postgres").await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verify_full_checks_the_host_name_and_verify_ca_does_not() {
    let pki = Pki::new();
    let Some(server) = pki.server() else { return };
    let work = tempfile::tempdir().unwrap();
    let ca = pki.ca().display().to_string();
    // The TCP connection goes to 127.0.0.1; the certificate is checked
    // against the name in the URL, which it does not name.
    let named = |mode: &str| {
        url(
            &server,
            "db.example.test",
            "postgres",
            &format!("sslmode={mode}&sslrootcert={ca}&hostaddr=127.0.0.1"),
        )
    };
    let o = hrmig(work.path(), &named("verify-full"), &["rejections"]);
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(1), "{err}");
    let host = format!(
        "the server certificate of db.example.test:{} did not verify",
        server.port
    );
    assert!(err.contains(&host), "{err}");
    assert!(
        err.contains("not valid for name \"db.example.test\""),
        "{err}"
    );
    assert!(err.contains("sslmode=verify-ca"), "{err}");
    assert_eq!(tables(&server, "postgres").await, 0);

    let o = hrmig(work.path(), &named("verify-ca"), &["rejections"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(tables(&server, "postgres").await > 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_tls_settings_are_named_and_change_nothing() {
    let pki = Pki::new();
    let Some(server) = pki.server() else { return };
    let work = tempfile::tempdir().unwrap();
    let missing = work.path().join("no-such-ca.pem");
    let directory = work.path().to_owned();
    let cases = [
        (
            format!("sslmode=verify-full&sslrootcert={}", missing.display()),
            format!("sslrootcert={}: cannot be read", missing.display()),
        ),
        (
            format!("sslmode=verify-ca&sslrootcert={}", directory.display()),
            format!("sslrootcert={}: cannot be read", directory.display()),
        ),
        (
            format!("sslrootcert={}", missing.display()),
            format!("sslrootcert={}: cannot be read", missing.display()),
        ),
        (
            "sslmode=bogus".to_owned(),
            "unknown sslmode \"bogus\": use disable, prefer, require, verify-ca or verify-full"
                .to_owned(),
        ),
        (
            "sslmode=require&sslrootcert=system".to_owned(),
            "sslmode=require may not be used with sslrootcert=system".to_owned(),
        ),
    ];
    for (query, says) in cases {
        let database = format!(
            "postgres://postgres:s3cret@localhost:{}/postgres?{query}",
            server.port
        );
        let o = hrmig(work.path(), &database, &["rejections"]);
        let err = stderr(&o);
        assert_eq!(o.status.code(), Some(1), "{query}: {err}");
        assert!(err.contains(&says), "{query}: {err}");
        assert!(!err.contains("s3cret"), "{query}: {err}");
        assert!(!err.contains("panicked"), "{query}: {err}");
        assert_eq!(tables(&server, "postgres").await, 0, "{query}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_a_server_without_tls_prefer_falls_back_and_require_fails() {
    let Some(server) = private_server() else {
        return;
    };
    let work = tempfile::tempdir().unwrap();
    for mode in ["require", "verify-full"] {
        let o = hrmig(
            work.path(),
            &url(&server, "localhost", "postgres", &format!("sslmode={mode}")),
            &["rejections"],
        );
        let err = stderr(&o);
        assert_eq!(o.status.code(), Some(1), "{mode}: {err}");
        assert!(err.contains("server does not support TLS"), "{mode}: {err}");
        assert_eq!(tables(&server, "postgres").await, 0, "{mode}");
    }
    let o = hrmig(
        work.path(),
        &url(&server, "localhost", "postgres", "sslmode=prefer"),
        &["rejections"],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(tables(&server, "postgres").await > 0);
}
