//! The SQL databases behind one interface.
//!
//! [`Store`] is what the operations call; each backend lives in its own file
//! and keeps its SQL there. What differs between dialects in shared SQL
//! (quoting, types) is a small [`Dialect`] override, not a copy.
//!
//! Rows reach a backend already checked by the pure rules of the dictionary;
//! the backend adds the checks that need the database (an id already taken, a
//! parent that does not exist) inside the same transaction as the insert, and
//! writes each rejected row to the rejection log in that transaction too.

mod ado;
mod checks;
pub mod ddl;
pub mod entra;
pub mod jobs;
mod mssql;
mod pg_tls;
mod postgres;
mod retry;
mod sqlite;

use crate::dictionary::check::Checked;
use crate::dictionary::{ErrorCode, FieldError, Row, Table};
use serde::Serialize;
use std::ops::Range;
use tokio::sync::mpsc;

/// The SQL dialects hrmig speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Dialect {
    /// SQLite 3 (embedded; the default).
    Sqlite,
    /// PostgreSQL 13 or later.
    Postgres,
    /// Azure SQL Database / SQL Server.
    Mssql,
}

impl Dialect {
    /// Every dialect.
    pub const ALL: [Dialect; 3] = [Dialect::Sqlite, Dialect::Postgres, Dialect::Mssql];

    /// The name used in `--dialect` and `migrations/<name>/`.
    pub const fn name(self) -> &'static str {
        match self {
            Dialect::Sqlite => "sqlite",
            Dialect::Postgres => "postgres",
            Dialect::Mssql => "mssql",
        }
    }

    /// Quotes an identifier. Only names from the dictionary or the
    /// bookkeeping tables are ever passed here, never user input.
    pub fn quote(self, ident: &str) -> String {
        match self {
            Dialect::Sqlite | Dialect::Postgres => format!("\"{ident}\""),
            Dialect::Mssql => format!("[{ident}]"),
        }
    }
}

/// Errors of the store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database URL is not one hrmig understands.
    #[error(
        "unsupported database URL {0:?}: use sqlite://PATH, postgres://… or mssql://… \
         (or an ADO.NET connection string)"
    )]
    BadUrl(String),
    /// SQLite failed.
    // The driver errors are not `#[source]`s: their causes are in the
    // message already (see `causes`), and a chain printer would repeat them.
    #[error("SQLite: {}", causes(.0))]
    Sqlite(rusqlite::Error),
    /// PostgreSQL failed.
    #[error("PostgreSQL: {}", pg_causes(.0))]
    Postgres(tokio_postgres::Error),
    /// The PostgreSQL TLS settings cannot be used, or the server's
    /// certificate did not verify; not transient: trying again meets the
    /// same settings and the same certificate.
    // Not a `#[source]`: the message is whole, and a chain printer would
    // say it twice.
    #[error("PostgreSQL: {0}")]
    Tls(pg_tls::TlsError),
    /// SQL Server / Azure SQL failed.
    #[error("SQL Server: {}", causes(.0))]
    Mssql(tiberius::error::Error),
    /// SQL Server's bulk-copy protocol failed during a file load (a TDS
    /// server that implements it differently); the load was rolled back and
    /// the store loads with plain `INSERT`s from then on.
    #[error("SQL Server bulk copy failed: {0}")]
    BulkCopyFailed(tiberius::error::Error),
    /// No Microsoft Entra ID token for an Azure SQL login: the credential
    /// is not set up, refused, or did not answer. Nothing was written.
    // Not a `source`: the message already holds it, and error chains would
    // print it twice.
    #[error("Microsoft Entra ID: {0}")]
    Entra(entra::EntraError),
    /// The database could not be reached, or kept failing for a transient
    /// reason after every retry; nothing was written.
    #[error("the database is unavailable: {0}")]
    Unavailable(String),
    /// The database answers but is read-only (a standby, a database set
    /// read-only); see [`StoreError::cannot_write`].
    #[error("the database is read-only: {0}")]
    ReadOnly(String),
    /// The thread that serialises SQLite writes is gone.
    #[error("the database writer stopped")]
    WriterGone,
    /// The producer of a file load stopped before the end of the file.
    #[error("the file load was interrupted before the end of the file")]
    FeedInterrupted,
    /// A blocking task failed.
    #[error("database task failed: {0}")]
    Task(String),
    /// The consumer of a scan stopped.
    #[error("{0}")]
    Sink(String),
    /// A table's contents cannot be replaced as asked (a foreign key would
    /// break, an id repeats, the rows are not the ones announced); nothing
    /// was changed.
    #[error("{0}")]
    Refused(String),
    /// A stored value does not read back as its column's type.
    #[error("{table} row id {id}: {message}")]
    BadStoredValue {
        /// The table.
        table: Table,
        /// The row's id.
        id: i64,
        /// What is wrong.
        message: String,
    },
}

