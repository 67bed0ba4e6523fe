//! The SQL databases behind one interface.
//!
//! [`Store`] is what the operations call. What every backend does alike is
//! written once here: the shared statements (`sql`, rendered for a
//! [`Dialect`]), the admission rules (`admission`), the restore
//! (`restore`) and the retry of transient failures (`retry`). The
//! contract a backend fulfils is the `backend::Backend` trait; each
//! backend's folder keeps only what differs: connections, type conversions
//! and its bulk path (SQLite prepared inserts, PostgreSQL binary `COPY`,
//! SQL Server bulk copy).
//!
//! Rows reach a backend already checked by the pure rules of the dictionary;
//! the backend adds the checks that need the database (an id already taken, a
//! parent that does not exist) inside the same transaction as the insert, and
//! writes each rejected row to the rejection log in that transaction too.

mod admission;
mod backend;
mod batch;
pub mod ddl;

mod error;
mod feed;
pub mod jobs;
mod lineage;
mod load;
mod mssql;
mod postgres;
mod queue;
mod records;
mod reports;
mod requests;
mod restore;
mod retry;
mod sql;
mod sqlite;
mod tx;
mod undo;

pub use error::{Fault, StoreError};
pub use feed::{BatchRest, Chunk, Feed, FeedSummary, FileFeed, InputRow, RestoreFeed};
pub use lineage::Origin;
pub use queue::{MAX_IDS, Requeue};
pub use records::{
    DepartmentHires, Field, HistoryStatus, LoadRecord, OperationKind, QuarterRow, Rejection,
    RejectionCount, RejectionFilter, RejectionStatus, RowSink, SCAN_CHUNK,
};
pub use requests::{
    BatchRequest, DryRun, FileLoad, Idempotency, IngestOutcome, LoadOutcome, OnDuplicate, Render,
    TableBatch, TableOutcome, WouldReject,
};
pub use undo::{UndoOutcome, UndoRefusal};

use crate::dictionary::Table;
use backend::Backend;
use sql::{HistoryEntry, Statement};

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

/// The database, whichever backend holds it.
pub enum Store {
    /// SQLite file.
    Sqlite(sqlite::SqliteStore),
    /// PostgreSQL server.
    Postgres(postgres::PgStore),
    /// Azure SQL Database / SQL Server.
    Mssql(mssql::MssqlStore),
}

