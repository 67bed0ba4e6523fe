//! SQLite backend: one writer thread, a small pool of readers.
//!
//! SQLite allows one writer at a time. Rather than let concurrent writers
//! collide and retry on `SQLITE_BUSY`, every write runs on one dedicated
//! thread that owns the write connection; callers queue behind it. Readers
//! use their own connections, which WAL lets run beside the writer.

mod counts;
mod restore;
mod writer;

use super::backend::Backend;
use super::batch::Done;
use super::error::Fault;
use super::sql::{Param, Read, SqlRow, Statement};
use super::tx::{ReadRow, Statements};
use super::{
    BatchRequest, Field, FileFeed, FileLoad, IngestOutcome, LoadOutcome, LoadRecord, RestoreFeed,
    RowSink, StoreError, UndoOutcome, ddl,
};
use crate::dictionary::check::MAX_COLUMNS;
use crate::dictionary::{ColumnType, Table, datetime};
use crate::metrics::PoolStatus;
use rusqlite::{Connection, OpenFlags, TransactionBehavior};
use std::path::PathBuf;
use std::sync::Mutex;
use tokio::sync::oneshot;

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

impl From<rusqlite::Error> for StoreError {
    /// SQLite is never retried: one process's writes queue on one thread.
    /// A file that cannot be opened or is locked by another process is
    /// unavailable; a full, read-only or failing disk takes no writes.
    fn from(error: rusqlite::Error) -> StoreError {
        use rusqlite::ErrorCode as C;
        let fault = match &error {
            rusqlite::Error::SqliteFailure(f, _) => match f.code {
                C::CannotOpen | C::DatabaseBusy | C::DatabaseLocked => Fault::Unavailable,
                C::DiskFull | C::ReadOnly | C::SystemIoFailure => Fault::CannotWrite,
                _ => Fault::Refused,
            },
            _ => Fault::Refused,
        };
        StoreError::Sqlite { error, fault }
    }
}

impl rusqlite::ToSql for Param {
    fn to_sql(&self) -> rusqlite::Result<rusqlite::types::ToSqlOutput<'_>> {
        match self {
            Param::Text(s) => s.to_sql(),
            Param::Int(n) => n.to_sql(),
            // Times are stored as canonical UTC text.
            Param::Time(ms) => Ok(datetime::format(*ms).into()),
        }
    }
}

impl SqlRow for rusqlite::Row<'_> {
    fn int(&self, i: usize) -> Result<i64, StoreError> {
        Ok(self.get(i)?)
    }
    fn text(&self, i: usize) -> Result<String, StoreError> {
        Ok(self.get(i)?)
    }
    fn opt_text(&self, i: usize) -> Result<Option<String>, StoreError> {
        Ok(self.get(i)?)
    }
    fn time(&self, i: usize) -> Result<String, StoreError> {
        Ok(self.get(i)?)
    }
}

/// The statements of a transaction on the writer connection, for the code
/// every backend shares.
struct SqliteTx<'a, 'c>(&'a rusqlite::Transaction<'c>);

impl Statements for SqliteTx<'_, '_> {
    async fn execute(&mut self, st: &Statement) -> Result<u64, StoreError> {
        execute_on(self.0, st)
    }

    async fn query<T>(&mut self, st: &Statement, read: ReadRow<T>) -> Result<Vec<T>, StoreError> {
        query_on(self.0, st, read)
    }
}

/// Runs a statement on `c`; the rows it changed.
fn execute_on(c: &Connection, st: &Statement) -> Result<u64, StoreError> {
    let mut stmt = c.prepare_cached(&st.sql)?;
    Ok(stmt.execute(rusqlite::params_from_iter(&st.params))? as u64)
}

