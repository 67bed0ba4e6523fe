//! The command-line door: parses arguments, calls an operation, renders its
//! report. Exit codes: 0 success, 1 failure, 2 usage error.

mod bars;

use crate::dictionary::Table;
use crate::ops::backup::{self, Codec};
use crate::ops::load::{self, LoadReport, LoadRequest, LoadStatus};
use crate::ops::sample::{self, GenOptions};
use crate::storage::Storage;
use crate::store::{Dialect, RejectionFilter, Store, ddl};
use anyhow::{Context, Result, bail};
use clap::{Parser, Subcommand, ValueEnum};
use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Parser, Debug)]
#[command(
    name = "hrmig",
    version,
    about = "Moves HR data into SQL databases, validated, logged and backed up"
)]
struct Cli {
    /// Database URL: sqlite://PATH, postgres://USER@HOST[:PORT]/DB[?sslmode=verify-full] (or libpq's host=… keyword form), mssql://USER:PASSWORD@HOST/DB or an ADO.NET string.
    #[arg(
        long,
        global = true,
        env = "HRMIG_DATABASE_URL",
        default_value = "sqlite://hrmig.db",
        hide_env_values = true
    )]
    database: String,
    /// Storage root: a local directory or file:///PATH.
    #[arg(
        long,
        global = true,
        env = "HRMIG_STORAGE_URL",
        default_value = "./storage"
    )]
    storage: String,
    /// Log filter (e.g. info, warn, hrmig=debug); HRMIG_LOG_FORMAT=json for JSON lines.
    #[arg(long, global = true, env = "HRMIG_LOG", default_value = "info")]
    log: String,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Write sample CSVs in the historic format (with a share of rule-breaking rows).
    Gen {
        /// Folder to write departments.csv, jobs.csv and hired_employees.csv into.
        #[arg(long, value_parser = local_dir)]
        out: PathBuf,
        /// Number of employee rows.
        #[arg(long, default_value_t = 2000)]
        employees: u64,
        /// Share of employee rows that break a data rule (0 to 1).
        #[arg(long, default_value_t = 0.035, value_parser = parse_rate)]
        invalid_rate: f64,
        /// Seed: the same seed writes the same files.
        #[arg(long, default_value_t = 42)]
        seed: u64,
    },
    /// Load historic CSV files (<from>/<table>.csv) into the database.
    Load {
        /// Folder with the CSV files (default: <storage>/landing).
        #[arg(long)]
        from: Option<String>,
        /// Tables to load (default: all, parents first).
        tables: Vec<Table>,
        /// Load files even when the same content was loaded before.
        #[arg(long)]
        force: bool,
        /// Abort a file, committing nothing from it, once more rows than this are rejected.
        #[arg(long)]
        max_rejects: Option<u64>,
        /// One JSON object per table instead of a text table.
        #[arg(long)]
        json: bool,
    },
    /// Write sample files under <storage>/landing if absent, load them, and show the result.
    Demo {
        /// Employee rows in the sample.
        #[arg(long, default_value_t = 10_000)]
        employees: u64,
    },
    /// Run the HTTP API server.
    Serve {
        /// Address to listen on; FUNCTIONS_CUSTOMHANDLER_PORT, when set, means 127.0.0.1:<port>.
        #[arg(long, env = "HRMIG_LISTEN", default_value = "127.0.0.1:8080")]
        listen: String,
    },
    /// Gold-zone reports.
    Report {
        /// Which report.
        #[arg(value_enum)]
        report: Report,
        /// Year of the hires.
        #[arg(long, default_value_t = 2021, value_parser = clap::value_parser!(i32).range(1..=9999))]
        year: i32,
        /// Output format.
        #[arg(long, value_enum, default_value_t = Format::Table)]
        format: Format,
    },
    /// Show the rejection log.
    Rejections {
        /// Only rows of this table.
        #[arg(long)]
        table: Option<Table>,
        /// At most this many, oldest first.
        #[arg(long, default_value_t = 100)]
        limit: u32,
        /// Output format.
        #[arg(long, value_enum, default_value_t = Format::Table)]
        format: Format,
    },
    /// Back up tables to Avro files under <storage>/backups/<table>/.
    Backup {
        /// Tables to back up (default: all).
        tables: Vec<Table>,
        /// Block compression.
        #[arg(long, value_enum, default_value_t = Codec::DEFAULT)]
        codec: Codec,
        /// One JSON object per backup (its manifest) instead of a text table.
        #[arg(long)]
        json: bool,
    },
    /// List complete backups, oldest first.
    Backups {
        /// Only this table's.
        table: Option<Table>,
        /// JSON (the manifests) instead of a text table.
        #[arg(long)]
        json: bool,
    },
    /// Check a backup (manifest, checksum, schema, every row) without touching the database.
    Verify {
        /// The table.
        table: Table,
        /// Backup name (default: the newest).
        #[arg(long)]
        backup: Option<String>,
        /// JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Replace a table's rows with a backup's, after verifying it.
    Restore {
        /// The table.
        table: Table,
        /// Backup name (default: the newest).
        #[arg(long)]
        backup: Option<String>,
        /// JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Print the DDL of a dialect (what migrations/<dialect>/0001_init.sql holds).
    Schema {
        /// SQL dialect.
        #[arg(long, value_enum)]
        dialect: Dialect,
        /// The report views (migrations/<dialect>/0002_reports.sql) instead of the tables.
        #[arg(long)]
        reports: bool,
    },
}

#[derive(Clone, Copy, Debug, ValueEnum, PartialEq, Eq)]
enum Report {
    /// Hires per department and job by quarter.
    HiresByQuarter,
    /// Departments hiring above the mean of all departments.
    DepartmentsAboveMean,
}

#[derive(Clone, Copy, Debug, ValueEnum, PartialEq, Eq)]
enum Format {
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

/// Runs the command line; returns the process exit code.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    let json_logs = std::env::var("HRMIG_LOG_FORMAT").is_ok_and(|f| f.eq_ignore_ascii_case("json"));
    crate::telemetry::init(&cli.log, json_logs);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(code) => code,
        // The reader of our output went away (`hrmig rejections | head`).
        Err(e)
            if e.chain().any(|c| {
                c.downcast_ref::<std::io::Error>()
                    .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
            }) =>
        {
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn open_store(cli: &Cli) -> Result<Store> {
    Store::open(&cli.database).await.with_context(|| {
        format!(
            "cannot open database {}",
            crate::store::redact(&cli.database)
        )
    })
}

async fn run(cli: Cli) -> Result<ExitCode> {
    match &cli.command {
        Command::Gen {
            out,
            employees,
            invalid_rate,
            seed,
        } => {
            let opts = GenOptions {
                employees: *employees,
                invalid_rate: *invalid_rate,
                seed: *seed,
            };
            let out = out.clone();
            let invalid = tokio::task::spawn_blocking(move || {
                sample::generate(&out, &opts).map(|n| (n, out))
            })
            .await?;
            let (invalid, out) = invalid.context("cannot write sample files")?;
            println!(
                "wrote {}: {} departments, {} jobs, {employees} employees ({invalid} break a rule)",
                out.display(),
                sample::DEPARTMENTS.len(),
                sample::JOBS
            );
            Ok(ExitCode::SUCCESS)
        }
        Command::Load {
            from,
            tables,
            force,
            max_rejects,
            json,
        } => {
            let from = match from {
                Some(dir) => Storage::open_existing(dir)?,
                None => Storage::open(&cli.storage)?.child("landing")?,
            };
            let store = open_store(&cli).await?;
            let req = LoadRequest {
                force: *force,
                max_rejects: *max_rejects,
                progress: bars::Bars::shared(),
                ..LoadRequest::new(from, tables.clone())
            };
            let reports = load::load(&store, &req).await?;
            store.close().await?;
            print_load(&reports, *json)?;
            let aborted = reports.iter().any(|r| r.status == LoadStatus::Aborted);
            Ok(if aborted {
                ExitCode::FAILURE
            } else {
                ExitCode::SUCCESS
            })
        }
        Command::Demo { employees } => {
            let storage = Storage::open(&cli.storage)?;
            let landing = storage.child("landing")?;
            let Some(dir) = landing.local_dir().map(ToOwned::to_owned) else {
                bail!("demo writes sample files and needs a local storage root");
            };
            let present = Table::ALL
                .iter()
                .all(|t| dir.join(load::file_name(*t)).is_file());
            if present {
                println!("using the files in {}", dir.display());
            } else {
                let opts = GenOptions {
                    employees: *employees,
                    ..GenOptions::default()
                };
                let target = dir.clone();
                tokio::task::spawn_blocking(move || sample::generate(&target, &opts))
                    .await?
                    .context("cannot write sample files")?;
                println!("wrote sample files to {}", dir.display());
            }
            let store = open_store(&cli).await?;
            let req = LoadRequest {
                progress: bars::Bars::shared(),
                ..LoadRequest::new(landing, Vec::new())
            };
            let reports = load::load(&store, &req).await?;
            store.close().await?;
            print_load(&reports, false)?;
            println!();
            for table in Table::ALL {
                println!(
                    "{:<16} {:>10} rows",
                    table.name(),
                    store.count(table).await?
                );
            }
            println!(
                "\nRejected rows are kept with their reasons: `hrmig rejections --limit 20`\n\
                 (or --format csv|json). Run it again: files already loaded are skipped."
            );
            Ok(ExitCode::SUCCESS)
        }
        Command::Serve { listen } => {
            // Under the Functions host: its port, loopback only, and the
            // host's own routes.
            let host_port = crate::http::functions::host_port();
            let addr = match &host_port {
                Some(port) => format!("127.0.0.1:{port}"),
                None => listen.clone(),
            };
            // Checked before the database is opened: a bad limit fails fast.
            let limits = crate::http::LimitSettings::from_env()?;
            let store = std::sync::Arc::new(open_store(&cli).await?);
            let mut state = crate::http::AppState::new(
                store.clone(),
                Storage::open(&cli.storage)?,
                std::sync::Arc::new(crate::http::Keys::from_env()),
            );
            state.jobs = crate::ops::jobs::JobSettings::from_env().map_err(anyhow::Error::msg)?;
            state.limits = std::sync::Arc::new(crate::http::Limits::new(limits));
            if host_port.is_some() {
                // Under the Functions host a load job runs in a
                // queue-triggered invocation, which the host keeps alive.
                state.runner = crate::http::Runner::Queue;
            }
            let app = match host_port {
                Some(_) => crate::http::functions_router(state),
                None => crate::http::router(state),
            };
            let listener = tokio::net::TcpListener::bind(&addr)
                .await
                .with_context(|| format!("cannot listen on {addr}"))?;
            tracing::info!(address = %listener.local_addr()?, "listening");
            crate::http::serve(listener, app, limits, crate::http::shutdown_signal()).await?;
            store.close().await?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Backup {
            tables,
            codec,
            json,
        } => {
            let store = open_store(&cli).await?;
            let storage = Storage::open(&cli.storage)?;
            let tables = if tables.is_empty() {
                Table::ALL.to_vec()
            } else {
                tables.clone()
            };
            let mut out = std::io::stdout().lock();
            for table in tables {
                let m = backup::backup(&store, &storage, table, *codec, bars::Bars::shared())
                    .await
                    .with_context(|| format!("backup of {table} failed"))?;
                if *json {
                    writeln!(out, "{}", serde_json::to_string(&m)?)?;
                } else {
                    writeln!(
                        out,
                        "{:<16} {:<42} {:>10} rows {:>12} bytes  {}",
                        m.table.name(),
                        m.backup,
                        m.rows,
                        m.bytes,
                        m.codec.name()
                    )?;
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Backups { table, json } => {
            let storage = Storage::open(&cli.storage)?;
            let tables = table.map_or_else(|| Table::ALL.to_vec(), |t| vec![t]);
            let mut all = Vec::new();
            for t in tables {
                all.extend(backup::list(&storage, t).await?);
            }
            let mut out = std::io::stdout().lock();
            if *json {
                serde_json::to_writer_pretty(&mut out, &all)?;
                writeln!(out)?;
            } else {
                writeln!(
                    out,
                    "{:<16} {:<42} {:>10} {:>12} {:<24} sha256",
                    "table", "backup", "rows", "bytes", "created"
                )?;
                for m in &all {
                    writeln!(
                        out,
                        "{:<16} {:<42} {:>10} {:>12} {:<24} {}",
                        m.table.name(),
                        m.backup,
                        m.rows,
                        m.bytes,
                        m.created_at,
                        m.sha256
                    )?;
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Verify {
            table,
            backup: name,
            json,
        } => {
            let storage = Storage::open(&cli.storage)?;
            let v = backup::verify(&storage, *table, name.as_deref(), bars::Bars::shared()).await?;
            let mut out = std::io::stdout().lock();
            if *json {
                writeln!(out, "{}", serde_json::to_string(&v)?)?;
            } else if v.ok {
                writeln!(out, "{} {}: ok, {} rows", v.table.name(), v.backup, v.rows)?;
            }
            if v.ok {
                Ok(ExitCode::SUCCESS)
            } else {
                bail!("backup {} is damaged: {}", v.backup, v.problems.join("; "))
            }
        }
        Command::Restore {
            table,
            backup: name,
            json,
        } => {
            let store = open_store(&cli).await?;
            let storage = Storage::open(&cli.storage)?;
            let r = backup::restore(
                &store,
                &storage,
                *table,
                name.as_deref(),
                bars::Bars::shared(),
            )
            .await?;
            store.close().await?;
            let mut out = std::io::stdout().lock();
            if *json {
                writeln!(out, "{}", serde_json::to_string(&r)?)?;
            } else {
                writeln!(
                    out,
                    "{}: restored {} rows from {}",
                    r.table.name(),
                    r.rows,
                    r.backup
                )?;
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Report {
            report,
            year,
            format,
        } => {
            let store = open_store(&cli).await?;
            let mut out = std::io::stdout().lock();
            match report {
                Report::HiresByQuarter => {
                    let rows = store.hires_by_quarter(*year).await?;
                    match format {
                        Format::Json => serde_json::to_writer_pretty(&mut out, &rows)?,
                        Format::Csv => write_csv(&mut out, &rows)?,
                        Format::Table => {
                            writeln!(
                                out,
                                "{:<26} {:<36} {:>4} {:>4} {:>4} {:>4}",
                                "department", "job", "q1", "q2", "q3", "q4"
                            )?;
                            for r in &rows {
                                writeln!(
                                    out,
                                    "{:<26} {:<36} {:>4} {:>4} {:>4} {:>4}",
                                    r.department, r.job, r.q1, r.q2, r.q3, r.q4
                                )?;
                            }
                        }
                    }
                }
                Report::DepartmentsAboveMean => {
                    let rows = store.departments_above_mean(*year).await?;
                    match format {
                        Format::Json => serde_json::to_writer_pretty(&mut out, &rows)?,
                        Format::Csv => write_csv(&mut out, &rows)?,
                        Format::Table => {
                            writeln!(out, "{:>4} {:<26} {:>6}", "id", "department", "hired")?;
                            for r in &rows {
                                writeln!(out, "{:>4} {:<26} {:>6}", r.id, r.department, r.hired)?;
                            }
                        }
                    }
                }
            }
            if *format == Format::Json {
                writeln!(out)?;
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Rejections {
            table,
            limit,
            format,
        } => {
            let store = open_store(&cli).await?;
            let rows = store
                .rejections(RejectionFilter {
                    table: *table,
                    limit: *limit,
                    ..Default::default()
                })
                .await?;
            print_rejections(&rows, *format)?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Schema { dialect, reports } => {
            let sql = if *reports {
                ddl::reports(*dialect)
            } else {
                ddl::init(*dialect)
            };
            print!("{sql}");
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn write_csv<T: serde::Serialize>(out: &mut impl Write, rows: &[T]) -> Result<()> {
    let mut w = csv::Writer::from_writer(out);
    for r in rows {
        w.serialize(r)?;
    }
    w.flush()?;
    Ok(())
}

fn print_load(reports: &[LoadReport], json: bool) -> Result<()> {
    let mut out = std::io::stdout().lock();
    if json {
        for r in reports {
            serde_json::to_writer(&mut out, r)?;
            writeln!(out)?;
        }
        return Ok(());
    }
    writeln!(
        out,
        "{:<16} {:<15} {:>10} {:>10} {:>9} {:>6} {:>8}",
        "table", "status", "rows_read", "inserted", "rejected", "blank", "seconds"
    )?;
    for r in reports {
        writeln!(
            out,
            "{:<16} {:<15} {:>10} {:>10} {:>9} {:>6} {:>8.2}",
            r.table.name(),
            r.status.as_str(),
            r.rows_read,
            r.inserted,
            r.rejected,
            r.blank,
            r.seconds
        )?;
    }
    for r in reports {
        if let Some(m) = &r.message {
            writeln!(out, "{}: {m}", r.table.name())?;
        }
    }
    // The rejected rows themselves are in the log table, not on the
    // terminal: one line per file says how to list them.
    for r in reports.iter().filter(|r| r.rejected > 0) {
        writeln!(
            out,
            "{}: {} rows rejected, each with its reasons: hrmig rejections --table {}",
            r.table.name(),
            r.rejected,
            r.table.name()
        )?;
    }
    Ok(())
}

fn print_rejections(rows: &[crate::store::Rejection], format: Format) -> Result<()> {
    let mut out = std::io::stdout().lock();
    match format {
        Format::Json => {
            serde_json::to_writer_pretty(&mut out, rows)?;
            writeln!(out)?;
        }
        Format::Csv => {
            let mut w = csv::Writer::from_writer(out);
            w.write_record([
                "id",
                "table",
                "source",
                "position",
                "raw",
                "errors",
                "rejected_at",
            ])?;
            for r in rows {
                w.write_record([
                    r.id.to_string(),
                    r.table.clone(),
                    r.source.clone(),
                    r.position.to_string(),
                    r.raw.clone(),
                    serde_json::to_string(&r.errors)?,
                    r.rejected_at.clone(),
                ])?;
            }
            w.flush()?;
        }
        Format::Table => {
            writeln!(
                out,
                "{:>6} {:<16} {:>8}  {:<40} raw",
                "id", "table", "position", "errors"
            )?;
            for r in rows {
                let errors: Vec<String> = r
                    .errors
                    .iter()
                    .map(|e| format!("{}:{}", e.column.as_deref().unwrap_or("*"), e.code))
                    .collect();
                let raw: String = r
                    .raw
                    .chars()
                    .take(60)
                    .collect::<String>()
                    .replace(['\n', '\r'], " ");
                writeln!(
                    out,
                    "{:>6} {:<16} {:>8}  {:<40} {raw}",
                    r.id,
                    r.table,
                    r.position,
                    errors.join(" ")
                )?;
            }
        }
    }
    Ok(())
}
