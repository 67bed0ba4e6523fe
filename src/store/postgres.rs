//! PostgreSQL backend: a pool of connections to a server that several
//! hrmig processes may share.
//!
//! Checks that need the database (an id already taken, a parent that does
//! not exist) are made for a whole batch at once, and the insert itself
//! settles races with other writers: `ON CONFLICT ("id") DO NOTHING` keeps
//! one copy of an id, and a row that lost the race becomes a duplicate
//! rejection. Loads stream rows with binary `COPY`; rejections go in with
//! one statement per 4096. Transient failures (a dropped connection, a
//! server restarting, a deadlock) make the whole transaction run again.

use super::checks::{
    BatchKnown, IdBitmap, LoadKnown, Sorted, ints, judge, outcome, rejection_record,
};
use super::jobs::{JobParam, JobRecord, JobStatement};
use super::pg_tls;
use super::retry::retrying;
use super::{
    Candidate, DepartmentHires, Feed, FeedSummary, Field, FileLoad, FileLoadOutcome, Idempotency,
    IngestOutcome, LoadRecord, Pieces, QuarterRow, Rejection, RejectionFilter, Render, Replacement,
    RowSink, StoreError, TableBatch, TableOutcome, ddl,
};
use crate::dictionary::check::MAX_COLUMNS;
use crate::dictionary::{ColumnType, FieldError, Row, Table, Value, datetime};
use bytes::{BufMut, BytesMut};
use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod};
use futures::TryStreamExt;
use std::collections::{HashMap, HashSet};
use std::time::Duration;
use tokio::sync::mpsc;
use tokio_postgres::binary_copy::{BinaryCopyInWriter, BinaryCopyOutStream};
use tokio_postgres::error::SqlState;
use tokio_postgres::types::{FromSql, IsNull, ToSql, Type, to_sql_checked};
use tokio_postgres::{GenericClient, IsolationLevel, Transaction};

/// A pooled connection's transaction.
type PooledTx<'a> = deadpool_postgres::Transaction<'a>;

/// Connections per process unless the URL's `pool_size` says otherwise.
const DEFAULT_POOL: usize = 16;
/// Key of the advisory lock that serialises migrations between processes.
const MIGRATION_LOCK: i64 = 0x6872_6d69_6700;

pub struct PgStore {
    pool: Pool,
    /// `host:port` for messages about the server's certificate.
    server: String,
}

