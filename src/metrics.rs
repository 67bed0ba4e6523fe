//! The service's metrics, for Prometheus (`GET /api/metrics`, the
//! OpenMetrics text format of the Prometheus project's own client).
//!
//! Counters move by exactly what an operation did, when it did it: rows
//! and rejections from the counts an applied batch or a finished load
//! reports (a dry run or a replayed key moves nothing), requests from the
//! request log's layer. The database pool is read at each scrape, from
//! the pool's own counts: a scrape never queries a table. A server keeps
//! its metrics in its state, not in a global, so that two servers in one
//! process count apart.

use crate::dictionary::{CodeTally, Table};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::metrics::info::Info;
use prometheus_client::registry::Registry;

/// The media type of [`Metrics::render`]'s text.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RowLabels {
    table: &'static str,
    outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CodeLabels {
    table: &'static str,
    code: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    route: String,
    method: String,
    status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OperationLabels {
    table: &'static str,
    outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PoolLabels {
    state: &'static str,
}

type Timings<L> = Family<L, Histogram, fn() -> Histogram>;

/// Request latencies: 1 ms to about 33 s, doubling.
fn request_buckets() -> Histogram {
    Histogram::new(exponential_buckets(0.001, 2.0, 16))
}

/// Loads and backups: 10 ms to about 11 min, doubling.
fn operation_buckets() -> Histogram {
    Histogram::new(exponential_buckets(0.01, 2.0, 17))
}

/// What one table of a batch or one file did to its rows.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RowCounts {
    pub received: u64,
    pub inserted: u64,
    pub updated: u64,
    pub rejected: u64,
    /// Rejected rows per code.
    pub codes: CodeTally,
}

/// The database connections, as the pool counts them at a scrape.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PoolStatus {
    /// Connections the pool may open.
    pub max: u64,
    /// Connections open now.
    pub open: u64,
    /// Of those, idle.
    pub idle: u64,
    /// Callers waiting for one now.
    pub waiting: u64,
}

/// Every metric of one server.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    rows: Family<RowLabels, Counter>,
    rejections: Family<CodeLabels, Counter>,
    requests: Timings<RequestLabels>,
    loads: Timings<OperationLabels>,
    backups: Timings<OperationLabels>,
    pool: Family<PoolLabels, Gauge>,
    pool_max: Gauge,
    pool_waiting: Gauge,
}

impl Metrics {
    /// The metrics of a server over a database of this dialect.
    pub fn new(database: &'static str) -> Metrics {
        let mut registry = Registry::default();
        let build = Info::new(vec![
            ("version", env!("CARGO_PKG_VERSION")),
            ("database", database),
        ]);
        registry.register("hrmig_build", "The build and the database it serves", build);
        let rows = Family::<RowLabels, Counter>::default();
        registry.register(
            "hrmig_rows",
            "Rows of API batches and loads: received = inserted + updated + rejected",
            rows.clone(),
        );
        let rejections = Family::<CodeLabels, Counter>::default();
        registry.register(
            "hrmig_rejections",
            "Rejected rows of API batches, by the code of their errors",
            rejections.clone(),
        );
        let requests = Timings::new_with_constructor(request_buckets as fn() -> Histogram);
        registry.register(
            "hrmig_http_request_duration_seconds",
            "HTTP requests by route, method and status, and how long they took",
            requests.clone(),
        );
        let loads = Timings::new_with_constructor(operation_buckets as fn() -> Histogram);
        registry.register(
            "hrmig_load_duration_seconds",
            "Files loaded by this server's load jobs, by table and how they ended",
            loads.clone(),
        );
        let backups = Timings::new_with_constructor(operation_buckets as fn() -> Histogram);
        registry.register(
            "hrmig_backup_duration_seconds",
            "Backups by table and how they ended",
            backups.clone(),
        );
        let pool = Family::<PoolLabels, Gauge>::default();
        registry.register(
            "hrmig_db_pool_connections",
            "Database connections open, busy or idle",
            pool.clone(),
        );
        let pool_max = Gauge::default();
        registry.register(
            "hrmig_db_pool_max_connections",
            "Database connections the pool may open",
            pool_max.clone(),
        );
        let pool_waiting = Gauge::default();
        registry.register(
            "hrmig_db_pool_waiting",
            "Callers waiting for a database connection (SQLite: writes queued behind the one running)",
            pool_waiting.clone(),
        );
        Metrics {
            registry,
            rows,
            rejections,
            requests,
            loads,
            backups,
            pool,
            pool_max,
            pool_waiting,
        }
    }

