//! Managed identity as App Service provides it, end to end without Azure: the
//! real binary and a fake identity endpoint on loopback (plain http, as App
//! Service's is) that records each token request.
//!
//! For Azure SQL with a Microsoft Entra ID login, a fake SQL Server port
//! records each connection and closes it: the token is asked for before any
//! connection, cached and asked for again near its expiry, and an identity
//! endpoint that fails or never answers stops hrmig before it connects, with
//! a message naming the credential. For Blob Storage, the fake also plays a
//! blob service whose containers are all empty, and every blob request
//! carries the token. No real Entra ID, Azure SQL or storage is involved.

use crate::cli::{command, json};
use crate::common::fake::Fake;
use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Output, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// A request as the fakes see it: method, target, lowercased headers.
type Head = (String, String, Vec<(String, String)>);

/// One request line and its headers read from `reader`, or `None` at the
/// end of the connection. Bodiless requests only: GET and HEAD are all these
/// fakes expect.
fn read_request(reader: &mut impl BufRead) -> Option<Head> {
    let mut line = String::new();
    if reader.read_line(&mut line).unwrap_or(0) == 0 {
        return None;
    }
    let mut parts = line.split_whitespace();
    let method = parts.next().unwrap_or_default().to_owned();
    let target = parts.next().unwrap_or_default().to_owned();
    let mut headers = Vec::new();
    loop {
        let mut h = String::new();
        if reader.read_line(&mut h).unwrap_or(0) == 0 || h == "\r\n" {
            break;
        }
        if let Some((k, v)) = h.trim_end().split_once(':') {
            headers.push((k.trim().to_ascii_lowercase(), v.trim().to_owned()));
        }
    }
    Some((method, target, headers))
}

/// The value App Service puts in IDENTITY_HEADER, which the endpoint wants
/// back in X-IDENTITY-HEADER.
const HEADER: &str = "platform-secret-5b1f";

/// How the fake identity endpoint answers.
#[derive(Clone, Copy)]
enum Answer {
    /// A token valid for this many seconds.
    Token(u64),
    /// This status and a JSON error.
    Status(u16),
    /// Nothing, ever.
    Silence,
}

/// One token request: when, the request target, lowercased headers.
type Request = (Instant, String, Vec<(String, String)>);