impl PgStore {
    /// Connects and brings the schema up to date. `pool_size=N` in the
    /// URL's query sets the pool size (it is not a libpq parameter, so it is
    /// taken out before the URL is parsed); `sslmode` and `sslrootcert`
    /// are libpq's (see [`pg_tls`]). `url` may also be a libpq keyword
    /// string (`host=… dbname=…`).
    pub async fn open(url: &str) -> Result<PgStore, StoreError> {
        let (url, pool_size) = take_pool_size(url)?;
        let (url, tls) = pg_tls::TlsSettings::take(&url)?;
        let mut config: tokio_postgres::Config = url
            .parse()
            .map_err(|_| StoreError::BadUrl(super::redact(&url)))?;
        config.ssl_mode(tls.driver_mode());
        let connector = tls.connector()?;
        let server = pg_tls::server_names(&config);
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(Duration::from_secs(5));
        }
        if config.get_application_name().is_none() {
            config.application_name("hrmig");
        }
        let manager = Manager::from_config(
            config,
            connector,
            ManagerConfig {
                recycling_method: RecyclingMethod::Fast,
            },
        );
        let pool = Pool::builder(manager)
            .max_size(pool_size)
            .wait_timeout(Some(Duration::from_secs(30)))
            .create_timeout(Some(Duration::from_secs(10)))
            .runtime(deadpool_postgres::Runtime::Tokio1)
            .build()
            .map_err(|e| StoreError::Task(e.to_string()))?;
        let store = PgStore { pool, server };
        retrying!(store.migrate()).map(|()| store)
    }

    async fn migrate(&self) -> Result<(), StoreError> {
        let client = self.client().await?;
        // Two processes starting at once would race on `CREATE … IF NOT
        // EXISTS` (both see nothing, one fails on the catalog's unique index).
        client
            .execute("SELECT pg_advisory_lock($1)", &[&MIGRATION_LOCK])
            .await?;
        let mut result = Ok(());
        for (_, sql) in ddl::migrations(super::Dialect::Postgres) {
            result = client.batch_execute(&sql).await;
            if result.is_err() {
                break;
            }
        }
        client
            .execute("SELECT pg_advisory_unlock($1)", &[&MIGRATION_LOCK])
            .await?;
        Ok(result?)
    }

    async fn client(&self) -> Result<deadpool_postgres::Object, StoreError> {
        self.pool.get().await.map_err(|e| match e {
            deadpool_postgres::PoolError::Backend(e) => match pg_tls::tls_failure(&e, &self.server)
            {
                Some(tls) => StoreError::Tls(tls),
                None => StoreError::Postgres(e),
            },
            other => StoreError::Unavailable(other.to_string()),
        })
    }

    pub fn writer_idle(&self) -> bool {
        // Batches are parsed whole before they are sent: a transaction held
        // open while a request is read would hold a pooled connection.
        false
    }

    pub async fn already_loaded(&self, table: Table, sha256: &str) -> Result<bool, StoreError> {
        retrying!(async {
            let client = self.client().await?;
            Ok(history_has(&**client, table, sha256).await?)
        })
    }

    pub async fn load_file(
        &self,
        load: FileLoad,
        mut feed: mpsc::Receiver<Feed>,
    ) -> Result<FileLoadOutcome, StoreError> {
        // A load is not retried: its rows were consumed. It commits whole or
        // not at all, and running it again is safe.
        let mut client = self.client().await?;
        let tx = client.transaction().await?;
        load_file_tx(tx, &load, &mut feed).await
    }

    pub async fn record_aborted(
        &self,
        load: &FileLoad,
        summary: &FeedSummary,
        rejected: u64,
        message: &str,
    ) -> Result<(), StoreError> {
        retrying!(async {
            let client = self.client().await?;
            insert_history(
                &**client,
                load,
                summary,
                "aborted",
                0,
                rejected,
                Some(message),
            )
            .await?;
            Ok(())
        })
    }

    pub async fn rejections(&self, filter: RejectionFilter) -> Result<Vec<Rejection>, StoreError> {
        retrying!(async {
            let client = self.client().await?;
            let stmt = client
                .prepare_cached(&format!(
                "SELECT id, table_name, source, position, raw, errors::text, rejected_at FROM {}
                 WHERE ($1::text IS NULL OR table_name = $1) AND ($2::text IS NULL OR source = $2)
                   AND id > $3
                 ORDER BY id LIMIT $4",
                ddl::REJECTIONS
            ))
                .await?;
            let rows = client
                .query(
                    &stmt,
                    &[
                        &filter.table.map(Table::name),
                        &filter.source,
                        &filter.after.unwrap_or(0),
                        &i64::from(filter.limit),
                    ],
                )
                .await?;
            rows.iter()
                .map(|r| {
                    let errors: String = r.try_get(5)?;
                    Ok(Rejection {
                        id: r.try_get(0)?,
                        table: r.try_get(1)?,
                        source: r.try_get(2)?,
                        position: r.try_get(3)?,
                        raw: r.try_get(4)?,
                        errors: serde_json::from_str(&errors).unwrap_or_default(),
                        rejected_at: datetime::format(r.try_get::<_, Millis>(6)?.0),
                    })
                })
                .collect()
        })
    }

    /// Runs a job statement; the rows it changed.
    pub async fn job_exec(&self, (sql, params): JobStatement) -> Result<u64, StoreError> {
        let params = job_params(&params);
        retrying!(async {
            let client = self.client().await?;
            Ok(client.execute(sql.as_str(), &params).await?)
        })
    }

    /// Runs a job query; its first row.
    pub async fn job_query(
        &self,
        (sql, params): JobStatement,
    ) -> Result<Option<JobRecord>, StoreError> {
        let params = job_params(&params);
        retrying!(async {
            let client = self.client().await?;
            let Some(r) = client.query_opt(sql.as_str(), &params).await? else {
                return Ok(None);
            };
            Ok(Some(JobRecord {
                id: r.try_get(0)?,
                status: r.try_get(1)?,
                request: r.try_get(2)?,
                tables: r.try_get(3)?,
                progress: r.try_get(4)?,
                error: r.try_get(5)?,
                created_ms: r.try_get(6)?,
                heartbeat_ms: r.try_get(7)?,
            }))
        })
    }

    pub async fn loads(&self, limit: u32) -> Result<Vec<LoadRecord>, StoreError> {
        retrying!(async {
            let client = self.client().await?;
            let rows = client
                .query(
                    &format!(
                        "SELECT id, table_name, source, sha256, status, rows_read, inserted,
                            rejected, blank, message, started_at, finished_at
                     FROM {} ORDER BY id DESC LIMIT $1",
                        ddl::LOADS
                    ),
                    &[&i64::from(limit)],
                )
                .await?;
            rows.iter()
                .map(|r| {
                    Ok(LoadRecord {
                        id: r.try_get(0)?,
                        table: r.try_get(1)?,
                        source: r.try_get(2)?,
                        sha256: r.try_get(3)?,
                        status: r.try_get(4)?,
                        rows_read: r.try_get(5)?,
                        inserted: r.try_get(6)?,
                        rejected: r.try_get(7)?,
                        blank: r.try_get(8)?,
                        message: r.try_get(9)?,
                        started_at: datetime::format(r.try_get::<_, Millis>(10)?.0),
                        finished_at: datetime::format(r.try_get::<_, Millis>(11)?.0),
                    })
                })
                .collect()
        })
    }

    pub async fn ingest(
        &self,
        source: String,
        mut tables: Vec<TableBatch>,
        more: Option<Pieces>,
        idempotency: Option<Idempotency>,
        render: Render,
    ) -> Result<IngestOutcome, StoreError> {
        if let Some(more) = more {
            super::collect_pieces(&mut tables, more).await?;
        }
        retrying!(self.ingest_once(&source, &tables, idempotency.as_ref(), &render))
    }

    async fn ingest_once(
        &self,
        source: &str,
        tables: &[TableBatch],
        idempotency: Option<&Idempotency>,
        render: &Render,
    ) -> Result<IngestOutcome, StoreError> {
        let mut client = self.client().await?;
        let tx = client.transaction().await?;
        if let Some(idem) = idempotency {
            // The key is claimed first: a second request with the same key
            // waits here until the first commits, then replays its response.
            let claimed = tx
                .query_opt(
                    &format!(
                        "INSERT INTO {} (key, fingerprint, response, created_at)
                         VALUES ($1, $2, '', $3) ON CONFLICT (key) DO NOTHING RETURNING id",
                        ddl::IDEMPOTENCY
                    ),
                    &[&idem.key, &idem.fingerprint, &Millis::now()],
                )
                .await?;
            if claimed.is_none() {
                let seen = tx
                    .query_one(
                        &format!(
                            "SELECT fingerprint, response FROM {} WHERE key = $1",
                            ddl::IDEMPOTENCY
                        ),
                        &[&idem.key],
                    )
                    .await?;
                let (fingerprint, response): (String, String) =
                    (seen.try_get(0)?, seen.try_get(1)?);
                return Ok(if fingerprint == idem.fingerprint {
                    IngestOutcome::Replayed(response)
                } else {
                    IngestOutcome::KeyReused
                });
            }
        }
        let mut outcomes = Vec::with_capacity(tables.len());
        for batch in tables {
            outcomes.push(ingest_table(&tx, source, batch).await?);
        }
        let response = render(&outcomes, tables);
        if let Some(idem) = idempotency {
            tx.execute(
                &format!(
                    "UPDATE {} SET response = $2 WHERE key = $1",
                    ddl::IDEMPOTENCY
                ),
                &[&idem.key, &response],
            )
            .await?;
        }
        tx.commit().await?;
        Ok(IngestOutcome::Applied(response))
    }

    pub async fn scan<S: RowSink>(&self, table: Table, mut sink: S) -> Result<S, StoreError> {
        let mut client = self.client().await?;
        // One statement in a REPEATABLE READ transaction: one snapshot,
        // writers go on.
        let tx = client
            .build_transaction()
            .isolation_level(IsolationLevel::RepeatableRead)
            .read_only(true)
            .start()
            .await?;
        let types: Vec<Type> = table.columns().iter().map(|c| pg_type(c.ty)).collect();
        let out = tx
            .copy_out(&format!(
                "COPY (SELECT {} FROM \"{}\" ORDER BY \"id\") TO STDOUT (FORMAT binary)",
                column_list(table),
                table.name()
            ))
            .await?;
        let rows = BinaryCopyOutStream::new(out, &types);
        futures::pin_mut!(rows);
        let columns = table.columns();
        while let Some(row) = rows.try_next().await? {
            let mut fields = [Field::Int(0); MAX_COLUMNS];
            for (i, column) in columns.iter().enumerate() {
                fields[i] = match column.ty {
                    ColumnType::Integer => Field::Int(row.try_get(i)?),
                    ColumnType::String => Field::Text(row.try_get::<RawText>(i)?.0),
                    ColumnType::DateTime => Field::DateTime(accepted_datetime(
                        table,
                        row.try_get::<i32>(0).unwrap_or_default(),
                        column.name,
                        row.try_get::<Millis>(i)?.0,
                    )?),
                };
            }
            sink.row(&fields[..columns.len()])?;
        }
        tx.commit().await?;
        Ok(sink)
    }

    pub async fn replace(
        &self,
        table: Table,
        rows: std::sync::mpsc::Receiver<Replacement>,
    ) -> Result<u64, StoreError> {
        let mut rx = super::bridge(rows)?;
        let mut client = self.client().await?;
        let tx = client.transaction().await?;
        replace_tx(tx, table, &mut rx).await
    }

    pub async fn rows(
        &self,
        table: Table,
        after_id: i64,
        limit: u32,
    ) -> Result<Vec<serde_json::Map<String, serde_json::Value>>, StoreError> {
        retrying!(async {
            let client = self.client().await?;
            let rows = client
            .query(
                &format!(
                    "SELECT {} FROM \"{}\" WHERE \"id\" > $1::int8 ORDER BY \"id\" LIMIT $2::int8",
                    column_list(table),
                    table.name()
                ),
                &[&after_id, &i64::from(limit)],
            )
            .await?;
            rows.iter()
                .map(|r| {
                    let mut obj = serde_json::Map::new();
                    for (i, col) in table.columns().iter().enumerate() {
                        let v = match col.ty {
                            ColumnType::Integer => serde_json::Value::from(r.try_get::<_, i32>(i)?),
                            ColumnType::String => {
                                serde_json::Value::from(r.try_get::<_, String>(i)?)
                            }
                            ColumnType::DateTime => {
                                serde_json::Value::from(datetime::format(accepted_datetime(
                                    table,
                                    r.try_get::<_, i32>(0)?,
                                    col.name,
                                    r.try_get::<_, Millis>(i)?.0,
                                )?))
                            }
                        };
                        obj.insert(col.name.to_owned(), v);
                    }
                    Ok(obj)
                })
                .collect()
        })
    }

    pub async fn hires_by_quarter(&self, year: i32) -> Result<Vec<QuarterRow>, StoreError> {
        retrying!(async {
            let client = self.client().await?;
            let rows = client.query(REPORT_HIRES_BY_QUARTER, &[&year]).await?;
            rows.iter()
                .map(|r| {
                    Ok(QuarterRow {
                        department: r.try_get(0)?,
                        job: r.try_get(1)?,
                        q1: r.try_get(2)?,
                        q2: r.try_get(3)?,
                        q3: r.try_get(4)?,
                        q4: r.try_get(5)?,
                    })
                })
                .collect()
        })
    }

    pub async fn departments_above_mean(
        &self,
        year: i32,
    ) -> Result<Vec<DepartmentHires>, StoreError> {
        retrying!(async {
            let client = self.client().await?;
            let rows = client.query(REPORT_ABOVE_MEAN, &[&year]).await?;
            rows.iter()
                .map(|r| {
                    Ok(DepartmentHires {
                        id: i64::from(r.try_get::<_, i32>(0)?),
                        department: r.try_get(1)?,
                        hired: r.try_get(2)?,
                    })
                })
                .collect()
        })
    }

    pub async fn ping(&self) -> Result<(), StoreError> {
        let client = self.client().await?;
        client.simple_query("SELECT 1").await?;
        Ok(())
    }

    /// Read-only sessions: a hot standby, or `default_transaction_read_only`.
    pub async fn check_writes(&self) -> Result<(), StoreError> {
        let client = self.client().await?;
        let row = client
            .query_one("SELECT current_setting('transaction_read_only')", &[])
            .await?;
        match row.get::<_, String>(0).as_str() {
            "off" => Ok(()),
            _ => Err(StoreError::ReadOnly(
                "transactions are read-only (a standby, or default_transaction_read_only)".into(),
            )),
        }
    }

    pub async fn close(&self) -> Result<(), StoreError> {
        self.pool.close();
        Ok(())
    }

    pub async fn count(&self, table: Table) -> Result<u64, StoreError> {
        retrying!(async {
            let client = self.client().await?;
            let n: i64 = client
                .query_one(&format!("SELECT COUNT(*) FROM \"{}\"", table.name()), &[])
                .await?
                .try_get(0)?;
            Ok(n as u64)
        })
    }
}

