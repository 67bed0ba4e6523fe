//! Azure SQL Database / SQL Server backend, through tiberius.
//!
//! The same design as the PostgreSQL backend, in T-SQL: a batch's ids and
//! parents are looked up with one query each (`OPENJSON` of an id list,
//! so no parameter limit applies), rows go in with multi-row parameterised
//! `INSERT`s that stay under SQL Server's 2100 parameters per request, and
//! an `INSERT … OUTPUT inserted.id … WHERE NOT EXISTS (… WITH (UPDLOCK,
//! HOLDLOCK))` settles races with other writers. Connections come from a
//! bb8 pool whose manager follows Azure's redirect to the database's node.

use super::checks::{
    BatchKnown, IdBitmap, LoadKnown, Sorted, ints, judge, outcome, rejection_record,
};
use super::jobs::{JobParam, JobRecord, JobStatement};
use super::retry::retrying;
use super::{
    Candidate, DepartmentHires, Feed, FeedSummary, Field, FileLoad, FileLoadOutcome, Idempotency,
    IngestOutcome, LoadRecord, Pieces, QuarterRow, Rejection, RejectionFilter, Render, Replacement,
    RowSink, StoreError, TableBatch, TableOutcome, ddl,
};
use super::{ado, entra};
use crate::dictionary::check::MAX_COLUMNS;
use crate::dictionary::{ColumnType, FieldError, Row, Table, Value, datetime};
use azure_core::credentials::Secret;
use futures::TryStreamExt;
use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;
use tiberius::{Client, ColumnData, Config, EncryptionLevel, ToSql};
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio_util::compat::{Compat, TokioAsyncWriteCompatExt};

type Conn = Client<Compat<TcpStream>>;
type Pooled<'a> = bb8::PooledConnection<'a, Manager>;

/// The longest wait for the server to accept a TCP connection.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Connections per process unless the URL says otherwise: an Azure SQL
/// Basic database allows 30 concurrent workers for every instance together.
const DEFAULT_POOL: u32 = 10;
/// Parameters one request may carry: SQL Server's limit is 2100, and
/// `sp_executesql` takes two of them for the statement and its declaration.
pub(super) const MAX_PARAMS: usize = 2098;
/// Rows one `INSERT … VALUES` may list.
const MAX_VALUES_ROWS: usize = 1000;

/// Error numbers after which the whole transaction may run again:
/// Azure SQL's documented transient errors, a deadlock victim (1205), and
/// connections cut by the network or the server.
const TRANSIENT: [u32; 16] = [
    4060, 40197, 40501, 40613, 49918, 49919, 49920, 10928, 10929, 1205, 233, 64, 10053, 10054,
    10060, 40143,
];

pub struct MssqlStore {
    pool: bb8::Pool<Manager>,
    /// Loads use the bulk-copy protocol (`bulk=false` in the URL: multi-row
    /// `INSERT`s instead). Switched off for good when a bulk copy fails.
    bulk: AtomicBool,
}

/// Makes connections for the pool, following Azure's redirect; with an
/// Entra ID login, asks for a token before each one.
pub(super) struct Manager {
    config: Config,
    tokens: Option<Arc<entra::TokenSource>>,
}

/// Why the pool could not open a connection.
#[derive(Debug, thiserror::Error)]
pub(super) enum ConnectError {
    /// SQL Server refused or could not be reached.
    #[error(transparent)]
    Sql(#[from] tiberius::error::Error),
    /// No token for the Entra ID login; no connection was tried.
    #[error(transparent)]
    Token(#[from] entra::EntraError),
}

impl From<ConnectError> for StoreError {
    fn from(e: ConnectError) -> StoreError {
        match e {
            ConnectError::Sql(e) => StoreError::Mssql(e),
            ConnectError::Token(e) => StoreError::Entra(e),
        }
    }
}

/// The configuration of one login: `base` with the token. The token is
/// asked for per connection (from the credential's cache), so that a
/// connection opened hours after start-up logs in with a fresh one.
fn login_config(base: &Config, token: &Secret) -> Config {
    let mut config = base.clone();
    config.authentication(tiberius::AuthMethod::aad_token(token.secret()));
    config
}

impl bb8::ManageConnection for Manager {
    type Connection = Conn;
    type Error = ConnectError;

    async fn connect(&self) -> Result<Conn, ConnectError> {
        let config = match &self.tokens {
            Some(tokens) => login_config(&self.config, &tokens.token().await?),
            None => self.config.clone(),
        };
        let mut conn = connect(config).await?;
        // An error inside a transaction rolls it back at once, so that no
        // connection goes back to the pool with half a transaction open.
        conn.simple_query("SET XACT_ABORT ON")
            .await?
            .into_results()
            .await?;
        Ok(conn)
    }

    async fn is_valid(&self, conn: &mut Conn) -> Result<(), ConnectError> {
        let open = conn
            .simple_query("SELECT @@TRANCOUNT")
            .await?
            .into_row()
            .await?
            .and_then(|r| r.get::<i32, _>(0))
            .unwrap_or(0);
        if open == 0 {
            Ok(())
        } else {
            Err(tiberius::error::Error::Protocol("a transaction was left open".into()).into())
        }
    }

    fn has_broken(&self, _: &mut Conn) -> bool {
        false
    }
}

/// Logs why the pool could not open a connection: bb8 retries until its
/// timeout and then reports only the timeout, so the cause (a refused
/// login, a token the identity endpoint would not give) goes to the log.
#[derive(Debug, Clone, Copy)]
struct LogConnectErrors;

impl bb8::ErrorSink<ConnectError> for LogConnectErrors {
    fn sink(&self, e: ConnectError) {
        tracing::warn!(error = %e, "cannot open a database connection");
    }

    fn boxed_clone(&self) -> Box<dyn bb8::ErrorSink<ConnectError>> {
        Box::new(*self)
    }
}

/// Connects, following up to three redirects: inside Azure, a server in
/// the Redirect policy answers the login with the address of the node
/// that holds the database (`Error::Routing`).
async fn connect(mut config: Config) -> Result<Conn, tiberius::error::Error> {
    for _ in 0..3 {
        // An address that drops packets would otherwise hold the connect
        // for the operating system's SYN timeout (minutes).
        let tcp = tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(config.get_addr()))
            .await
            .map_err(|_| {
                std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    format!(
                        "no answer from {} within {CONNECT_TIMEOUT:?}",
                        config.get_addr()
                    ),
                )
            })??;
        tcp.set_nodelay(true)?;
        match Client::connect(config.clone(), tcp.compat_write()).await {
            Err(tiberius::error::Error::Routing { host, port }) => {
                config.host(&host);
                config.port(port);
            }
            other => return other,
        }
    }
    Err(tiberius::error::Error::Protocol(
        "the server redirected the connection more than three times".into(),
    ))
}

/// Whether a URL names SQL Server: `mssql://`, `sqlserver://`, or an
/// ADO.NET connection string (`Server=…;Database=…;…`).
pub fn is_mssql_url(url: &str) -> bool {
    let lower = url.trim_start().to_ascii_lowercase();
    lower.starts_with("mssql://")
        || lower.starts_with("sqlserver://")
        || ((lower.starts_with("server=") || lower.starts_with("data source="))
            && lower.contains(';'))
}

/// What a database URL says: the connection, the pool size, whether loads
/// use bulk copy, and an Entra ID login if it asks for one.
pub(super) struct Target {
    pub config: Config,
    pub pool: u32,
    pub bulk: bool,
    pub login: Option<entra::Login>,
}

/// The ADO.NET keywords of the user and password (as tiberius reads them).
const ADO_USER: [&str; 4] = ["user id", "uid", "user", "username"];
const ADO_PASSWORD: [&str; 2] = ["password", "pwd"];

/// The tiberius configuration, pool size and login of a URL.
///
/// `mssql://USER:PASSWORD@HOST[:PORT]/DATABASE?encrypt=true|false|strict&
/// trust_server_certificate=true&pool_size=N&application_name=…&bulk=false&
/// authentication=…&user_id=…&tenant_id=…`, or an ADO.NET string as the
/// Azure portal shows it (`Max Pool Size` sets the pool there,
/// `Authentication=Active Directory …` an Entra ID login). Encryption is
/// required unless the URL says otherwise.
pub(super) fn parse_url(url: &str) -> Result<Target, StoreError> {
    let lower = url.to_ascii_lowercase();
    if lower.starts_with("mssql://") || lower.starts_with("sqlserver://") {
        parse_mssql_url(url)
    } else {
        parse_ado(url)
    }
}

