//! Logging: `tracing` to stderr, human-readable or one JSON object per line.

use crate::dictionary::{FieldError, Table};
use std::sync::atomic::{AtomicBool, Ordering};
use tracing_subscriber::EnvFilter;

/// Whether logs are JSON lines, for machines: then every rejected row is an
/// INFO event. In text logs, for people, it is a DEBUG one: a file with
/// thousands of bad rows would bury the summary.
static JSON_LOGS: AtomicBool = AtomicBool::new(false);

/// Installs the global subscriber. `filter` is an `EnvFilter` directive
/// (`info`, `hrmig=debug`, …); `json` selects one JSON object per line.
/// Does nothing when a subscriber is already installed (tests).
pub fn init(filter: &str, json: bool) {
    let filter = EnvFilter::try_new(filter).unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_target(true);
    JSON_LOGS.store(json, Ordering::Relaxed);
    let _ = if json {
        builder.json().flatten_event(true).try_init()
    } else {
        builder.compact().try_init()
    };
}

/// The structured event of one rejected row (never its raw text): target
/// `hrmig::rejection`, with table, source, position and the codes. The
/// codes are written out only when the event is logged: in text logs it is
/// a DEBUG event, filtered out by default, and a load may reject millions.
pub fn rejected_row(table: Table, source: &str, position: u64, errors: &[FieldError]) {
    let codes = Codes(errors);
    if JSON_LOGS.load(Ordering::Relaxed) {
        tracing::info!(target: "hrmig::rejection", table = table.name(), source, position, codes = %codes, "row rejected");
    } else {
        tracing::debug!(target: "hrmig::rejection", table = table.name(), source, position, codes = %codes, "row rejected");
    }
}

/// A row's error codes, comma separated.
struct Codes<'e>(&'e [FieldError]);

impl std::fmt::Display for Codes<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            f.write_str(e.code.as_str())?;
        }
        Ok(())
    }
}