/// Splits `pool_size=N` off the URL's query.
fn take_pool_size(url: &str) -> Result<(String, usize), StoreError> {
    let Some((base, query)) = url.split_once('?') else {
        return Ok((url.to_owned(), DEFAULT_POOL));
    };
    let mut size = DEFAULT_POOL;
    let mut kept = Vec::new();
    for pair in query.split('&') {
        match pair.strip_prefix("pool_size=") {
            Some(n) => {
                size = n
                    .parse()
                    .ok()
                    .filter(|n| *n > 0)
                    .ok_or_else(|| StoreError::BadUrl(super::redact(url)))?;
            }
            None => kept.push(pair),
        }
    }
    let url = if kept.is_empty() {
        base.to_owned()
    } else {
        format!("{base}?{}", kept.join("&"))
    };
    Ok((url, size))
}

/// Whether running the transaction again may succeed: the connection was
/// lost or refused, the server is starting or stopping, or the transaction
/// lost a deadlock or serialisation conflict. Constraint violations never are.
/// Job parameters as the driver takes them.
fn job_params(params: &[JobParam]) -> Vec<&(dyn ToSql + Sync)> {
    params
        .iter()
        .map(|p| match p {
            JobParam::Text(s) => s as &(dyn ToSql + Sync),
            JobParam::Int(n) => n as &(dyn ToSql + Sync),
        })
        .collect()
}

