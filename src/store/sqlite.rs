//! SQLite backend: one writer thread, a small pool of readers.
//!
//! SQLite allows one writer at a time. Rather than let concurrent writers
//! collide and retry on `SQLITE_BUSY`, every write runs on one dedicated
//! thread that owns the write connection; callers queue behind it. Readers
//! use their own connections, which WAL lets run beside the writer.

use super::jobs::{JobParam, JobRecord, JobStatement};
use super::{
    Candidate, Chunk, DepartmentHires, Feed, FeedSummary, Field, FileLoad, FileLoadOutcome,
    Idempotency, IngestOutcome, LoadRecord, Piece, Pieces, QuarterRow, Rejection, RejectionFilter,
    Render, Replacement, RowSink, StoreError, TableBatch, TableOutcome, ddl, duplicate_error,
    foreign_key_error, sort_errors,
};
use crate::dictionary::check::MAX_COLUMNS;
use crate::dictionary::{ColumnType, FieldError, Row, Table, Value, datetime};
use rusqlite::{CachedStatement, Connection, OpenFlags, OptionalExtension, Transaction, params};
use std::path::PathBuf;
use std::sync::Mutex;
use tokio::sync::{mpsc, oneshot};

type Job = Box<dyn FnOnce(&mut Connection) + Send>;

pub struct SqliteStore {
    path: PathBuf,
    writer: std::sync::mpsc::Sender<Job>,
    /// Writes queued or running.
    pending: std::sync::Arc<std::sync::atomic::AtomicUsize>,
    readers: std::sync::Arc<Mutex<Vec<Connection>>>,
    /// The load jobs' database, beside the main one (see `ddl::jobs_sqlite`).
    jobs: std::sync::Arc<Mutex<Connection>>,
    /// Dropped with the store, which stops the checkpoint thread.
    _checkpoints: std::sync::mpsc::Sender<()>,
}

/// Copies committed WAL frames into the database file every quarter of a
/// second (a passive checkpoint never blocks the writer or readers), until
/// the store is dropped.
fn checkpoints(path: &PathBuf, stopped: &std::sync::mpsc::Receiver<()>) {
    let Ok(conn) = connect(path, 1024) else {
        return;
    };
    while let Err(std::sync::mpsc::RecvTimeoutError::Timeout) =
        stopped.recv_timeout(std::time::Duration::from_millis(250))
    {
        if let Err(e) = conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(())) {
            tracing::warn!(error = %e, "WAL checkpoint failed");
        }
    }
}

/// The jobs' database of the database at `path`: `hrmig.db` → `hrmig.db-jobs`.
fn jobs_path(path: &std::path::Path) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push("-jobs");
    PathBuf::from(name)
}

impl rusqlite::ToSql for JobParam {
    fn to_sql(&self) -> rusqlite::Result<rusqlite::types::ToSqlOutput<'_>> {
        match self {
            JobParam::Text(s) => s.to_sql(),
            JobParam::Int(n) => n.to_sql(),
        }
    }
}

fn connect(path: &PathBuf, cache_kib: i64) -> Result<Connection, rusqlite::Error> {
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_WRITE
            | OpenFlags::SQLITE_OPEN_CREATE
            | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )?;
    conn.busy_timeout(std::time::Duration::from_secs(10))?;
    // WAL + NORMAL never corrupts; a power cut may lose the last commits.
    conn.execute_batch(&format!(
        "PRAGMA journal_mode = WAL;
         PRAGMA synchronous = NORMAL;
         PRAGMA foreign_keys = ON;
         PRAGMA temp_store = MEMORY;
         PRAGMA cache_size = -{cache_kib};"
    ))?;
    Ok(conn)
}