fn parse_ado(url: &str) -> Result<Target, StoreError> {
    let bad = || StoreError::BadUrl(super::redact(url));
    let pairs = ado::pairs(url);
    let value = |keys: &[&str]| {
        pairs
            .iter()
            .rev()
            .find(|p| keys.contains(&p.key.as_str()))
            .map(|p| p.value.clone())
            .filter(|v| !v.is_empty())
    };
    let mut pool = DEFAULT_POOL;
    if let Some(v) = value(&["max pool size"]) {
        pool = v.parse().ok().filter(|n| *n > 0).ok_or_else(bad)?;
    }
    let method = match value(&["authentication"]) {
        Some(v) => entra::Method::from_ado(&v)?,
        None => None,
    };
    let login = match method {
        None => None,
        Some(method) => Some(login(
            method,
            value(&ADO_USER),
            value(&ADO_PASSWORD).map(Secret::new),
            value(&["tenant id"]),
        )?),
    };
    if login.is_none() && value(&["tenant id"]).is_some() {
        return Err(tenant_without_entra());
    }
    // tiberius reads User ID and Password as a SQL login; an Entra ID login
    // keeps them (client id and secret) away from it.
    let entra = login.is_some();
    let rest = ado::without(url, |k| {
        k == "authentication"
            || k == "tenant id"
            || (entra && (ADO_USER.contains(&k) || ADO_PASSWORD.contains(&k)))
    });
    let config = Config::from_ado_string(&rest).map_err(|_| bad())?;
    Ok(Target {
        config,
        pool,
        bulk: true,
        login,
    })
}

/// An Entra ID login; a password only goes with a service principal.
fn login(
    method: entra::Method,
    user_id: Option<String>,
    secret: Option<Secret>,
    tenant: Option<String>,
) -> Result<entra::Login, StoreError> {
    if secret.is_some() && method != entra::Method::ServicePrincipal {
        return Err(entra::EntraError::Setting {
            credential: "Entra ID login",
            problem: "a password is only used with Active Directory Service Principal \
                      (service_principal): remove it"
                .into(),
        }
        .into());
    }
    Ok(entra::Login {
        method,
        user_id,
        secret,
        tenant,
    })
}

fn tenant_without_entra() -> StoreError {
    entra::EntraError::Setting {
        credential: "SQL login",
        problem: "a tenant or user_id only goes with an Entra ID login (Authentication=Active \
                  Directory …, authentication= in a URL)"
            .into(),
    }
    .into()
}

fn parse_mssql_url(url: &str) -> Result<Target, StoreError> {
    let bad = || StoreError::BadUrl(super::redact(url));
    let parsed = url::Url::parse(url).map_err(|_| bad())?;
    let mut config = Config::new();
    config.host(parsed.host_str().ok_or_else(bad)?);
    config.port(parsed.port().unwrap_or(1433));
    let database = parsed.path().trim_start_matches('/');
    if !database.is_empty() {
        config.database(decode(database));
    }
    config.application_name("hrmig");
    config.encryption(EncryptionLevel::Required);
    let mut pool = DEFAULT_POOL;
    let mut bulk = true;
    let mut method = None;
    let mut user_id = Some(decode(parsed.username())).filter(|u| !u.is_empty());
    let mut tenant = None;
    for (k, v) in parsed.query_pairs() {
        match k.as_ref() {
            "encrypt" => config.encryption(match v.as_ref() {
                "true" => EncryptionLevel::Required,
                "strict" => EncryptionLevel::Strict,
                "false" => EncryptionLevel::Off,
                "DANGER_PLAINTEXT" => EncryptionLevel::NotSupported,
                _ => return Err(bad()),
            }),
            "trust_server_certificate" if v == "true" => config.trust_cert(),
            "trust_server_certificate" if v == "false" => {}
            "pool_size" => pool = v.parse().ok().filter(|n| *n > 0).ok_or_else(bad)?,
            "application_name" => config.application_name(v),
            "bulk" if v == "true" || v == "false" => bulk = v == "true",
            "authentication" => method = Some(entra::Method::from_url(&v)?),
            "user_id" if !v.is_empty() => user_id = Some(v.into_owned()),
            "tenant_id" if !v.is_empty() => tenant = Some(v.into_owned()),
            _ => return Err(bad()),
        }
    }
    let password = parsed.password().map(decode);
    let method = method.flatten();
    if method.is_none() && (tenant.is_some() || parsed.query_pairs().any(|(k, _)| k == "user_id")) {
        return Err(tenant_without_entra());
    }
    let login = match method {
        Some(method) => Some(login(method, user_id, password.map(Secret::new), tenant)?),
        None => {
            if let Some(user) = user_id {
                config.authentication(tiberius::AuthMethod::sql_server(
                    user,
                    password.unwrap_or_default(),
                ));
            }
            None
        }
    };
    Ok(Target {
        config,
        pool,
        bulk,
        login,
    })
}

/// A percent-decoded URL part (user names and passwords may hold
/// reserved characters).
fn decode(s: &str) -> String {
    percent_encoding::percent_decode_str(s)
        .decode_utf8_lossy()
        .into_owned()
}

/// Whether running the transaction again may succeed (see [`TRANSIENT`]).
/// Server errors that mean "no writes for now": the database is read-only
/// (3906), a filegroup or the log is full (1105, 9002), or an Azure SQL
/// database reached its size quota (40544).
const CANNOT_WRITE: [u32; 4] = [3906, 1105, 9002, 40544];

/// See [`StoreError::cannot_write`].
pub(super) fn cannot_write(e: &tiberius::error::Error) -> bool {
    matches!(e, tiberius::error::Error::Server(t) if CANNOT_WRITE.contains(&t.code()))
}

pub(super) fn transient(e: &tiberius::error::Error) -> bool {
    match e {
        tiberius::error::Error::Io { .. } | tiberius::error::Error::Routing { .. } => true,
        tiberius::error::Error::Server(t) => TRANSIENT.contains(&t.code()),
        _ => false,
    }
}

fn pool_error(e: bb8::RunError<ConnectError>) -> StoreError {
    match e {
        bb8::RunError::User(e) => e.into(),
        bb8::RunError::TimedOut => {
            StoreError::Unavailable("no database connection within the timeout".into())
        }
    }
}

/// Quotes an identifier from the dictionary or the bookkeeping tables.
fn q(ident: &str) -> String {
    super::Dialect::Mssql.quote(ident)
}

fn column_list(table: Table) -> String {
    let names: Vec<String> = table.columns().iter().map(|c| q(c.name)).collect();
    names.join(", ")
}

/// Rows one multi-row statement of `width` columns may carry.
pub(super) fn rows_per_statement(width: usize) -> usize {
    (MAX_PARAMS / width.max(1)).min(MAX_VALUES_ROWS)
}

/// `(@P1, @P2), (@P3, @P4)…`: `rows` tuples of `width` placeholders,
/// numbered from `@P{first}`.
pub(super) fn values(rows: usize, width: usize, first: usize) -> String {
    let tuples: Vec<String> = (0..rows)
        .map(|r| {
            let marks: Vec<String> = (0..width)
                .map(|c| format!("@P{}", first + r * width + c))
                .collect();
            format!("({})", marks.join(", "))
        })
        .collect();
    tuples.join(", ")
}

/// A plain multi-row insert of `rows` rows of `table` into `target` (the
/// table itself, or a restore's staging table).
pub(super) fn insert_sql(target: &str, table: Table, rows: usize) -> String {
    format!(
        "INSERT INTO {} ({}) VALUES {}",
        target,
        column_list(table),
        values(rows, table.columns().len(), 1)
    )
}

/// An insert that skips ids already in the table and returns the ids it
/// inserted. `UPDLOCK, HOLDLOCK` keep the checked key range locked until
/// the commit, so a concurrent writer of the same id waits, then skips it.
pub(super) fn conflict_insert_sql(table: Table, rows: usize) -> String {
    let cols = column_list(table);
    let from_values: Vec<String> = table
        .columns()
        .iter()
        .map(|c| format!("v.{}", q(c.name)))
        .collect();
    format!(
        "INSERT INTO {t} ({cols}) OUTPUT inserted.{id}
         SELECT {from} FROM (VALUES {vals}) AS v ({cols})
         WHERE NOT EXISTS (SELECT 1 FROM {t} WITH (UPDLOCK, HOLDLOCK) WHERE {t}.{id} = v.{id})",
        t = q(table.name()),
        id = q("id"),
        from = from_values.join(", "),
        vals = values(rows, table.columns().len(), 1),
    )
}