/// See [`StoreError::cannot_write`]: SQLSTATE classes 53 (insufficient
/// resources: disk full, out of memory) and 58 (system error: I/O), and a
/// read-only transaction (a hot standby, `default_transaction_read_only`).
pub(super) fn cannot_write(e: &tokio_postgres::Error) -> bool {
    e.code().is_some_and(|code| {
        let class = &code.code()[..2];
        class == "53" || class == "58" || *code == SqlState::READ_ONLY_SQL_TRANSACTION
    })
}

pub(super) fn transient(e: &tokio_postgres::Error) -> bool {
    if e.is_closed() {
        return true;
    }
    if let Some(code) = e.code() {
        return [
            SqlState::T_R_SERIALIZATION_FAILURE,
            SqlState::T_R_DEADLOCK_DETECTED,
            SqlState::ADMIN_SHUTDOWN,
            SqlState::CRASH_SHUTDOWN,
            SqlState::CANNOT_CONNECT_NOW,
            SqlState::TOO_MANY_CONNECTIONS,
            SqlState::CONNECTION_EXCEPTION,
            SqlState::CONNECTION_DOES_NOT_EXIST,
            SqlState::CONNECTION_FAILURE,
            SqlState::SQLCLIENT_UNABLE_TO_ESTABLISH_SQLCONNECTION,
            SqlState::SQLSERVER_REJECTED_ESTABLISHMENT_OF_SQLCONNECTION,
        ]
        .contains(code);
    }
    // No SQLSTATE: the socket failed (refused, reset, timed out: the
    // connect timeout is an I/O error too).
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        if s.is::<std::io::Error>() {
            return true;
        }
        source = s.source();
    }
    false
}

/// A DATETIME: UTC milliseconds, sent and read as PostgreSQL's binary
/// timestamp (microseconds since 2000-01-01).
#[derive(Debug, Clone, Copy)]
struct Millis(i64);

/// Milliseconds from 1970-01-01 to 2000-01-01.
const PG_EPOCH_MS: i64 = 946_684_800_000;

impl Millis {
    fn now() -> Millis {
        Millis(chrono::Utc::now().timestamp_millis())
    }
}

impl ToSql for Millis {
    fn to_sql(
        &self,
        _: &Type,
        out: &mut BytesMut,
    ) -> Result<IsNull, Box<dyn std::error::Error + Sync + Send>> {
        out.put_i64((self.0 - PG_EPOCH_MS) * 1000);
        Ok(IsNull::No)
    }

    fn accepts(ty: &Type) -> bool {
        *ty == Type::TIMESTAMPTZ || *ty == Type::TIMESTAMP
    }

    to_sql_checked!();
}

impl<'a> FromSql<'a> for Millis {
    fn from_sql(
        _: &Type,
        raw: &'a [u8],
    ) -> Result<Millis, Box<dyn std::error::Error + Sync + Send>> {
        let bytes: [u8; 8] = raw.try_into()?;
        Ok(Millis(
            i64::from_be_bytes(bytes).div_euclid(1000) + PG_EPOCH_MS,
        ))
    }

    fn accepts(ty: &Type) -> bool {
        *ty == Type::TIMESTAMPTZ || *ty == Type::TIMESTAMP
    }
}

/// Text as the server sent it, unchecked: a backup checks it on its
/// writing thread (see [`Field`]).
struct RawText<'a>(&'a [u8]);

impl<'a> FromSql<'a> for RawText<'a> {
    fn from_sql(
        _: &Type,
        raw: &'a [u8],
    ) -> Result<RawText<'a>, Box<dyn std::error::Error + Sync + Send>> {
        Ok(RawText(raw))
    }

    fn accepts(ty: &Type) -> bool {
        *ty == Type::VARCHAR || *ty == Type::TEXT
    }
}