impl SqliteStore {
    pub fn open(path: &str) -> Result<SqliteStore, StoreError> {
        let path = PathBuf::from(path);
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty())
            && !dir.is_dir()
        {
            return Err(StoreError::Sqlite(rusqlite::Error::SqliteFailure(
                rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_CANTOPEN),
                Some(format!("directory {} does not exist", dir.display())),
            )));
        }
        // 32 MB of page cache for the writer: enough for the hot pages of an
        // append-mostly load, and small enough that a load's peak memory is
        // the same at 1 M and 10 M rows (64 MB was 20% faster on 10 M rows
        // but grew the peak by 24% between the two).
        let mut conn = connect(&path, 32 * 1024)?;
        for (_, sql) in ddl::migrations(super::Dialect::Sqlite) {
            conn.execute_batch(&sql)?;
        }
        conn.set_prepared_statement_cache_capacity(64);
        // Checkpoints (copying the WAL back into the database file) run on a
        // thread of their own, so that writes never wait for them.
        conn.execute_batch("PRAGMA wal_autocheckpoint = 0")?;
        let (stop, stopped) = std::sync::mpsc::channel::<()>();
        let checkpoint_path = path.clone();
        std::thread::Builder::new()
            .name("hrmig-sqlite-checkpoint".into())
            .spawn(move || checkpoints(&checkpoint_path, &stopped))
            .map_err(|e| StoreError::Task(e.to_string()))?;
        let jobs = connect(&jobs_path(&path), 256)?;
        jobs.execute_batch(&ddl::jobs_sqlite())?;
        let (tx, rx) = std::sync::mpsc::channel::<Job>();
        std::thread::Builder::new()
            .name("hrmig-sqlite-writer".into())
            .spawn(move || {
                for job in rx {
                    job(&mut conn);
                }
            })
            .map_err(|e| StoreError::Task(e.to_string()))?;
        Ok(SqliteStore {
            path,
            writer: tx,
            pending: Default::default(),
            readers: Default::default(),
            jobs: std::sync::Arc::new(Mutex::new(jobs)),
            _checkpoints: stop,
        })
    }

    /// Runs `f` on the writer thread, after the writes queued before it.
    async fn write<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Connection) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        use std::sync::atomic::Ordering;
        let (tx, rx) = oneshot::channel();
        let pending = self.pending.clone();
        pending.fetch_add(1, Ordering::SeqCst);
        self.writer
            .send(Box::new(move |conn| {
                let result = f(conn);
                pending.fetch_sub(1, Ordering::SeqCst);
                let _ = tx.send(result);
            }))
            .map_err(|_| {
                self.pending.fetch_sub(1, Ordering::SeqCst);
                StoreError::WriterGone
            })?;
        rx.await.map_err(|_| StoreError::WriterGone)?
    }

    pub async fn scan<S: RowSink>(&self, table: Table, sink: S) -> Result<S, StoreError> {
        // One statement reads one snapshot (WAL): the backup is consistent
        // while writers go on.
        self.read(move |c| scan_rows(c, table, sink)).await
    }

    pub async fn replace(
        &self,
        table: Table,
        rows: std::sync::mpsc::Receiver<Replacement>,
    ) -> Result<u64, StoreError> {
        self.write(move |conn| {
            // `replace_tx` checks the foreign keys itself (parents from the
            // cached id sets, children with one query): per deleted row,
            // SQLite would scan the children, which have no index on their
            // foreign-key columns.
            conn.execute_batch("PRAGMA foreign_keys = OFF")?;
            let result = replace_tx(conn, table, &rows);
            forget_parents();
            conn.execute_batch("PRAGMA foreign_keys = ON")?;
            result
        })
        .await
    }

    /// Runs a job statement on the jobs' database; the rows it changed.
    pub async fn job_exec(&self, (sql, params): JobStatement) -> Result<u64, StoreError> {
        self.on_jobs(move |c| Ok(c.execute(&sql, rusqlite::params_from_iter(params))? as u64))
            .await
    }

    /// Runs a job query on the jobs' database; its first row.
    pub async fn job_query(
        &self,
        (sql, params): JobStatement,
    ) -> Result<Option<JobRecord>, StoreError> {
        self.on_jobs(move |c| {
            let mut stmt = c.prepare_cached(&sql)?;
            let mut rows = stmt.query(rusqlite::params_from_iter(params))?;
            let Some(r) = rows.next()? else {
                return Ok(None);
            };
            Ok(Some(JobRecord {
                id: r.get(0)?,
                status: r.get(1)?,
                request: r.get(2)?,
                tables: r.get(3)?,
                progress: r.get(4)?,
                error: r.get(5)?,
                created_ms: r.get(6)?,
                heartbeat_ms: r.get(7)?,
            }))
        })
        .await
    }

    async fn on_jobs<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Connection) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        let jobs = self.jobs.clone();
        tokio::task::spawn_blocking(move || {
            let conn = jobs
                .lock()
                .map_err(|_| StoreError::Task("the jobs database lock is poisoned".into()))?;
            f(&conn)
        })
        .await
        .map_err(|e| StoreError::Task(e.to_string()))?
    }

    pub fn writer_idle(&self) -> bool {
        self.pending.load(std::sync::atomic::Ordering::SeqCst) == 0
    }

    /// Runs `f` on a reader connection, in a blocking task.
    async fn read<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Connection) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        let pool = self.readers.clone();
        let path = self.path.clone();
        tokio::task::spawn_blocking(move || {
            let conn = pool.lock().ok().and_then(|mut p| p.pop());
            let conn = match conn {
                Some(c) => c,
                None => connect(&path, 8 * 1024)?,
            };
            let result = f(&conn);
            if let Ok(mut p) = pool.lock()
                && p.len() < 4
            {
                p.push(conn);
            }
            result
        })
        .await
        .map_err(|e| StoreError::Task(e.to_string()))?
    }

    pub async fn already_loaded(&self, table: Table, sha256: &str) -> Result<bool, StoreError> {
        let sha = sha256.to_owned();
        self.read(move |c| Ok(history_has(c, table, &sha)?)).await
    }

    pub async fn load_file(
        &self,
        load: FileLoad,
        mut feed: mpsc::Receiver<Feed>,
    ) -> Result<FileLoadOutcome, StoreError> {
        self.write(move |conn| load_file(conn, &load, &mut feed))
            .await
    }

    pub async fn record_aborted(
        &self,
        load: &FileLoad,
        summary: &FeedSummary,
        rejected: u64,
        message: &str,
    ) -> Result<(), StoreError> {
        let (load, summary, message) = (load.clone(), summary.clone(), message.to_owned());
        self.write(move |conn| {
            insert_history(
                conn,
                &load,
                &summary,
                "aborted",
                0,
                rejected,
                Some(&message),
            )?;
            Ok(())
        })
        .await
    }

    pub async fn rejections(&self, filter: RejectionFilter) -> Result<Vec<Rejection>, StoreError> {
        self.read(move |c| {
            let mut stmt = c.prepare_cached(&format!(
                "SELECT id, table_name, source, position, raw, errors, rejected_at FROM {}
                 WHERE (?1 IS NULL OR table_name = ?1) AND (?2 IS NULL OR source = ?2)
                   AND id > ?3
                 ORDER BY id LIMIT ?4",
                ddl::REJECTIONS
            ))?;
            let rows = stmt.query_map(
                params![
                    filter.table.map(Table::name),
                    filter.source,
                    filter.after.unwrap_or(0),
                    filter.limit
                ],
                |r| {
                    let errors: String = r.get(5)?;
                    Ok(Rejection {
                        id: r.get(0)?,
                        table: r.get(1)?,
                        source: r.get(2)?,
                        position: r.get(3)?,
                        raw: r.get(4)?,
                        errors: serde_json::from_str(&errors).unwrap_or_default(),
                        rejected_at: r.get(6)?,
                    })
                },
            )?;
            Ok(rows.collect::<Result<_, _>>()?)
        })
        .await
    }

    pub async fn loads(&self, limit: u32) -> Result<Vec<LoadRecord>, StoreError> {
        self.read(move |c| {
            let mut stmt = c.prepare_cached(&format!(
                "SELECT id, table_name, source, sha256, status, rows_read, inserted, rejected,
                        blank, message, started_at, finished_at
                 FROM {} ORDER BY id DESC LIMIT ?1",
                ddl::LOADS
            ))?;
            let rows = stmt.query_map([limit], |r| {
                Ok(LoadRecord {
                    id: r.get(0)?,
                    table: r.get(1)?,
                    source: r.get(2)?,
                    sha256: r.get(3)?,
                    status: r.get(4)?,
                    rows_read: r.get(5)?,
                    inserted: r.get(6)?,
                    rejected: r.get(7)?,
                    blank: r.get(8)?,
                    message: r.get(9)?,
                    started_at: r.get(10)?,
                    finished_at: r.get(11)?,
                })
            })?;
            Ok(rows.collect::<Result<_, _>>()?)
        })
        .await
    }

    pub async fn ingest(
        &self,
        source: String,
        mut tables: Vec<TableBatch>,
        more: Option<Pieces>,
        idempotency: Option<Idempotency>,
        render: Render,
    ) -> Result<IngestOutcome, StoreError> {
        // Without a key the response is rendered (and the batch freed) here,
        // off the writer thread, which every write waits for.
        let (inside, outside) = match idempotency {
            Some(_) => (Some(render), None),
            None => (None, Some(render)),
        };
        let (result, tables) = self
            .write(move |conn| {
                // Parents are checked from the cached id sets (see
                // `ParentCache`); SQLite's own per-row check would repeat it.
                conn.execute_batch("PRAGMA foreign_keys = OFF")?;
                let result = ingest_tx(
                    conn,
                    &source,
                    &mut tables,
                    more.as_ref(),
                    idempotency.as_ref(),
                    inside,
                );
                if tables.iter().any(|t| t.table.children().next().is_some()) {
                    // Rolled back or committed, the cache may not match.
                    forget_parents();
                }
                conn.execute_batch("PRAGMA foreign_keys = ON")?;
                Ok((result, tables))
            })
            .await?;
        match (result?, outside) {
            (Ok(outcome), _) => Ok(outcome),
            (Err(outcomes), Some(render)) => Ok(IngestOutcome::Applied(render(&outcomes, &tables))),
            (Err(_), None) => Err(StoreError::Task("a keyed batch was not rendered".into())),
        }
    }

    pub async fn rows(
        &self,
        table: Table,
        after_id: i64,
        limit: u32,
    ) -> Result<Vec<serde_json::Map<String, serde_json::Value>>, StoreError> {
        self.read(move |c| {
            let cols: Vec<String> = table
                .columns()
                .iter()
                .map(|c| format!("\"{}\"", c.name))
                .collect();
            let mut stmt = c.prepare_cached(&format!(
                "SELECT {} FROM \"{}\" WHERE \"id\" > ?1 ORDER BY \"id\" LIMIT ?2",
                cols.join(", "),
                table.name()
            ))?;
            let rows = stmt.query_map(params![after_id, limit], |r| {
                let mut obj = serde_json::Map::new();
                for (i, col) in table.columns().iter().enumerate() {
                    let v = match col.ty {
                        crate::dictionary::ColumnType::Integer => {
                            serde_json::Value::from(r.get::<_, i64>(i)?)
                        }
                        _ => serde_json::Value::from(r.get::<_, String>(i)?),
                    };
                    obj.insert(col.name.to_owned(), v);
                }
                Ok(obj)
            })?;
            Ok(rows.collect::<Result<_, _>>()?)
        })
        .await
    }

    pub async fn hires_by_quarter(&self, year: i32) -> Result<Vec<QuarterRow>, StoreError> {
        self.read(move |c| {
            let mut stmt = c.prepare_cached(REPORT_HIRES_BY_QUARTER)?;
            let rows = stmt.query_map([year], |r| {
                Ok(QuarterRow {
                    department: r.get(0)?,
                    job: r.get(1)?,
                    q1: r.get(2)?,
                    q2: r.get(3)?,
                    q3: r.get(4)?,
                    q4: r.get(5)?,
                })
            })?;
            Ok(rows.collect::<Result<_, _>>()?)
        })
        .await
    }

    pub async fn departments_above_mean(
        &self,
        year: i32,
    ) -> Result<Vec<DepartmentHires>, StoreError> {
        self.read(move |c| {
            let mut stmt = c.prepare_cached(REPORT_ABOVE_MEAN)?;
            let rows = stmt.query_map([year], |r| {
                Ok(DepartmentHires {
                    id: r.get(0)?,
                    department: r.get(1)?,
                    hired: r.get(2)?,
                })
            })?;
            Ok(rows.collect::<Result<_, _>>()?)
        })
        .await
    }

    pub async fn close(&self) -> Result<(), StoreError> {
        self.write(|conn| {
            // Readers of other processes may hold part of the log: then it
            // stays for them, which is only slower, never wrong.
            conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))?;
            Ok(())
        })
        .await
    }

    /// Opens the file afresh (without creating it) and reads its schema: an
    /// open connection would keep answering for a file that is gone.
    pub async fn ping(&self) -> Result<(), StoreError> {
        let path = self.path.clone();
        tokio::task::spawn_blocking(move || {
            let conn = Connection::open_with_flags(
                &path,
                OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
            )?;
            conn.query_row("SELECT COUNT(*) FROM sqlite_master", [], |_| Ok(()))?;
            Ok(())
        })
        .await
        .map_err(|e| StoreError::Task(e.to_string()))?
    }

    /// A committed write that changes nothing (page 1 written again), so a
    /// full, read-only or failing disk shows. Skipped while writes are
    /// queued: they find out for themselves, and the check must not wait
    /// behind a long load.
    pub async fn check_writes(&self) -> Result<(), StoreError> {
        if !self.writer_idle() {
            return Ok(());
        }
        self.write(|c| {
            let version: i64 = c.query_row("PRAGMA user_version", [], |r| r.get(0))?;
            c.execute_batch(&format!(
                "BEGIN IMMEDIATE; PRAGMA user_version = {version}; COMMIT"
            ))
            .map_err(|e| {
                let _ = c.execute_batch("ROLLBACK");
                StoreError::from(e)
            })
        })
        .await
    }

    pub async fn count(&self, table: Table) -> Result<u64, StoreError> {
        self.read(move |c| {
            let n: i64 = c.query_row(
                &format!("SELECT COUNT(*) FROM \"{}\"", table.name()),
                [],
                |r| r.get(0),
            )?;
            Ok(n as u64)
        })
        .await
    }
}