impl From<rusqlite::Error> for StoreError {
    fn from(e: rusqlite::Error) -> StoreError {
        StoreError::Sqlite(e)
    }
}

impl From<tokio_postgres::Error> for StoreError {
    fn from(e: tokio_postgres::Error) -> StoreError {
        StoreError::Postgres(e)
    }
}

impl From<tiberius::error::Error> for StoreError {
    fn from(e: tiberius::error::Error) -> StoreError {
        StoreError::Mssql(e)
    }
}

/// An error and its causes on one line, each said once: drivers wrap a
/// cause and repeat its words ("directory … does not exist: directory …
/// does not exist").
pub(crate) fn causes(e: &(dyn std::error::Error + 'static)) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut next = Some(e);
    while let Some(err) = next {
        let text = err.to_string();
        // A cause that restates a layer above, with more ("Error code 13:
        // database or disk is full" under "database or disk is full"),
        // takes that layer's place; one that says less is dropped.
        if let Some(part) = parts.iter_mut().find(|p| text.contains(p.as_str())) {
            *part = text;
        } else if !text.is_empty() && !parts.iter().any(|p| p.contains(&text)) {
            parts.push(text);
        }
        next = err.source();
    }
    parts.join(": ")
}

/// A PostgreSQL error with the server's SQLSTATE and message when the
/// server sent one ("FATAL 3D000: database \"x\" does not exist"), else
/// the client's causes ("error connecting to server: Connection refused").
fn pg_causes(e: &tokio_postgres::Error) -> String {
    match e.as_db_error() {
        Some(db) => {
            let mut text = format!("{} {}: {}", db.severity(), db.code().code(), db.message());
            if let Some(detail) = db.detail() {
                text.push_str(" (");
                text.push_str(detail);
                text.push(')');
            }
            text
        }
        None => causes(e),
    }
}

impl From<pg_tls::TlsError> for StoreError {
    fn from(e: pg_tls::TlsError) -> StoreError {
        StoreError::Tls(e)
    }
}

impl From<entra::EntraError> for StoreError {
    fn from(e: entra::EntraError) -> StoreError {
        StoreError::Entra(e)
    }
}

/// Rows per chunk of rows handed between threads.
pub const SCAN_CHUNK: usize = 4096;

/// A column value read back from the store, valid for one row: rows are
/// streamed without an allocation each (a backup reads millions).
///
/// Text comes as the database holds it, not yet checked: the consumer
/// checks it where it costs least (a backup on its writing thread, so that
/// the reading thread only reads). [`Field::text`] and
/// [`Field::datetime`] do the checks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Field<'a> {
    /// INTEGER.
    Int(i32),
    /// STRING: bytes that should be UTF-8.
    Text(&'a [u8]),
    /// DATETIME, UTC milliseconds.
    DateTime(i64),
    /// DATETIME as stored text (canonical `YYYY-MM-DDTHH:MM:SS[.mmm]Z`).
    DateTimeText(&'a [u8]),
}

impl<'a> Field<'a> {
    /// The text of a STRING, checked as UTF-8.
    pub fn text(self) -> Option<&'a str> {
        match self {
            Field::Text(b) => std::str::from_utf8(b).ok(),
            _ => None,
        }
    }

    /// The UTC milliseconds of a DATETIME, parsed when stored as text.
    pub fn datetime(self) -> Option<i64> {
        match self {
            Field::DateTime(ms) => Some(ms),
            Field::DateTimeText(b) => crate::dictionary::datetime::parse_bytes(b).ok(),
            _ => None,
        }
    }
}

/// Where [`Store::scan`] sends each row: its fields in column order.
pub trait RowSink: Send + 'static {
    /// One row; an error stops the scan.
    fn row(&mut self, fields: &[Field<'_>]) -> Result<(), StoreError>;
}

/// What a restore producer sends: rows in id order, then the count it
/// sent. A sender dropped before `End` (a damaged file found late) aborts
/// the restore: the table keeps its contents.
#[derive(Debug)]
pub enum Replacement {
    /// More rows.
    Rows(Vec<Row>),
    /// Every row was sent.
    End {
        /// Rows sent in all, checked against the rows written.
        rows: u64,
    },
}

/// A row to insert, as the pure checks left it.
#[derive(Debug)]
pub struct Candidate {
    /// CSV line (from 1) or batch index (from 0).
    pub position: u64,
    /// The record's raw text, as a range of the chunk's `raw` bytes.
    pub raw: Range<usize>,
    /// The valid row, or what was wrong with it.
    pub check: Result<Row, Checked>,
}

/// A slice of a file on its way to the database.
#[derive(Debug, Default)]
pub struct Chunk {
    /// Raw text of every candidate, back to back.
    pub raw: Vec<u8>,
    /// The candidates, in file order.
    pub rows: Vec<Candidate>,
}

impl Chunk {
    /// Moves `more`'s candidates to the end of this chunk.
    pub fn append(&mut self, more: Chunk) {
        let shift = self.raw.len();
        self.raw.extend_from_slice(&more.raw);
        self.rows.extend(more.rows.into_iter().map(|mut c| {
            c.raw = c.raw.start + shift..c.raw.end + shift;
            c
        }));
    }
}

/// The rest of a batch's last table while the request is still being
/// parsed, so that the store writes the first rows meanwhile: chunks with
/// positions continuing, then `End`. A sender dropped before `End` aborts
/// the batch, which is rolled back.
#[derive(Debug)]
pub enum Piece {
    /// More rows of the last table.
    Rows(Chunk),
    /// The request is complete.
    End,
}

/// The receiving side of [`Piece`]s (a blocking channel: the store's writer
/// is a thread of its own).
pub type Pieces = std::sync::mpsc::Receiver<Piece>;

/// What a file-load producer sends: chunks, then one summary.
#[derive(Debug)]
pub enum Feed {
    /// More rows.
    Chunk(Chunk),
    /// The whole file was read.
    End(FeedSummary),
}

/// Facts about a file known once it has been read to the end.
#[derive(Debug, Clone)]
pub struct FeedSummary {
    /// Records read (the header line excluded).
    pub rows_read: u64,
    /// Blank lines skipped.
    pub blank: u64,
    /// SHA-256 of the file's bytes, hex.
    pub sha256: String,
}

/// A file load, as the store sees it.
#[derive(Debug, Clone)]
pub struct FileLoad {
    /// Target table.
    pub table: Table,
    /// `file:<location>`, recorded with every rejection and in the history.
    pub source: String,
    /// Load even when the same content was loaded before.
    pub force: bool,
    /// Abort once more rows than this are rejected.
    pub max_rejects: Option<u64>,
    /// When the load started (UTC text).
    pub started_at: String,
    /// Size of the file in bytes, when known: a server database loads a
    /// big file differently from a small one.
    pub bytes: Option<u64>,
}

/// How a file load ended in the store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FileLoadOutcome {
    /// Committed: rows, rejections and the history entry.
    Loaded {
        /// Rows inserted.
        inserted: u64,
        /// Rows written to the rejection log.
        rejected: u64,
    },
    /// The same content is already in the table's history; nothing changed.
    AlreadyLoaded,
    /// Too many rejections; rolled back.
    Aborted {
        /// Rejections counted when the load stopped.
        rejected: u64,
    },
}

/// One entry of the rejection log.
#[derive(Debug, Clone, Serialize, PartialEq, Eq, utoipa::ToSchema)]
pub struct Rejection {
    /// Log id, increasing.
    pub id: i64,
    /// Table the row was meant for.
    pub table: String,
    /// `file:<location>` or `api:<batch id>`.
    pub source: String,
    /// CSV line (from 1) or batch index (from 0).
    pub position: i64,
    /// The raw input: CSV text or the JSON object as received.
    pub raw: String,
    /// Every broken rule.
    pub errors: Vec<FieldError>,
    /// When it was rejected (UTC).
    pub rejected_at: String,
}

/// Which rejections to read.
#[derive(Debug, Clone, Default)]
pub struct RejectionFilter {
    /// Only this table.
    pub table: Option<Table>,
    /// Only this source.
    pub source: Option<String>,
    /// Only ids greater than this (for paging).
    pub after: Option<i64>,
    /// At most this many.
    pub limit: u32,
}

/// One entry of the load history.
#[derive(Debug, Clone, Serialize, PartialEq, Eq, utoipa::ToSchema)]
pub struct LoadRecord {
    /// History id.
    pub id: i64,
    /// Target table.
    pub table: String,
    /// `file:<location>`.
    pub source: String,
    /// SHA-256 of the file content.
    pub sha256: String,
    /// `loaded` or `aborted`.
    pub status: String,
    /// Records read.
    pub rows_read: i64,
    /// Rows inserted.
    pub inserted: i64,
    /// Rows rejected.
    pub rejected: i64,
    /// Blank lines skipped.
    pub blank: i64,
    /// Why the load was aborted.
    pub message: Option<String>,
    /// Start time (UTC).
    pub started_at: String,
    /// End time (UTC).
    pub finished_at: String,
}

/// One API batch for one table, checked by the pure rules.
#[derive(Debug)]
pub struct TableBatch {
    /// Target table.
    pub table: Table,
    /// The rows, `position` being the index in the request.
    pub chunk: Chunk,
}

/// Idempotency of a request: the client's key and a fingerprint of its body.
#[derive(Debug, Clone)]
pub struct Idempotency {
    /// The `Idempotency-Key` header.
    pub key: String,
    /// SHA-256 of the request (route and body), hex.
    pub fingerprint: String,
}

/// What the store did with one table of a batch.
#[derive(Debug, Clone)]
pub struct TableOutcome {
    /// The table.
    pub table: Table,
    /// Rows received.
    pub received: u64,
    /// Rows inserted.
    pub inserted: u64,
    /// Rejected rows: position and errors (all of them logged).
    pub rejected: Vec<(u64, Vec<FieldError>)>,
}

/// Renders the response of a batch from its outcomes and the batches as
/// received (for the raw text of rejected rows); a keyed batch is rendered
/// inside its transaction, so that the stored response is exactly the one sent.
/// A backend may call it more than once: a transaction that is run again
/// after a transient failure renders again.
pub type Render = Box<dyn Fn(&[TableOutcome], &[TableBatch]) -> String + Send + Sync>;

/// What became of a batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IngestOutcome {
    /// Applied now; the rendered response.
    Applied(String),
    /// The key was seen before with the same body: the first response.
    Replayed(String),
    /// The key was seen before with another body: nothing done.
    KeyReused,
}

