//! The command-line door: parses arguments, calls an operation, renders its
//! report. Exit codes: 0 success, 1 failure, 2 usage error.
//!
//! `args` is the grammar, `commands` holds one function per subcommand
//! and `print` the renderers of their reports.

mod args;
mod bars;
mod commands;
mod print;

use anyhow::Result;
use args::{BackupsAction, Cli, Command, RejectionsAction};
use clap::Parser;
use std::process::ExitCode;

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
    match runtime.block_on(run(&cli)) {
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

async fn run(cli: &Cli) -> Result<ExitCode> {
    match &cli.command {
        Command::Gen(args) => commands::gen_sample(args).await,
        Command::Load(args) => commands::load(cli, args).await,
        Command::Demo(args) => commands::demo(cli, args).await,
        Command::Serve(args) => commands::serve(cli, args).await,
        Command::Backup(args) => commands::backup(cli, args).await,
        Command::Backups(args) => match &args.action {
            None => commands::list_backups(cli, args).await,
            Some(BackupsAction::Prune(prune)) => commands::prune_backups(cli, prune).await,
        },
        Command::Verify(args) => commands::verify(cli, args).await,
        Command::Restore(args) => commands::restore(cli, args).await,
        Command::Report(args) => commands::report(cli, args).await,
        Command::Rejections(args) => match &args.action {
            None => commands::rejections(cli, args).await,
            Some(RejectionsAction::Retry(retry)) => commands::retry(cli, retry).await,
            Some(RejectionsAction::Fix(fix)) => commands::fix(cli, fix).await,
            Some(RejectionsAction::Dismiss(dismiss)) => commands::dismiss(cli, dismiss).await,
        },
        Command::Loads(args) => commands::loads(cli, args).await,
        Command::Undo(args) => commands::undo(cli, args).await,
        Command::Row(args) => commands::row(cli, args).await,
        Command::Schema(args) => commands::schema(args),
    }
}