fn history_has(c: &Connection, table: Table, sha256: &str) -> Result<bool, rusqlite::Error> {
    c.prepare_cached(&format!(
        "SELECT 1 FROM {} WHERE table_name = ?1 AND sha256 = ?2 AND status = 'loaded' LIMIT 1",
        ddl::LOADS
    ))?
    .query_row(params![table.name(), sha256], |_| Ok(()))
    .optional()
    .map(|r| r.is_some())
}

fn insert_history(
    c: &Connection,
    load: &FileLoad,
    summary: &FeedSummary,
    status: &str,
    inserted: u64,
    rejected: u64,
    message: Option<&str>,
) -> Result<(), rusqlite::Error> {
    c.prepare_cached(&format!(
        "INSERT INTO {} (table_name, source, sha256, status, rows_read, inserted, rejected, blank,
                         message, started_at, finished_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
        ddl::LOADS
    ))?
    .execute(params![
        load.table.name(),
        load.source,
        summary.sha256,
        status,
        summary.rows_read as i64,
        inserted as i64,
        rejected as i64,
        summary.blank as i64,
        message,
        load.started_at,
        datetime::now_text(),
    ])?;
    Ok(())
}

fn load_file(
    conn: &mut Connection,
    load: &FileLoad,
    feed: &mut mpsc::Receiver<Feed>,
) -> Result<FileLoadOutcome, StoreError> {
    // Parents are checked by `RowWriter` (from cached id sets), so SQLite's
    // own per-row check is off for the transaction; the pragma cannot change
    // inside one, so it is set around it.
    conn.execute_batch("PRAGMA foreign_keys = OFF")?;
    let result = load_file_tx(conn, load, feed);
    if load.table.children().next().is_some() {
        forget_parents();
    }
    conn.execute_batch("PRAGMA foreign_keys = ON")?;
    result
}

