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

mod load;
mod restore;
pub(super) mod tls;
mod upsert;

pub(super) use tls::is_keyword_form;

use super::backend::Backend;
use super::batch::{self, Done};
use super::error::Fault;
use super::reports;
use super::retry::retrying;
use super::sql::{Param, Read, SqlRow, Statement};
use super::{
    BatchRequest, Dialect, Field, FileFeed, FileLoad, IngestOutcome, LoadOutcome, LoadRecord,
    RestoreFeed, RowSink, StoreError, UndoOutcome, ddl,
};
use crate::dictionary::check::MAX_COLUMNS;
use crate::dictionary::{ColumnType, Table, datetime};
use crate::metrics::PoolStatus;
use bytes::{BufMut, BytesMut};
use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod};
use futures::TryStreamExt;
use std::time::Duration;
use tokio_postgres::IsolationLevel;
use tokio_postgres::binary_copy::BinaryCopyOutStream;
use tokio_postgres::error::SqlState;
use tokio_postgres::types::{FromSql, IsNull, ToSql, Type, to_sql_checked};

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
    /// How API batches and loads have their foreign keys checked.
    keys: KeyChecks,
}

/// How API batches and loads check foreign keys. Either way hrmig checks
/// every row against its parents first; a batch locks the parents' rows it
/// found (`FOR KEY SHARE`, the lock PostgreSQL's own check takes) until
/// the commit: no session can delete a parent, or change its id, between
/// the check and the commit, and one that tries waits, then fails on the
/// rows that reference it (the keys stay declared, and PostgreSQL checks
/// every delete of a parent).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum KeyChecks {
    /// PostgreSQL checks each row again as it is inserted, with two
    /// queries per row (its foreign-key triggers): the default, for a role
    /// without the privilege below, or with `fk_triggers=keep` in the URL.
    Triggers,
    /// A batch's insert and a load's `COPY`s skip PostgreSQL's per-row
    /// foreign-key triggers (`session_replication_role = replica` for those
    /// statements), which the parents' locks make redundant: for a role
    /// allowed to set the parameter (a superuser, or `GRANT SET ON
    /// PARAMETER session_replication_role`), detected at start-up. A table
    /// with a trigger or rule of its own (which the setting would skip as
    /// well) keeps the triggers. A load locks every row of the parents as
    /// it reads their ids.
    Locks,
}

impl KeyChecks {
    /// Whether a write to `table` skips PostgreSQL's foreign-key triggers:
    /// with [`KeyChecks::Locks`], for a table that has foreign keys (and no
    /// trigger or rule of its own, which the statement that skips them
    /// checks).
    pub(super) fn skip_triggers(self, table: Table) -> bool {
        self == KeyChecks::Locks && table.foreign_keys().next().is_some()
    }
}

/// Whether to skip the foreign-key triggers when the role may (`auto`, the
/// default) or never (`keep`): the URL's `fk_triggers`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum TriggerChoice {
    Auto,
    Keep,
}

