//! Azure SQL Database / SQL Server backend, through tiberius.
//!
//! The same design as the PostgreSQL backend, in T-SQL: a batch's ids and
//! parents are looked up with one query each (`OPENJSON` of an id list,
//! so no parameter limit applies), rows go in with multi-row parameterised
//! `INSERT`s that stay under SQL Server's 2100 parameters per request, and
//! an `INSERT … OUTPUT inserted.id … WHERE NOT EXISTS (… WITH (UPDLOCK,
//! HOLDLOCK))` settles races with other writers. Connections come from a
//! bb8 pool whose manager follows Azure's redirect to the database's node.

mod ado;
mod connect;
pub(super) mod entra;
mod load;
mod restore;
mod statements;
mod types;

pub(super) use connect::is_mssql_url;

use super::backend::Backend;
use super::batch::{self, Done};
use super::error::Fault;
use super::retry::retrying;
use super::sql::{Read, SqlRow, Statement};
use super::{
    BatchRequest, Dialect, Field, FileFeed, FileLoad, IngestOutcome, LoadOutcome, LoadRecord,
    RestoreFeed, RowSink, StoreError, UndoOutcome, ddl,
};
use crate::dictionary::check::MAX_COLUMNS;
use crate::dictionary::{ColumnType, Table};
use crate::metrics::PoolStatus;
use connect::{LogConnectErrors, Manager, Target, parse_url, pool_error};
use futures::TryStreamExt;
use statements::q;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;
use tiberius::Client;
use tokio::net::TcpStream;
use tokio_util::compat::Compat;
use types::{datetime_at, int_at};

type Conn = Client<Compat<TcpStream>>;
type Pooled<'a> = bb8::PooledConnection<'a, Manager>;

/// Error numbers after which the whole transaction may run again:
/// Azure SQL's documented transient errors, a deadlock victim (1205), and
/// connections cut by the network or the server.
const TRANSIENT: [u32; 16] = [
    4060, 40197, 40501, 40613, 49918, 49919, 49920, 10928, 10929, 1205, 233, 64, 10053, 10054,
    10060, 40143,
];

/// Whether running the transaction again may succeed (see [`TRANSIENT`]).
/// Server errors that mean "no writes for now": the database is read-only
/// (3906), a filegroup or the log is full (1105, 9002), or an Azure SQL
/// database reached its size quota (40544).
const CANNOT_WRITE: [u32; 4] = [3906, 1105, 9002, 40544];

fn cannot_write(e: &tiberius::error::Error) -> bool {
    matches!(e, tiberius::error::Error::Server(t) if CANNOT_WRITE.contains(&t.code()))
}

fn transient(e: &tiberius::error::Error) -> bool {
    match e {
        tiberius::error::Error::Io { .. } | tiberius::error::Error::Routing { .. } => true,
        tiberius::error::Error::Server(t) => TRANSIENT.contains(&t.code()),
        _ => false,
    }
}

impl From<tiberius::error::Error> for StoreError {
    fn from(error: tiberius::error::Error) -> StoreError {
        let fault = Fault::of(transient(&error), cannot_write(&error));
        StoreError::Mssql { error, fault }
    }
}

pub struct MssqlStore {
    pool: bb8::Pool<Manager>,
    /// The pool's size (bb8 does not say it).
    pool_size: u32,
    /// Loads use the bulk-copy protocol (`bulk=false` in the URL: multi-row
    /// `INSERT`s instead). Switched off for good when a bulk copy fails.
    bulk: AtomicBool,
}

impl MssqlStore {
    /// Opens the pool and brings the schema up to date. With an Entra ID
    /// login, the first token is asked for before any connection, so that a
    /// credential that cannot give one fails here, naming itself.
    pub(super) async fn open(url: &str) -> Result<MssqlStore, StoreError> {
        let Target {
            mut config,
            pool: pool_size,
            bulk,
            login,
        } = parse_url(url)?;
        config.handshake_timeout(Some(Duration::from_secs(15)));
        // A long load or restore is one request per statement; no statement
        // of hrmig's should take minutes, but a big one may take more than
        // tiberius's default 30 s.
        config.command_timeout(Some(Duration::from_secs(300)));
        let tokens = match login {
            Some(login) => {
                let tokens = entra::TokenSource::new(&login, &entra::process_env)?;
                tokens.token().await?;
                tracing::info!(credential = tokens.describe(), "Entra ID token obtained");
                Some(Arc::new(tokens))
            }
            None => None,
        };
        let manager = Manager { config, tokens };
        // One connection outside the pool first: bb8 only ever reports a
        // timeout, while this says why the server cannot be reached (and
        // transient failures are retried as usual).
        retrying!(async {
            bb8::ManageConnection::connect(&manager)
                .await
                .map(drop)
                .map_err(StoreError::from)
        })?;
        let pool = bb8::Pool::builder()
            .max_size(pool_size)
            .connection_timeout(Duration::from_secs(30))
            .error_sink(Box::new(LogConnectErrors))
            .build_unchecked(manager);
        let store = MssqlStore {
            pool,
            pool_size,
            bulk: AtomicBool::new(bulk),
        };
        retrying!(store.migrate()).map(|()| store)
    }

