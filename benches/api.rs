//! Load generator for the ingest API: `cargo bench --bench api [-- SECONDS [CLIENTS…]]`.
//!
//! Starts the release `hrmig serve` on a free loopback port with a fresh
//! SQLite database (or the one `HRMIG_DATABASE_URL` names, which must then
//! be empty; `HRMIG_BIN=PATH` serves with that binary), then for each client count sends 1000-row JSON batches
//! of `hired_employees` (fresh ids, every row validated and its foreign keys
//! checked) for a bounded time, and prints p50/p99 latency and rows/s.
//! With `HRMIG_BENCH_COPY=1` (or `only`, without the API runs) and a
//! PostgreSQL `HRMIG_DATABASE_URL`, it then measures the ceiling of the same
//! batches: binary `COPY` of the same rows straight into the same table, one
//! transaction per 1000 rows.

use std::time::{Duration, Instant};

const ROWS: usize = 1000;

/// Ids are nine digits (100 000 000 and up) so that each batch is the
/// same template with its ids patched in place: the generator then costs
/// little next to the server it shares the machine with.
struct Template {
    text: Vec<u8>,
    id_at: Vec<usize>,
}

impl Template {
    fn new() -> Template {
        let mut text = String::with_capacity(ROWS * 110);
        let mut id_at = Vec::with_capacity(ROWS);
        text.push('[');
        for i in 0..ROWS as u64 {
            if i > 0 {
                text.push(',');
            }
            text.push_str(r#"{"id":"#);
            id_at.push(text.len());
            text.push_str(&format!(
                r#"100000000,"name":"Employee {i}","datetime":"2021-{:02}-{:02}T10:00:00Z","department_id":{},"job_id":{}}}"#,
                1 + i % 12,
                1 + i % 28,
                1 + i % 12,
                1 + i % 183
            ));
        }
        text.push(']');
        Template {
            text: text.into_bytes(),
            id_at,
        }
    }

    /// The batch whose rows have ids `first_id..first_id + ROWS`.
    fn body(&mut self, first_id: u64) -> Vec<u8> {
        for (i, &at) in self.id_at.iter().enumerate() {
            let mut id = first_id + i as u64;
            for k in (0..9).rev() {
                self.text[at + k] = b'0' + (id % 10) as u8;
                id /= 10;
            }
        }
        self.text.clone()
    }
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i]
}