/// A row of the hires-by-quarter report.
#[derive(Debug, Clone, Serialize, PartialEq, Eq, utoipa::ToSchema)]
pub struct QuarterRow {
    /// Department name.
    pub department: String,
    /// Job name.
    pub job: String,
    /// Hires in January–March.
    pub q1: i64,
    /// Hires in April–June.
    pub q2: i64,
    /// Hires in July–September.
    pub q3: i64,
    /// Hires in October–December.
    pub q4: i64,
}

/// A row of the departments-above-mean report.
#[derive(Debug, Clone, Serialize, PartialEq, Eq, utoipa::ToSchema)]
pub struct DepartmentHires {
    /// Department id.
    pub id: i64,
    /// Department name.
    pub department: String,
    /// Hires in the year.
    pub hired: i64,
}

/// The database, whichever backend holds it.
pub enum Store {
    /// SQLite file.
    Sqlite(sqlite::SqliteStore),
    /// PostgreSQL server.
    Postgres(postgres::PgStore),
    /// Azure SQL Database / SQL Server.
    Mssql(mssql::MssqlStore),
}

impl Store {
    /// Opens the database at `url` and brings its schema up to date.
    pub async fn open(url: &str) -> Result<Store, StoreError> {
        if let Some(path) = url
            .strip_prefix("sqlite://")
            .or_else(|| url.strip_prefix("sqlite:"))
        {
            let path = path.to_owned();
            let store = tokio::task::spawn_blocking(move || sqlite::SqliteStore::open(&path))
                .await
                .map_err(|e| StoreError::Task(e.to_string()))??;
            return Ok(Store::Sqlite(store));
        }
        if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            return Ok(Store::Postgres(postgres::PgStore::open(url).await?));
        }
        if mssql::is_mssql_url(url) {
            return Ok(Store::Mssql(mssql::MssqlStore::open(url).await?));
        }
        if pg_tls::is_keyword_form(url) {
            return Ok(Store::Postgres(postgres::PgStore::open(url).await?));
        }
        Err(StoreError::BadUrl(redact(url)))
    }

    /// The dialect of this database.
    pub fn dialect(&self) -> Dialect {
        match self {
            Store::Sqlite(_) => Dialect::Sqlite,
            Store::Postgres(_) => Dialect::Postgres,
            Store::Mssql(_) => Dialect::Mssql,
        }
    }

    /// Whether a file with this content was already loaded into `table`.
    pub async fn already_loaded(&self, table: Table, sha256: &str) -> Result<bool, StoreError> {
        match self {
            Store::Sqlite(s) => s.already_loaded(table, sha256).await,
            Store::Postgres(s) => s.already_loaded(table, sha256).await,
            Store::Mssql(s) => s.already_loaded(table, sha256).await,
        }
    }

    /// Loads one file in one transaction: every chunk of `feed`, the
    /// rejections, and the history entry commit together, or nothing does.
    /// Returns [`StoreError::FeedInterrupted`] (after rolling back) when the
    /// feed closes without its summary.
    pub async fn load_file(
        &self,
        load: FileLoad,
        feed: mpsc::Receiver<Feed>,
    ) -> Result<FileLoadOutcome, StoreError> {
        match self {
            Store::Sqlite(s) => s.load_file(load, feed).await,
            Store::Postgres(s) => s.load_file(load, feed).await,
            Store::Mssql(s) => s.load_file(load, feed).await,
        }
    }

    /// Records a load that did not commit (aborted), so the history shows it.
    pub async fn record_aborted(
        &self,
        load: &FileLoad,
        summary: &FeedSummary,
        rejected: u64,
        message: &str,
    ) -> Result<(), StoreError> {
        match self {
            Store::Sqlite(s) => s.record_aborted(load, summary, rejected, message).await,
            Store::Postgres(s) => s.record_aborted(load, summary, rejected, message).await,
            Store::Mssql(s) => s.record_aborted(load, summary, rejected, message).await,
        }
    }

    /// Reads the rejection log, oldest first.
    pub async fn rejections(&self, filter: RejectionFilter) -> Result<Vec<Rejection>, StoreError> {
        match self {
            Store::Sqlite(s) => s.rejections(filter).await,
            Store::Postgres(s) => s.rejections(filter).await,
            Store::Mssql(s) => s.rejections(filter).await,
        }
    }

    /// Reads the load history, newest first.
    /// Records a new load job, `queued`.
    pub async fn create_job(&self, id: &str, request: &str, now_ms: i64) -> Result<(), StoreError> {
        self.job_exec(jobs::insert(self.dialect(), id, request, now_ms))
            .await
            .map(drop)
    }

    /// Takes a job to run (see [`jobs::claim`]); false when it is not this
    /// caller's to run.
    pub async fn claim_job(
        &self,
        id: &str,
        now_ms: i64,
        stale_before_ms: i64,
        failed_too: bool,
    ) -> Result<bool, StoreError> {
        let statement = jobs::claim(self.dialect(), id, now_ms, stale_before_ms, failed_too);
        Ok(self.job_exec(statement).await? == 1)
    }

    /// A running job's heartbeat, with its reports and progress so far.
    pub async fn beat_job(
        &self,
        id: &str,
        tables: &str,
        progress: &str,
        now_ms: i64,
    ) -> Result<(), StoreError> {
        self.job_exec(jobs::beat(self.dialect(), id, tables, progress, now_ms))
            .await
            .map(drop)
    }

    /// Ends a job, `done` or `failed`.
    pub async fn finish_job(
        &self,
        id: &str,
        status: &str,
        tables: &str,
        error: &str,
        now_ms: i64,
    ) -> Result<(), StoreError> {
        let statement = jobs::finish(self.dialect(), id, status, tables, error, now_ms);
        self.job_exec(statement).await.map(drop)
    }

    /// A job's row, if there is one with this id.
    pub async fn job(&self, id: &str) -> Result<Option<jobs::JobRecord>, StoreError> {
        let statement = jobs::select(self.dialect(), id);
        match self {
            Store::Sqlite(s) => s.job_query(statement).await,
            Store::Postgres(s) => s.job_query(statement).await,
            Store::Mssql(s) => s.job_query(statement).await,
        }
    }

    /// Runs a job statement; the number of rows it changed.
    async fn job_exec(&self, statement: jobs::JobStatement) -> Result<u64, StoreError> {
        match self {
            Store::Sqlite(s) => s.job_exec(statement).await,
            Store::Postgres(s) => s.job_exec(statement).await,
            Store::Mssql(s) => s.job_exec(statement).await,
        }
    }

    pub async fn loads(&self, limit: u32) -> Result<Vec<LoadRecord>, StoreError> {
        match self {
            Store::Sqlite(s) => s.loads(limit).await,
            Store::Postgres(s) => s.loads(limit).await,
            Store::Mssql(s) => s.loads(limit).await,
        }
    }

    /// Applies an API batch in one transaction: every table in order,
    /// valid rows inserted, invalid ones logged, the idempotency key and the
    /// rendered response stored with them.
    ///
    /// With `more`, the last table's rows continue in pieces still being
    /// parsed; the batch commits once `Piece::End` arrives.
    pub async fn ingest(
        &self,
        source: String,
        tables: Vec<TableBatch>,
        more: Option<Pieces>,
        idempotency: Option<Idempotency>,
        render: Render,
    ) -> Result<IngestOutcome, StoreError> {
        match self {
            Store::Sqlite(s) => s.ingest(source, tables, more, idempotency, render).await,
            Store::Postgres(s) => s.ingest(source, tables, more, idempotency, render).await,
            Store::Mssql(s) => s.ingest(source, tables, more, idempotency, render).await,
        }
    }

    /// Streams every row of `table` in id order to `sink`, from one
    /// consistent snapshot (writers are not blocked), and returns the sink.
    /// Stops at the first error of the sink, which is returned.
    pub async fn scan<S: RowSink>(&self, table: Table, sink: S) -> Result<S, StoreError> {
        match self {
            Store::Sqlite(s) => s.scan(table, sink).await,
            Store::Postgres(s) => s.scan(table, sink).await,
            Store::Mssql(s) => s.scan(table, sink).await,
        }
    }

    /// Replaces every row of `table` with the rows received, in one
    /// transaction that also checks the foreign keys in both directions
    /// (the new rows' parents, and children of the old rows). On any
    /// failure the table is left exactly as it was. Returns the rows written.
    pub async fn replace(
        &self,
        table: Table,
        rows: std::sync::mpsc::Receiver<Replacement>,
    ) -> Result<u64, StoreError> {
        match self {
            Store::Sqlite(s) => s.replace(table, rows).await,
            Store::Postgres(s) => s.replace(table, rows).await,
            Store::Mssql(s) => s.replace(table, rows).await,
        }
    }

    /// Whether no write is running or queued: a batch sent in pieces then
    /// holds up nobody while the rest of it is parsed.
    pub fn writer_idle(&self) -> bool {
        match self {
            Store::Sqlite(s) => s.writer_idle(),
            Store::Postgres(s) => s.writer_idle(),
            Store::Mssql(s) => s.writer_idle(),
        }
    }

    /// Rows of `table` with ids above `after_id`, ordered by id, as JSON objects.
    pub async fn rows(
        &self,
        table: Table,
        after_id: i64,
        limit: u32,
    ) -> Result<Vec<serde_json::Map<String, serde_json::Value>>, StoreError> {
        match self {
            Store::Sqlite(s) => s.rows(table, after_id, limit).await,
            Store::Postgres(s) => s.rows(table, after_id, limit).await,
            Store::Mssql(s) => s.rows(table, after_id, limit).await,
        }
    }

    /// Hires of `year` per department and job, by quarter, ordered by
    /// department then job in binary (code point) order.
    pub async fn hires_by_quarter(&self, year: i32) -> Result<Vec<QuarterRow>, StoreError> {
        match self {
            Store::Sqlite(s) => s.hires_by_quarter(year).await,
            Store::Postgres(s) => s.hires_by_quarter(year).await,
            Store::Mssql(s) => s.hires_by_quarter(year).await,
        }
    }

    /// Departments that hired more than the mean of all departments in
    /// `year`, most hires first.
    pub async fn departments_above_mean(
        &self,
        year: i32,
    ) -> Result<Vec<DepartmentHires>, StoreError> {
        match self {
            Store::Sqlite(s) => s.departments_above_mean(year).await,
            Store::Postgres(s) => s.departments_above_mean(year).await,
            Store::Mssql(s) => s.departments_above_mean(year).await,
        }
    }

    /// Whether the database answers.
    pub async fn ping(&self) -> Result<(), StoreError> {
        match self {
            Store::Sqlite(s) => s.ping().await,
            Store::Postgres(s) => s.ping().await,
            Store::Mssql(s) => s.ping().await,
        }
    }

    /// Whether the database takes writes now: `Err` with
    /// [`StoreError::cannot_write`] when it does not (read-only, disk full
    /// or failing), another `Err` when it cannot be asked.
    pub async fn check_writes(&self) -> Result<(), StoreError> {
        match self {
            Store::Sqlite(s) => s.check_writes().await,
            Store::Postgres(s) => s.check_writes().await,
            Store::Mssql(s) => s.check_writes().await,
        }
    }

    /// Finishes pending work before the process exits: for SQLite, copies
    /// the write-ahead log into the database file and empties it, so that
    /// the `.db` file alone holds every commit (and the next open does not
    /// start with a large log to read through).
    pub async fn close(&self) -> Result<(), StoreError> {
        match self {
            Store::Sqlite(s) => s.close().await,
            Store::Postgres(s) => s.close().await,
            Store::Mssql(s) => s.close().await,
        }
    }

    /// Number of rows in `table`.
    pub async fn count(&self, table: Table) -> Result<u64, StoreError> {
        match self {
            Store::Sqlite(s) => s.count(table).await,
            Store::Postgres(s) => s.count(table).await,
            Store::Mssql(s) => s.count(table).await,
        }
    }
}