impl PgStore {
    /// Connects and brings the schema up to date. `pool_size=N` in the
    /// URL's query sets the pool size (it is not a libpq parameter, so it is
    /// taken out before the URL is parsed); `sslmode` and `sslrootcert`
    /// are libpq's (see [`tls`]). `url` may also be a libpq keyword
    /// string (`host=… dbname=…`).
    pub(super) async fn open(url: &str) -> Result<PgStore, StoreError> {
        let (url, options) = take_options(url)?;
        let pool_size = options.pool_size;
        let (url, tls) = tls::TlsSettings::take(&url)?;
        let mut config: tokio_postgres::Config = url
            .parse()
            .map_err(|_| StoreError::BadUrl(super::redact(&url)))?;
        config.ssl_mode(tls.driver_mode());
        let connector = tls.connector()?;
        let server = tls::server_names(&config);
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(Duration::from_secs(5));
        }
        if config.get_application_name().is_none() {
            config.application_name("hrmig");
        }
        // hrmig counts the hires it inserts itself (see `store::reports`).
        let counted = format!(
            "{} {}",
            config.get_options().unwrap_or(""),
            reports::COUNTED_OPTION
        );
        config.options(counted.trim_start());
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
        let mut store = PgStore {
            pool,
            server,
            keys: KeyChecks::Triggers,
        };
        retrying!(store.migrate())?;
        if options.triggers == TriggerChoice::Auto {
            store.keys = retrying!(store.key_checks())?;
        }
        if store.keys == KeyChecks::Locks {
            tracing::info!(
                "API batches and loads skip PostgreSQL's per-row foreign-key triggers: hrmig \
                 checks and locks the parents (fk_triggers=keep in the URL keeps the triggers)"
            );
        }
        Ok(store)
    }

    /// Moves the hire-count changes committed so far into the counts (see
    /// `store::reports`), one statement in a transaction of its own, or
    /// counts the table again after another program inserted hires. A
    /// read-only session (a standby) skips it: its reports add the changes
    /// up as they read them.
    pub(super) async fn fold_counts(&self) -> Result<(), StoreError> {
        let folded = retrying!(async {
            let mut client = self.client().await?;
            let uncounted = client.prepare_cached(&reports::uncounted()).await?;
            if client.query_one(&uncounted, &[]).await?.try_get(0)? {
                let tx = (client.build_transaction())
                    .isolation_level(tokio_postgres::IsolationLevel::RepeatableRead)
                    .start()
                    .await?;
                tx.batch_execute(&reports::recount()).await?;
                tx.commit().await?;
                return Ok(0);
            }
            let stmt = client.prepare_cached(&reports::fold()).await?;
            Ok(client.execute(&stmt, &[]).await?)
        });
        match folded {
            Err(e) if e.cannot_write() => Ok(()),
            other => other.map(|_| ()),
        }
    }

    pub(super) fn skips_key_triggers(&self) -> bool {
        self.keys == KeyChecks::Locks
    }

    /// Whether this role may skip the foreign-key triggers: it tries, in a
    /// transaction it rolls back.
    async fn key_checks(&self) -> Result<KeyChecks, StoreError> {
        let mut client = self.client().await?;
        let tx = client.transaction().await?;
        let tried = tx.batch_execute(load::TRIGGERS_OFF).await;
        match tried {
            Ok(()) => Ok(KeyChecks::Locks),
            Err(e) if e.code() == Some(&SqlState::INSUFFICIENT_PRIVILEGE) => {
                Ok(KeyChecks::Triggers)
            }
            Err(e) => Err(e.into()),
        }
    }

    /// Every migration, in one transaction: a writer never sees the
    /// schema between two of them (0005 makes the count trigger's function
    /// as it was, 0006 replaces it).
    async fn migrate(&self) -> Result<(), StoreError> {
        let mut client = self.client().await?;
        // Two processes starting at once would race on `CREATE … IF NOT
        // EXISTS` (both see nothing, one fails on the catalog's unique index).
        client
            .execute("SELECT pg_advisory_lock($1)", &[&MIGRATION_LOCK])
            .await?;
        let result = async {
            let tx = client.transaction().await?;
            for (_, sql) in ddl::migrations(super::Dialect::Postgres) {
                tx.batch_execute(&sql).await?;
            }
            tx.commit().await
        }
        .await;
        client
            .execute("SELECT pg_advisory_unlock($1)", &[&MIGRATION_LOCK])
            .await?;
        Ok(result?)
    }

    async fn client(&self) -> Result<deadpool_postgres::Object, StoreError> {
        self.pool.get().await.map_err(|e| match e {
            deadpool_postgres::PoolError::Backend(e) => match tls::tls_failure(&e, &self.server) {
                Some(tls) => StoreError::Tls(tls),
                None => StoreError::from(e),
            },
            other => StoreError::Unavailable(other.to_string()),
        })
    }

    async fn ingest_once(&self, batch: &BatchRequest) -> Result<IngestOutcome, StoreError> {
        let mut client = self.client().await?;
        let tx = client.transaction().await?;
        let mut target = load::PgBatch::new(&tx, self.keys);
        match batch::apply(&mut target, Dialect::Postgres, batch).await? {
            Done::Commit(outcome) => {
                tx.commit().await?;
                Ok(outcome)
            }
            Done::Rollback(outcome) => Ok(outcome),
        }
    }
}

impl From<tokio_postgres::Error> for StoreError {
    fn from(error: tokio_postgres::Error) -> StoreError {
        let fault = Fault::of(transient(&error), cannot_write(&error));
        StoreError::Postgres { error, fault }
    }
}