#[tokio::main]
async fn main() {
    // `cargo bench` passes `--bench`; `cargo test --all-targets` does not,
    // and then one short run checks that the generator still works.
    let benching = std::env::args().any(|a| a == "--bench");
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with("--"))
        .collect();
    let seconds: u64 = match args.first().and_then(|s| s.parse().ok()) {
        Some(s) => s,
        None if benching => 10,
        None => 1,
    };
    let clients: Vec<usize> = if args.len() > 1 {
        args[1..].iter().filter_map(|s| s.parse().ok()).collect()
    } else if benching {
        vec![1, 4, 16]
    } else {
        vec![2]
    };
    let dir = tempfile::tempdir().unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    // HRMIG_BIN: the server to measure (another build, to compare two on
    // one machine in one run); else the one cargo built for this bench.
    let bin = std::env::var("HRMIG_BIN").unwrap_or_else(|_| env!("CARGO_BIN_EXE_hrmig").into());
    let status = std::process::Command::new(&bin)
        .current_dir(dir.path())
        .args(["gen", "--out", "storage/landing", "--employees", "1"])
        .output()
        .unwrap();
    assert!(status.status.success());
    // HRMIG_BENCH_URL: measure a server started by hand (e.g. under a profiler),
    // whose storage root holds the sample landing files.
    let external = std::env::var("HRMIG_BENCH_URL").ok();
    let server = match external {
        Some(_) => None,
        None => Some(
            std::process::Command::new(&bin)
                .current_dir(dir.path())
                // Its storage is its folder's, where the sample files are.
                .env_remove("HRMIG_STORAGE_URL")
                .env("HRMIG_LOG", "warn")
                .args(["serve", "--listen", &format!("127.0.0.1:{port}")])
                .spawn()
                .unwrap(),
        ),
    };
    let base = external.unwrap_or_else(|| format!("http://127.0.0.1:{port}"));
    let client = reqwest::Client::new();
    let deadline = Instant::now() + Duration::from_secs(20);
    while client
        .get(format!("{base}/api/health"))
        .send()
        .await
        .is_err()
    {
        assert!(Instant::now() < deadline, "server did not start");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let r = client
        .post(format!("{base}/api/loads"))
        .json(&serde_json::json!({"tables": ["departments", "jobs"]}))
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success());
    // A load job: the parents are in once it is done.
    let location = r.headers()["location"].to_str().unwrap().to_owned();
    loop {
        let job: serde_json::Value = client
            .get(format!("{base}{location}"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        match job["status"].as_str() {
            Some("done") => break,
            Some("queued" | "running") => tokio::time::sleep(Duration::from_millis(20)).await,
            _ => panic!("the parents' load failed: {job}"),
        }
        assert!(Instant::now() < deadline + Duration::from_secs(60), "{job}");
    }
    // The server's database: HRMIG_DATABASE_URL when set (it inherits the
    // environment), else a fresh SQLite file in its folder.
    let database = match std::env::var("HRMIG_DATABASE_URL") {
        Ok(url) if url.starts_with("postgres") => "PostgreSQL",
        Ok(url) if !url.starts_with("sqlite") => "SQL Server",
        _ => "SQLite",
    };
    println!(
        "machine: {} cores; {seconds} s per run; {ROWS}-row JSON batches into hired_employees ({database})",
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(0)
    );
    println!(
        "{:>8} {:>9} {:>9} {:>9} {:>12}",
        "clients", "batches", "p50 ms", "p99 ms", "rows/s"
    );
    let mut next_id = 100_000_000u64;
    // HRMIG_BENCH_COPY=only: the COPY baseline alone (the server made the
    // schema and loaded the parents).
    let copy = std::env::var("HRMIG_BENCH_COPY").ok();
    let api_clients = if copy.as_deref() == Some("only") {
        &[][..]
    } else {
        &clients[..]
    };
    for &n in api_clients {
        let started = Instant::now();
        let stop = started + Duration::from_secs(seconds);
        let mut tasks = Vec::new();
        for c in 0..n {
            let client = client.clone();
            let url = format!("{base}/api/tables/hired_employees/rows");
            // Each client owns a disjoint id range: every row is fresh.
            let mut id = next_id + c as u64 * 10_000_000;
            tasks.push(tokio::spawn(async move {
                let mut template = Template::new();
                let mut latencies = Vec::new();
                while Instant::now() < stop && latencies.len() < 9_000 {
                    let b = template.body(id);
                    id += ROWS as u64;
                    let t = Instant::now();
                    let r = client
                        .post(&url)
                        .header("content-type", "application/json")
                        .body(b)
                        .send()
                        .await
                        .unwrap();
                    assert!(r.status().is_success(), "{}", r.status());
                    let _ = r.bytes().await.unwrap();
                    latencies.push(t.elapsed());
                }
                latencies
            }));
        }
        let mut all = Vec::new();
        for t in tasks {
            all.extend(t.await.unwrap());
        }
        let elapsed = started.elapsed().as_secs_f64();
        next_id += n as u64 * 10_000_000;
        all.sort();
        println!(
            "{:>8} {:>9} {:>9.2} {:>9.2} {:>12.0}",
            n,
            all.len(),
            percentile(&all, 0.50).as_secs_f64() * 1000.0,
            percentile(&all, 0.99).as_secs_f64() * 1000.0,
            (all.len() * ROWS) as f64 / elapsed
        );
    }
    if let Some(mut server) = server {
        let _ = server.kill();
        let _ = server.wait();
    }
    // The ceiling of a batch on PostgreSQL: the same rows, 1000 per
    // transaction, by binary COPY straight into the same table (its keys,
    // its foreign-key triggers), with nothing checked or logged.
    if let (Ok(url), Some(_)) = (std::env::var("HRMIG_DATABASE_URL"), copy) {
        println!("binary COPY of the same rows, 1000 per transaction (no hrmig):");
        for &n in &clients {
            let (batches, p50, p99, rows_per_s) = copy_baseline(&url, n, seconds, next_id).await;
            next_id += n as u64 * 10_000_000;
            println!("{n:>8} {batches:>9} {p50:>9.2} {p99:>9.2} {rows_per_s:>12.0}");
        }
    }
}

/// `clients` sessions each copying 1000-row transactions of fresh ids for
/// `seconds`: (batches, p50 ms, p99 ms, rows/s).
async fn copy_baseline(
    url: &str,
    clients: usize,
    seconds: u64,
    first: u64,
) -> (usize, f64, f64, f64) {
    use tokio_postgres::binary_copy::BinaryCopyInWriter;
    use tokio_postgres::types::Type;
    let started = Instant::now();
    let stop = started + Duration::from_secs(seconds);
    let mut tasks = Vec::new();
    for c in 0..clients {
        let url = url.to_owned();
        let mut id = first + c as u64 * 10_000_000;
        tasks.push(tokio::spawn(async move {
            let (mut client, conn) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
                .await
                .unwrap();
            tokio::spawn(conn);
            let day = Duration::from_secs(86_400);
            let jan = std::time::UNIX_EPOCH + Duration::from_secs(1_609_495_200); // 2021-01-01T10:00Z
            let mut latencies = Vec::new();
            while Instant::now() < stop && latencies.len() < 9_000 {
                let t = Instant::now();
                let tx = client.transaction().await.unwrap();
                let sink = tx
                    .copy_in("COPY hired_employees (id, name, datetime, department_id, job_id) FROM STDIN (FORMAT binary)")
                    .await
                    .unwrap();
                let types = [Type::INT4, Type::VARCHAR, Type::TIMESTAMPTZ, Type::INT4, Type::INT4];
                let writer = BinaryCopyInWriter::new(sink, &types);
                futures::pin_mut!(writer);
                for i in 0..ROWS as u64 {
                    let (rid, name) = ((id + i) as i32, format!("Employee {i}"));
                    let when = jan + day * (30 * (i % 12) + i % 28) as u32;
                    let (dept, job) = ((1 + i % 12) as i32, (1 + i % 183) as i32);
                    writer.as_mut().write(&[&rid, &name, &when, &dept, &job]).await.unwrap();
                }
                writer.as_mut().finish().await.unwrap();
                tx.commit().await.unwrap();
                latencies.push(t.elapsed());
                id += ROWS as u64;
            }
            latencies
        }));
    }
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await.unwrap());
    }
    let elapsed = started.elapsed().as_secs_f64();
    all.sort();
    (
        all.len(),
        percentile(&all, 0.50).as_secs_f64() * 1000.0,
        percentile(&all, 0.99).as_secs_f64() * 1000.0,
        (all.len() * ROWS) as f64 / elapsed,
    )
}