/// Collects the rest of the last table of a batch (see [`Piece`]) before a
/// server backend's transaction starts: its `writer_idle` is false, so
/// batches normally arrive whole, but a caller may still send pieces.
async fn collect_pieces(tables: &mut [TableBatch], more: Pieces) -> Result<(), StoreError> {
    let rest = tokio::task::spawn_blocking(move || {
        let mut rest = Chunk::default();
        loop {
            match more.recv() {
                Ok(Piece::Rows(chunk)) => rest.append(chunk),
                Ok(Piece::End) => return Ok(rest),
                Err(_) => return Err(StoreError::FeedInterrupted),
            }
        }
    })
    .await
    .map_err(|e| StoreError::Task(e.to_string()))??;
    if let Some(last) = tables.last_mut() {
        last.chunk.append(rest);
    }
    Ok(())
}

/// Hands a restore's rows from its blocking channel to an async task, on a
/// thread of its own.
fn bridge(
    rows: std::sync::mpsc::Receiver<Replacement>,
) -> Result<mpsc::Receiver<Replacement>, StoreError> {
    let (tx, rx) = mpsc::channel::<Replacement>(2);
    std::thread::Builder::new()
        .name("hrmig-restore-feed".into())
        .spawn(move || {
            for item in rows {
                if tx.blocking_send(item).is_err() {
                    break;
                }
            }
        })
        .map_err(|e| StoreError::Task(e.to_string()))?;
    Ok(rx)
}