/// A stored timestamp, if the dictionary accepts it: a server column may
/// hold years (or `infinity`) that no backup or response may carry, and
/// the canonical text could not spell them.
fn accepted_datetime(table: Table, id: i32, column: &str, ms: i64) -> Result<i64, StoreError> {
    if datetime::in_range(ms) {
        return Ok(ms);
    }
    Err(StoreError::BadStoredValue {
        table,
        id: i64::from(id),
        message: format!(
            "{column} is outside years {}..{}",
            datetime::MIN_YEAR,
            datetime::MAX_YEAR
        ),
    })
}

fn pg_type(ty: ColumnType) -> Type {
    match ty {
        ColumnType::Integer => Type::INT4,
        ColumnType::String => Type::VARCHAR,
        ColumnType::DateTime => Type::TIMESTAMPTZ,
    }
}

fn column_list(table: Table) -> String {
    let names: Vec<String> = table
        .columns()
        .iter()
        .map(|c| format!("\"{}\"", c.name))
        .collect();
    names.join(", ")
}

/// Hires per department and job by quarter for one year, from the report
/// view; `COLLATE "C"` orders by byte, which for UTF-8 is code point order,
/// as SQLite's BINARY collation does.
const REPORT_HIRES_BY_QUARTER: &str = r#"
SELECT department::text, job::text, q1, q2, q3, q4 FROM gold_hires_by_quarter
WHERE year = $1
ORDER BY department COLLATE "C", job COLLATE "C", department_id, job_id"#;

/// Departments whose hires in the year exceed the mean over all
/// departments (departments without hires count as zero).
const REPORT_ABOVE_MEAN: &str = "
WITH hires AS (
    SELECT d.id, d.department, COALESCE(g.hired, 0) AS hired
    FROM departments d
    LEFT JOIN gold_department_hires g ON g.id = d.id AND g.year = $1
)
SELECT id, department::text, hired FROM hires
WHERE hired > (SELECT AVG(hired) FROM hires)
ORDER BY hired DESC, id";

async fn history_has(
    c: &impl GenericClient,
    table: Table,
    sha256: &str,
) -> Result<bool, tokio_postgres::Error> {
    Ok(c.query_opt(
        &format!(
            "SELECT 1 FROM {} WHERE table_name = $1 AND sha256 = $2 AND status = 'loaded' LIMIT 1",
            ddl::LOADS
        ),
        &[&table.name(), &sha256],
    )
    .await?
    .is_some())
}

async fn insert_history(
    c: &impl GenericClient,
    load: &FileLoad,
    summary: &FeedSummary,
    status: &str,
    inserted: u64,
    rejected: u64,
    message: Option<&str>,
) -> Result<(), tokio_postgres::Error> {
    let started = datetime::parse(&load.started_at).unwrap_or_else(|_| Millis::now().0);
    c.execute(
        &format!(
            "INSERT INTO {} (table_name, source, sha256, status, rows_read, inserted, rejected,
                             blank, message, started_at, finished_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
            ddl::LOADS
        ),
        &[
            &load.table.name(),
            &load.source,
            &summary.sha256,
            &status,
            &(summary.rows_read as i64),
            &(inserted as i64),
            &(rejected as i64),
            &(summary.blank as i64),
            &message,
            &Millis(started),
            &Millis::now(),
        ],
    )
    .await?;
    Ok(())
}

/// Reads every id of `table` (binary COPY: millions take a second).
async fn read_ids(tx: &Transaction<'_>, table: Table) -> Result<IdBitmap, StoreError> {
    let out = tx
        .copy_out(&format!(
            "COPY (SELECT \"id\" FROM \"{}\") TO STDOUT (FORMAT binary)",
            table.name()
        ))
        .await?;
    let rows = BinaryCopyOutStream::new(out, &[Type::INT4]);
    futures::pin_mut!(rows);
    let mut ids = IdBitmap::default();
    while let Some(row) = rows.try_next().await? {
        ids.insert(row.try_get(0)?);
    }
    Ok(ids)
}

async fn existing(
    tx: &Transaction<'_>,
    table: Table,
    ids: &[i32],
) -> Result<HashSet<i32>, tokio_postgres::Error> {
    let rows = tx
        .query(
            &format!(
                "SELECT \"id\" FROM \"{}\" WHERE \"id\" = ANY($1::int4[])",
                table.name()
            ),
            &[&ids],
        )
        .await?;
    rows.iter().map(|r| r.try_get(0)).collect()
}

/// Column arrays of `rows`, for `INSERT … SELECT * FROM unnest(…)`.
fn column_arrays<'a>(table: Table, rows: &[&'a Row]) -> Vec<Box<dyn ToSql + Sync + Send + 'a>> {
    table
        .columns()
        .iter()
        .enumerate()
        .map(|(i, col)| -> Box<dyn ToSql + Sync + Send + 'a> {
            match col.ty {
                ColumnType::Integer => Box::new(
                    rows.iter()
                        .map(|r| r.0[i].as_int().unwrap_or_default())
                        .collect::<Vec<i32>>(),
                ),
                ColumnType::String => Box::new(
                    rows.iter()
                        .map(|r| match &r.0[i] {
                            Value::Text(s) => s.as_str(),
                            _ => "",
                        })
                        .collect::<Vec<&str>>(),
                ),
                ColumnType::DateTime => Box::new(
                    rows.iter()
                        .map(|r| match r.0[i] {
                            Value::DateTime(ms) => Millis(ms),
                            _ => Millis(0),
                        })
                        .collect::<Vec<Millis>>(),
                ),
            }
        })
        .collect()
}