/// The ids of `table` among a JSON array of ids (`@P1`): one parameter,
/// whatever the number of ids.
pub(super) fn existing_sql(table: Table) -> String {
    format!(
        "SELECT {id} FROM {t} WHERE {id} IN (SELECT CAST([value] AS INT) FROM OPENJSON(@P1))",
        id = q("id"),
        t = q(table.name())
    )
}

/// Inserts `rows` rejections (table, source, position, raw, errors, time).
pub(super) fn rejection_insert_sql(rows: usize) -> String {
    format!(
        "INSERT INTO {} ([table_name], [source], [position], [raw], [errors], [rejected_at]) VALUES {}",
        q(ddl::REJECTIONS),
        values(rows, 6, 1)
    )
}

/// The temporary table a restore of a referenced table is staged in.
pub(super) const STAGE: &str = "#hrmig_restore";

/// Creates [`STAGE`] with `table`'s columns and primary key, so a repeated
/// id in a backup is refused as it is staged.
pub(super) fn stage_sql(table: Table) -> String {
    let cols: Vec<String> = table
        .columns()
        .iter()
        .enumerate()
        .map(|(i, c)| {
            let key = if i == Table::PRIMARY_KEY {
                " PRIMARY KEY"
            } else {
                ""
            };
            let ty = ddl::column_type(super::Dialect::Mssql, c.ty);
            format!("{} {ty} NOT NULL{key}", q(c.name))
        })
        .collect();
    format!("CREATE TABLE {STAGE} ({})", cols.join(", "))
}

/// Makes `table` hold exactly the rows of [`STAGE`] with every foreign key
/// left on: the rows not staged are deleted, the others updated in place,
/// the new ones inserted. (Switching the children's keys off with `NOCHECK`
/// would be shorter, but not every TDS server has it, and a key switched
/// off is one more thing a failure could leave behind.)
pub(super) fn apply_stage_sql(table: Table) -> [String; 3] {
    let t = q(table.name());
    let id = q("id");
    let sets: Vec<String> = table
        .columns()
        .iter()
        .enumerate()
        .filter(|(i, _)| *i != Table::PRIMARY_KEY)
        .map(|(_, c)| format!("{n} = s.{n}", n = q(c.name)))
        .collect();
    let from: Vec<String> = table
        .columns()
        .iter()
        .map(|c| format!("s.{}", q(c.name)))
        .collect();
    [
        format!(
            "DELETE FROM {t} WHERE NOT EXISTS (SELECT 1 FROM {STAGE} s WHERE s.{id} = {t}.{id})"
        ),
        format!(
            "UPDATE {t} SET {} FROM {t} JOIN {STAGE} s ON s.{id} = {t}.{id}",
            sets.join(", ")
        ),
        format!(
            "INSERT INTO {t} ({}) SELECT {} FROM {STAGE} s \
             WHERE NOT EXISTS (SELECT 1 FROM {t} WHERE {t}.{id} = s.{id})",
            column_list(table),
            from.join(", ")
        ),
    ]
}

/// Rows of `child` whose `column` names no row of `parent` (a table name,
/// quoted, or [`STAGE`]): how many, and one example.
pub(super) fn orphans_sql(child: Table, column: &str, parent: &str) -> String {
    format!(
        "SELECT COUNT_BIG(*), MIN(c.{col}) FROM {child} c WHERE NOT EXISTS \
         (SELECT 1 FROM {parent} p WHERE p.[id] = c.{col})",
        col = q(column),
        child = q(child.name()),
    )
}

/// The rejection log, filtered by [`rejection_filter`]'s parameters: an
/// empty table or source means any.
pub(super) fn rejections_sql() -> String {
    format!(
        "SELECT TOP (@P4) [id], [table_name], [source], [position], [raw], [errors], [rejected_at]
         FROM {} WHERE (@P1 = N'' OR [table_name] = @P1) AND (@P2 = N'' OR [source] = @P2)
           AND [id] > @P3 ORDER BY [id]",
        q(ddl::REJECTIONS)
    )
}

/// The parameters of [`rejections_sql`]. No filter is an empty string, not a
/// NULL: tiberius sends a `None` string as the untyped TDS NULLTYPE (0x1F),
/// which SQL Server accepts and other TDS servers refuse (Babelfish: error
/// 8009, "Data type 0x1F is unknown").
fn rejection_filter(filter: &RejectionFilter) -> Vec<Box<dyn ToSql + '_>> {
    vec![
        Box::new(filter.table.map_or("", Table::name)),
        Box::new(filter.source.as_deref().unwrap_or("")),
        Box::new(filter.after.unwrap_or(0)),
        Box::new(i64::from(filter.limit)),
    ]
}

/// Hires per department and job by quarter for one year; `BIN2` orders by
/// code point, as SQLite and PostgreSQL's `"C"` do.
pub(super) const REPORT_HIRES_BY_QUARTER: &str = "
SELECT [department], [job], CAST([q1] AS BIGINT), CAST([q2] AS BIGINT),
       CAST([q3] AS BIGINT), CAST([q4] AS BIGINT)
FROM [gold_hires_by_quarter]
WHERE [year] = @P1
ORDER BY [department] COLLATE Latin1_General_100_BIN2, [job] COLLATE Latin1_General_100_BIN2,
         [department_id], [job_id]";

/// Departments above the mean of the year; the mean is taken over floats
/// (T-SQL's `AVG` of integers truncates).
pub(super) const REPORT_ABOVE_MEAN: &str = "
WITH hires AS (
    SELECT d.[id], d.[department], COALESCE(g.[hired], 0) AS [hired]
    FROM [departments] d
    LEFT JOIN [gold_department_hires] g ON g.[id] = d.[id] AND g.[year] = @P1
)
SELECT [id], [department], CAST([hired] AS BIGINT) FROM hires
WHERE [hired] > (SELECT AVG(CAST([hired] AS FLOAT)) FROM hires)
ORDER BY [hired] DESC, [id]";

/// A DATETIME2(3) value from UTC milliseconds.
struct Dt2(i64);

/// Milliseconds in a day.
const DAY_MS: i64 = 86_400_000;

impl ToSql for Dt2 {
    fn to_sql(&self) -> ColumnData<'_> {
        datetime2(self.0)
    }
}

/// The DATETIME2(3) value of UTC milliseconds: days since 0001-01-01 and
/// milliseconds of the day.
fn datetime2(ms: i64) -> ColumnData<'static> {
    let since = ms - datetime::MIN_MS;
    let date = tiberius::time::Date::new(since.div_euclid(DAY_MS) as u32);
    let time = tiberius::time::Time::new(since.rem_euclid(DAY_MS) as u64, 3);
    ColumnData::DateTime2(Some(tiberius::time::DateTime2::new(date, time)))
}

/// UTC milliseconds of a DATETIME2 value.
fn millis(data: &ColumnData<'_>) -> Option<i64> {
    match data {
        ColumnData::DateTime2(Some(dt)) => {
            let scale = u32::from(dt.time().scale());
            let per_ms = 10u64.checked_pow(scale.checked_sub(3)?)?;
            let ms_of_day = dt.time().increments() / per_ms;
            Some(datetime::MIN_MS + i64::from(dt.date().days()) * DAY_MS + ms_of_day as i64)
        }
        _ => None,
    }
}

fn datetime_at(row: &tiberius::Row, i: usize) -> Result<i64, StoreError> {
    millis(row.get_column_data(i)?)
        .ok_or_else(|| StoreError::Task(format!("column {i} is not a DATETIME2(3)")))
}

fn text_at(row: &tiberius::Row, i: usize) -> Result<String, StoreError> {
    Ok(row.try_get::<&str, _>(i)?.unwrap_or_default().to_owned())
}

fn int_at<T: for<'a> tiberius::FromSql<'a>>(
    row: &tiberius::Row,
    i: usize,
) -> Result<T, StoreError> {
    row.try_get::<T, _>(i)?
        .ok_or_else(|| StoreError::Task(format!("column {i} is NULL")))
}

/// A value of a dictionary row, as a parameter.
fn param(v: &Value) -> Box<dyn ToSql + '_> {
    match v {
        Value::Int(n) => Box::new(*n),
        Value::Text(s) => Box::new(s.as_str()),
        Value::DateTime(ms) => Box::new(Dt2(*ms)),
    }
}