/// No writes for now: insufficient resources (class 53: disk full, out of
/// memory), a system error (class 58: I/O), or a read-only transaction.
fn cannot_write(e: &tokio_postgres::Error) -> bool {
    e.code().is_some_and(|code| {
        let class = &code.code()[..2];
        class == "53" || class == "58" || *code == SqlState::READ_ONLY_SQL_TRANSACTION
    })
}

/// Whether running the transaction again may succeed: the connection was
/// lost or refused, the server is starting or stopping, or the transaction
/// lost a deadlock or serialisation conflict. Constraint violations never are.
fn transient(e: &tokio_postgres::Error) -> bool {
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

/// The parameters of a statement as the driver takes them.
pub(super) fn params(st: &Statement) -> Vec<&(dyn ToSql + Sync)> {
    st.params.iter().map(|p| p as &(dyn ToSql + Sync)).collect()
}

impl ToSql for Param {
    fn to_sql(
        &self,
        ty: &Type,
        out: &mut BytesMut,
    ) -> Result<IsNull, Box<dyn std::error::Error + Sync + Send>> {
        match self {
            Param::Text(s) => s.to_sql_checked(ty, out),
            Param::Int(n) => n.to_sql_checked(ty, out),
            Param::Time(ms) => Millis(*ms).to_sql_checked(ty, out),
        }
    }

    /// Each value checks the type when it is written (`to_sql_checked`).
    fn accepts(_: &Type) -> bool {
        true
    }

    to_sql_checked!();
}

impl SqlRow for tokio_postgres::Row {
    fn int(&self, i: usize) -> Result<i64, StoreError> {
        Ok(match *self.columns()[i].type_() {
            Type::INT2 => i64::from(self.try_get::<_, i16>(i)?),
            Type::INT4 => i64::from(self.try_get::<_, i32>(i)?),
            _ => self.try_get(i)?,
        })
    }
    fn text(&self, i: usize) -> Result<String, StoreError> {
        Ok(self.try_get(i)?)
    }
    fn opt_text(&self, i: usize) -> Result<Option<String>, StoreError> {
        Ok(self.try_get(i)?)
    }
    fn time(&self, i: usize) -> Result<String, StoreError> {
        let ms = self.try_get::<_, Millis>(i)?.0;
        if !datetime::in_range(ms) {
            return Err(StoreError::TimeOutOfRange);
        }
        Ok(datetime::format(ms))
    }
}

impl Backend for PgStore {
    async fn execute(&self, st: Statement) -> Result<u64, StoreError> {
        let params = params(&st);
        retrying!(async {
            let client = self.client().await?;
            Ok(client.execute(st.sql.as_str(), &params).await?)
        })
    }

    async fn query<T: Send + 'static>(
        &self,
        st: Statement,
        read: impl Read<T>,
    ) -> Result<Vec<T>, StoreError> {
        let params = params(&st);
        retrying!(async {
            let client = self.client().await?;
            let stmt = client.prepare_cached(&st.sql).await?;
            let rows = client.query(&stmt, &params).await?;
            rows.iter().map(|r| read(r)).collect()
        })
    }

    async fn load_file(&self, load: FileLoad, feed: FileFeed) -> Result<LoadOutcome, StoreError> {
        // A load is not retried: its rows were consumed. It commits whole or
        // not at all, and running it again is safe.
        let mut client = self.client().await?;
        let tx = client.transaction().await?;
        let mut target = load::PgLoad::new(&tx, &load, self.keys);
        match super::load::run(&mut target, Dialect::Postgres, &load, feed).await? {
            Done::Commit(outcome) => {
                target.restore_keys().await?;
                tx.commit().await?;
                Ok(outcome)
            }
            Done::Rollback(outcome) => Ok(outcome),
        }
    }

    async fn ingest(&self, mut batch: BatchRequest) -> Result<IngestOutcome, StoreError> {
        batch.collect_rest().await?;
        retrying!(self.ingest_once(&batch))
    }

    async fn scan<S: RowSink>(&self, table: Table, mut sink: S) -> Result<S, StoreError> {
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
                Dialect::Postgres.table_columns(table),
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

    async fn replace(
        &self,
        table: Table,
        source: String,
        rows: RestoreFeed,
    ) -> Result<(u64, i64), StoreError> {
        let mut client = self.client().await?;
        let tx = client.transaction().await?;
        let target = restore::PgRestore {
            tx,
            table,
            copy: None,
            tally: Default::default(),
        };
        super::restore::run(target, Dialect::Postgres, table, &source, rows).await
    }

    async fn undo(&self, entry: &LoadRecord, table: Table) -> Result<UndoOutcome, StoreError> {
        retrying!(async {
            let mut client = self.client().await?;
            let tx = client.transaction().await?;
            let mut target = load::PgBatch::new(&tx, KeyChecks::Triggers);
            match super::undo::run(&mut target, Dialect::Postgres, entry, table).await? {
                Done::Commit(outcome) => {
                    tx.commit().await?;
                    Ok(outcome)
                }
                Done::Rollback(outcome) => Ok(outcome),
            }
        })
    }
    fn pool(&self) -> PoolStatus {
        let s = self.pool.status();
        PoolStatus {
            max: s.max_size as u64,
            open: s.size as u64,
            idle: s.available as u64,
            waiting: s.waiting as u64,
        }
    }

    async fn ping(&self) -> Result<(), StoreError> {
        let client = self.client().await?;
        client.simple_query("SELECT 1").await?;
        Ok(())
    }

    /// Read-only sessions: a hot standby, or `default_transaction_read_only`.
    async fn check_writes(&self) -> Result<(), StoreError> {
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

    async fn close(&self) -> Result<(), StoreError> {
        self.pool.close();
        Ok(())
    }
}

/// hrmig's own parameters of a PostgreSQL URL.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Options {
    /// `pool_size=N`: connections per process.
    pool_size: usize,
    /// `fk_triggers=auto|keep`.
    triggers: TriggerChoice,
}

/// Splits hrmig's parameters (`pool_size`, `fk_triggers`) off the URL's
/// query: they are not libpq's, so the driver would refuse them.
fn take_options(url: &str) -> Result<(String, Options), StoreError> {
    let mut options = Options {
        pool_size: DEFAULT_POOL,
        triggers: TriggerChoice::Auto,
    };
    let Some((base, query)) = url.split_once('?') else {
        return Ok((url.to_owned(), options));
    };
    let bad = || StoreError::BadUrl(super::redact(url));
    let mut kept = Vec::new();
    for pair in query.split('&') {
        if let Some(n) = pair.strip_prefix("pool_size=") {
            options.pool_size = n.parse().ok().filter(|n| *n > 0).ok_or_else(bad)?;
        } else if let Some(choice) = pair.strip_prefix("fk_triggers=") {
            options.triggers = match choice {
                "auto" => TriggerChoice::Auto,
                "keep" => TriggerChoice::Keep,
                _ => return Err(bad()),
            };
        } else {
            kept.push(pair);
        }
    }
    let url = if kept.is_empty() {
        base.to_owned()
    } else {
        format!("{base}?{}", kept.join("&"))
    };
    Ok((url, options))
}

/// A DATETIME: UTC milliseconds, sent and read as PostgreSQL's binary
/// timestamp (microseconds since 2000-01-01).
#[derive(Debug, Clone, Copy)]
struct Millis(i64);

/// Milliseconds from 1970-01-01 to 2000-01-01.
const PG_EPOCH_MS: i64 = 946_684_800_000;

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
    Err(StoreError::time_out_of_range(table, i64::from(id), column))
}