/// A database URL safe to print: no password.
pub fn redact(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut u) if u.password().is_some() => {
            let _ = u.set_password(Some("***"));
            u.to_string()
        }
        Ok(_) => url.to_owned(),
        Err(_)
            if ["password", "pwd"]
                .iter()
                .any(|k| url.to_ascii_lowercase().contains(k)) =>
        {
            "<connection string>".into()
        }
        Err(_) => url.to_owned(),
    }
}

/// Orders a row's errors by column (record-level errors first), so that
/// errors found by the store sit beside those of the pure checks.
fn sort_errors(table: Table, errors: &mut [FieldError]) {
    let rank = |e: &FieldError| match &e.column {
        None => 0,
        Some(c) => {
            1 + table
                .columns()
                .iter()
                .position(|col| col.name == c)
                .unwrap_or(99)
        }
    };
    errors.sort_by_key(rank);
}

fn duplicate_error(id: i32) -> FieldError {
    FieldError::column(
        "id",
        ErrorCode::Duplicate,
        format!("id {id} is already in the table or earlier in this input"),
    )
}

fn foreign_key_error(column: &str, parent: Table, id: i32) -> FieldError {
    FieldError::column(
        column,
        ErrorCode::ForeignKey,
        format!("{parent} has no id {id}"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn full_failing_and_read_only_databases_take_no_writes() {
        let sqlite = |code| {
            StoreError::Sqlite(rusqlite::Error::SqliteFailure(
                rusqlite::ffi::Error::new(code),
                None,
            ))
        };
        for code in [
            rusqlite::ffi::SQLITE_FULL,
            rusqlite::ffi::SQLITE_READONLY,
            rusqlite::ffi::SQLITE_IOERR_WRITE,
        ] {
            assert!(sqlite(code).cannot_write(), "{code}");
        }
        assert!(!sqlite(rusqlite::ffi::SQLITE_CONSTRAINT).cannot_write());
        assert!(StoreError::ReadOnly("standby".into()).cannot_write());
        assert!(!StoreError::Refused("a foreign key".into()).cannot_write());
    }

    #[test]
    fn driver_errors_say_each_cause_once() {
        let full = rusqlite::Error::SqliteFailure(
            rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_FULL),
            Some("database or disk is full".into()),
        );
        let text = StoreError::Sqlite(full).to_string();
        assert_eq!(
            text.matches("database or disk is full").count(),
            1,
            "{text}"
        );
        assert!(text.contains("13"), "{text}");
        let missing = rusqlite::Error::SqliteFailure(
            rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_CANTOPEN),
            Some("directory /x does not exist".into()),
        );
        let text = StoreError::Sqlite(missing).to_string();
        assert_eq!(text.matches("does not exist").count(), 1, "{text}");
        assert!(text.contains("/x"), "{text}");
    }
}