    /// Counts what one table of a batch, or one file, did.
    pub fn rows(&self, table: Table, counts: &RowCounts) {
        let table = table.name();
        for (outcome, n) in [
            ("received", counts.received),
            ("inserted", counts.inserted),
            ("updated", counts.updated),
            ("rejected", counts.rejected),
        ] {
            self.rows
                .get_or_create(&RowLabels { table, outcome })
                .inc_by(n);
        }
        for (code, n) in counts.codes.iter() {
            let code = code.as_str();
            self.rejections
                .get_or_create(&CodeLabels { table, code })
                .inc_by(n);
        }
    }

    /// Counts an HTTP request. `route` is the route's pattern, never the
    /// path: a scan of random paths adds one series, `unmatched`.
    pub fn request(&self, route: Option<&str>, method: &str, status: u16, seconds: f64) {
        let labels = RequestLabels {
            route: route.unwrap_or("unmatched").to_owned(),
            method: method.to_owned(),
            status,
        };
        self.requests.get_or_create(&labels).observe(seconds);
    }

    /// Counts a file a load job loaded (`outcome`: its status).
    pub fn load(&self, table: Table, outcome: &'static str, seconds: f64) {
        let labels = OperationLabels {
            table: table.name(),
            outcome,
        };
        self.loads.get_or_create(&labels).observe(seconds);
    }

    /// Counts a backup (`outcome`: `ok` or `failed`).
    pub fn backup(&self, table: Table, outcome: &'static str, seconds: f64) {
        let labels = OperationLabels {
            table: table.name(),
            outcome,
        };
        self.backups.get_or_create(&labels).observe(seconds);
    }

    /// The exposition text, with the pool as it is now.
    pub fn render(&self, pool: PoolStatus) -> String {
        let busy = pool.open.saturating_sub(pool.idle);
        for (state, n) in [("busy", busy), ("idle", pool.idle)] {
            self.pool.get_or_create(&PoolLabels { state }).set(gauge(n));
        }
        self.pool_max.set(gauge(pool.max));
        self.pool_waiting.set(gauge(pool.waiting));
        let mut text = String::new();
        // Writing to a String does not fail.
        let _ = prometheus_client::encoding::text::encode(&mut text, &self.registry);
        text
    }
}

fn gauge(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dictionary::{ErrorCode, FieldError};

    #[test]
    fn counters_move_by_what_was_counted_and_carry_their_labels() {
        let m = Metrics::new("sqlite");
        let mut codes = CodeTally::default();
        let fk = FieldError::column("job_id", ErrorCode::ForeignKey, "no parent");
        codes.add(std::slice::from_ref(&fk));
        codes.add(&[fk, FieldError::column("name", ErrorCode::Missing, "empty")]);
        let counts = RowCounts {
            received: 5,
            inserted: 3,
            updated: 0,
            rejected: 2,
            codes,
        };
        m.rows(Table::HiredEmployees, &counts);
        m.rows(Table::HiredEmployees, &counts);
        m.request(Some("/api/tables/{table}/rows"), "POST", 200, 0.004);
        m.request(None, "GET", 404, 0.0001);
        let text = m.render(PoolStatus {
            max: 4,
            open: 3,
            idle: 1,
            waiting: 0,
        });
        let build = format!(
            r#"hrmig_build_info{{version="{}",database="sqlite"}} 1"#,
            env!("CARGO_PKG_VERSION")
        );
        for line in [
            r#"hrmig_rows_total{table="hired_employees",outcome="received"} 10"#,
            r#"hrmig_rows_total{table="hired_employees",outcome="inserted"} 6"#,
            r#"hrmig_rows_total{table="hired_employees",outcome="rejected"} 4"#,
            r#"hrmig_rejections_total{table="hired_employees",code="foreign_key"} 4"#,
            r#"hrmig_rejections_total{table="hired_employees",code="missing"} 2"#,
            r#"hrmig_http_request_duration_seconds_count{route="/api/tables/{table}/rows",method="POST",status="200"} 1"#,
            r#"hrmig_http_request_duration_seconds_count{route="unmatched",method="GET",status="404"} 1"#,
            r#"hrmig_db_pool_connections{state="busy"} 2"#,
            r#"hrmig_db_pool_max_connections 4"#,
            build.as_str(),
        ] {
            assert!(text.lines().any(|l| l == line), "no {line} in\n{text}");
        }
        assert!(text.ends_with("# EOF\n"));
    }
}