fn pg_type(ty: ColumnType) -> Type {
    match ty {
        ColumnType::Integer => Type::INT4,
        ColumnType::String => Type::VARCHAR,
        ColumnType::DateTime => Type::TIMESTAMPTZ,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hrmig_options_are_taken_out_of_the_url() {
        let (url, o) =
            take_options("postgres://u@h/db?pool_size=4&sslmode=disable&fk_triggers=keep").unwrap();
        assert_eq!(url, "postgres://u@h/db?sslmode=disable");
        assert_eq!((o.pool_size, o.triggers), (4, TriggerChoice::Keep));
        let (url, o) = take_options("postgres://u@h/db").unwrap();
        assert_eq!(url, "postgres://u@h/db");
        assert_eq!(
            (o.pool_size, o.triggers),
            (DEFAULT_POOL, TriggerChoice::Auto)
        );
        let (_, o) = take_options("postgres://u@h/db?fk_triggers=auto").unwrap();
        assert_eq!(o.triggers, TriggerChoice::Auto);
        for bad in [
            "pool_size=0",
            "pool_size=x",
            "fk_triggers=off",
            "fk_triggers=",
        ] {
            assert!(
                take_options(&format!("postgres://u@h/db?{bad}")).is_err(),
                "{bad}"
            );
        }
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