/// Runs a query on `c`, each row read by `read`.
fn query_on<T>(
    c: &Connection,
    st: &Statement,
    read: impl Fn(&dyn SqlRow) -> Result<T, StoreError>,
) -> Result<Vec<T>, StoreError> {
    let mut stmt = c.prepare_cached(&st.sql)?;
    let mut rows = stmt.query(rusqlite::params_from_iter(&st.params))?;
    let mut out = Vec::new();
    while let Some(r) = rows.next()? {
        out.push(read(r)?);
    }
    Ok(out)
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

/// Brings the schema up to date in one transaction that holds the write
/// lock, so that two processes opening a new database do not both add the
/// same columns; `user_version` records the last migration run.
fn migrate(conn: &mut Connection) -> Result<(), StoreError> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let version: i64 = tx.query_row("PRAGMA user_version", [], |r| r.get(0))?;
    let migrations = ddl::migrations(super::Dialect::Sqlite);
    for (i, (_, sql)) in migrations.iter().enumerate() {
        if ddl::sqlite_runs(i + 1, version) {
            tx.execute_batch(sql)?;
        }
    }
    if (migrations.len() as i64) > version {
        tx.execute_batch(&format!("PRAGMA user_version = {}", migrations.len()))?;
    }
    tx.commit()?;
    Ok(())
}

impl SqliteStore {
    pub(super) fn open(path: &str) -> Result<SqliteStore, StoreError> {
        let path = PathBuf::from(path);
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty())
            && !dir.is_dir()
        {
            return Err(StoreError::from(rusqlite::Error::SqliteFailure(
                rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_CANTOPEN),
                Some(format!("directory {} does not exist", dir.display())),
            )));
        }
        // 32 MB of page cache for the writer: enough for the hot pages of an
        // append-mostly load, and small enough that a load's peak memory is
        // the same at 1 M and 10 M rows (64 MB was 20% faster on 10 M rows
        // but grew the peak by 24% between the two).
        let mut conn = connect(&path, 32 * 1024)?;
        migrate(&mut conn)?;
        counts::watch(&mut conn)?;
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

    /// Folds the hire-count changes into the counts, if there are any,
    /// before a report reads the counts (see `store::reports`): on the
    /// writer thread, after the writes queued before the report.
    pub(super) async fn fold_counts(&self) -> Result<(), StoreError> {
        let pending = self
            .read(|c| {
                Ok(c.query_row(&super::reports::sqlite_changes(), [], |r| {
                    r.get::<_, i64>(0)
                })?)
            })
            .await?;
        if pending == 0 {
            return Ok(());
        }
        self.write(counts::fold).await
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
}

impl Backend for SqliteStore {
    /// A statement of the load jobs runs on their own database (see
    /// `ddl::jobs_sqlite`), others on the writer thread.
    async fn execute(&self, st: Statement) -> Result<u64, StoreError> {
        match st.of_jobs {
            true => self.on_jobs(move |c| execute_on(c, &st)).await,
            false => {
                self.write(move |c| {
                    writer::enforce_foreign_keys(c, true)?;
                    execute_on(c, &st)
                })
                .await
            }
        }
    }