fn load_file_tx(
    conn: &mut Connection,
    load: &FileLoad,
    feed: &mut mpsc::Receiver<Feed>,
) -> Result<FileLoadOutcome, StoreError> {
    let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
    let mut writer = RowWriter::new(&tx, load.table, &load.source)?;
    loop {
        match feed.blocking_recv() {
            Some(Feed::Chunk(chunk)) => {
                let _rejected = writer.write_chunk(&chunk)?;
                if load.max_rejects.is_some_and(|max| writer.rejected > max) {
                    return Ok(FileLoadOutcome::Aborted {
                        rejected: writer.rejected,
                    });
                }
            }
            Some(Feed::End(summary)) => {
                let (inserted, rejected) = (writer.inserted, writer.rejected);
                drop(writer);
                // Checked again here, where no other load can interleave:
                // two loads of the same content racing each other commit once.
                if !load.force && history_has(&tx, load.table, &summary.sha256)? {
                    return Ok(FileLoadOutcome::AlreadyLoaded);
                }
                insert_history(&tx, load, &summary, "loaded", inserted, rejected, None)?;
                tx.commit()?;
                return Ok(FileLoadOutcome::Loaded { inserted, rejected });
            }
            None => return Err(StoreError::FeedInterrupted),
        }
    }
}