    async fn conn(&self) -> Result<Pooled<'_>, StoreError> {
        self.pool.get().await.map_err(pool_error)
    }

    async fn migrate(&self) -> Result<(), StoreError> {
        let mut conn = self.conn().await?;
        // Two processes starting at once would both see no table.
        conn.simple_query(
            "EXEC sp_getapplock @Resource = N'hrmig-migrations', @LockMode = 'Exclusive',
                 @LockOwner = 'Session', @LockTimeout = 60000",
        )
        .await?
        .into_results()
        .await?;
        let mut result = Ok(());
        for (_, sql) in ddl::migrations(super::Dialect::Mssql) {
            result = async { conn.simple_query(sql).await?.into_results().await.map(drop) }.await;
            if result.is_err() {
                break;
            }
        }
        conn.simple_query(
            "EXEC sp_releaseapplock @Resource = N'hrmig-migrations', @LockOwner = 'Session'",
        )
        .await?
        .into_results()
        .await?;
        result?;
        Ok(())
    }
}

impl Backend for MssqlStore {
    async fn execute(&self, st: Statement) -> Result<u64, StoreError> {
        retrying!(async { types::execute(&mut *self.conn().await?, &st).await })
    }

    async fn query<T: Send + 'static>(
        &self,
        st: Statement,
        read: impl Read<T>,
    ) -> Result<Vec<T>, StoreError> {
        retrying!(async {
            let rows = types::query(&mut *self.conn().await?, &st).await?;
            rows.iter().map(|r| read(r as &dyn SqlRow)).collect()
        })
    }

    async fn load_file(&self, load: FileLoad, feed: FileFeed) -> Result<LoadOutcome, StoreError> {
        let mut conn = self.conn().await?;
        let bulk = self.bulk.load(Ordering::Relaxed);
        let result = in_transaction(&mut conn, async |c| {
            let mut target = load::MssqlLoad {
                conn: c,
                table: load.table,
                source: load.source.clone(),
                bulk,
            };
            super::load::run(&mut target, Dialect::Mssql, &load, feed).await
        })
        .await;
        if let Err(StoreError::BulkCopyFailed(e)) = &result {
            tracing::warn!(
                error = %e,
                "the server refused a bulk copy: loads use INSERT statements from now on"
            );
            self.bulk.store(false, Ordering::Relaxed);
        }
        result
    }

    async fn ingest(&self, mut batch: BatchRequest) -> Result<IngestOutcome, StoreError> {
        batch.collect_rest().await?;
        retrying!(async {
            let mut conn = self.conn().await?;
            in_transaction(&mut conn, async |c| {
                batch::apply(&mut load::MssqlBatch(c), Dialect::Mssql, &batch).await
            })
            .await
        })
    }

    async fn scan<S: RowSink>(&self, table: Table, mut sink: S) -> Result<S, StoreError> {
        let mut conn = self.conn().await?;
        let sql = format!(
            "SELECT {} FROM {} ORDER BY [id]",
            Dialect::Mssql.table_columns(table),
            q(table.name())
        );
        // One snapshot: SNAPSHOT isolation where the database allows it
        // (Azure SQL does by default); elsewhere a shared table lock held
        // for the one statement, which makes writers wait.
        let snapshot = async {
            conn.simple_query("SET TRANSACTION ISOLATION LEVEL SNAPSHOT; BEGIN TRANSACTION")
                .await?
                .into_results()
                .await
        }
        .await
        .is_ok();
        let result = if snapshot {
            let r = scan_rows(&mut conn, &sql, table, &mut sink).await;
            let end = if r.is_ok() {
                "COMMIT"
            } else {
                "IF @@TRANCOUNT > 0 ROLLBACK"
            };
            conn.simple_query(format!(
                "{end}; SET TRANSACTION ISOLATION LEVEL READ COMMITTED"
            ))
            .await?
            .into_results()
            .await?;
            r
        } else {
            conn.simple_query(
                "IF @@TRANCOUNT > 0 ROLLBACK; SET TRANSACTION ISOLATION LEVEL READ COMMITTED",
            )
            .await?
            .into_results()
            .await?;
            let locked = format!(
                "SELECT {} FROM {} WITH (TABLOCK, HOLDLOCK) ORDER BY [id]",
                Dialect::Mssql.table_columns(table),
                q(table.name())
            );
            scan_rows(&mut conn, &locked, table, &mut sink).await
        };
        result.map(|()| sink)
    }

    async fn replace(
        &self,
        table: Table,
        source: String,
        rows: RestoreFeed,
    ) -> Result<(u64, i64), StoreError> {
        let mut conn = self.conn().await?;
        in_transaction(&mut conn, async |c| {
            let target = restore::MssqlRestore::new(c, table);
            super::restore::run(target, Dialect::Mssql, table, &source, rows)
                .await
                .map(Done::Commit)
        })
        .await
    }

    async fn undo(&self, entry: &LoadRecord, table: Table) -> Result<UndoOutcome, StoreError> {
        retrying!(async {
            let mut conn = self.conn().await?;
            in_transaction(&mut conn, async |c| {
                super::undo::run(&mut load::MssqlBatch(c), Dialect::Mssql, entry, table).await
            })
            .await
        })
    }
    /// bb8 counts no waiters: `waiting` is 0.
    fn pool(&self) -> PoolStatus {
        let s = self.pool.state();
        PoolStatus {
            max: u64::from(self.pool_size),
            open: u64::from(s.connections),
            idle: u64::from(s.idle_connections),
            waiting: 0,
        }
    }

    async fn ping(&self) -> Result<(), StoreError> {
        let mut conn = self.conn().await?;
        conn.simple_query("SELECT 1").await?.into_results().await?;
        Ok(())
    }

    /// A database set `READ_ONLY` (or an Azure SQL geo-secondary).
    async fn check_writes(&self) -> Result<(), StoreError> {
        let mut conn = self.conn().await?;
        let row = conn
            .simple_query(
                "SELECT CAST(DATABASEPROPERTYEX(DB_NAME(), 'Updateability') AS NVARCHAR(16))",
            )
            .await?
            .into_row()
            .await?;
        match row.as_ref().and_then(|r| r.get::<&str, _>(0)) {
            Some("READ_ONLY") => Err(StoreError::ReadOnly("the database is READ_ONLY".into())),
            _ => Ok(()),
        }
    }
}