fn array_type(ty: ColumnType) -> &'static str {
    match ty {
        ColumnType::Integer => "int4[]",
        ColumnType::String => "text[]",
        ColumnType::DateTime => "timestamptz[]",
    }
}

/// One table of an API batch: the ids it names are looked up in two
/// queries, the rows that pass go in with one `INSERT`, and the rest with
/// one insert into the rejection log.
async fn ingest_table(
    tx: &Transaction<'_>,
    source: &str,
    batch: &TableBatch,
) -> Result<TableOutcome, StoreError> {
    let table = batch.table;
    let chunk = &batch.chunk;
    let mut known = BatchKnown {
        taken: existing(tx, table, &ints(chunk, Table::PRIMARY_KEY)).await?,
        parents: HashMap::new(),
    };
    for (i, _, parent) in table.foreign_keys() {
        let found = existing(tx, parent, &ints(chunk, i)).await?;
        known.parents.entry(parent).or_default().extend(found);
    }
    let sorted = Sorted::new(table, chunk, known);
    let mut won = HashSet::new();
    if !sorted.chosen.is_empty() {
        let rows: Vec<&Row> = sorted.chosen.iter().map(|(_, row)| *row).collect();
        let arrays = column_arrays(table, &rows);
        let casts: Vec<String> = table
            .columns()
            .iter()
            .enumerate()
            .map(|(i, c)| format!("${}::{}", i + 1, array_type(c.ty)))
            .collect();
        let params: Vec<&(dyn ToSql + Sync)> =
            arrays.iter().map(|a| &**a as &(dyn ToSql + Sync)).collect();
        won = tx
            .query(
                &format!(
                    "INSERT INTO \"{t}\" ({cols}) SELECT * FROM unnest({casts})
                     ON CONFLICT (\"id\") DO NOTHING RETURNING \"id\"",
                    t = table.name(),
                    cols = column_list(table),
                    casts = casts.join(", ")
                ),
                &params,
            )
            .await?
            .iter()
            .map(|r| r.try_get(0))
            .collect::<Result<_, _>>()?;
    }
    let (inserted, rejected) = sorted.settle(&won);
    log_rejections(tx, table, source, &chunk.raw, &rejected).await?;
    Ok(outcome(table, chunk, inserted, rejected))
}

/// Writes rejections to the log with one statement, in the given order.
async fn log_rejections(
    tx: &Transaction<'_>,
    table: Table,
    source: &str,
    raw: &[u8],
    rejected: &[(&Candidate, Vec<FieldError>)],
) -> Result<(), StoreError> {
    let mut log = RejectionLog::default();
    for (c, errors) in rejected {
        log.add(table, source, raw, c, errors);
    }
    log.flush(tx, table, source).await
}

/// Rejections waiting to be written, as the columns of one `INSERT`.
#[derive(Default)]
struct RejectionLog {
    positions: Vec<i64>,
    raws: Vec<String>,
    errors: Vec<String>,
}

impl RejectionLog {
    /// Rejections a load keeps before writing them: each write ends a
    /// `COPY`, and a new one costs a few milliseconds.
    const LOAD_BATCH: usize = 4096;

    fn len(&self) -> usize {
        self.positions.len()
    }

    fn add(&mut self, table: Table, source: &str, raw: &[u8], c: &Candidate, errs: &[FieldError]) {
        let (position, text, json) = rejection_record(table, source, raw, c, errs);
        self.positions.push(position);
        self.raws.push(text);
        // JSONB refuses the escape `\u0000` as well.
        self.errors.push(json.replace("\\u0000", "\\ufffd"));
    }

    /// Writes what is waiting, in order, with one statement.
    async fn flush(
        &mut self,
        tx: &Transaction<'_>,
        table: Table,
        source: &str,
    ) -> Result<(), StoreError> {
        if self.positions.is_empty() {
            return Ok(());
        }
        tx.execute(
            &format!(
                "INSERT INTO {} (table_name, source, position, raw, errors, rejected_at)
                 SELECT $1, $2, p, r, e::jsonb, $3
                 FROM unnest($4::int8[], $5::text[], $6::text[]) WITH ORDINALITY AS u(p, r, e, n)
                 ORDER BY n",
                ddl::REJECTIONS
            ),
            &[
                &table.name(),
                &source,
                &Millis::now(),
                &self.positions,
                &self.raws,
                &self.errors,
            ],
        )
        .await?;
        *self = RejectionLog::default();
        Ok(())
    }
}

/// Rows of a load on their way into the table by binary `COPY`.
type CopyIn = std::pin::Pin<Box<BinaryCopyInWriter>>;

async fn open_copy(tx: &Transaction<'_>, table: Table) -> Result<CopyIn, StoreError> {
    let sink = tx
        .copy_in(&format!(
            "COPY \"{}\" ({}) FROM STDIN (FORMAT binary)",
            table.name(),
            column_list(table)
        ))
        .await?;
    let types: Vec<Type> = table.columns().iter().map(|c| pg_type(c.ty)).collect();
    Ok(Box::pin(BinaryCopyInWriter::new(sink, &types)))
}

async fn copy_row(copy: &mut CopyIn, row: &Row) -> Result<(), StoreError> {
    let mut values: [&(dyn ToSql + Sync); MAX_COLUMNS] = [&0i32; MAX_COLUMNS];
    let mut stamps = [Millis(0); MAX_COLUMNS];
    for (i, v) in row.0.iter().enumerate() {
        if let Value::DateTime(ms) = v {
            stamps[i] = Millis(*ms);
        }
    }
    for (i, v) in row.0.iter().enumerate() {
        values[i] = match v {
            Value::Int(n) => n,
            Value::Text(s) => s,
            Value::DateTime(_) => &stamps[i],
        };
    }
    copy.as_mut().write(&values[..row.0.len()]).await?;
    Ok(())
}

/// A file load in one transaction. The target table is locked against
/// other writers (readers go on), and the parents are read once (a restore
/// of a parent waits for this transaction), so that the ids read at the
/// start stay true to the end and every check is made in memory; rows then
/// stream straight into the table by binary `COPY`, and rejections are
/// written 4096 at a time between two `COPY`s.
async fn load_file_tx(
    tx: PooledTx<'_>,
    load: &FileLoad,
    feed: &mut mpsc::Receiver<Feed>,
) -> Result<FileLoadOutcome, StoreError> {
    let table = load.table;
    let bulk = table.foreign_keys().next().is_some() && load.bytes.is_some_and(|b| b >= BULK_BYTES);
    // A bulk load keeps readers out too (ALTER TABLE needs it), taken at
    // once rather than upgraded later, which could deadlock.
    let mode = if bulk {
        "ACCESS EXCLUSIVE"
    } else {
        "SHARE ROW EXCLUSIVE"
    };
    tx.batch_execute(&format!("LOCK TABLE \"{}\" IN {mode} MODE", table.name()))
        .await?;
    let (set_aside, indexes) = if bulk {
        (
            set_aside_foreign_keys(&tx, table).await?,
            set_aside_indexes(&tx, table).await?,
        )
    } else {
        (Vec::new(), Vec::new())
    };
    let mut known = LoadKnown {
        taken: read_ids(&tx, table).await?,
        parents: HashMap::new(),
    };
    for (_, _, parent) in table.foreign_keys() {
        if let std::collections::hash_map::Entry::Vacant(slot) = known.parents.entry(parent) {
            slot.insert(read_ids(&tx, parent).await?);
        }
    }
    let (mut inserted, mut rejected_total) = (0u64, 0u64);
    let mut copy: Option<CopyIn> = None;
    let mut log = RejectionLog::default();
    loop {
        match feed.recv().await {
            Some(Feed::Chunk(chunk)) => {
                let mut rejected = Vec::new();
                for c in &chunk.rows {
                    match judge(table, c, &mut known) {
                        Ok(row) => {
                            let open = match copy.as_mut() {
                                Some(open) => open,
                                None => copy.insert(open_copy(&tx, table).await?),
                            };
                            copy_row(open, row).await?;
                            inserted += 1;
                        }
                        Err(errors) => rejected.push((c, errors)),
                    }
                }
                rejected_total += rejected.len() as u64;
                if load.max_rejects.is_some_and(|max| rejected_total > max) {
                    return Ok(FileLoadOutcome::Aborted {
                        rejected: rejected_total,
                    });
                }
                for (c, errors) in &rejected {
                    log.add(table, &load.source, &chunk.raw, c, errors);
                }
                if log.len() >= RejectionLog::LOAD_BATCH {
                    if let Some(mut open) = copy.take() {
                        open.as_mut().finish().await?;
                    }
                    log.flush(&tx, table, &load.source).await?;
                }
            }
            Some(Feed::End(summary)) => {
                if let Some(mut open) = copy.take() {
                    open.as_mut().finish().await?;
                }
                log.flush(&tx, table, &load.source).await?;
                // Checked again under the table lock: two loads of the same
                // content racing each other commit once.
                if !load.force && history_has(&*tx, table, &summary.sha256).await? {
                    return Ok(FileLoadOutcome::AlreadyLoaded);
                }
                for create in &indexes {
                    tx.batch_execute(create).await?;
                }
                for (name, definition) in &set_aside {
                    tx.batch_execute(&format!(
                        "ALTER TABLE \"{}\" ADD CONSTRAINT \"{name}\" {definition}",
                        table.name()
                    ))
                    .await?;
                }
                insert_history(
                    &*tx,
                    load,
                    &summary,
                    "loaded",
                    inserted,
                    rejected_total,
                    None,
                )
                .await?;
                tx.commit().await?;
                return Ok(FileLoadOutcome::Loaded {
                    inserted,
                    rejected: rejected_total,
                });
            }
            None => return Err(StoreError::FeedInterrupted),
        }
    }
}

/// Files from this size on are loaded with the table's foreign keys set
/// aside: PostgreSQL checks a foreign key with a query per inserted row
/// (measured: two of them cost 8 s per million rows, more than the COPY),
/// and validating it again at the end is one join over the table.
const BULK_BYTES: u64 = 2 << 20;

/// Drops the table's foreign keys inside the load's transaction and
/// returns them (name, definition) to be added again before the commit;
/// a rollback brings them back by itself. The rows written meanwhile are
/// checked against the parents in memory, and adding the keys again
/// validates every row once more.
async fn set_aside_foreign_keys(
    tx: &Transaction<'_>,
    table: Table,
) -> Result<Vec<(String, String)>, StoreError> {
    let keys: Vec<(String, String)> = tx
        .query(
            "SELECT conname::text, pg_get_constraintdef(oid) FROM pg_constraint
             WHERE conrelid = to_regclass($1) AND contype = 'f' ORDER BY conname",
            &[&format!("\"{}\"", table.name())],
        )
        .await?
        .iter()
        .map(|r| Ok((r.try_get(0)?, r.try_get(1)?)))
        .collect::<Result<_, tokio_postgres::Error>>()?;
    for (name, _) in &keys {
        tx.batch_execute(&format!(
            "ALTER TABLE \"{}\" DROP CONSTRAINT \"{name}\"",
            table.name()
        ))
        .await?;
    }
    Ok(keys)
}

/// Drops the table's plain (not unique) indexes inside the load's
/// transaction and returns the statements that create them again: the
/// foreign-key columns hold few distinct values, and inserting a million
/// rows into such an index one by one took longer than the whole COPY
/// otherwise did; building it afterwards is one sort.
async fn set_aside_indexes(tx: &Transaction<'_>, table: Table) -> Result<Vec<String>, StoreError> {
    let indexes: Vec<(String, String)> = tx
        .query(
            "SELECT format('DROP INDEX %I.%I', n.nspname, c.relname), pg_get_indexdef(i.indexrelid)
             FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid
             JOIN pg_namespace n ON n.oid = c.relnamespace
             WHERE i.indrelid = to_regclass($1) AND NOT i.indisunique AND NOT i.indisprimary
             ORDER BY c.relname",
            &[&format!("\"{}\"", table.name())],
        )
        .await?
        .iter()
        .map(|r| Ok((r.try_get(0)?, r.try_get(1)?)))
        .collect::<Result<_, tokio_postgres::Error>>()?;
    let mut create = Vec::with_capacity(indexes.len());
    for (drop, definition) in indexes {
        tx.batch_execute(&drop).await?;
        create.push(definition);
    }
    Ok(create)
}

/// Replaces a table's rows (see [`super::Store::replace`]). Foreign keys
/// are declared `DEFERRABLE`: they are deferred here so that a parent table
/// can be emptied and filled again, and checked by queries that name the
/// offending rows before the commit checks them once more.
async fn replace_tx(
    tx: PooledTx<'_>,
    table: Table,
    rows: &mut mpsc::Receiver<Replacement>,
) -> Result<u64, StoreError> {
    tx.batch_execute(&format!(
        "SET CONSTRAINTS ALL DEFERRED; LOCK TABLE \"{}\" IN ACCESS EXCLUSIVE MODE",
        table.name()
    ))
    .await?;
    let mut parents = HashMap::new();
    for (_, _, parent) in table.foreign_keys() {
        if let std::collections::hash_map::Entry::Vacant(slot) = parents.entry(parent) {
            slot.insert(read_ids(&tx, parent).await?);
        }
    }
    if table.children().next().is_some() {
        tx.batch_execute(&format!("DELETE FROM \"{}\"", table.name()))
            .await?;
    } else {
        // No foreign key points here: TRUNCATE empties the table without
        // writing a dead row per old row.
        tx.batch_execute(&format!("TRUNCATE \"{}\"", table.name()))
            .await?;
    }
    let mut copy = open_copy(&tx, table).await?;
    let mut written = 0u64;
    loop {
        match rows.recv().await {
            Some(Replacement::Rows(batch)) => {
                for row in &batch {
                    for (i, column, parent) in table.foreign_keys() {
                        if let Some(v) = row.0[i].as_int()
                            && !parents.get(&parent).is_some_and(|ids| ids.contains(v))
                        {
                            return Err(StoreError::Refused(format!(
                                "row id {} has {} {v}, which is not an id of {parent}",
                                row.id(),
                                column.name
                            )));
                        }
                    }
                    copy_row(&mut copy, row).await?;
                }
                written += batch.len() as u64;
            }
            Some(Replacement::End { rows }) if rows == written => break,
            Some(Replacement::End { rows }) => {
                return Err(StoreError::Refused(format!(
                    "{rows} rows were sent but {written} written"
                )));
            }
            None => return Err(StoreError::FeedInterrupted),
        }
    }
    match copy.as_mut().finish().await {
        Ok(_) => {}
        Err(e) if e.code() == Some(&SqlState::UNIQUE_VIOLATION) => {
            return Err(StoreError::Refused(
                "an id appears more than once in the backup".into(),
            ));
        }
        Err(e) => return Err(e.into()),
    }
    for child in table.children() {
        for (_, column, _) in child.foreign_keys().filter(|(_, _, p)| *p == table) {
            let row = tx
                .query_one(
                    &format!(
                        "SELECT COUNT(*), MIN(c.\"{col}\") FROM \"{child}\" c WHERE NOT EXISTS
                         (SELECT 1 FROM \"{t}\" p WHERE p.\"id\" = c.\"{col}\")",
                        col = column.name,
                        child = child.name(),
                        t = table.name()
                    ),
                    &[],
                )
                .await?;
            let (count, example): (i64, Option<i32>) = (row.try_get(0)?, row.try_get(1)?);
            if count > 0 {
                return Err(StoreError::Refused(format!(
                    "{count} rows of {child} would lose their {table} (e.g. {} = {}): \
                     restore {table} from a backup that has them, or restore {child} first",
                    column.name,
                    example.unwrap_or_default()
                )));
            }
        }
    }
    tx.commit().await?;
    Ok(written)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pool_size_is_taken_out_of_the_url() {
        let (url, n) = take_pool_size("postgres://u@h/db?pool_size=4&sslmode=disable").unwrap();
        assert_eq!((url.as_str(), n), ("postgres://u@h/db?sslmode=disable", 4));
        let (url, n) = take_pool_size("postgres://u@h/db").unwrap();
        assert_eq!((url.as_str(), n), ("postgres://u@h/db", DEFAULT_POOL));
        assert!(take_pool_size("postgres://u@h/db?pool_size=0").is_err());
        assert!(take_pool_size("postgres://u@h/db?pool_size=x").is_err());
    }

    #[test]
    fn millis_round_trip_pg_epoch() {
        for ms in [
            0i64,
            -1,
            1,
            PG_EPOCH_MS,
            -62_135_596_800_000,
            253_402_300_799_999,
        ] {
            let mut buf = BytesMut::new();
            Millis(ms).to_sql(&Type::TIMESTAMPTZ, &mut buf).unwrap();
            assert_eq!(Millis::from_sql(&Type::TIMESTAMPTZ, &buf).unwrap().0, ms);
        }
    }
}