/// The outcome of a batch inside its transaction: rendered when a key must
/// store the response, else returned for the caller to render.
fn ingest_tx(
    conn: &mut Connection,
    source: &str,
    tables: &mut [TableBatch],
    more: Option<&Pieces>,
    idempotency: Option<&Idempotency>,
    render: Option<Render>,
) -> Result<Result<IngestOutcome, Vec<TableOutcome>>, StoreError> {
    let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
    if let Some(idem) = idempotency {
        let seen: Option<(String, String)> = tx
            .prepare_cached(&format!(
                "SELECT fingerprint, response FROM {} WHERE key = ?1",
                ddl::IDEMPOTENCY
            ))?
            .query_row([&idem.key], |r| Ok((r.get(0)?, r.get(1)?)))
            .optional()?;
        if let Some((fingerprint, response)) = seen {
            return Ok(Ok(if fingerprint == idem.fingerprint {
                IngestOutcome::Replayed(response)
            } else {
                IngestOutcome::KeyReused
            }));
        }
    }
    let mut outcomes = Vec::with_capacity(tables.len());
    let last = tables.len().saturating_sub(1);
    for (i, batch) in tables.iter_mut().enumerate() {
        let mut writer = RowWriter::new(&tx, batch.table, source)?;
        let mut rejected = writer.write_chunk(&batch.chunk)?;
        if let Some(more) = more.filter(|_| i == last) {
            loop {
                match more.recv() {
                    Ok(Piece::Rows(chunk)) => {
                        rejected.extend(writer.write_chunk(&chunk)?);
                        batch.chunk.append(chunk);
                    }
                    Ok(Piece::End) => break,
                    // The request failed while it was parsed: roll back.
                    Err(_) => return Err(StoreError::FeedInterrupted),
                }
            }
        }
        outcomes.push(TableOutcome {
            table: batch.table,
            received: batch.chunk.rows.len() as u64,
            inserted: writer.inserted,
            rejected,
        });
    }
    let result =
        match (idempotency, render) {
            (Some(idem), Some(render)) => {
                let response = render(&outcomes, tables);
                tx.prepare_cached(&format!(
                "INSERT INTO {} (key, fingerprint, response, created_at) VALUES (?1, ?2, ?3, ?4)",
                ddl::IDEMPOTENCY
            ))?
            .execute(params![idem.key, idem.fingerprint, response, datetime::now_text()])?;
                Ok(IngestOutcome::Applied(response))
            }
            _ => Err(outcomes),
        };
    tx.commit()?;
    Ok(result)
}

/// Largest parent table whose ids are held in memory (4 MB each); bigger ones are looked up per row.
const MAX_PARENT_IDS: i64 = 1_000_000;

/// Hires per department and job by quarter for one year (`?1`), read from
/// the report view so that the API and BI tools see one definition.
/// SQLite's default BINARY collation orders by code point.
const REPORT_HIRES_BY_QUARTER: &str = "
SELECT department, job, q1, q2, q3, q4 FROM gold_hires_by_quarter
WHERE year = ?1
ORDER BY department, job, department_id, job_id";

/// Departments whose hires in the year exceed the mean over all departments
/// (departments without hires count as zero).
const REPORT_ABOVE_MEAN: &str = "
WITH hires AS (
    SELECT d.id, d.department, COALESCE(g.hired, 0) AS hired
    FROM departments d
    LEFT JOIN gold_department_hires g ON g.id = d.id AND g.year = ?1
)
SELECT id, department, hired FROM hires
WHERE hired > (SELECT AVG(hired) FROM hires)
ORDER BY hired DESC, id";

/// How a foreign key is checked.
enum Parent<'t> {
    /// A lookup per row (parents too big to hold in memory).
    Lookup(CachedStatement<'t>),
    /// Every id of the parent, from the writer's cache.
    Ids(std::rc::Rc<IdSet>),
}

/// Parent id sets, cached on the writer thread between transactions.
///
/// Valid while nothing changed the parents: writes by this process all run
/// on this thread and clear the cache when they touch a parent table
/// ([`forget_parents`]); commits by other connections change SQLite's
/// `data_version`, which is compared on every use.
#[derive(Default)]
struct ParentCache {
    data_version: i64,
    sets: std::collections::HashMap<Table, std::rc::Rc<IdSet>>,
}

/// A set of ids, hashed with one multiplication: every row of a batch is
/// looked up in it, and ids are not chosen to collide with each other
/// (a hostile client can only slow its own parents' lookups).
type IdSet = std::collections::HashSet<i32, std::hash::BuildHasherDefault<IdHasher>>;

