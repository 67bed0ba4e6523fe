//! The command line's grammar: global options, subcommands and their
//! arguments, as clap parses them.

use crate::dictionary::{ErrorCode, Table};
use crate::ops::backup::Codec;
use crate::store::{Dialect, OnDuplicate, RejectionStatus};
use clap::{Args, Parser, Subcommand, ValueEnum};
use std::path::PathBuf;

#[derive(Parser, Debug)]
#[command(
    name = "hrmig",
    version,
    about = "Moves HR data into SQL databases, validated, logged and backed up"
)]
pub(super) struct Cli {
    /// Database URL: sqlite://PATH, postgres://USER@HOST[:PORT]/DB[?sslmode=verify-full] (or libpq's host=… keyword form), mssql://USER:PASSWORD@HOST/DB or an ADO.NET string.
    #[arg(
        long,
        global = true,
        env = "HRMIG_DATABASE_URL",
        default_value = "sqlite://hrmig.db",
        hide_env_values = true
    )]
    pub database: String,
    /// Storage root: a local directory or file:///PATH.
    #[arg(
        long,
        global = true,
        env = "HRMIG_STORAGE_URL",
        default_value = "./storage"
    )]
    pub storage: String,
    /// Log filter (e.g. info, warn, hrmig=debug); HRMIG_LOG_FORMAT=json for JSON lines.
    #[arg(long, global = true, env = "HRMIG_LOG", default_value = "info")]
    pub log: String,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub(super) enum Command {
    /// Write sample CSVs in the historic format (with a share of rule-breaking rows).
    Gen(GenArgs),
    /// Load historic CSV files (<from>/<table>.csv) into the database.
    Load(LoadArgs),
    /// Write sample files under <storage>/landing if absent, load them, and show the result.
    Demo(DemoArgs),
    /// Run the HTTP API server.
    Serve(ServeArgs),
    /// Gold-zone reports.
    Report(ReportArgs),
    /// Show the rejection log (`rejections retry|fix|dismiss`: work it as a queue).
    Rejections(RejectionsArgs),
    /// Show the history of operations (loads, batches, restores, retries, fixes, undos), newest first, with their ids.
    Loads(LoadsArgs),
    /// Remove the rows one operation inserted (by its id in `hrmig loads`), in one transaction.
    Undo(UndoArgs),
    /// Show one row and the operation that last wrote it (its origin).
    Row(RowArgs),
    /// Back up tables to Avro files under <storage>/backups/<table>/.
    Backup(BackupArgs),
    /// List complete backups, oldest first (`backups prune`: remove older ones).
    Backups(BackupsArgs),
    /// Check a backup (manifest, checksum, schema, every row) without touching the database.
    Verify(BackupChoiceArgs),
    /// Replace a table's rows with a backup's, after verifying it.
    Restore(BackupChoiceArgs),
    /// Print the DDL of a dialect (what migrations/<dialect>/0001_init.sql holds).
    Schema(SchemaArgs),
}

// The argument structs carry no doc comment of their own: clap would show
// it in place of the subcommand's.

#[derive(Args, Debug)]
pub(super) struct GenArgs {
    /// Folder to write departments.csv, jobs.csv and hired_employees.csv into.
    #[arg(long, value_parser = local_dir)]
    pub out: PathBuf,
    /// Number of employee rows.
    #[arg(long, default_value_t = 2000)]
    pub employees: u64,
    /// Share of employee rows that break a data rule (0 to 1).
    #[arg(long, default_value_t = 0.035, value_parser = parse_rate)]
    pub invalid_rate: f64,
    /// Seed: the same seed writes the same files.
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
}

#[derive(Args, Debug)]
pub(super) struct LoadArgs {
    /// Folder with the CSV files (default: <storage>/landing).
    #[arg(long)]
    pub from: Option<String>,
    /// Tables to load (default: all, parents first).
    pub tables: Vec<Table>,
    /// Load files even when the same content was loaded before.
    #[arg(long)]
    pub force: bool,
    /// Abort a file, committing nothing from it, once more rows than this are rejected.
    #[arg(long)]
    pub max_rejects: Option<u64>,
    /// Check every row as a real load would, and write nothing (no rows, rejections or history).
    #[arg(long)]
    pub dry_run: bool,
    /// A valid row whose id is already in the table (or earlier in the file): reject it as a duplicate, or update the stored row with it (the later row wins).
    #[arg(long, value_enum, default_value_t = OnDuplicate::Reject)]
    pub on_duplicate: OnDuplicate,
    /// One JSON object per table instead of a text table.
    #[arg(long)]
    pub json: bool,
}

