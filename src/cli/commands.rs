//! One function per subcommand: open what it needs, call the operation,
//! print its report, and say how the process should exit.

use super::args::{
    BackupArgs, BackupChoiceArgs, BackupsArgs, Cli, DemoArgs, DismissArgs, FixArgs, GenArgs,
    LoadArgs, LoadsArgs, PruneArgs, RejectionsArgs, Report, ReportArgs, RetryArgs, RowArgs,
    SchemaArgs, ServeArgs, UndoArgs,
};
use super::print;
use crate::dictionary::Table;
use crate::ops::backup::{self, Retention};
use crate::ops::lineage;
use crate::ops::load::{self, LoadRequest, LoadStatus};
use crate::ops::rejections::{self, RetryRequest};
use crate::ops::sample::{self, GenOptions};
use crate::storage::Storage;
use crate::store::{RejectionFilter, Store, ddl};
use anyhow::{Context, Result, bail};
use std::process::ExitCode;

async fn open_store(cli: &Cli) -> Result<Store> {
    Store::open(&cli.database).await.with_context(|| {
        format!(
            "cannot open database {}",
            crate::store::redact(&cli.database)
        )
    })
}

/// The tables named, or all of them when none is.
pub(super) async fn gen_sample(args: &GenArgs) -> Result<ExitCode> {
    let opts = GenOptions {
        employees: args.employees,
        invalid_rate: args.invalid_rate,
        seed: args.seed,
    };
    let out = args.out.clone();
    let invalid = tokio::task::spawn_blocking(move || sample::generate(&out, &opts))
        .await?
        .context("cannot write sample files")?;
    println!(
        "wrote {}: {} departments, {} jobs, {} employees ({invalid} break a rule)",
        args.out.display(),
        sample::DEPARTMENTS.len(),
        sample::JOBS,
        args.employees
    );
    Ok(ExitCode::SUCCESS)
}

/// Fails when a file was aborted; rejected rows alone are not a failure.
pub(super) async fn load(cli: &Cli, args: &LoadArgs) -> Result<ExitCode> {
    let from = match &args.from {
        Some(dir) => Storage::open_existing(dir)?,
        None => Storage::open(&cli.storage)?.child("landing")?,
    };
    let store = open_store(cli).await?;
    let req = LoadRequest {
        force: args.force,
        max_rejects: args.max_rejects,
        dry_run: args.dry_run,
        on_duplicate: args.on_duplicate,
        progress: super::bars::Bars::shared(),
        ..LoadRequest::new(from, args.tables.clone())
    };
    let reports = load::load(&store, &req).await?;
    store.close().await?;
    print::load_reports(&reports, args.json)?;
    let aborted = reports.iter().any(|r| r.status == LoadStatus::Aborted);
    Ok(match aborted {
        true => ExitCode::FAILURE,
        false => ExitCode::SUCCESS,
    })
}

pub(super) async fn demo(cli: &Cli, args: &DemoArgs) -> Result<ExitCode> {
    let landing = Storage::open(&cli.storage)?.child("landing")?;
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
            employees: args.employees,
            ..GenOptions::default()
        };
        let target = dir.clone();
        tokio::task::spawn_blocking(move || sample::generate(&target, &opts))
            .await?
            .context("cannot write sample files")?;
        println!("wrote sample files to {}", dir.display());
    }
    let store = open_store(cli).await?;
    let req = LoadRequest {
        progress: super::bars::Bars::shared(),
        ..LoadRequest::new(landing, Vec::new())
    };
    let reports = load::load(&store, &req).await?;
    print::load_reports(&reports, false)?;
    println!();
    for table in Table::ALL {
        println!(
            "{:<16} {:>10} rows",
            table.name(),
            store.count(table).await?
        );
    }
    // Closed after the counts: a server backend's pool takes no queries
    // once closed.
    store.close().await?;
    println!(
        "\nRejected rows are kept with their reasons: `hrmig rejections --limit 20`\n\
         (or --format csv|json). Run it again: files already loaded are skipped."
    );
    Ok(ExitCode::SUCCESS)
}

pub(super) async fn serve(cli: &Cli, args: &ServeArgs) -> Result<ExitCode> {
    let config = crate::http::server::ServerConfig {
        database: cli.database.clone(),
        storage: cli.storage.clone(),
        listen: args.listen.clone(),
    };
    crate::http::server::start(config, crate::http::shutdown_signal()).await?;
    Ok(ExitCode::SUCCESS)
}

pub(super) async fn backup(cli: &Cli, args: &BackupArgs) -> Result<ExitCode> {
    let store = open_store(cli).await?;
    let storage = Storage::open(&cli.storage)?;
    for table in Table::each_once(&args.tables) {
        let m = backup::backup(
            &store,
            &storage,
            table,
            args.codec,
            super::bars::Bars::shared(),
        )
        .await
        .with_context(|| format!("backup of {table} failed"))?;
        print::manifest(&m, args.json)?;
    }
    Ok(ExitCode::SUCCESS)
}

pub(super) async fn list_backups(cli: &Cli, args: &BackupsArgs) -> Result<ExitCode> {
    let storage = Storage::open(&cli.storage)?;
    let mut all = Vec::new();
    for t in Table::each_once(args.table.as_slice()) {
        all.extend(backup::list(&storage, t).await?);
    }
    print::backups(&all, args.json)?;
    Ok(ExitCode::SUCCESS)
}