/// Job parameters as the driver takes them (none is NULL).
fn job_params(params: &[JobParam]) -> Vec<Box<dyn ToSql + '_>> {
    params
        .iter()
        .map(|p| -> Box<dyn ToSql + '_> {
            match p {
                JobParam::Text(s) => Box::new(s.as_str()),
                JobParam::Int(n) => Box::new(*n),
            }
        })
        .collect()
}

/// Runs one statement with boxed parameters and returns its rows.
async fn rows_of(
    conn: &mut Conn,
    sql: &str,
    params: &[Box<dyn ToSql + '_>],
) -> Result<Vec<tiberius::Row>, StoreError> {
    let refs: Vec<&dyn ToSql> = params.iter().map(|p| &**p as &dyn ToSql).collect();
    Ok(conn.query(sql, &refs).await?.into_first_result().await?)
}

impl MssqlStore {
    /// Opens the pool and brings the schema up to date. With an Entra ID
    /// login, the first token is asked for before any connection, so that a
    /// credential that cannot give one fails here, naming itself.
    pub async fn open(url: &str) -> Result<MssqlStore, StoreError> {
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

    pub fn writer_idle(&self) -> bool {
        false
    }

    pub async fn already_loaded(&self, table: Table, sha256: &str) -> Result<bool, StoreError> {
        retrying!(async {
            let mut conn = self.conn().await?;
            history_has(&mut conn, table, sha256).await
        })
    }

    pub async fn load_file(
        &self,
        load: FileLoad,
        mut feed: mpsc::Receiver<Feed>,
    ) -> Result<FileLoadOutcome, StoreError> {
        let mut conn = self.conn().await?;
        let bulk = self.bulk.load(Ordering::Relaxed);
        let result = in_transaction(&mut conn, async |c| {
            load_file_tx(c, bulk, &load, &mut feed).await
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

    pub async fn record_aborted(
        &self,
        load: &FileLoad,
        summary: &FeedSummary,
        rejected: u64,
        message: &str,
    ) -> Result<(), StoreError> {
        retrying!(async {
            let mut conn = self.conn().await?;
            insert_history(
                &mut conn,
                load,
                summary,
                "aborted",
                0,
                rejected,
                Some(message),
            )
            .await
        })
    }

    pub async fn rejections(&self, filter: RejectionFilter) -> Result<Vec<Rejection>, StoreError> {
        retrying!(async {
            let mut conn = self.conn().await?;
            rows_of(&mut conn, &rejections_sql(), &rejection_filter(&filter))
                .await?
                .iter()
                .map(|r| {
                    Ok(Rejection {
                        id: int_at(r, 0)?,
                        table: text_at(r, 1)?,
                        source: text_at(r, 2)?,
                        position: int_at(r, 3)?,
                        raw: text_at(r, 4)?,
                        errors: serde_json::from_str(&text_at(r, 5)?).unwrap_or_default(),
                        rejected_at: datetime::format(datetime_at(r, 6)?),
                    })
                })
                .collect()
        })
    }

    /// Runs a job statement; the rows it changed.
    pub async fn job_exec(&self, (sql, params): JobStatement) -> Result<u64, StoreError> {
        retrying!(async {
            let mut conn = self.conn().await?;
            let params = job_params(&params);
            let refs: Vec<&dyn ToSql> = params.iter().map(|p| &**p as &dyn ToSql).collect();
            Ok(conn.execute(sql.as_str(), &refs).await?.total())
        })
    }

    /// Runs a job query; its first row.
    pub async fn job_query(
        &self,
        (sql, params): JobStatement,
    ) -> Result<Option<JobRecord>, StoreError> {
        retrying!(async {
            let mut conn = self.conn().await?;
            let rows = rows_of(&mut conn, &sql, &job_params(&params)).await?;
            let Some(r) = rows.first() else {
                return Ok(None);
            };
            Ok(Some(JobRecord {
                id: text_at(r, 0)?,
                status: text_at(r, 1)?,
                request: text_at(r, 2)?,
                tables: text_at(r, 3)?,
                progress: text_at(r, 4)?,
                error: r.try_get::<&str, _>(5)?.map(str::to_owned),
                created_ms: int_at(r, 6)?,
                heartbeat_ms: int_at(r, 7)?,
            }))
        })
    }

    pub async fn loads(&self, limit: u32) -> Result<Vec<LoadRecord>, StoreError> {
        retrying!(async {
            let mut conn = self.conn().await?;
            let sql = format!(
                "SELECT TOP (@P1) [id], [table_name], [source], [sha256], [status], [rows_read],
                    [inserted], [rejected], [blank], [message], [started_at], [finished_at]
             FROM {} ORDER BY [id] DESC",
                q(ddl::LOADS)
            );
            let params: Vec<Box<dyn ToSql>> = vec![Box::new(i64::from(limit))];
            rows_of(&mut conn, &sql, &params)
                .await?
                .iter()
                .map(|r| {
                    Ok(LoadRecord {
                        id: int_at(r, 0)?,
                        table: text_at(r, 1)?,
                        source: text_at(r, 2)?,
                        sha256: text_at(r, 3)?,
                        status: text_at(r, 4)?,
                        rows_read: int_at(r, 5)?,
                        inserted: int_at(r, 6)?,
                        rejected: int_at(r, 7)?,
                        blank: int_at(r, 8)?,
                        message: r.try_get::<&str, _>(9)?.map(str::to_owned),
                        started_at: datetime::format(datetime_at(r, 10)?),
                        finished_at: datetime::format(datetime_at(r, 11)?),
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
        retrying!(async {
            let mut conn = self.conn().await?;
            in_transaction(&mut conn, async |c| {
                ingest_tx(c, &source, &tables, idempotency.as_ref(), &render).await
            })
            .await
        })
    }

    pub async fn scan<S: RowSink>(&self, table: Table, mut sink: S) -> Result<S, StoreError> {
        let mut conn = self.conn().await?;
        let sql = format!(
            "SELECT {} FROM {} ORDER BY [id]",
            column_list(table),
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
                column_list(table),
                q(table.name())
            );
            scan_rows(&mut conn, &locked, table, &mut sink).await
        };
        result.map(|()| sink)
    }

    pub async fn replace(
        &self,
        table: Table,
        rows: std::sync::mpsc::Receiver<Replacement>,
    ) -> Result<u64, StoreError> {
        let mut rx = super::bridge(rows)?;
        let mut conn = self.conn().await?;
        in_transaction(&mut conn, async |c| replace_tx(c, table, &mut rx).await).await
    }

    pub async fn rows(
        &self,
        table: Table,
        after_id: i64,
        limit: u32,
    ) -> Result<Vec<serde_json::Map<String, serde_json::Value>>, StoreError> {
        retrying!(async {
            let mut conn = self.conn().await?;
            let sql = format!(
                "SELECT TOP (@P2) {} FROM {} WHERE [id] > @P1 ORDER BY [id]",
                column_list(table),
                q(table.name())
            );
            let params: Vec<Box<dyn ToSql>> = vec![Box::new(after_id), Box::new(i64::from(limit))];
            rows_of(&mut conn, &sql, &params)
                .await?
                .iter()
                .map(|r| {
                    let mut obj = serde_json::Map::new();
                    for (i, col) in table.columns().iter().enumerate() {
                        let v = match col.ty {
                            ColumnType::Integer => serde_json::Value::from(int_at::<i32>(r, i)?),
                            ColumnType::String => serde_json::Value::from(text_at(r, i)?),
                            ColumnType::DateTime => {
                                serde_json::Value::from(datetime::format(datetime_at(r, i)?))
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
            let mut conn = self.conn().await?;
            let params: Vec<Box<dyn ToSql>> = vec![Box::new(year)];
            rows_of(&mut conn, REPORT_HIRES_BY_QUARTER, &params)
                .await?
                .iter()
                .map(|r| {
                    Ok(QuarterRow {
                        department: text_at(r, 0)?,
                        job: text_at(r, 1)?,
                        q1: int_at(r, 2)?,
                        q2: int_at(r, 3)?,
                        q3: int_at(r, 4)?,
                        q4: int_at(r, 5)?,
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
            let mut conn = self.conn().await?;
            let params: Vec<Box<dyn ToSql>> = vec![Box::new(year)];
            rows_of(&mut conn, REPORT_ABOVE_MEAN, &params)
                .await?
                .iter()
                .map(|r| {
                    Ok(DepartmentHires {
                        id: i64::from(int_at::<i32>(r, 0)?),
                        department: text_at(r, 1)?,
                        hired: int_at(r, 2)?,
                    })
                })
                .collect()
        })
    }

    pub async fn ping(&self) -> Result<(), StoreError> {
        let mut conn = self.conn().await?;
        conn.simple_query("SELECT 1").await?.into_results().await?;
        Ok(())
    }

    /// A database set `READ_ONLY` (or an Azure SQL geo-secondary).
    pub async fn check_writes(&self) -> Result<(), StoreError> {
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

    pub async fn close(&self) -> Result<(), StoreError> {
        Ok(())
    }

    pub async fn count(&self, table: Table) -> Result<u64, StoreError> {
        retrying!(async {
            let mut conn = self.conn().await?;
            let row = conn
                .simple_query(format!("SELECT COUNT_BIG(*) FROM {}", q(table.name())))
                .await?
                .into_row()
                .await?;
            let n = row.and_then(|r| r.get::<i64, _>(0)).unwrap_or(0);
            Ok(n as u64)
        })
    }
}

/// How a transaction's work ended: keep its writes or not.
enum Done<T> {
    Commit(T),
    Rollback(T),
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

async fn history_has(conn: &mut Conn, table: Table, sha256: &str) -> Result<bool, StoreError> {
    let sql = format!(
        "SELECT TOP 1 1 FROM {} WHERE [table_name] = @P1 AND [sha256] = @P2 AND [status] = N'loaded'",
        q(ddl::LOADS)
    );
    let params: Vec<Box<dyn ToSql>> = vec![Box::new(table.name()), Box::new(sha256)];
    Ok(!rows_of(conn, &sql, &params).await?.is_empty())
}

async fn insert_history(
    conn: &mut Conn,
    load: &FileLoad,
    summary: &FeedSummary,
    status: &str,
    inserted: u64,
    rejected: u64,
    message: Option<&str>,
) -> Result<(), StoreError> {
    let started =
        datetime::parse(&load.started_at).unwrap_or_else(|_| chrono::Utc::now().timestamp_millis());
    // No message is an empty string turned into NULL by the server: an
    // untyped NULL parameter is refused by some TDS servers (see
    // `rejection_filter`).
    let sql = format!(
        "INSERT INTO {} ([table_name], [source], [sha256], [status], [rows_read], [inserted],
                         [rejected], [blank], [message], [started_at], [finished_at])
         VALUES (@P1, @P2, @P3, @P4, @P5, @P6, @P7, @P8, NULLIF(@P9, N''), @P10, @P11)",
        q(ddl::LOADS)
    );
    let params = history_params(load, summary, status, inserted, rejected, message, started);
    rows_of(conn, &sql, &params).await?;
    Ok(())
}

/// The parameters of a load history entry, none of them NULL.
fn history_params<'a>(
    load: &'a FileLoad,
    summary: &'a FeedSummary,
    status: &'a str,
    inserted: u64,
    rejected: u64,
    message: Option<&'a str>,
    started: i64,
) -> Vec<Box<dyn ToSql + 'a>> {
    vec![
        Box::new(load.table.name()),
        Box::new(load.source.as_str()),
        Box::new(summary.sha256.as_str()),
        Box::new(status),
        Box::new(summary.rows_read as i64),
        Box::new(inserted as i64),
        Box::new(rejected as i64),
        Box::new(summary.blank as i64),
        Box::new(message.unwrap_or("")),
        Box::new(Dt2(started)),
        Box::new(Dt2(chrono::Utc::now().timestamp_millis())),
    ]
}

/// Ids of `table` among `ids`.
async fn existing(conn: &mut Conn, table: Table, ids: &[i32]) -> Result<HashSet<i32>, StoreError> {
    if ids.is_empty() {
        return Ok(HashSet::new());
    }
    let json = serde_json::to_string(ids).unwrap_or_else(|_| "[]".into());
    let params: Vec<Box<dyn ToSql>> = vec![Box::new(json)];
    rows_of(conn, &existing_sql(table), &params)
        .await?
        .iter()
        .map(|r| int_at(r, 0))
        .collect()
}

/// Every id of `table`.
async fn read_ids(conn: &mut Conn, table: Table) -> Result<IdBitmap, StoreError> {
    let mut stream = conn
        .simple_query(format!("SELECT [id] FROM {}", q(table.name())))
        .await?
        .into_row_stream();
    let mut ids = IdBitmap::default();
    while let Some(row) = stream.try_next().await? {
        ids.insert(int_at(&row, 0)?);
    }
    Ok(ids)
}

/// Rejections waiting to be written.
#[derive(Default)]
struct RejectionLog {
    rows: Vec<(i64, String, String)>,
}

impl RejectionLog {
    fn add(&mut self, table: Table, source: &str, raw: &[u8], c: &Candidate, errs: &[FieldError]) {
        self.rows
            .push(rejection_record(table, source, raw, c, errs));
    }

    /// Writes what is waiting, in order, in statements under the
    /// parameter limit.
    async fn flush(
        &mut self,
        conn: &mut Conn,
        table: Table,
        source: &str,
    ) -> Result<(), StoreError> {
        let now = chrono::Utc::now().timestamp_millis();
        for group in self.rows.chunks(rows_per_statement(6)) {
            let mut params: Vec<Box<dyn ToSql>> = Vec::with_capacity(group.len() * 6);
            for (position, raw, errors) in group {
                params.push(Box::new(table.name()));
                params.push(Box::new(source));
                params.push(Box::new(*position));
                params.push(Box::new(raw.as_str()));
                params.push(Box::new(errors.as_str()));
                params.push(Box::new(Dt2(now)));
            }
            rows_of(conn, &rejection_insert_sql(group.len()), &params).await?;
        }
        self.rows.clear();
        Ok(())
    }
}

async fn ingest_tx(
    conn: &mut Conn,
    source: &str,
    tables: &[TableBatch],
    idempotency: Option<&Idempotency>,
    render: &Render,
) -> Result<Done<IngestOutcome>, StoreError> {
    if let Some(idem) = idempotency {
        let claim = format!(
            "INSERT INTO {t} ([key], [fingerprint], [response], [created_at])
             SELECT @P1, @P2, N'', @P3
             WHERE NOT EXISTS (SELECT 1 FROM {t} WITH (UPDLOCK, HOLDLOCK) WHERE [key] = @P1)",
            t = q(ddl::IDEMPOTENCY)
        );
        let params: Vec<Box<dyn ToSql>> = vec![
            Box::new(idem.key.as_str()),
            Box::new(idem.fingerprint.as_str()),
            Box::new(Dt2(chrono::Utc::now().timestamp_millis())),
        ];
        let refs: Vec<&dyn ToSql> = params.iter().map(|p| &**p as &dyn ToSql).collect();
        let claimed = conn.execute(claim, &refs).await?.total();
        if claimed == 0 {
            let seen = format!(
                "SELECT [fingerprint], [response] FROM {} WHERE [key] = @P1",
                q(ddl::IDEMPOTENCY)
            );
            let params: Vec<Box<dyn ToSql>> = vec![Box::new(idem.key.as_str())];
            let rows = rows_of(conn, &seen, &params).await?;
            let row = rows
                .first()
                .ok_or_else(|| StoreError::Task("an idempotency key vanished".into()))?;
            return Ok(Done::Rollback(if text_at(row, 0)? == idem.fingerprint {
                IngestOutcome::Replayed(text_at(row, 1)?)
            } else {
                IngestOutcome::KeyReused
            }));
        }
    }
    let mut outcomes = Vec::with_capacity(tables.len());
    for batch in tables {
        outcomes.push(ingest_table(conn, source, batch).await?);
    }
    let response = render(&outcomes, tables);
    if let Some(idem) = idempotency {
        let sql = format!(
            "UPDATE {} SET [response] = @P2 WHERE [key] = @P1",
            q(ddl::IDEMPOTENCY)
        );
        let params: Vec<Box<dyn ToSql>> =
            vec![Box::new(idem.key.as_str()), Box::new(response.as_str())];
        rows_of(conn, &sql, &params).await?;
    }
    Ok(Done::Commit(IngestOutcome::Applied(response)))
}

async fn ingest_table(
    conn: &mut Conn,
    source: &str,
    batch: &TableBatch,
) -> Result<TableOutcome, StoreError> {
    let table = batch.table;
    let chunk = &batch.chunk;
    let mut known = BatchKnown {
        taken: existing(conn, table, &ints(chunk, Table::PRIMARY_KEY)).await?,
        parents: HashMap::new(),
    };
    for (i, _, parent) in table.foreign_keys() {
        let found = existing(conn, parent, &ints(chunk, i)).await?;
        known.parents.entry(parent).or_default().extend(found);
    }
    let sorted = Sorted::new(table, chunk, known);
    let mut won = HashSet::new();
    for group in sorted
        .chosen
        .chunks(rows_per_statement(table.columns().len()))
    {
        let params: Vec<Box<dyn ToSql + '_>> = group
            .iter()
            .flat_map(|(_, row)| row.0.iter().map(param))
            .collect();
        for r in rows_of(conn, &conflict_insert_sql(table, group.len()), &params).await? {
            won.insert(int_at::<i32>(&r, 0)?);
        }
    }
    let (inserted, rejected) = sorted.settle(&won);
    let mut log = RejectionLog::default();
    for (c, errors) in &rejected {
        log.add(table, source, &chunk.raw, c, errors);
    }
    log.flush(conn, table, source).await?;
    Ok(outcome(table, chunk, inserted, rejected))
}

/// Inserts rows of `table` into `target` with plain multi-row statements
/// (the table is locked).
async fn insert_rows(
    conn: &mut Conn,
    target: &str,
    table: Table,
    rows: &[&Row],
) -> Result<(), StoreError> {
    for group in rows.chunks(rows_per_statement(table.columns().len())) {
        let params: Vec<Box<dyn ToSql + '_>> = group
            .iter()
            .flat_map(|row| row.0.iter().map(param))
            .collect();
        rows_of(conn, &insert_sql(target, table, group.len()), &params).await?;
    }
    Ok(())
}

/// Sends rows with the bulk-copy protocol (`INSERT BULK`), the fastest way
/// in; `CHECK_CONSTRAINTS` keeps the foreign keys trusted (without it SQL
/// Server marks them unchecked after a bulk copy).
///
/// A failure of the protocol itself is [`StoreError::BulkCopyFailed`]:
/// some TDS servers break off a stream SQL Server takes (Babelfish 4.3 did
/// on a 200 000-row load that loads with `INSERT`s), and the load then runs
/// again without bulk copy. A constraint the server enforces, or a lost
/// connection, stays what it is.
async fn bulk_rows(conn: &mut Conn, table: Table, rows: &[&Row]) -> Result<(), StoreError> {
    if rows.is_empty() {
        return Ok(());
    }
    send_bulk(conn, table, rows).await.map_err(|e| {
        if bulk_protocol_failure(&e) {
            StoreError::BulkCopyFailed(e)
        } else {
            StoreError::Mssql(e)
        }
    })
}

/// Whether a bulk copy failed in the protocol rather than on the data or
/// the connection: constraint violations (547, 2627, 2601), transient
/// errors and I/O are not protocol failures.
pub(super) fn bulk_protocol_failure(e: &tiberius::error::Error) -> bool {
    match e {
        tiberius::error::Error::Server(t) => protocol_error_code(t.code()),
        tiberius::error::Error::Protocol(_) | tiberius::error::Error::BulkInput(_) => true,
        _ => false,
    }
}

/// Whether a server error number is neither a constraint violation nor
/// transient.
fn protocol_error_code(code: u32) -> bool {
    ![547, 2627, 2601].contains(&code) && !TRANSIENT.contains(&code)
}

async fn send_bulk(conn: &mut Conn, table: Table, rows: &[&Row]) -> tiberius::Result<()> {
    let columns: Vec<&str> = table.columns().iter().map(|c| c.name).collect();
    let mut request = conn
        .bulk_insert_with_options(
            table.name(),
            &columns,
            tiberius::SqlBulkCopyOption::CheckConstraints | tiberius::SqlBulkCopyOption::TableLock,
            &[],
        )
        .await?;
    for row in rows {
        let mut token = tiberius::TokenRow::new();
        for v in &row.0 {
            token.push(match v {
                Value::Int(n) => ColumnData::I32(Some(*n)),
                Value::Text(s) => ColumnData::String(Some(s.as_str().into())),
                Value::DateTime(ms) => datetime2(*ms),
            });
        }
        request.send(token).await?;
    }
    request.finalize().await?;
    Ok(())
}

/// A file load in one transaction: the table is locked exclusively for the
/// transaction, its ids and its parents' are read once, every check is made
/// in memory, and rows go in by bulk copy (or, with `bulk=false` in the
/// URL, multi-row `INSERT`s).
async fn load_file_tx(
    conn: &mut Conn,
    bulk: bool,
    load: &FileLoad,
    feed: &mut mpsc::Receiver<Feed>,
) -> Result<Done<FileLoadOutcome>, StoreError> {
    let table = load.table;
    conn.simple_query(format!(
        "SELECT TOP 0 [id] FROM {} WITH (TABLOCKX, HOLDLOCK)",
        q(table.name())
    ))
    .await?
    .into_results()
    .await?;
    let mut known = LoadKnown {
        taken: read_ids(conn, table).await?,
        parents: HashMap::new(),
    };
    for (_, _, parent) in table.foreign_keys() {
        if let std::collections::hash_map::Entry::Vacant(slot) = known.parents.entry(parent) {
            slot.insert(read_ids(conn, parent).await?);
        }
    }
    let (mut inserted, mut rejected_total) = (0u64, 0u64);
    let mut log = RejectionLog::default();
    loop {
        match feed.recv().await {
            Some(Feed::Chunk(chunk)) => {
                let mut valid: Vec<&Row> = Vec::with_capacity(chunk.rows.len());
                for c in &chunk.rows {
                    match judge(table, c, &mut known) {
                        Ok(row) => valid.push(row),
                        Err(errors) => {
                            rejected_total += 1;
                            log.add(table, &load.source, &chunk.raw, c, &errors);
                        }
                    }
                }
                if load.max_rejects.is_some_and(|max| rejected_total > max) {
                    return Ok(Done::Rollback(FileLoadOutcome::Aborted {
                        rejected: rejected_total,
                    }));
                }
                if bulk {
                    bulk_rows(conn, table, &valid).await?;
                } else {
                    insert_rows(conn, &q(table.name()), table, &valid).await?;
                }
                inserted += valid.len() as u64;
                log.flush(conn, table, &load.source).await?;
            }
            Some(Feed::End(summary)) => {
                if !load.force && history_has(conn, table, &summary.sha256).await? {
                    return Ok(Done::Rollback(FileLoadOutcome::AlreadyLoaded));
                }
                insert_history(
                    conn,
                    load,
                    &summary,
                    "loaded",
                    inserted,
                    rejected_total,
                    None,
                )
                .await?;
                return Ok(Done::Commit(FileLoadOutcome::Loaded {
                    inserted,
                    rejected: rejected_total,
                }));
            }
            None => return Err(StoreError::FeedInterrupted),
        }
    }
}

/// Replaces a table's rows in one transaction, with every foreign key left
/// on. A table nothing references is emptied and filled again. A table
/// that others reference is filled into [`STAGE`] first; the children are
/// checked against it by a query that names the offending rows, and only
/// then is the table made equal to it ([`apply_stage_sql`]).
async fn replace_tx(
    conn: &mut Conn,
    table: Table,
    rows: &mut mpsc::Receiver<Replacement>,
) -> Result<Done<u64>, StoreError> {
    conn.simple_query(format!(
        "SELECT TOP 0 [id] FROM {} WITH (TABLOCKX, HOLDLOCK)",
        q(table.name())
    ))
    .await?
    .into_results()
    .await?;
    let mut parents = HashMap::new();
    for (_, _, parent) in table.foreign_keys() {
        if let std::collections::hash_map::Entry::Vacant(slot) = parents.entry(parent) {
            slot.insert(read_ids(conn, parent).await?);
        }
    }
    let children: Vec<Table> = table.children().collect();
    let target = if children.is_empty() {
        conn.simple_query(format!("DELETE FROM {}", q(table.name())))
            .await?
            .into_results()
            .await?;
        q(table.name())
    } else {
        conn.simple_query(stage_sql(table))
            .await?
            .into_results()
            .await?;
        STAGE.to_owned()
    };
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
                }
                let refs: Vec<&Row> = batch.iter().collect();
                match insert_rows(conn, &target, table, &refs).await {
                    Err(StoreError::Mssql(tiberius::error::Error::Server(e)))
                        if e.code() == 2627 || e.code() == 2601 =>
                    {
                        return Err(StoreError::Refused(
                            "an id appears more than once in the backup".into(),
                        ));
                    }
                    other => other?,
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
    if children.is_empty() {
        return Ok(Done::Commit(written));
    }
    for child in &children {
        for (_, column, _) in child.foreign_keys().filter(|(_, _, p)| *p == table) {
            let found = rows_of(conn, &orphans_sql(*child, column.name, STAGE), &[]).await?;
            let row = found
                .first()
                .ok_or_else(|| StoreError::Task("COUNT returned no row".into()))?;
            let count: i64 = int_at(row, 0)?;
            if count > 0 {
                let example = row.try_get::<i32, _>(1)?.unwrap_or_default();
                return Err(StoreError::Refused(format!(
                    "{count} rows of {child} would lose their {table} (e.g. {} = {example}): \
                     restore {table} from a backup that has them, or restore {child} first",
                    column.name
                )));
            }
        }
    }
    for sql in apply_stage_sql(table) {
        match conn.simple_query(sql).await {
            Ok(stream) => stream.into_results().await.map(drop),
            Err(e) => Err(e),
        }
        .map_err(|e| match e {
            // A child row written after the check above by a session that
            // had read the parent before this one locked it.
            tiberius::error::Error::Server(t) if t.code() == 547 => StoreError::Refused(format!(
                "rows of {} that reference {table} were written during the restore; \
                 nothing was changed, run it again",
                children
                    .iter()
                    .map(|c| c.name())
                    .collect::<Vec<_>>()
                    .join(", ")
            )),
            other => StoreError::Mssql(other),
        })?;
    }
    conn.simple_query(format!("DROP TABLE {STAGE}"))
        .await?
        .into_results()
        .await?;
    Ok(Done::Commit(written))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Whether tiberius sends this value as the untyped NULLTYPE (0x1F):
    /// every `None` but those of the fixed-size types, which it sends typed.
    fn untyped_null(p: &dyn ToSql) -> bool {
        match p.to_sql() {
            ColumnData::Bit(_)
            | ColumnData::U8(_)
            | ColumnData::I16(_)
            | ColumnData::I32(_)
            | ColumnData::I64(_)
            | ColumnData::F32(_)
            | ColumnData::F64(_)
            | ColumnData::Guid(_) => false,
            ColumnData::String(v) => v.is_none(),
            ColumnData::Binary(v) => v.is_none(),
            ColumnData::Numeric(v) => v.is_none(),
            ColumnData::Xml(v) => v.is_none(),
            ColumnData::DateTime(v) => v.is_none(),
            ColumnData::SmallDateTime(v) => v.is_none(),
            ColumnData::Date(v) => v.is_none(),
            ColumnData::Time(v) => v.is_none(),
            ColumnData::DateTime2(v) => v.is_none(),
            ColumnData::DateTimeOffset(v) => v.is_none(),
        }
    }

    #[test]
    fn no_parameter_is_an_untyped_null() {
        assert!(untyped_null(&Option::<&str>::None), "the check can fail");
        let unfiltered = RejectionFilter {
            table: None,
            source: None,
            after: None,
            limit: 10,
        };
        let filtered = RejectionFilter {
            table: Some(Table::Jobs),
            source: Some("api:x".into()),
            after: Some(3),
            limit: 10,
        };
        for filter in [&unfiltered, &filtered] {
            let params = rejection_filter(filter);
            assert_eq!(params.len(), 4);
            assert!(params.iter().all(|p| !untyped_null(&**p)));
        }
        assert!(rejections_sql().contains("@P1 = N''"));
        let load = FileLoad {
            table: Table::Jobs,
            source: "file:jobs.csv".into(),
            force: false,
            max_rejects: None,
            started_at: "2021-01-01T00:00:00Z".into(),
            bytes: None,
        };
        let summary = FeedSummary {
            rows_read: 3,
            blank: 0,
            sha256: "ab".into(),
        };
        for message in [None, Some("aborted")] {
            let params = history_params(&load, &summary, "loaded", 1, 2, message, 0);
            assert_eq!(params.len(), 11);
            assert!(params.iter().all(|p| !untyped_null(&**p)));
        }
    }

    #[test]
    fn statements_stay_under_the_parameter_and_row_limits() {
        for table in Table::ALL {
            let width = table.columns().len();
            let rows = rows_per_statement(width);
            assert!(rows * width <= MAX_PARAMS && rows <= MAX_VALUES_ROWS);
            // As many rows as fit: one more would not.
            assert!(rows == MAX_VALUES_ROWS || (rows + 1) * width > MAX_PARAMS);
            let sql = conflict_insert_sql(table, rows);
            assert_eq!(sql.matches("@P").count(), rows * width);
            assert!(sql.contains(&format!("@P{}", rows * width)));
            assert!(!sql.contains(&format!("@P{}", rows * width + 1)));
        }
        assert_eq!(rows_per_statement(5), 419);
        assert_eq!(rows_per_statement(6), 349);
        assert_eq!(rows_per_statement(1), 1000);
        assert_eq!(rejection_insert_sql(349).matches("@P").count(), 2094);
    }

    #[test]
    fn placeholders_are_numbered_row_after_row() {
        assert_eq!(values(2, 3, 1), "(@P1, @P2, @P3), (@P4, @P5, @P6)");
        assert_eq!(values(1, 2, 5), "(@P5, @P6)");
        assert_eq!(
            insert_sql("[jobs]", Table::Jobs, 2),
            "INSERT INTO [jobs] ([id], [job]) VALUES (@P1, @P2), (@P3, @P4)"
        );
    }

    #[test]
    fn the_conflict_insert_skips_taken_ids_under_a_range_lock_and_says_which_it_took() {
        let sql = conflict_insert_sql(Table::Departments, 2);
        let flat = sql.split_whitespace().collect::<Vec<_>>().join(" ");
        assert_eq!(
            flat,
            "INSERT INTO [departments] ([id], [department]) OUTPUT inserted.[id] \
             SELECT v.[id], v.[department] FROM (VALUES (@P1, @P2), (@P3, @P4)) AS v ([id], [department]) \
             WHERE NOT EXISTS (SELECT 1 FROM [departments] WITH (UPDLOCK, HOLDLOCK) \
             WHERE [departments].[id] = v.[id])"
        );
        assert_eq!(
            existing_sql(Table::Jobs),
            "SELECT [id] FROM [jobs] WHERE [id] IN (SELECT CAST([value] AS INT) FROM OPENJSON(@P1))"
        );
    }

    #[test]
    fn restores_of_a_referenced_table_are_staged_and_merged_with_keys_on() {
        assert_eq!(
            stage_sql(Table::Departments),
            "CREATE TABLE #hrmig_restore ([id] INT NOT NULL PRIMARY KEY, \
             [department] NVARCHAR(255) NOT NULL)"
        );
        assert_eq!(
            apply_stage_sql(Table::Departments),
            [
                "DELETE FROM [departments] WHERE NOT EXISTS \
                 (SELECT 1 FROM #hrmig_restore s WHERE s.[id] = [departments].[id])",
                "UPDATE [departments] SET [department] = s.[department] \
                 FROM [departments] JOIN #hrmig_restore s ON s.[id] = [departments].[id]",
                "INSERT INTO [departments] ([id], [department]) SELECT s.[id], s.[department] \
                 FROM #hrmig_restore s WHERE NOT EXISTS \
                 (SELECT 1 FROM [departments] WHERE [departments].[id] = s.[id])",
            ]
        );
        assert_eq!(
            orphans_sql(Table::HiredEmployees, "department_id", STAGE),
            "SELECT COUNT_BIG(*), MIN(c.[department_id]) FROM [hired_employees] c WHERE NOT EXISTS \
             (SELECT 1 FROM #hrmig_restore p WHERE p.[id] = c.[department_id])"
        );
        assert_eq!(
            Table::Departments.children().collect::<Vec<_>>(),
            [Table::HiredEmployees]
        );
        for table in Table::ALL {
            for sql in apply_stage_sql(table) {
                assert!(!sql.contains("NOCHECK"), "{sql}");
            }
        }
    }

    #[test]
    fn reports_order_by_code_point_and_average_over_floats() {
        assert!(REPORT_HIRES_BY_QUARTER.contains("[department] COLLATE Latin1_General_100_BIN2"));
        assert!(REPORT_HIRES_BY_QUARTER.contains("[job] COLLATE Latin1_General_100_BIN2"));
        assert!(REPORT_ABOVE_MEAN.contains("AVG(CAST([hired] AS FLOAT))"));
        // The views they read use DATEPART(quarter, …).
        let views = super::super::ddl::reports(super::super::Dialect::Mssql);
        assert_eq!(views.matches("DATEPART(quarter, h.[datetime])").count(), 4);
    }

    #[test]
    fn urls_and_ado_strings_configure_the_connection() {
        let t = parse_url(
            "mssql://hr%40app:p%3Bss@db.example.com:14330/hr?encrypt=true&pool_size=5&bulk=false",
        )
        .unwrap();
        assert_eq!(t.config.get_addr(), "db.example.com:14330");
        assert_eq!((t.pool, t.bulk), (5, false));
        assert!(t.login.is_none());
        let t = parse_url(
            "Server=tcp:srv.database.windows.net,1433;Database=hr;User ID=app;Password=x;\
             Encrypt=true;TrustServerCertificate=false;Max Pool Size=7",
        )
        .unwrap();
        assert_eq!(t.config.get_addr(), "srv.database.windows.net:1433");
        assert_eq!(t.pool, 7);
        assert!(t.login.is_none());
        let t = parse_url("mssql://u:p@h/db").unwrap();
        assert_eq!((t.pool, t.bulk), (DEFAULT_POOL, true));
        for bad in [
            "mssql://u:p@h/db?encrypt=maybe",
            "mssql://u:p@h/db?pool_size=0",
            "mssql://u:p@h/db?colour=blue",
            "mssql://u:p@h/db?bulk=yes",
            "mssql:///db",
            "Server=tcp:h,1433;Max Pool Size=none",
        ] {
            assert!(parse_url(bad).is_err(), "{bad}");
        }
        // A refused ADO.NET string is not echoed when it holds a password.
        let message = parse_url("Server=tcp:h,1433;UID=u;PWD=s3cret;Max Pool Size=0")
            .err()
            .unwrap()
            .to_string();
        assert!(!message.contains("s3cret"), "{message}");
        assert!(is_mssql_url("Server=tcp:x,1433;Database=y"));
        assert!(is_mssql_url("mssql://h/db") && is_mssql_url("sqlserver://h/db"));
        assert!(!is_mssql_url("postgres://h/db") && !is_mssql_url("sqlite://x.db"));
        assert_eq!(decode("a%40b%3Bc"), "a@b;c");
        assert_eq!(decode("100%"), "100%");
    }

    fn login_of(url: &str) -> entra::Login {
        parse_url(url).unwrap().login.unwrap()
    }

    #[test]
    fn entra_logins_in_both_forms() {
        use entra::Method;
        for (url, method, user) in [
            (
                "mssql://srv.database.windows.net/hr?authentication=managed_identity",
                Method::ManagedIdentity,
                None,
            ),
            (
                "mssql://srv/hr?authentication=managed_identity&user_id=uami-client",
                Method::ManagedIdentity,
                Some("uami-client"),
            ),
            (
                "mssql://uami-client@srv/hr?authentication=default",
                Method::Default,
                Some("uami-client"),
            ),
            (
                "mssql://srv/hr?authentication=workload_identity",
                Method::WorkloadIdentity,
                None,
            ),
            (
                "Server=tcp:srv,1433;Database=hr;Authentication=Active Directory Managed Identity",
                Method::ManagedIdentity,
                None,
            ),
            (
                "Server=tcp:srv,1433;Database=hr;Authentication=\"Active Directory MSI\";\
                 User Id=uami-client",
                Method::ManagedIdentity,
                Some("uami-client"),
            ),
            (
                "Server=tcp:srv,1433;Authentication=Active Directory Default",
                Method::Default,
                None,
            ),
            (
                "Server=tcp:srv,1433;Authentication=Active Directory Workload Identity;UID=c",
                Method::WorkloadIdentity,
                Some("c"),
            ),
        ] {
            let login = login_of(url);
            assert_eq!(login.method, method, "{url}");
            assert_eq!(login.user_id.as_deref(), user, "{url}");
            assert!(login.secret.is_none() && login.tenant.is_none(), "{url}");
        }
        for url in [
            "mssql://app-id:s%3Bcret@srv/hr?authentication=service_principal&tenant_id=t1",
            "Server=tcp:srv,1433;Database=hr;Authentication=Active Directory Service Principal;\
             User ID=app-id;Password='s;cret';Tenant ID=t1",
        ] {
            let t = parse_url(url).unwrap();
            let login = t.login.as_ref().unwrap();
            assert_eq!(login.method, Method::ServicePrincipal, "{url}");
            assert_eq!(login.user_id.as_deref(), Some("app-id"));
            assert_eq!(login.secret.as_ref().map(Secret::secret), Some("s;cret"));
            assert_eq!(login.tenant.as_deref(), Some("t1"));
            // tiberius is not given the client id and secret as a SQL login.
            let shown = format!("{:?}", t.config);
            assert!(!shown.contains("app-id"), "{shown}");
            assert!(!format!("{login:?}").contains("s;cret"));
        }
        // An explicit SQL login stays one.
        let t = parse_url("Server=tcp:srv,1433;Authentication=SqlPassword;User ID=u;Password=p")
            .unwrap();
        assert!(t.login.is_none());
        assert!(format!("{:?}", t.config).contains("SqlServer"));
    }

    #[test]
    fn unknown_or_misplaced_entra_settings_are_refused() {
        for url in [
            "mssql://srv/hr?authentication=password",
            "Server=tcp:srv,1433;Authentication=Active Directory Password;User ID=u;Password=p",
            "Server=tcp:srv,1433;Authentication=Active Directory Interactive",
        ] {
            let message = parse_url(url).err().unwrap().to_string();
            assert!(
                message.contains("unknown Authentication value"),
                "{message}"
            );
            assert!(
                message.contains("Active Directory Managed Identity"),
                "{message}"
            );
            assert!(
                message.contains("managed_identity|service_principal"),
                "{message}"
            );
            assert!(!message.contains("Password=p"), "{message}");
        }
        for url in [
            "mssql://c:s3cret@srv/hr?authentication=managed_identity",
            "Server=tcp:srv,1433;Authentication=Active Directory Default;PWD=s3cret",
            "mssql://u:p@srv/hr?tenant_id=t",
            "mssql://u:p@srv/hr?user_id=c",
            "Server=tcp:srv,1433;User ID=u;Password=p;Tenant ID=t",
        ] {
            let message = parse_url(url).err().unwrap().to_string();
            assert!(message.starts_with("Microsoft Entra ID: "), "{message}");
            assert!(!message.contains("s3cret"), "{message}");
        }
    }

    #[test]
    fn the_login_config_carries_the_token_and_debug_does_not_show_it() {
        let t = parse_url("mssql://srv/hr?authentication=managed_identity").unwrap();
        let config = login_config(&t.config, &Secret::new("eyJ0eXAi.token-value"));
        let shown = format!("{config:?}");
        assert!(shown.contains("auth: AADToken("), "{shown}");
        assert!(!shown.contains("token-value"), "{shown}");
        assert_eq!(config.get_addr(), t.config.get_addr());
        // The base keeps no token: each connection gets the current one.
        assert!(format!("{:?}", t.config).contains("auth: None"));
        let manager = Manager {
            config,
            tokens: None,
        };
        assert!(!format!("{:?}", manager.config).contains("token-value"));
    }

    #[test]
    fn datetime2_round_trips_every_accepted_instant() {
        for ms in [
            datetime::MIN_MS,
            datetime::MAX_MS,
            0,
            -1,
            1_627_401_728_000,
            951_782_400_000, // 2000-02-29
        ] {
            let value = Dt2(ms);
            assert_eq!(millis(&value.to_sql()), Some(ms), "{ms}");
        }
        // A value read at a finer scale is cut to milliseconds.
        let seven = ColumnData::DateTime2(Some(tiberius::time::DateTime2::new(
            tiberius::time::Date::new(0),
            tiberius::time::Time::new(12_345_678, 7),
        )));
        assert_eq!(millis(&seven), Some(datetime::MIN_MS + 1234));
    }

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

    #[test]
    fn only_protocol_failures_of_a_bulk_copy_switch_it_off() {
        use tiberius::error::Error;
        assert!(bulk_protocol_failure(&Error::Protocol(
            "unexpected token".into()
        )));
        assert!(bulk_protocol_failure(&Error::BulkInput("bad row".into())));
        assert!(!bulk_protocol_failure(&Error::Io {
            kind: std::io::ErrorKind::ConnectionReset,
            message: "reset".into()
        }));
        // 4002: the TDS stream is incorrect; 4804: premature end of message.
        assert!(protocol_error_code(4002) && protocol_error_code(4804));
        for code in [547, 2627, 2601, 1205, 40613] {
            assert!(!protocol_error_code(code), "{code}");
        }
    }
}