/// Runs `work` in a transaction, committed or rolled back as it says;
/// rolled back on an error (by the server already, under `XACT_ABORT`,
/// when a statement failed).
async fn in_transaction<T>(
    conn: &mut Conn,
    work: impl AsyncFnOnce(&mut Conn) -> Result<Done<T>, StoreError>,
) -> Result<T, StoreError> {
    conn.simple_query("BEGIN TRANSACTION")
        .await?
        .into_results()
        .await?;
    let (result, end) = match work(conn).await {
        Ok(Done::Commit(value)) => (Ok(value), "COMMIT"),
        Ok(Done::Rollback(value)) => (Ok(value), "IF @@TRANCOUNT > 0 ROLLBACK"),
        Err(e) => (Err(e), "IF @@TRANCOUNT > 0 ROLLBACK"),
    };
    let ended = async { conn.simple_query(end).await?.into_results().await }.await;
    match (result, ended) {
        (Err(e), _) => Err(e),
        (Ok(_), Err(e)) => Err(e.into()),
        (Ok(value), Ok(_)) => Ok(value),
    }
}

async fn scan_rows<S: RowSink>(
    conn: &mut Conn,
    sql: &str,
    table: Table,
    sink: &mut S,
) -> Result<(), StoreError> {
    let mut stream = conn.simple_query(sql).await?.into_row_stream();
    let columns = table.columns();
    while let Some(row) = stream.try_next().await? {
        let mut fields = [Field::Int(0); MAX_COLUMNS];
        for (i, column) in columns.iter().enumerate() {
            fields[i] = match column.ty {
                ColumnType::Integer => Field::Int(int_at(&row, i)?),
                ColumnType::String => {
                    Field::Text(row.try_get::<&str, _>(i)?.unwrap_or_default().as_bytes())
                }
                ColumnType::DateTime => Field::DateTime(datetime_at(&row, i)?),
            };
        }
        sink.row(&fields[..columns.len()])?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_documented_transient_errors_are_retried() {
        use tiberius::error::Error;
        assert!(transient(&Error::Io {
            kind: std::io::ErrorKind::ConnectionReset,
            message: "reset".into()
        }));
        assert!(transient(&Error::Routing {
            host: "h".into(),
            port: 1
        }));
        assert!(!transient(&Error::Protocol("x".into())));
        for code in [
            4060, 40197, 40501, 40613, 49918, 49919, 49920, 10928, 10929, 1205,
        ] {
            assert!(TRANSIENT.contains(&code));
        }
        // Constraint violations (2627 primary key, 547 foreign key) are not.
        assert!(!TRANSIENT.contains(&2627) && !TRANSIENT.contains(&547));
    }
}