/// Calls the same [`Backend`] method on whichever backend `$store` holds.
macro_rules! on_backend {
    ($store:expr, $b:ident => $call:expr) => {
        match $store {
            Store::Sqlite($b) => $call,
            Store::Postgres($b) => $call,
            Store::Mssql($b) => $call,
        }
    };
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
        if postgres::is_keyword_form(url) {
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

    /// Whether API batches skip PostgreSQL's per-row foreign-key triggers,
    /// hrmig's own check standing alone under the parents' row locks (see
    /// README, "PostgreSQL"): for a role allowed to, unless the URL says
    /// `fk_triggers=keep`. Always `false` on the other databases.
    pub fn skips_key_triggers(&self) -> bool {
        match self {
            Store::Postgres(pg) => pg.skips_key_triggers(),
            Store::Sqlite(_) | Store::Mssql(_) => false,
        }
    }

    async fn execute(&self, st: Statement) -> Result<u64, StoreError> {
        on_backend!(self, b => b.execute(st).await)
    }

    async fn query<T: Send + 'static>(
        &self,
        st: Statement,
        read: impl sql::Read<T>,
    ) -> Result<Vec<T>, StoreError> {
        on_backend!(self, b => b.query(st, read).await)
    }

    /// Whether a file with this content was already loaded into `table`.
    pub async fn already_loaded(&self, table: Table, sha256: &str) -> Result<bool, StoreError> {
        let st = sql::history_has(self.dialect(), table, sha256);
        Ok(!self.query(st, |_| Ok(())).await?.is_empty())
    }

    /// Loads one file in one transaction: every chunk of `feed`, the
    /// rejections, and the history entry commit together, or nothing does.
    /// Returns [`StoreError::FeedInterrupted`] (after rolling back) when the
    /// feed closes without its summary.
    pub async fn load_file(
        &self,
        load: FileLoad,
        feed: FileFeed,
    ) -> Result<LoadOutcome, StoreError> {
        on_backend!(self, b => b.load_file(load, feed).await)
    }

    /// Records a load that did not commit (aborted), so the history shows it.
    pub async fn record_aborted(
        &self,
        load: &FileLoad,
        summary: &FeedSummary,
        rejected: u64,
        message: &str,
    ) -> Result<(), StoreError> {
        let entry = HistoryEntry {
            load,
            summary,
            status: HistoryStatus::Aborted,
            inserted: 0,
            updated: 0,
            rejected,
            message: Some(message),
        };
        self.execute(sql::insert_history(self.dialect(), &entry))
            .await
            .map(drop)
    }

    /// Reads the rejection log, oldest first.
    pub async fn rejections(&self, filter: RejectionFilter) -> Result<Vec<Rejection>, StoreError> {
        let st = queue::rejections(self.dialect(), &filter);
        self.query(st, queue::rejection).await
    }

    /// The rejections with these ids (at most [`MAX_IDS`]), by id; an
    /// unknown id is not among them.
    pub async fn rejections_by_id(&self, ids: &[i64]) -> Result<Vec<Rejection>, StoreError> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let st = queue::by_ids(self.dialect(), ids);
        self.query(st, queue::rejection).await
    }

    /// The rejection log counted by table, code and status.
    pub async fn rejection_summary(
        &self,
        filter: RejectionFilter,
    ) -> Result<Vec<RejectionCount>, StoreError> {
        let st = queue::summary(self.dialect(), &filter);
        self.query(st, queue::count).await
    }

    /// Sets open rejections aside (at most [`MAX_IDS`]); how many were open.
    pub async fn dismiss(&self, ids: &[i64]) -> Result<u64, StoreError> {
        if ids.is_empty() {
            return Ok(0);
        }
        self.execute(queue::dismiss(self.dialect(), ids)).await
    }

    /// Checks rows of the rejection log again in one transaction, as an
    /// API batch is checked: the rows that pass are inserted and their
    /// rejections resolved by the operation's history entry (one per table
    /// that inserted rows, under `source`); the others stay open, with the
    /// errors they have now. No new rejection is logged. Returns what each
    /// table came to.
    pub async fn requeue(
        &self,
        source: String,
        tables: Vec<TableBatch>,
        requeue: Requeue,
    ) -> Result<Vec<TableOutcome>, StoreError> {
        let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let keep = seen.clone();
        let render: Render = Box::new(move |outcomes: &[TableOutcome], _: &[TableBatch]| {
            if let Ok(mut kept) = keep.lock() {
                *kept = outcomes.to_vec();
            }
            String::new()
        });
        let batch = BatchRequest {
            source,
            tables,
            rest: None,
            idempotency: None,
            render,
            dry_run: false,
            on_duplicate: OnDuplicate::Reject,
            requeue: Some(requeue),
        };
        on_backend!(self, b => b.ingest(batch).await)?;
        let outcomes = seen.lock().map(|mut o| std::mem::take(&mut *o));
        outcomes.map_err(|_| StoreError::Task("a requeue's outcome was lost".into()))
    }

    /// Reads the load history (of one table, when given), newest first.
    pub async fn loads(
        &self,
        table: Option<Table>,
        limit: u32,
    ) -> Result<Vec<LoadRecord>, StoreError> {
        let st = sql::loads(self.dialect(), table, "", limit);
        self.query(st, sql::load_record).await
    }

    /// Sets the counts of an operation on rows of the rejection log that ran
    /// in rounds (a retry: its first round opened the entry): `[checked, inserted, still
    /// rejected]`, inserted as the rounds counted it.
    pub async fn settle_operation(
        &self,
        table: Table,
        source: &str,
        counts: [u64; 3],
    ) -> Result<(), StoreError> {
        let st = sql::count_operation(self.dialect(), table, source, counts, true);
        self.execute(st).await.map(drop)
    }

    /// The history entries of one operation on rows of the rejection log
    /// (its `source`, such as `retry:<id>`), newest first: one per table.
    pub async fn operation(&self, source: &str) -> Result<Vec<LoadRecord>, StoreError> {
        let st = sql::loads(self.dialect(), None, source, 10);
        self.query(st, sql::load_record).await
    }

    /// Records a new load job, `queued`.
    pub async fn create_job(&self, id: &str, request: &str, now_ms: i64) -> Result<(), StoreError> {
        let st = jobs::insert(self.dialect(), id, request, now_ms);
        on_backend!(self, b => b.execute(st).await).map(drop)
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
        let st = jobs::claim(self.dialect(), id, now_ms, stale_before_ms, failed_too);
        Ok(on_backend!(self, b => b.execute(st).await)? == 1)
    }

    /// A running job's heartbeat, with its reports and progress so far.
    pub async fn beat_job(
        &self,
        id: &str,
        tables: &str,
        progress: &str,
        now_ms: i64,
    ) -> Result<(), StoreError> {
        let st = jobs::beat(self.dialect(), id, tables, progress, now_ms);
        on_backend!(self, b => b.execute(st).await).map(drop)
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
        let st = jobs::finish(self.dialect(), id, status, tables, error, now_ms);
        on_backend!(self, b => b.execute(st).await).map(drop)
    }

    /// The newest `limit` jobs' rows, newest first.
    pub async fn recent_jobs(&self, limit: u32) -> Result<Vec<jobs::JobRecord>, StoreError> {
        let st = jobs::recent(self.dialect(), limit);
        on_backend!(self, b => b.query(st, jobs::record).await)
    }

    /// A job's row, if there is one with this id.
    pub async fn job(&self, id: &str) -> Result<Option<jobs::JobRecord>, StoreError> {
        let st = jobs::select(self.dialect(), id);
        let rows = on_backend!(self, b => b.query(st, jobs::record).await)?;
        Ok(rows.into_iter().next())
    }

    /// Applies an API batch in one transaction: every table in order,
    /// valid rows inserted, invalid ones logged, the idempotency key and the
    /// rendered response stored with them.
    ///
    /// With `rest`, the last table's rows continue in chunks still being
    /// parsed; the batch commits once [`Feed::End`] arrives. A dry run
    /// (`batch.dry_run`) makes every check and rolls back; it neither
    /// reads nor stores an idempotency key (it applies nothing twice), so
    /// its key is dropped here, for every backend.
    pub async fn ingest(&self, mut batch: BatchRequest) -> Result<IngestOutcome, StoreError> {
        if batch.dry_run {
            batch.idempotency = None;
        }
        on_backend!(self, b => b.ingest(batch).await)
    }

    /// Streams every row of `table` in id order to `sink`, from one
    /// consistent snapshot (writers are not blocked), and returns the sink.
    /// Stops at the first error of the sink, which is returned.
    pub async fn scan<S: RowSink>(&self, table: Table, sink: S) -> Result<S, StoreError> {
        on_backend!(self, b => b.scan(table, sink).await)
    }

    /// Replaces every row of `table` with the rows received from `source`
    /// (`backup:<name>`), in one transaction that also checks the foreign
    /// keys in both directions (the new rows' parents, and children of the
    /// old rows). On any failure the table is left exactly as it was.
    /// Returns the rows written and the restore's history entry.
    pub async fn replace(
        &self,
        table: Table,
        source: String,
        rows: RestoreFeed,
    ) -> Result<(u64, i64), StoreError> {
        on_backend!(self, b => b.replace(table, source, rows).await)
    }

    /// The history entry with this id, if there is one.
    pub async fn load(&self, id: i64) -> Result<Option<LoadRecord>, StoreError> {
        let rows = self.query(sql::load_by_id(self.dialect(), id), sql::load_record);
        Ok(rows.await?.into_iter().next())
    }

    /// The row of `table` with this id, as a JSON object, and the
    /// operation that last wrote it (none for rows written before hrmig
    /// kept lineage, or by another writer).
    pub async fn row(
        &self,
        table: Table,
        id: i32,
    ) -> Result<Option<(serde_json::Map<String, serde_json::Value>, Option<Origin>)>, StoreError>
    {
        let Some(row) = self
            .rows(table, i64::from(id) - 1, 1)
            .await?
            .into_iter()
            .next()
        else {
            return Ok(None);
        };
        if row.get("id").and_then(serde_json::Value::as_i64) != Some(i64::from(id)) {
            return Ok(None);
        }
        let st = lineage::origin(self.dialect(), table, id);
        let origin = self
            .query(st, lineage::origin_row)
            .await?
            .into_iter()
            .next();
        Ok(Some((row, origin)))
    }

    /// Undoes operation `id`: removes the rows it inserted, in one
    /// transaction, and records the undo; or says why not, changing
    /// nothing. `None` for an id the history does not have.
    pub async fn undo(&self, id: i64) -> Result<Option<(LoadRecord, UndoOutcome)>, StoreError> {
        let Some(entry) = self.load(id).await? else {
            return Ok(None);
        };
        if let Some(undo) = entry.undone_by {
            return Ok(Some((entry, UndoOutcome::AlreadyUndone { undo })));
        }
        if let Some(refusal) = undo::refused_as_such(&entry) {
            return Ok(Some((entry, UndoOutcome::Refused(refusal))));
        }
        let table = Table::parse(&entry.table)
            .map_err(|_| StoreError::Task(format!("history entry {id} names {}", entry.table)))?;
        let outcome = on_backend!(self, b => b.undo(&entry, table).await)?;
        Ok(Some((entry, outcome)))
    }

    /// The database connections as the pool counts them now: read at a
    /// metrics scrape, without a round trip to the database.
    pub fn pool(&self) -> crate::metrics::PoolStatus {
        on_backend!(self, b => b.pool())
    }

    /// Whether no write is running or queued: a batch sent in pieces then
    /// holds up nobody while the rest of it is parsed.
    pub fn writer_idle(&self) -> bool {
        on_backend!(self, b => b.writer_idle())
    }

    /// Rows of `table` with ids above `after_id`, ordered by id, as JSON objects.
    pub async fn rows(
        &self,
        table: Table,
        after_id: i64,
        limit: u32,
    ) -> Result<Vec<serde_json::Map<String, serde_json::Value>>, StoreError> {
        let st = sql::rows(self.dialect(), table, after_id, limit);
        let read = move |r: &dyn sql::SqlRow| row_values(r, table);
        let rows = self.query(st, read).await?;
        Ok(rows
            .into_iter()
            .map(|values| {
                let names = table.columns().iter().map(|c| c.name.to_owned());
                names.zip(values).collect()
            })
            .collect())
    }

    /// Hires of `year` per department and job, by quarter, ordered by
    /// department then job in binary (code point) order.
    pub async fn hires_by_quarter(&self, year: i32) -> Result<Vec<QuarterRow>, StoreError> {
        self.fold_counts().await?;
        let st = reports::hires_by_quarter(self.dialect(), year);
        self.query(st, reports::quarter_row).await
    }

    /// Departments that hired more than the mean of all departments in
    /// `year`, most hires first.
    pub async fn departments_above_mean(
        &self,
        year: i32,
    ) -> Result<Vec<DepartmentHires>, StoreError> {
        self.fold_counts().await?;
        let st = reports::departments_above_mean(self.dialect(), year);
        self.query(st, reports::department_hires).await
    }

    /// Folds the pending count changes before a report reads them (see
    /// [`reports`]), so that a report reads few.
    async fn fold_counts(&self) -> Result<(), StoreError> {
        match self {
            Store::Postgres(pg) => pg.fold_counts().await,
            Store::Sqlite(sqlite) => sqlite.fold_counts().await,
            Store::Mssql(_) => Ok(()),
        }
    }

    /// Whether the database answers.
    pub async fn ping(&self) -> Result<(), StoreError> {
        on_backend!(self, b => b.ping().await)
    }

    /// Whether the database takes writes now: `Err` with
    /// [`StoreError::cannot_write`] when it does not (read-only, disk full
    /// or failing), another `Err` when it cannot be asked.
    pub async fn check_writes(&self) -> Result<(), StoreError> {
        on_backend!(self, b => b.check_writes().await)
    }

    /// Finishes pending work before the process exits: for SQLite, copies
    /// the write-ahead log into the database file and empties it, so that
    /// the `.db` file alone holds every commit (and the next open does not
    /// start with a large log to read through).
    pub async fn close(&self) -> Result<(), StoreError> {
        on_backend!(self, b => b.close().await)
    }

    /// Number of rows in `table`.
    pub async fn count(&self, table: Table) -> Result<u64, StoreError> {
        let rows = self
            .query(sql::count(self.dialect(), table), |r| r.int(0))
            .await?;
        Ok(rows.first().copied().unwrap_or(0) as u64)
    }
}

/// A stored row's values in column order, as JSON.
fn row_values(r: &dyn sql::SqlRow, table: Table) -> Result<Vec<serde_json::Value>, StoreError> {
    table
        .columns()
        .iter()
        .enumerate()
        .map(|(i, c)| match r.value(i, c.ty) {
            Err(StoreError::TimeOutOfRange) => {
                Err(StoreError::time_out_of_range(table, r.int(0)?, c.name))
            }
            other => other,
        })
        .collect()
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