#[derive(Args, Debug)]
pub(super) struct DemoArgs {
    /// Employee rows in the sample.
    #[arg(long, default_value_t = 10_000)]
    pub employees: u64,
}

#[derive(Args, Debug)]
pub(super) struct ServeArgs {
    /// Address to listen on; FUNCTIONS_CUSTOMHANDLER_PORT, when set, means 127.0.0.1:<port>.
    #[arg(long, env = "HRMIG_LISTEN", default_value = "127.0.0.1:8080")]
    pub listen: String,
}

#[derive(Args, Debug)]
pub(super) struct ReportArgs {
    /// Which report.
    #[arg(value_enum)]
    pub report: Report,
    /// Year of the hires.
    #[arg(long, default_value_t = 2021, value_parser = clap::value_parser!(i32).range(1..=9999))]
    pub year: i32,
    /// Output format.
    #[arg(long, value_enum, default_value_t = Format::Table)]
    pub format: Format,
}

#[derive(Args, Debug)]
#[command(args_conflicts_with_subcommands = true)]
pub(super) struct RejectionsArgs {
    #[command(flatten)]
    pub filter: QueueFilter,
    /// Only rejections with this status.
    #[arg(long, value_enum)]
    pub status: Option<RejectionStatus>,
    /// Counts by table, code and status instead of the rejections.
    #[arg(long)]
    pub summary: bool,
    /// At most this many, oldest first (1 to 1000000).
    #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    pub limit: u32,
    /// Only log ids above this (to page through the log).
    #[arg(long)]
    pub after: Option<i64>,
    /// Output format.
    #[arg(long, value_enum, default_value_t = Format::Table)]
    pub format: Format,
    #[command(subcommand)]
    pub action: Option<RejectionsAction>,
}

// Which rejections: the filters the log and a retry share.
#[derive(Args, Debug)]
pub(super) struct QueueFilter {
    /// Only this table's (a retry without it takes every table, parents first).
    #[arg(long)]
    pub table: Option<Table>,
    /// Only those with an error of this code (missing, type, range, format, too_long, encoding, columns, duplicate, foreign_key).
    #[arg(long, value_parser = ErrorCode::parse)]
    pub code: Option<ErrorCode>,
    /// Only those of this source (file:… or api:<batch id>).
    #[arg(long)]
    pub source: Option<String>,
}

#[derive(Subcommand, Debug)]
pub(super) enum RejectionsAction {
    /// Check the open rejections again as received: rows that pass now are
    /// inserted and their rejections resolved; the rest stay open.
    Retry(RetryArgs),
    /// Insert a corrected row (a JSON object) for an open rejection.
    Fix(FixArgs),
    /// Set open rejections aside: they are no longer retried.
    Dismiss(DismissArgs),
}

#[derive(Args, Debug)]
pub(super) struct RetryArgs {
    #[command(flatten)]
    pub filter: QueueFilter,
    /// JSON (the report) instead of text.
    #[arg(long)]
    pub json: bool,
}

#[derive(Args, Debug)]
pub(super) struct FixArgs {
    /// The rejection's id.
    pub id: i64,
    /// The corrected row, a JSON object such as '{"id": 7, "job": "Analyst"}'.
    pub row: String,
    /// JSON (the report) instead of text.
    #[arg(long)]
    pub json: bool,
}

#[derive(Args, Debug)]
pub(super) struct DismissArgs {
    /// Rejection ids (at most 500).
    #[arg(required = true)]
    pub ids: Vec<i64>,
    /// JSON (one object per rejection) instead of text.
    #[arg(long)]
    pub json: bool,
}

