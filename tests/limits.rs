//! Slow and greedy clients against the real binary: header, body and idle
//! timeouts, the concurrency cap, the rate limit, and many slow bodies at
//! once. Every wait is bounded; the settings are short so each test takes
//! seconds.

mod common {
    pub mod port;
    pub mod serve;
}

use common::serve::Serve;
use serde_json::Value;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// A server on a fresh SQLite database with `env` set.
async fn start(env: &[(&str, &str)]) -> (Serve, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let db = format!("sqlite://{}", dir.path().join("hr.db").display());
    let serve = Serve::start(&db, &dir.path().join("storage"), env).await;
    (serve, dir)
}

fn addr(serve: &Serve) -> String {
    serve.base.trim_start_matches("http://").to_owned()
}

/// Reads until the server closes the connection (end of stream or reset);
/// `None` if it is still open after `limit`.
async fn read_until_closed(stream: &mut TcpStream, limit: Duration) -> Option<String> {
    let mut out = Vec::new();
    let read = async {
        let mut buf = [0u8; 4096];
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => out.extend_from_slice(&buf[..n]),
            }
        }
    };
    tokio::time::timeout(limit, read).await.ok()?;
    Some(String::from_utf8_lossy(&out).into_owned())
}

/// Sends the head of a JSON POST promising `length` bytes, and `partial` of them.
async fn slow_post(addr: &str, path: &str, length: usize, partial: &str) -> TcpStream {
    let mut s = TcpStream::connect(addr).await.unwrap();
    let head = format!(
        "POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {length}\r\n\r\n{partial}"
    );
    s.write_all(head.as_bytes()).await.unwrap();
    s
}

/// The JSON body of a raw HTTP response.
fn body_of(response: &str) -> Value {
    let body = response.split_once("\r\n\r\n").map_or("", |(_, b)| b);
    serde_json::from_str(body).unwrap_or(Value::Null)
}