/// Fibonacci hashing of a 32-bit id, high bits folded into the low ones.
#[derive(Default)]
struct IdHasher(u64);

impl std::hash::Hasher for IdHasher {
    fn finish(&self) -> u64 {
        self.0 ^ (self.0 >> 32)
    }
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0.rotate_left(8) ^ u64::from(b)).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        }
    }
    fn write_i32(&mut self, id: i32) {
        self.0 = u64::from(id as u32).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    }
}

thread_local! {
    static PARENTS: std::cell::RefCell<ParentCache> = Default::default();
}

/// The ids of `parent`, or `None` when the table is too big to hold.
fn parent_ids(
    tx: &Transaction<'_>,
    parent: Table,
) -> Result<Option<std::rc::Rc<IdSet>>, rusqlite::Error> {
    let version: i64 = tx
        .prepare_cached("PRAGMA data_version")?
        .query_row([], |r| r.get(0))?;
    let cached = PARENTS.with(|c| {
        let mut c = c.borrow_mut();
        if c.data_version != version {
            c.sets.clear();
            c.data_version = version;
        }
        c.sets.get(&parent).cloned()
    });
    if cached.is_some() {
        return Ok(cached);
    }
    let n: i64 = tx.query_row(
        &format!("SELECT COUNT(*) FROM \"{}\"", parent.name()),
        [],
        |r| r.get(0),
    )?;
    if n > MAX_PARENT_IDS {
        return Ok(None);
    }
    let mut stmt = tx.prepare_cached(&format!("SELECT \"id\" FROM \"{}\"", parent.name()))?;
    let ids: IdSet = stmt
        .query_map([], |r| r.get(0))?
        .collect::<Result<_, _>>()?;
    let ids = std::rc::Rc::new(ids);
    PARENTS.with(|c| c.borrow_mut().sets.insert(parent, ids.clone()));
    Ok(Some(ids))
}

/// Drops the cached parent ids (a parent table is being written).
fn forget_parents() {
    PARENTS.with(|c| c.borrow_mut().sets.clear());
}

impl Parent<'_> {
    fn has(&mut self, id: i32) -> Result<bool, rusqlite::Error> {
        match self {
            Parent::Lookup(stmt) => stmt.exists([id]),
            Parent::Ids(ids) => Ok(ids.contains(&id)),
        }
    }
}

/// Rows per multi-row `INSERT` of a restore.
const ROWS_PER_INSERT: usize = 64;

/// Runs a restore's `INSERT`; a repeated id refuses the restore.
fn execute_restore(stmt: &mut CachedStatement<'_>, id: i32) -> Result<(), StoreError> {
    match stmt.raw_execute() {
        Ok(_) => Ok(()),
        Err(rusqlite::Error::SqliteFailure(e, _))
            if e.code == rusqlite::ErrorCode::ConstraintViolation =>
        {
            Err(StoreError::Refused(format!(
                "an id appears more than once (at or after id {id})"
            )))
        }
        Err(e) => Err(e.into()),
    }
}

/// Binds a row's values to an `INSERT` of all the table's columns.
fn bind_row(stmt: &mut CachedStatement<'_>, row: &Row) -> Result<(), rusqlite::Error> {
    bind_row_at(stmt, 0, row)
}

/// Binds a row's values from parameter `offset + 1` on.
fn bind_row_at(
    stmt: &mut CachedStatement<'_>,
    offset: usize,
    row: &Row,
) -> Result<(), rusqlite::Error> {
    let mut buf = [0u8; 24];
    for (i, v) in row.0.iter().enumerate() {
        let i = offset + i;
        match v {
            Value::Int(n) => stmt.raw_bind_parameter(i + 1, n)?,
            Value::Text(s) => stmt.raw_bind_parameter(i + 1, s.as_str())?,
            Value::DateTime(ms) => stmt.raw_bind_parameter(
                i + 1,
                rusqlite::types::ToSqlOutput::Borrowed(rusqlite::types::ValueRef::Text(
                    datetime::format_ascii(*ms, &mut buf),
                )),
            )?,
        }
    }
    Ok(())
}

fn column_list(table: Table) -> String {
    let names: Vec<String> = table
        .columns()
        .iter()
        .map(|c| format!("\"{}\"", c.name))
        .collect();
    names.join(", ")
}

/// Every row of `table` in id order, read back into typed values.
fn scan_rows<S: RowSink>(c: &Connection, table: Table, mut sink: S) -> Result<S, StoreError> {
    use rusqlite::types::ValueRef;
    let mut stmt = c.prepare(&format!(
        "SELECT {} FROM \"{}\" ORDER BY \"id\"",
        column_list(table),
        table.name()
    ))?;
    let columns = table.columns();
    let mut rows = stmt.query([])?;
    while let Some(r) = rows.next()? {
        let mut fields = [Field::Int(0); MAX_COLUMNS];
        for (i, column) in columns.iter().enumerate() {
            let value = r.get_ref(i)?;
            let field = match (column.ty, value) {
                (ColumnType::Integer, ValueRef::Integer(n)) => {
                    i32::try_from(n).ok().map(Field::Int)
                }
                (ColumnType::String, ValueRef::Text(t)) => Some(Field::Text(t)),
                (ColumnType::DateTime, ValueRef::Text(t)) => Some(Field::DateTimeText(t)),
                _ => None,
            };
            match field {
                Some(f) => fields[i] = f,
                None => {
                    return Err(StoreError::BadStoredValue {
                        table,
                        id: r.get::<_, i64>(0).unwrap_or_default(),
                        message: format!(
                            "{} holds {:?}, not a valid {:?}",
                            column.name,
                            value.data_type(),
                            column.ty
                        ),
                    });
                }
            }
        }
        sink.row(&fields[..columns.len()])?;
    }
    drop(rows);
    Ok(sink)
}