#[derive(Args, Debug)]
pub(super) struct LoadsArgs {
    /// Only this table's loads.
    #[arg(long)]
    pub table: Option<Table>,
    /// How many, newest first.
    #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u32).range(1..))]
    pub limit: u32,
    /// JSON (the history entries) instead of a text table.
    #[arg(long)]
    pub json: bool,
}

#[derive(Args, Debug)]
pub(super) struct UndoArgs {
    /// The operation's id (`hrmig loads`; `load_id` in a report or a batch response).
    pub id: i64,
    /// JSON instead of a line of text.
    #[arg(long)]
    pub json: bool,
}

#[derive(Args, Debug)]
pub(super) struct RowArgs {
    /// The table.
    pub table: Table,
    /// The row's id.
    #[arg(allow_negative_numbers = true)]
    pub id: i64,
}

#[derive(Args, Debug)]
pub(super) struct BackupArgs {
    /// Tables to back up (default: all).
    pub tables: Vec<Table>,
    /// Block compression.
    #[arg(long, value_enum, default_value_t = Codec::DEFAULT)]
    pub codec: Codec,
    /// One JSON object per backup (its manifest) instead of a text table.
    #[arg(long)]
    pub json: bool,
}

#[derive(Args, Debug)]
#[command(args_conflicts_with_subcommands = true)]
pub(super) struct BackupsArgs {
    /// Only this table's.
    pub table: Option<Table>,
    /// JSON (the manifests) instead of a text table.
    #[arg(long)]
    pub json: bool,
    #[command(subcommand)]
    pub action: Option<BackupsAction>,
}

#[derive(Subcommand, Debug)]
pub(super) enum BackupsAction {
    /// Remove older complete backups of each table, manifest first; the
    /// newest is never removed.
    Prune(PruneArgs),
}

#[derive(Args, Debug)]
pub(super) struct PruneArgs {
    /// Tables whose backups to prune (default: all).
    pub tables: Vec<Table>,
    /// How many of the newest complete backups of each table to keep (1 or more).
    #[arg(long)]
    pub keep: u64,
    /// Only remove backups taken more than this many days ago (0 to 36500).
    #[arg(long, value_name = "DAYS")]
    pub older_than: Option<u64>,
    /// One JSON object per table instead of text.
    #[arg(long)]
    pub json: bool,
}

// `verify` and `restore` name a backup the same way.
#[derive(Args, Debug)]
pub(super) struct BackupChoiceArgs {
    /// The table.
    pub table: Table,
    /// Backup name (default: the newest).
    #[arg(long)]
    pub backup: Option<String>,
    /// JSON instead of text.
    #[arg(long)]
    pub json: bool,
}

#[derive(Args, Debug)]
pub(super) struct SchemaArgs {
    /// SQL dialect.
    #[arg(long, value_enum)]
    pub dialect: Dialect,
    /// The report views (migrations/<dialect>/0002_reports.sql) instead of the tables.
    #[arg(long)]
    pub reports: bool,
    /// Every migration in order (0001, 0002, 0003…), as hrmig runs them on a new database.
    #[arg(long, conflicts_with = "reports")]
    pub all: bool,
}

#[derive(Clone, Copy, Debug, ValueEnum, PartialEq, Eq)]
pub(super) enum Report {
    /// Hires per department and job by quarter.
    HiresByQuarter,
    /// Departments hiring above the mean of all departments.
    DepartmentsAboveMean,
}

#[derive(Clone, Copy, Debug, ValueEnum, PartialEq, Eq)]
pub(super) enum Format {
    Table,
    Csv,
    Json,
}

/// A local folder: sample files are written to disk (upload them to a blob
/// container with any client), so a URL here is a mistake, not a folder
/// named `az:`.
fn local_dir(s: &str) -> Result<PathBuf, String> {
    match s.contains("://") {
        true => Err(format!(
            "{s:?} is a URL: gen writes to a local folder (upload the files to blob storage \
             with any client, e.g. `az storage blob upload-batch`)"
        )),
        false => Ok(PathBuf::from(s)),
    }
}

fn parse_rate(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(r) if (0.0..=1.0).contains(&r) => Ok(r),
        _ => Err(format!("{s:?} is not a number from 0 to 1")),
    }
}