pub(super) async fn prune_backups(cli: &Cli, args: &PruneArgs) -> Result<ExitCode> {
    let storage = Storage::open(&cli.storage)?;
    let retention = Retention::new(args.keep, args.older_than)?;
    for table in Table::each_once(&args.tables) {
        let pruned = backup::prune(&storage, table, retention).await?;
        print::pruned(&pruned, args.json)?;
    }
    Ok(ExitCode::SUCCESS)
}

/// Fails, with the problems, when the backup is damaged.
pub(super) async fn verify(cli: &Cli, args: &BackupChoiceArgs) -> Result<ExitCode> {
    let storage = Storage::open(&cli.storage)?;
    let v = backup::verify(
        &storage,
        args.table,
        args.backup.as_deref(),
        super::bars::Bars::shared(),
    )
    .await?;
    print::verification(&v, args.json)?;
    if !v.ok {
        bail!("backup {} is damaged: {}", v.backup, v.problems.join("; "))
    }
    Ok(ExitCode::SUCCESS)
}

pub(super) async fn restore(cli: &Cli, args: &BackupChoiceArgs) -> Result<ExitCode> {
    let store = open_store(cli).await?;
    let storage = Storage::open(&cli.storage)?;
    let r = backup::restore(
        &store,
        &storage,
        args.table,
        args.backup.as_deref(),
        super::bars::Bars::shared(),
    )
    .await?;
    store.close().await?;
    print::restored(&r, args.json)?;
    Ok(ExitCode::SUCCESS)
}

pub(super) async fn report(cli: &Cli, args: &ReportArgs) -> Result<ExitCode> {
    let store = open_store(cli).await?;
    match args.report {
        Report::HiresByQuarter => {
            let rows = store.hires_by_quarter(args.year).await?;
            print::hires_by_quarter(&rows, args.format)?;
        }
        Report::DepartmentsAboveMean => {
            let rows = store.departments_above_mean(args.year).await?;
            print::departments_above_mean(&rows, args.format)?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

pub(super) async fn rejections(cli: &Cli, args: &RejectionsArgs) -> Result<ExitCode> {
    let store = open_store(cli).await?;
    let filter = RejectionFilter {
        table: args.filter.table,
        source: args.filter.source.clone(),
        status: args.status,
        code: args.filter.code,
        after: args.after,
        limit: args.limit,
    };
    if args.summary {
        print::rejection_summary(&store.rejection_summary(filter).await?, args.format)?;
    } else {
        print::rejections(&store.rejections(filter).await?, args.format)?;
    }
    Ok(ExitCode::SUCCESS)
}

pub(super) async fn retry(cli: &Cli, args: &RetryArgs) -> Result<ExitCode> {
    let store = open_store(cli).await?;
    let req = RetryRequest {
        table: args.filter.table,
        code: args.filter.code,
        source: args.filter.source.clone(),
    };
    print::retry(&rejections::retry(&store, &req).await?, args.json)?;
    Ok(ExitCode::SUCCESS)
}

/// Exit 1 when the corrected row is refused (its errors printed).
pub(super) async fn fix(cli: &Cli, args: &FixArgs) -> Result<ExitCode> {
    let store = open_store(cli).await?;
    let report = rejections::fix(&store, args.id, args.row.as_bytes()).await?;
    print::fix(&report, args.json)?;
    Ok(match report.errors.is_empty() {
        true => ExitCode::SUCCESS,
        false => ExitCode::FAILURE,
    })
}

pub(super) async fn dismiss(cli: &Cli, args: &DismissArgs) -> Result<ExitCode> {
    let store = open_store(cli).await?;
    print::dismissals(&rejections::dismiss(&store, &args.ids).await?, args.json)?;
    Ok(ExitCode::SUCCESS)
}

pub(super) async fn loads(cli: &Cli, args: &LoadsArgs) -> Result<ExitCode> {
    let store = open_store(cli).await?;
    let history = store.loads(args.table, args.limit).await?;
    print::loads(&history, args.json)?;
    Ok(ExitCode::SUCCESS)
}

/// An unknown id, a refusal: exit 1 with the reason (and its counts).
pub(super) async fn undo(cli: &Cli, args: &UndoArgs) -> Result<ExitCode> {
    let store = open_store(cli).await?;
    print::undo(&lineage::undo(&store, args.id).await?, args.json)?;
    Ok(ExitCode::SUCCESS)
}

pub(super) async fn row(cli: &Cli, args: &RowArgs) -> Result<ExitCode> {
    let store = open_store(cli).await?;
    print::row(&lineage::row(&store, args.table, args.id).await?)?;
    Ok(ExitCode::SUCCESS)
}

pub(super) fn schema(args: &SchemaArgs) -> Result<ExitCode> {
    let sql = match (args.reports, args.all) {
        (true, _) => ddl::reports(args.dialect),
        (false, true) => (ddl::migrations(args.dialect).into_iter())
            .map(|(_, sql)| sql)
            .collect::<Vec<_>>()
            .join("\n"),
        (false, false) => ddl::init(args.dialect),
    };
    print!("{sql}");
    Ok(ExitCode::SUCCESS)
}