    async fn query<T: Send + 'static>(
        &self,
        st: Statement,
        read: impl Read<T>,
    ) -> Result<Vec<T>, StoreError> {
        match st.of_jobs {
            true => self.on_jobs(move |c| query_on(c, &st, read)).await,
            false => self.read(move |c| query_on(c, &st, read)).await,
        }
    }

    async fn load_file(&self, load: FileLoad, feed: FileFeed) -> Result<LoadOutcome, StoreError> {
        let parents_written = load.table.children().next().is_some();
        self.write(move |conn| {
            writer::without_fk_checks(conn, parents_written, |conn| {
                writer::load_file(conn, &load, feed)
            })
        })
        .await
    }

    async fn ingest(&self, batch: BatchRequest) -> Result<IngestOutcome, StoreError> {
        let BatchRequest {
            source,
            mut tables,
            rest,
            idempotency,
            render,
            dry_run,
            on_duplicate,
            requeue,
        } = batch;
        // Without a key the response is rendered (and the batch freed)
        // here, off the writer thread, which every write waits for.
        let (inside, outside) = match idempotency {
            Some(_) => (Some(render), None),
            None => (None, Some(render)),
        };
        let parents_written = tables.iter().any(|t| t.table.children().next().is_some());
        let (result, tables) = self
            .write(move |conn| {
                let result = writer::without_fk_checks(conn, parents_written, |conn| {
                    writer::ingest(
                        conn,
                        &source,
                        &mut tables,
                        rest,
                        idempotency.as_ref(),
                        inside,
                        writer::Apply {
                            dry_run,
                            update: on_duplicate.updates(),
                            requeue: requeue.as_ref(),
                        },
                    )
                });
                Ok((result, tables))
            })
            .await?;
        match (result?, outside) {
            (Ok(outcome), _) => Ok(outcome),
            (Err(outcomes), Some(render)) => Ok(IngestOutcome::Applied(render(&outcomes, &tables))),
            (Err(_), None) => Err(StoreError::Task("a keyed batch was not rendered".into())),
        }
    }

    async fn scan<S: RowSink>(&self, table: Table, sink: S) -> Result<S, StoreError> {
        // One statement reads one snapshot (WAL): the backup is consistent
        // while writers go on.
        self.read(move |c| scan_rows(c, table, sink)).await
    }

    async fn replace(
        &self,
        table: Table,
        source: String,
        rows: RestoreFeed,
    ) -> Result<(u64, i64), StoreError> {
        self.write(move |conn| {
            // The foreign keys are checked by the restore itself (parents
            // from the cached id sets, children with one query).
            writer::without_fk_checks(conn, true, |conn| {
                let tx =
                    conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
                let target = restore::SqliteRestore::new(tx, table)?;
                // The restore's steps never wait but for rows, on this
                // thread of its own.
                futures::executor::block_on(super::restore::run(
                    target,
                    super::Dialect::Sqlite,
                    table,
                    &source,
                    rows,
                ))
            })
        })
        .await
    }

    async fn undo(&self, entry: &LoadRecord, table: Table) -> Result<UndoOutcome, StoreError> {
        let entry = entry.clone();
        self.write(move |conn| {
            writer::enforce_foreign_keys(conn, true)?;
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let mut target = SqliteTx(&tx);
            // Its statements never wait: SQLite runs them here, at once.
            let done = futures::executor::block_on(super::undo::run(
                &mut target,
                super::Dialect::Sqlite,
                &entry,
                table,
            ));
            // Rows of a parent may be gone: its cached ids are not true.
            writer::forget_parents();
            match done? {
                Done::Commit(outcome) => {
                    counts::commit(tx)?;
                    Ok(outcome)
                }
                Done::Rollback(outcome) => Ok(outcome),
            }
        })
        .await
    }

    /// The writer is the one connection that writes: busy while a write
    /// runs, the others queued behind it waiting.
    fn pool(&self) -> PoolStatus {
        let pending = self.pending.load(std::sync::atomic::Ordering::SeqCst) as u64;
        PoolStatus {
            max: 1,
            open: 1,
            idle: u64::from(pending == 0),
            waiting: pending.saturating_sub(1),
        }
    }

    fn writer_idle(&self) -> bool {
        self.pending.load(std::sync::atomic::Ordering::SeqCst) == 0
    }

    async fn close(&self) -> Result<(), StoreError> {
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
    async fn ping(&self) -> Result<(), StoreError> {
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
    async fn check_writes(&self) -> Result<(), StoreError> {
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
}

/// Every row of `table` in id order, read back into typed values.
fn scan_rows<S: RowSink>(c: &Connection, table: Table, mut sink: S) -> Result<S, StoreError> {
    use rusqlite::types::ValueRef;
    let mut stmt = c.prepare(&format!(
        "SELECT {} FROM \"{}\" ORDER BY \"id\"",
        super::Dialect::Sqlite.table_columns(table),
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