async fn get(url: String, key: Option<&str>) -> reqwest::Response {
    let mut r = reqwest::Client::new().get(url);
    if let Some(k) = key {
        r = r.header("x-api-key", k);
    }
    tokio::time::timeout(Duration::from_secs(10), r.send())
        .await
        .expect("a request took over 10 s")
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_head_sent_too_slowly_is_cut_after_the_header_timeout() {
    let (serve, _dir) = start(&[("HRMIG_HEADER_TIMEOUT_SECS", "2")]).await;
    let mut s = TcpStream::connect(addr(&serve)).await.unwrap();
    let (mut rd, mut wr) = s.split();
    let started = Instant::now();
    let trickle = async {
        let head = b"GET /api/health HTTP/1.1\r\nHost: x\r\nX-Slow: ";
        if wr.write_all(head).await.is_err() {
            return;
        }
        // One byte every 200 ms: the head never completes. Writing fails
        // once the server has closed the connection.
        loop {
            tokio::time::sleep(Duration::from_millis(200)).await;
            if wr.write_all(b"a").await.is_err() {
                return;
            }
        }
    };
    let mut out = Vec::new();
    let closed = tokio::time::timeout(Duration::from_secs(6), async {
        tokio::select! {
            _ = rd.read_to_end(&mut out) => {},
            _ = trickle => {},
        }
    })
    .await;
    let elapsed = started.elapsed();
    assert!(closed.is_ok(), "still open after 6 s");
    assert!(
        elapsed >= Duration::from_millis(1800),
        "cut too early: {elapsed:?}"
    );
    assert!(
        !String::from_utf8_lossy(&out).contains("200 OK"),
        "the slow request was served"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_body_gets_408_closes_and_changes_nothing() {
    let (serve, _dir) = start(&[("HRMIG_BODY_TIMEOUT_SECS", "2")]).await;
    for path in [
        "/api/tables/departments/rows",
        "/api/batches",
        "/api/backups",
    ] {
        let started = Instant::now();
        let mut s = slow_post(&addr(&serve), path, 200, r#"[{"id":1,"department":"Sa"#).await;
        let response = read_until_closed(&mut s, Duration::from_secs(6))
            .await
            .unwrap_or_else(|| panic!("{path}: still open after 6 s"));
        let elapsed = started.elapsed();
        assert!(response.starts_with("HTTP/1.1 408"), "{path}: {response}");
        assert!(
            elapsed >= Duration::from_millis(1800),
            "{path}: {elapsed:?}"
        );
        assert_eq!(
            body_of(&response)["error"]["code"],
            "request_timeout",
            "{path}: {response}"
        );
        assert!(
            response.to_ascii_lowercase().contains("connection: close"),
            "{response}"
        );
    }
    let tables: Value = get(format!("{}/api/tables", serve.base), None)
        .await
        .json()
        .await
        .unwrap();
    for t in tables.as_array().unwrap() {
        assert_eq!(t["rows"], 0, "{t}");
    }
    let rejections: Value = get(format!("{}/api/rejections?limit=1000", serve.base), None)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(rejections, Value::Array(vec![]));
    let backups: Value = get(format!("{}/api/backups", serve.base), None)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(backups, Value::Array(vec![]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_keep_alive_connection_is_closed_after_the_idle_timeout() {
    let (serve, _dir) = start(&[("HRMIG_HEADER_TIMEOUT_SECS", "2")]).await;
    let mut s = TcpStream::connect(addr(&serve)).await.unwrap();
    for _ in 0..2 {
        // Kept alive between requests sent within the timeout.
        s.write_all(b"GET /api/health HTTP/1.1\r\nHost: x\r\n\r\n")
            .await
            .unwrap();
        let mut got = Vec::new();
        let mut buf = [0u8; 1024];
        while !String::from_utf8_lossy(&got).ends_with('}') {
            let n = tokio::time::timeout(Duration::from_secs(5), s.read(&mut buf))
                .await
                .expect("no response")
                .unwrap();
            assert!(n > 0, "closed before answering");
            got.extend_from_slice(&buf[..n]);
        }
        assert!(String::from_utf8_lossy(&got).starts_with("HTTP/1.1 200"));
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let idle = Instant::now() - Duration::from_millis(500);
    let rest = read_until_closed(&mut s, Duration::from_secs(5))
        .await
        .expect("the idle connection is still open 5 s later");
    assert_eq!(rest, "", "nothing more is sent on an idle connection");
    let elapsed = idle.elapsed();
    assert!(
        elapsed >= Duration::from_millis(1800) && elapsed < Duration::from_secs(4),
        "closed after {elapsed:?} idle"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn past_the_concurrency_cap_requests_get_503_with_retry_after() {
    let (serve, _dir) = start(&[
        ("HRMIG_MAX_CONCURRENT_REQUESTS", "4"),
        ("HRMIG_BODY_TIMEOUT_SECS", "20"),
    ])
    .await;
    let mut held = Vec::new();
    for _ in 0..4 {
        held.push(slow_post(&addr(&serve), "/api/tables/departments/rows", 100, "[").await);
    }
    // The four handlers are reading their bodies, each with a permit.
    let deadline = Instant::now() + Duration::from_secs(5);
    let shed = loop {
        let r = get(format!("{}/api/tables", serve.base), None).await;
        if r.status() == 503 {
            break r;
        }
        assert!(Instant::now() < deadline, "never shed: {}", r.status());
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let retry_after: u64 = shed.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(retry_after >= 1);
    let body: Value = shed.json().await.unwrap();
    assert_eq!(body["error"]["code"], "overloaded", "{body}");
    // Health stays outside the cap.
    let health = get(format!("{}/api/health", serve.base), None).await;
    assert_eq!(health.status(), 200);

    // The held clients go away: their permits come back.
    drop(held);
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let r = get(format!("{}/api/tables", serve.base), None).await;
        if r.status() == 200 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the cap never freed: {}",
            r.status()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn over_the_rate_a_key_gets_429_with_retry_after_and_another_key_passes() {
    let (serve, _dir) = start(&[
        ("HRMIG_RATE_LIMIT_PER_MINUTE", "3"),
        ("HRMIG_API_KEY", "reader-key"),
        ("HRMIG_ADMIN_KEY", "admin-key"),
    ])
    .await;
    let url = format!("{}/api/tables", serve.base);
    for _ in 0..3 {
        assert_eq!(get(url.clone(), Some("reader-key")).await.status(), 200);
    }
    let limited = get(url.clone(), Some("reader-key")).await;
    assert_eq!(limited.status(), 429);
    let retry_after: u64 = limited.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=60).contains(&retry_after), "{retry_after}");
    let body: Value = limited.json().await.unwrap();
    assert_eq!(body["error"]["code"], "rate_limited", "{body}");
    // Another key has a bucket of its own; a wrong key is refused before
    // it costs anything; health is not limited.
    assert_eq!(get(url.clone(), Some("admin-key")).await.status(), 200);
    assert_eq!(get(url.clone(), Some("wrong")).await.status(), 401);
    for _ in 0..5 {
        let health = get(format!("{}/api/health", serve.base), None).await;
        assert_eq!(health.status(), 200);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_hundred_slow_bodies_neither_slow_health_nor_outlive_the_body_timeout() {
    const CLIENTS: usize = 300;
    let body_timeout = Duration::from_secs(2);
    let (serve, _dir) = start(&[
        ("HRMIG_BODY_TIMEOUT_SECS", "2"),
        ("HRMIG_MAX_CONCURRENT_REQUESTS", "1000"),
    ])
    .await;
    let mut clients = Vec::with_capacity(CLIENTS);
    for _ in 0..CLIENTS {
        clients.push(slow_post(&addr(&serve), "/api/tables/departments/rows", 1000, "[{").await);
    }
    let all_sent = Instant::now();
    let readers: Vec<_> = clients
        .into_iter()
        .map(|mut s| {
            tokio::spawn(async move {
                read_until_closed(&mut s, body_timeout + Duration::from_secs(4)).await
            })
        })
        .collect();
    // While they hang, health answers fast.
    for _ in 0..3 {
        let asked = Instant::now();
        let health = get(format!("{}/api/health", serve.base), None).await;
        let took = asked.elapsed();
        assert_eq!(health.status(), 200);
        assert!(took < Duration::from_secs(1), "health took {took:?}");
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    let mut timed_out = 0;
    for reader in readers {
        let response = reader
            .await
            .unwrap()
            .expect("a slow connection outlived the body timeout by 4 s");
        if response.starts_with("HTTP/1.1 408") {
            timed_out += 1;
        }
    }
    let elapsed = all_sent.elapsed();
    assert!(
        elapsed < body_timeout + Duration::from_secs(4),
        "{elapsed:?}"
    );
    assert_eq!(timed_out, CLIENTS, "every slow body is answered 408");
    let tables: Value = get(format!("{}/api/tables", serve.base), None)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(tables[0]["rows"], 0, "{tables}");
}

#[test]
fn invalid_limit_settings_stop_the_start_up_naming_the_setting() {
    let dir = tempfile::tempdir().unwrap();
    for (var, value) in [
        ("HRMIG_HEADER_TIMEOUT_SECS", "0"),
        ("HRMIG_HEADER_TIMEOUT_SECS", "120"),
        ("HRMIG_BODY_TIMEOUT_SECS", "soon"),
        ("HRMIG_MAX_CONCURRENT_REQUESTS", "0"),
        ("HRMIG_RATE_LIMIT_PER_MINUTE", "-5"),
    ] {
        let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_hrmig"))
            .current_dir(dir.path())
            .args(["serve", "--listen", "127.0.0.1:0"])
            .env("HRMIG_LOG", "warn")
            .env_remove("FUNCTIONS_CUSTOMHANDLER_PORT")
            .env_remove("FUNCTIONS_HTTPWORKER_PORT")
            .env(var, value)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(15);
        let status = loop {
            if let Some(status) = child.try_wait().unwrap() {
                break status;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                panic!("{var}={value}: the server started");
            }
            std::thread::sleep(Duration::from_millis(50));
        };
        let mut stderr = String::new();
        std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut stderr).unwrap();
        assert_eq!(status.code(), Some(1), "{var}={value}: {stderr}");
        assert!(stderr.contains(var), "{var}={value}: {stderr}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn under_the_functions_host_the_cap_applies_and_the_readiness_probe_answers() {
    let dir = tempfile::tempdir().unwrap();
    let port = common::port::free_port();
    let child = std::process::Command::new(env!("CARGO_BIN_EXE_hrmig"))
        .current_dir(dir.path())
        .args(["serve"])
        .env("HRMIG_LOG", "warn")
        .env("FUNCTIONS_CUSTOMHANDLER_PORT", port.to_string())
        .env_remove("FUNCTIONS_HTTPWORKER_PORT")
        .env_remove("HRMIG_API_KEY")
        .env_remove("HRMIG_ADMIN_KEY")
        .env("HRMIG_MAX_CONCURRENT_REQUESTS", "1")
        .env("HRMIG_BODY_TIMEOUT_SECS", "20")
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let _child = KillOnDrop(child);
    let base = format!("http://127.0.0.1:{port}");
    let deadline = Instant::now() + Duration::from_secs(20);
    while reqwest::get(format!("{base}/")).await.is_err() {
        assert!(Instant::now() < deadline, "the handler did not start");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let held = slow_post(
        &format!("127.0.0.1:{port}"),
        "/api/tables/departments/rows",
        100,
        "[",
    )
    .await;
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let r = get(format!("{base}/api/tables"), None).await;
        if r.status() == 503 {
            let body: Value = r.json().await.unwrap();
            assert_eq!(body["error"]["code"], "overloaded");
            break;
        }
        assert!(Instant::now() < deadline, "never shed: {}", r.status());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(get(format!("{base}/"), None).await.status(), 200);
    assert_eq!(get(format!("{base}/api/health"), None).await.status(), 200);
    drop(held);
}

/// A child process killed when the test ends, passed or not.
struct KillOnDrop(std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}