/// Replaces the rows of `table` (see [`super::Store::replace`]); the
/// caller turns SQLite's per-row foreign-key check off around it.
fn replace_tx(
    conn: &mut Connection,
    table: Table,
    rows: &std::sync::mpsc::Receiver<Replacement>,
) -> Result<u64, StoreError> {
    let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
    tx.execute(&format!("DELETE FROM \"{}\"", table.name()), [])?;
    // Rows go in 64 to a statement: SQLite then keeps its cursor at the end
    // of the table between rows instead of seeking it again for each.
    let width = table.columns().len();
    let insert_sql = |rows: usize| {
        let tuples: Vec<String> = (0..rows)
            .map(|r| {
                let marks: Vec<String> =
                    (1..=width).map(|c| format!("?{}", r * width + c)).collect();
                format!("({})", marks.join(", "))
            })
            .collect();
        format!(
            "INSERT INTO \"{}\" ({}) VALUES {}",
            table.name(),
            column_list(table),
            tuples.join(", ")
        )
    };
    let mut insert_many = tx.prepare_cached(&insert_sql(ROWS_PER_INSERT))?;
    let mut insert_one = tx.prepare_cached(&insert_sql(1))?;
    // Parents held in memory are checked row by row; bigger ones by one
    // query at the end.
    let mut in_memory = Vec::new();
    let mut by_query = Vec::new();
    for (i, column, parent) in table.foreign_keys() {
        match parent_ids(&tx, parent)? {
            Some(ids) => in_memory.push((i, column.name, parent, ids)),
            None => by_query.push((column, parent)),
        }
    }
    // Written rows are freed on a thread of their own: the writer is the
    // restore's bottleneck, and millions of strings take a while to free.
    let (spent, to_free) = std::sync::mpsc::channel::<Vec<Row>>();
    std::thread::Builder::new()
        .name("hrmig-restore-free".into())
        .spawn(move || to_free.into_iter().for_each(drop))
        .map_err(|e| StoreError::Task(e.to_string()))?;
    let mut written = 0u64;
    loop {
        match rows.recv() {
            Ok(Replacement::Rows(batch)) => {
                for row in &batch {
                    for (i, column, parent, ids) in &in_memory {
                        if let Some(v) = row.0.get(*i).and_then(Value::as_int)
                            && !ids.contains(&v)
                        {
                            return Err(StoreError::Refused(format!(
                                "row id {} has {column} {v}, which is not an id of {parent}",
                                row.id()
                            )));
                        }
                    }
                }
                for group in batch.chunks(ROWS_PER_INSERT) {
                    let stmt = if group.len() == ROWS_PER_INSERT {
                        for (r, row) in group.iter().enumerate() {
                            bind_row_at(&mut insert_many, r * width, row)?;
                        }
                        &mut insert_many
                    } else {
                        &mut insert_one
                    };
                    let single = group.len() < ROWS_PER_INSERT;
                    for row in group.iter().filter(|_| single) {
                        bind_row(stmt, row)?;
                        execute_restore(stmt, row.id())?;
                    }
                    if !single {
                        execute_restore(stmt, group[0].id())?;
                    }
                    written += group.len() as u64;
                }
                let _ = spent.send(batch);
            }
            Ok(Replacement::End { rows }) if rows == written => break,
            Ok(Replacement::End { rows }) => {
                return Err(StoreError::Refused(format!(
                    "{rows} rows were sent but {written} written"
                )));
            }
            Err(_) => return Err(StoreError::FeedInterrupted),
        }
    }
    drop((insert_many, insert_one));
    for (column, parent) in by_query {
        let orphan: Option<(i64, i64)> = tx
            .query_row(
                &format!(
                    "SELECT t.\"id\", t.\"{c}\" FROM \"{t}\" t WHERE NOT EXISTS
                     (SELECT 1 FROM \"{p}\" p WHERE p.\"id\" = t.\"{c}\") LIMIT 1",
                    c = column.name,
                    t = table.name(),
                    p = parent.name()
                ),
                [],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()?;
        if let Some((id, value)) = orphan {
            return Err(StoreError::Refused(format!(
                "row id {id} has {} {value}, which is not an id of {parent}",
                column.name
            )));
        }
    }
    for child in table.children() {
        for (_, column, _) in child.foreign_keys().filter(|(_, _, p)| *p == table) {
            let (count, example): (i64, Option<i64>) = tx.query_row(
                &format!(
                    "SELECT COUNT(*), MIN(c.\"{col}\") FROM \"{child}\" c WHERE NOT EXISTS
                     (SELECT 1 FROM \"{t}\" p WHERE p.\"id\" = c.\"{col}\")",
                    col = column.name,
                    child = child.name(),
                    t = table.name()
                ),
                [],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )?;
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
    tx.commit()?;
    Ok(written)
}

/// Inserts checked rows and logs rejected ones, within one transaction.
struct RowWriter<'t> {
    table: Table,
    source: &'t str,
    rejected_at: String,
    insert: CachedStatement<'t>,
    exists: CachedStatement<'t>,
    parents: Vec<(usize, &'static str, Table, Parent<'t>)>,
    reject: CachedStatement<'t>,
    inserted: u64,
    rejected: u64,
}

impl<'t> RowWriter<'t> {
    fn new(tx: &'t Transaction<'_>, table: Table, source: &'t str) -> Result<Self, StoreError> {
        let cols = table.columns();
        let names: Vec<String> = cols.iter().map(|c| format!("\"{}\"", c.name)).collect();
        let marks: Vec<String> = (1..=cols.len()).map(|i| format!("?{i}")).collect();
        let insert = tx.prepare_cached(&format!(
            "INSERT INTO \"{t}\" ({}) VALUES ({}) ON CONFLICT (\"id\") DO NOTHING",
            names.join(", "),
            marks.join(", "),
            t = table.name()
        ))?;
        if table.children().next().is_some() {
            forget_parents();
        }
        let exists = tx.prepare_cached(&format!(
            "SELECT 1 FROM \"{}\" WHERE \"id\" = ?1",
            table.name()
        ))?;
        let parents = table
            .foreign_keys()
            .map(|(i, col, parent)| {
                let check = match parent_ids(tx, parent)? {
                    Some(ids) => Parent::Ids(ids),
                    None => Parent::Lookup(tx.prepare_cached(&format!(
                        "SELECT 1 FROM \"{}\" WHERE \"id\" = ?1",
                        parent.name()
                    ))?),
                };
                Ok((i, col.name, parent, check))
            })
            .collect::<Result<_, rusqlite::Error>>()?;
        let reject = tx.prepare_cached(&format!(
            "INSERT INTO {} (table_name, source, position, raw, errors, rejected_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            ddl::REJECTIONS
        ))?;
        Ok(RowWriter {
            table,
            source,
            rejected_at: datetime::now_text(),
            insert,
            exists,
            parents,
            reject,
            inserted: 0,
            rejected: 0,
        })
    }

    /// Writes every candidate; returns the rejected ones (position, errors).
    fn write_chunk(&mut self, chunk: &Chunk) -> Result<Vec<(u64, Vec<FieldError>)>, StoreError> {
        let mut rejected = Vec::new();
        for candidate in &chunk.rows {
            if let Some(errors) = self.write(candidate, &chunk.raw)? {
                rejected.push((candidate.position, errors));
            }
        }
        Ok(rejected)
    }

    /// Inserts one candidate or logs it; returns its errors when rejected.
    fn write(&mut self, c: &Candidate, raw: &[u8]) -> Result<Option<Vec<FieldError>>, StoreError> {
        let errors = match &c.check {
            Ok(row) => {
                // SQLite's foreign-key check is off while rows are written:
                // parents are checked here.
                let mut errors = Vec::new();
                self.missing_parents(|i| row.0[i].as_int(), &mut errors)?;
                if !errors.is_empty() {
                    if self.exists.exists([row.id()])? {
                        errors.push(duplicate_error(row.id()));
                    }
                    return self.log_rejection(c, raw, errors).map(Some);
                }
                bind_row(&mut self.insert, row)?;
                match self.insert.raw_execute() {
                    Ok(1) => {
                        self.inserted += 1;
                        return Ok(None);
                    }
                    // Parents were checked above: only the id can conflict.
                    Ok(_) => vec![duplicate_error(row.id())],
                    Err(e) => return Err(e.into()),
                }
            }
            Err(checked) => {
                let mut errors = checked.errors.clone();
                if let Some(id) = checked.int(Table::PRIMARY_KEY)
                    && self.exists.exists([id])?
                {
                    errors.push(duplicate_error(id));
                }
                self.missing_parents(|i| checked.int(i), &mut errors)?;
                errors
            }
        };
        self.log_rejection(c, raw, errors).map(Some)
    }

    fn missing_parents(
        &mut self,
        value: impl Fn(usize) -> Option<i32>,
        errors: &mut Vec<FieldError>,
    ) -> Result<(), StoreError> {
        for (i, column, parent, stmt) in &mut self.parents {
            if let Some(id) = value(*i)
                && !stmt.has(id)?
            {
                errors.push(foreign_key_error(column, *parent, id));
            }
        }
        Ok(())
    }

    fn log_rejection(
        &mut self,
        c: &Candidate,
        raw: &[u8],
        mut errors: Vec<FieldError>,
    ) -> Result<Vec<FieldError>, StoreError> {
        sort_errors(self.table, &mut errors);
        let raw = super::checks::kept_raw(self.source, raw, c);
        let json = serde_json::to_string(&errors).unwrap_or_else(|_| "[]".into());
        self.reject.execute(params![
            self.table.name(),
            self.source,
            c.position as i64,
            raw,
            json,
            self.rejected_at
        ])?;
        self.rejected += 1;
        crate::telemetry::rejected_row(self.table, self.source, c.position, &errors);
        Ok(errors)
    }
}