/// App Service's identity endpoint, answering every request as told.
fn identity(answer: Answer) -> Fake<Request> {
    Fake::start(move |conn, seen| {
        conn.set_nonblocking(false).unwrap();
        let mut reader = BufReader::new(conn.try_clone().unwrap());
        let mut out = conn;
        while let Some((_, target, headers)) = read_request(&mut reader) {
            let n = {
                let mut seen = seen.lock().unwrap();
                seen.push((Instant::now(), target, headers));
                seen.len()
            };
            let (status, body) = match answer {
                Answer::Token(ttl) => {
                    let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap();
                    let body = format!(
                        r#"{{"access_token":"sql-token-{n}","expires_on":"{}","resource":"https://database.windows.net/","token_type":"Bearer"}}"#,
                        now.as_secs() + ttl
                    );
                    (200, body)
                }
                Answer::Status(s) => (s, format!(r#"{{"error":"fake {s}"}}"#)),
                Answer::Silence => {
                    std::thread::sleep(Duration::from_secs(60));
                    return;
                }
            };
            let response = format!(
                "HTTP/1.1 {status} X\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
                body.len()
            );
            if out.write_all(response.as_bytes()).is_err() {
                return;
            }
        }
    })
}

/// A SQL Server port that closes every connection at once (a login there
/// fails with an I/O error).
fn sql_port() -> Fake<Instant> {
    Fake::start(|conn, seen| {
        seen.lock().unwrap().push(Instant::now());
        drop(conn);
    })
}

/// `hrmig rejections` against `url`, with App Service's identity settings
/// pointing at `identity` and nothing else from this process's environment.
fn hrmig(url: &str, identity: u16, extra: &[(&str, &str)]) -> Child {
    let dir = std::env::temp_dir();
    let mut c = Command::new(env!("CARGO_BIN_EXE_hrmig"));
    for (key, _) in std::env::vars() {
        if ["AZURE", "HRMIG_", "IDENTITY_", "MSI_", "IMDS_"]
            .iter()
            .any(|p| key.starts_with(p))
        {
            c.env_remove(key);
        }
    }
    c.current_dir(dir)
        .env("HRMIG_DATABASE_URL", url)
        .env("HRMIG_LOG", "warn")
        .env(
            "IDENTITY_ENDPOINT",
            format!("http://127.0.0.1:{identity}/msi/token"),
        )
        .env("IDENTITY_HEADER", HEADER)
        .envs(extra.iter().copied())
        .args(["rejections", "--format", "json"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

fn url(sql: u16, query: &str) -> String {
    format!("mssql://127.0.0.1:{sql}/hr?authentication=managed_identity&{query}")
}

/// Waits until `done` or `limit` has passed, then stops the child and
/// returns what it wrote.
fn stop_when(mut child: Child, limit: Duration, done: impl Fn() -> bool) -> Output {
    let deadline = Instant::now() + limit;
    while !done() && Instant::now() < deadline && child.try_wait().unwrap().is_none() {
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = child.kill();
    child.wait_with_output().unwrap()
}

/// Waits for the child to exit by itself within `limit`.
fn exits_within(mut child: Child, limit: Duration) -> (Output, Duration) {
    let started = Instant::now();
    while child.try_wait().unwrap().is_none() {
        if started.elapsed() > limit {
            let _ = child.kill();
            let out = child.wait_with_output().unwrap();
            panic!(
                "hrmig did not stop within {limit:?}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let elapsed = started.elapsed();
    (child.wait_with_output().unwrap(), elapsed)
}

fn header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

#[test]
fn the_token_is_asked_for_before_the_first_connection_and_then_reused() {
    let identity = identity(Answer::Token(3600));
    let sql = sql_port();
    let child = hrmig(&url(sql.port, "user_id=uami-client"), identity.port, &[]);
    // Start-up keeps trying to connect; three refused connections are
    // three logins that each needed a token.
    let out = stop_when(child, Duration::from_secs(30), || sql.count() >= 3);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(sql.count() >= 3, "{stderr}");

    let requests = identity.seen.lock().unwrap().clone();
    assert_eq!(requests.len(), 1, "the token was not reused: {requests:?}");
    let (asked, target, headers) = &requests[0];
    assert!(
        asked < &sql.seen.lock().unwrap()[0],
        "connected before the token"
    );
    for part in [
        "/msi/token?",
        "api-version=2019-08-01",
        "resource=https%3A%2F%2Fdatabase.windows.net%2F",
        "client_id=uami-client",
    ] {
        assert!(target.contains(part), "{part} not in {target}");
    }
    assert_eq!(header(headers, "x-identity-header"), Some(HEADER));
    // What failed then is the connection, not the token; and the log holds
    // neither the token nor the platform's header.
    assert!(
        stderr.contains("transient database error") && stderr.contains("SQL Server: "),
        "{stderr}"
    );
    assert!(!stderr.contains("Entra ID"), "{stderr}");
    for secret in ["sql-token-", HEADER] {
        assert!(!stderr.contains(secret), "{stderr}");
    }
}

#[test]
fn a_token_near_its_expiry_is_asked_for_again_before_the_next_login() {
    // Two minutes left: inside the five minutes before expiry in which
    // the cache gets a new one.
    let identity = identity(Answer::Token(120));
    let sql = sql_port();
    let child = hrmig(&url(sql.port, ""), identity.port, &[]);
    let out = stop_when(child, Duration::from_secs(30), || sql.count() >= 3);
    let connections = sql.count();
    assert!(connections >= 3, "{}", String::from_utf8_lossy(&out.stderr));
    let requests = identity.seen.lock().unwrap().clone();
    // One at start-up, then one before each login.
    assert!(
        requests.len() > connections,
        "{} token requests for {connections} connections",
        requests.len()
    );
    // A system-assigned identity: no client id.
    assert!(!requests[0].1.contains("client_id"), "{}", requests[0].1);
}

#[test]
fn an_identity_endpoint_that_fails_stops_hrmig_before_it_connects() {
    for status in [400, 403, 404, 500, 503] {
        let identity = identity(Answer::Status(status));
        let sql = sql_port();
        let child = hrmig(&url(sql.port, "user_id=uami-client"), identity.port, &[]);
        let (out, _) = exits_within(child, Duration::from_secs(30));
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{status}: {stderr}");
        assert!(
            stderr.contains(&format!(
                "Microsoft Entra ID: managed identity (App Service endpoint from \
                 IDENTITY_ENDPOINT, user-assigned client id uami-client) failed with HTTP {status}"
            )),
            "{status}: {stderr}"
        );
        assert!(
            stderr.contains("az functionapp identity assign"),
            "{stderr}"
        );
        assert!(!stderr.contains(HEADER), "{stderr}");
        assert!(identity.count() >= 1);
        assert_eq!(sql.count(), 0, "{status}: a connection was tried");
    }
}

#[test]
fn an_identity_endpoint_that_is_not_there_stops_hrmig_before_it_connects() {
    let closed = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = closed.local_addr().unwrap().port();
    drop(closed);
    let sql = sql_port();
    let (out, _) = exits_within(
        hrmig(&url(sql.port, ""), port, &[]),
        Duration::from_secs(30),
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.contains(
            "managed identity (App Service endpoint from IDENTITY_ENDPOINT, system-assigned) failed"
        ),
        "{stderr}"
    );
    assert_eq!(sql.count(), 0);
}

#[test]
fn an_identity_endpoint_that_never_answers_fails_within_the_wait() {
    let identity = identity(Answer::Silence);
    let sql = sql_port();
    let child = hrmig(
        &url(sql.port, ""),
        identity.port,
        &[("HRMIG_TOKEN_TIMEOUT_MS", "500")],
    );
    let (out, elapsed) = exits_within(child, Duration::from_secs(20));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(elapsed < Duration::from_secs(10), "{elapsed:?}");
    assert!(
        stderr.contains(
            "managed identity (App Service endpoint from IDENTITY_ENDPOINT, system-assigned) \
             did not answer within 0.5 s: check that the app has a managed identity"
        ),
        "{stderr}"
    );
    assert_eq!(identity.count(), 1);
    assert_eq!(sql.count(), 0);
}

#[test]
fn bad_entra_settings_are_refused_before_any_request() {
    let identity = identity(Answer::Token(3600));
    let sql = sql_port();
    let p = sql.port;
    for (url, expected) in [
        (
            format!("mssql://127.0.0.1:{p}/hr?authentication=active_directory_password"),
            "unknown Authentication value \"active_directory_password\": use Active Directory \
             Managed Identity (alias Active Directory MSI), Active Directory Service Principal, \
             Active Directory Workload Identity, Active Directory Default or Sql Password; in a \
             mssql:// URL authentication=managed_identity|service_principal|workload_identity|\
             default|sql_password",
        ),
        (
            format!(
                "Server=tcp:127.0.0.1,{p};Database=hr;Authentication=Active Directory Integrated"
            ),
            "unknown Authentication value \"Active Directory Integrated\": use Active Directory \
             Managed Identity",
        ),
        (
            format!("mssql://app-id:sp-s3cret@127.0.0.1:{p}/hr?authentication=service_principal"),
            "Microsoft Entra ID: service principal: no tenant: add Tenant ID=<tenant id> to the \
             connection string (tenant_id= in a URL) or set AZURE_TENANT_ID",
        ),
        (
            format!(
                "Server=tcp:127.0.0.1,{p};Authentication=Active Directory Service Principal;\
                 User ID=app-id;Password=sp-s3cret"
            ),
            "service principal: no tenant",
        ),
        (
            format!("mssql://127.0.0.1:{p}/hr?authentication=workload_identity"),
            "workload identity: AZURE_FEDERATED_TOKEN_FILE is not set",
        ),
    ] {
        let (out, _) = exits_within(hrmig(&url, identity.port, &[]), Duration::from_secs(20));
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{url}");
        assert!(stderr.contains(expected), "{url}: {stderr}");
        assert!(!stderr.contains("sp-s3cret"), "{stderr}");
    }
    assert_eq!(identity.count(), 0);
    assert_eq!(sql.count(), 0);
}

/// A stand-in for two Azure endpoints on loopback: App Service's managed
/// identity endpoint (`/msi/token`) and a blob service (`/blob/…`) whose
/// containers are all empty. It records every request.
fn fake_azure() -> Fake<Head> {
    Fake::start(serve_fake)
}

/// Answers the requests of one keep-alive connection (bodiless ones: GET
/// and HEAD are all this fake expects).
fn serve_fake(conn: TcpStream, seen: Arc<Mutex<Vec<Head>>>) {
    conn.set_nonblocking(false).unwrap();
    conn.set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut reader = BufReader::new(conn.try_clone().unwrap());
    let mut out = conn;
    while let Some((method, target, headers)) = read_request(&mut reader) {
        seen.lock().unwrap().push((method, target.clone(), headers));
        let (kind, body) = if target.starts_with("/msi/token") {
            let expires = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .unwrap()
                .as_secs()
                + 3600;
            let token = format!(
                r#"{{"access_token":"mi-token","expires_on":"{expires}","resource":"https://storage.azure.com","token_type":"Bearer"}}"#
            );
            ("application/json", token)
        } else {
            let list = "<?xml version=\"1.0\" encoding=\"utf-8\"?><EnumerationResults>\
                        <Blobs></Blobs><NextMarker></NextMarker></EnumerationResults>";
            ("application/xml", list.to_owned())
        };
        let response = format!(
            "HTTP/1.1 200 OK\r\nContent-Type: {kind}\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        );
        if out.write_all(response.as_bytes()).is_err() {
            return;
        }
    }
}

#[test]
fn managed_identity_as_app_service_provides_it() {
    let fake = fake_azure();
    let dir = tempfile::tempdir().unwrap();
    let base = format!("http://127.0.0.1:{}", fake.port);
    // What a function app with a user-assigned identity has: the identity
    // endpoint and header that the platform sets, an account name and the
    // identity's client id as app settings, and no key.
    let out = command(dir.path(), "az://hrdata", "")
        .env("AZURE_STORAGE_ACCOUNT_NAME", "hrdataacct")
        .env("AZURE_STORAGE_ENDPOINT", format!("{base}/blob"))
        .env("AZURE_ALLOW_HTTP", "true")
        .env("IDENTITY_ENDPOINT", format!("{base}/msi/token"))
        .env("IDENTITY_HEADER", "platform-secret")
        .env("AZURE_CLIENT_ID", "user-assigned-id")
        .args(["backups", "--json"])
        .output()
        .unwrap();
    assert_eq!(json(out), serde_json::json!([]));

    let seen = fake.seen.lock().unwrap().clone();
    let tokens: Vec<&Head> = seen
        .iter()
        .filter(|r| r.1.starts_with("/msi/token"))
        .collect();
    assert!(!tokens.is_empty(), "no token was asked for: {seen:?}");
    let (method, target, headers) = tokens[0];
    assert_eq!(method, "GET");
    for part in [
        "api-version=2019-08-01",
        "resource=https%3A%2F%2Fstorage.azure.com",
        "client_id=user-assigned-id",
    ] {
        assert!(target.contains(part), "{part} not in {target}");
    }
    assert_eq!(
        header(headers, "x-identity-header"),
        Some("platform-secret")
    );
    // Every blob request carries the token, one listing a table.
    let lists: Vec<&Head> = seen
        .iter()
        .filter(|r| r.1.starts_with("/blob/hrdata"))
        .collect();
    assert_eq!(lists.len(), 3, "{seen:?}");
    for (_, target, headers) in lists {
        assert_eq!(
            header(headers, "authorization"),
            Some("Bearer mi-token"),
            "{target}"
        );
    }
}
