//! The command line's renderers: an operation's report as a text table, CSV
//! or JSON on standard output.

use super::args::Format;
use crate::ops::backup::{Manifest, Pruned, Restored, Verification};
use crate::ops::lineage::{RowReport, UndoReport};
use crate::ops::load::LoadReport;
use crate::ops::rejections::{Dismissal, FixReport, RetryReport};
use crate::store::{
    DepartmentHires, LoadRecord, OperationKind, QuarterRow, Rejection, RejectionCount,
    RejectionStatus,
};
use anyhow::Result;
use std::io::{StdoutLock, Write};

/// Rows in `format`; `table` writes the text table of a terminal.
fn in_format<T: serde::Serialize>(
    rows: &[T],
    format: Format,
    table: impl FnOnce(&mut StdoutLock<'static>, &[T]) -> std::io::Result<()>,
) -> Result<()> {
    let mut out = std::io::stdout().lock();
    match format {
        Format::Json => {
            serde_json::to_writer_pretty(&mut out, rows)?;
            writeln!(out)?;
        }
        Format::Csv => write_csv(&mut out, rows)?,
        Format::Table => table(&mut out, rows)?,
    }
    Ok(())
}

fn write_csv<T: serde::Serialize>(out: &mut impl Write, rows: &[T]) -> Result<()> {
    let mut w = csv::Writer::from_writer(out);
    for r in rows {
        w.serialize(r)?;
    }
    w.flush()?;
    Ok(())
}

/// One JSON object a line.
fn json_lines<T: serde::Serialize>(items: &[T]) -> Result<()> {
    let mut out = std::io::stdout().lock();
    for item in items {
        serde_json::to_writer(&mut out, item)?;
        writeln!(out)?;
    }
    Ok(())
}

/// One result: a JSON line, or the line `text` makes of it (none: nothing
/// to say beyond the exit status).
fn one<T: serde::Serialize>(
    item: &T,
    json: bool,
    text: impl FnOnce(&T) -> Option<String>,
) -> Result<()> {
    if json {
        return json_lines(std::slice::from_ref(item));
    }
    if let Some(line) = text(item) {
        writeln!(std::io::stdout().lock(), "{line}")?;
    }
    Ok(())
}

pub(super) fn load_reports(reports: &[LoadReport], json: bool) -> Result<()> {
    if json {
        return json_lines(reports);
    }
    let mut out = std::io::stdout().lock();
    // An `updated` column only where a file updated rows: a load that
    // keeps the data rules reads as it always has.
    let updates = reports.iter().any(|r| r.updated > 0);
    let updated = |n: &dyn std::fmt::Display| match updates {
        true => format!(" {n:>9}"),
        false => String::new(),
    };
    writeln!(
        out,
        "{:<16} {:<15} {:>10} {:>10}{} {:>9} {:>6} {:>8}",
        "table",
        "status",
        "rows_read",
        "inserted",
        updated(&"updated"),
        "rejected",
        "blank",
        "seconds"
    )?;
    for r in reports {
        writeln!(
            out,
            "{:<16} {:<15} {:>10} {:>10}{} {:>9} {:>6} {:>8.2}",
            r.table.name(),
            r.status.as_str(),
            r.rows_read,
            r.inserted,
            updated(&r.updated),
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
    if reports.iter().any(|r| r.dry_run) {
        // Nothing is in the log to list: the first rows that a load would
        // reject are shown here instead.
        for r in reports {
            for would in r.rejections.iter().take(10) {
                let reason =
                    |e: &crate::dictionary::FieldError| format!("{}: {}", e.code, e.message);
                let reasons: Vec<String> = would.errors.iter().map(reason).collect();
                let line = would.line;
                writeln!(
                    out,
                    "{} line {line}: {}",
                    r.table.name(),
                    reasons.join("; ")
                )?;
            }
            if r.rejected > 10 {
                let more = r.rejected - 10;
                writeln!(
                    out,
                    "{}: {more} more (--json lists the first 100)",
                    r.table.name()
                )?;
            }
        }
        writeln!(
            out,
            "dry run: nothing was written; the counts are what a load would do now"
        )?;
        return Ok(());
    }
    for r in reports.iter().filter(|r| r.rejected > 0) {
        let codes: Vec<String> = (r.rejected_by_code.iter())
            .map(|(code, n)| format!("{code} {n}"))
            .collect();
        writeln!(
            out,
            "{}: {} rows rejected ({}), each with its reasons: hrmig rejections --table {}",
            r.table.name(),
            r.rejected,
            codes.join(", "),
            r.table.name()
        )?;
    }
    Ok(())
}

pub(super) fn rejections(rows: &[Rejection], format: Format) -> Result<()> {
    match format {
        Format::Csv => rejections_csv(rows),
        _ => in_format(rows, format, |out, rows| {
            writeln!(
                out,
                "{:>6} {:<16} {:>8} {:<9}  {:<40} raw",
                "id", "table", "position", "status", "errors"
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
                    "{:>6} {:<16} {:>8} {:<9}  {:<40} {raw}",
                    r.id,
                    r.table,
                    r.position,
                    r.status.as_str(),
                    errors.join(" ")
                )?;
            }
            Ok(())
        }),
    }
}

/// The errors column is one JSON array, so a spreadsheet keeps a rejection
/// on one row.
fn rejections_csv(rows: &[Rejection]) -> Result<()> {
    let mut w = csv::Writer::from_writer(std::io::stdout().lock());
    w.write_record([
        "id",
        "table",
        "source",
        "position",
        "raw",
        "errors",
        "rejected_at",
        "status",
        "resolved_by",
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
            r.status.as_str().to_owned(),
            r.resolved_by.map(|id| id.to_string()).unwrap_or_default(),
        ])?;
    }
    w.flush()?;
    Ok(())
}

/// The rejection log counted by table, code and status.
pub(super) fn rejection_summary(rows: &[RejectionCount], format: Format) -> Result<()> {
    in_format(rows, format, |out, rows| {
        writeln!(
            out,
            "{:<16} {:<12} {:<9} {:>9}",
            "table", "code", "status", "count"
        )?;
        for r in rows {
            let (t, c, s) = (&r.table, &r.code, r.status.as_str());
            writeln!(out, "{t:<16} {c:<12} {s:<9} {:>9}", r.count)?;
        }
        Ok(())
    })
}

/// What a retry did, per table.
pub(super) fn retry(report: &RetryReport, json: bool) -> Result<()> {
    one(report, json, |r| {
        if r.tables.is_empty() {
            return Some("nothing open to retry".to_owned());
        }
        let mut text = String::new();
        for t in &r.tables {
            text += &format!(
                "{}: {} open rejections checked, {} rows inserted (resolved), {} still open\n",
                t.table, t.checked, t.resolved, t.still_open
            );
            if t.skipped > 0 {
                text += &format!(
                    "  {} of them not checked again: their raw text is kept altered \
                     (invalid UTF-8 or over 4 KiB); fix them with `hrmig rejections fix`\n",
                    t.skipped
                );
            }
        }
        if r.still_open > 0 {
            text += "Still open, with their errors now: hrmig rejections --status open";
        }
        Some(text.trim_end().to_owned())
    })
}

/// What became of a fix; a refused row's errors.
pub(super) fn fix(report: &FixReport, json: bool) -> Result<()> {
    one(report, json, |r| {
        Some(match (r.errors.is_empty(), r.resolved_by) {
            (true, Some(op)) => format!(
                "rejection {}: row inserted, resolved by operation {op}",
                r.id
            ),
            (true, None) => format!("rejection {}: row inserted", r.id),
            (false, _) => {
                let errors: Vec<String> = (r.errors.iter())
                    .map(|e| format!("  {}: {}", e.column.as_deref().unwrap_or("*"), e.message))
                    .collect();
                format!(
                    "rejection {}: the corrected row is refused, the rejection stays open\n{}",
                    r.id,
                    errors.join("\n")
                )
            }
        })
    })
}

/// Each rejection named, and whether this dismissed it.
pub(super) fn dismissals(done: &[Dismissal], json: bool) -> Result<()> {
    if json {
        return json_lines(done);
    }
    let mut out = std::io::stdout().lock();
    for d in done {
        let what = match (d.changed, d.status) {
            (true, _) => "dismissed",
            (false, RejectionStatus::Dismissed) => "already dismissed, unchanged",
            (false, _) => "resolved, not dismissed",
        };
        writeln!(out, "rejection {}: {what}", d.id)?;
    }
    Ok(())
}

pub(super) fn hires_by_quarter(rows: &[QuarterRow], format: Format) -> Result<()> {
    in_format(rows, format, |out, rows| {
        writeln!(
            out,
            "{:<26} {:<36} {:>4} {:>4} {:>4} {:>4}",
            "department", "job", "q1", "q2", "q3", "q4"
        )?;
        for r in rows {
            writeln!(
                out,
                "{:<26} {:<36} {:>4} {:>4} {:>4} {:>4}",
                r.department, r.job, r.q1, r.q2, r.q3, r.q4
            )?;
        }
        Ok(())
    })
}

pub(super) fn departments_above_mean(rows: &[DepartmentHires], format: Format) -> Result<()> {
    in_format(rows, format, |out, rows| {
        writeln!(out, "{:>4} {:<26} {:>6}", "id", "department", "hired")?;
        for r in rows {
            writeln!(out, "{:>4} {:<26} {:>6}", r.id, r.department, r.hired)?;
        }
        Ok(())
    })
}

/// JSON (pretty) or a text table, as `--json` says.
fn json_or(json: bool) -> Format {
    if json { Format::Json } else { Format::Table }
}

/// The load history, newest first.
pub(super) fn loads(history: &[LoadRecord], json: bool) -> Result<()> {
    in_format(history, json_or(json), |out, history| {
        let head = (
            "id",
            "kind",
            "table",
            "status",
            "rows_read",
            "inserted",
            "updated",
            "rejected",
            "started",
        );
        let (id, kind, table, status, read, inserted, updated, rejected, started) = head;
        writeln!(
            out,
            "{id:>6} {kind:<7} {table:<16} {status:<8} {read:>10} {inserted:>10} {updated:>9} {rejected:>9} {started:<24} source"
        )?;
        for l in history {
            let (id, table, started) = (l.id, &l.table, &l.started_at);
            let status = match l.undone_by {
                Some(_) => "undone",
                None => l.status.as_str(),
            };
            let (read, inserted, updated, rejected) =
                (l.rows_read, l.inserted, l.updated, l.rejected);
            let kind = l.kind.as_str();
            let source = match (l.kind, l.undone_by) {
                (OperationKind::Undo, _) => format!("{} (removed {})", l.source, l.removed),
                (_, Some(undo)) => format!("{} (undone by {undo})", l.source),
                _ => l.source.clone(),
            };
            writeln!(
                out,
                "{id:>6} {kind:<7} {table:<16} {status:<8} {read:>10} {inserted:>10} {updated:>9} {rejected:>9} {started:<24} {source}"
            )?;
        }
        Ok(())
    })
}

/// What an undo did.
pub(super) fn undo(report: &UndoReport, json: bool) -> Result<()> {
    one(report, json, |r| {
        let (id, table, undo) = (r.load_id, &r.table, r.undo_id);
        Some(match r.changed {
            true => format!(
                "operation {id} undone: {} rows of {table} removed (history entry {undo})",
                r.removed
            ),
            false => {
                format!("operation {id} was undone before (history entry {undo}): nothing changed")
            }
        })
    })
}

/// A row and its origin, as JSON.
pub(super) fn row(report: &RowReport) -> Result<()> {
    let mut out = std::io::stdout().lock();
    serde_json::to_writer_pretty(&mut out, report)?;
    writeln!(out)?;
    Ok(())
}

/// A backup just made.
pub(super) fn manifest(m: &Manifest, json: bool) -> Result<()> {
    one(m, json, |m| {
        let (table, codec) = (m.table.name(), m.codec.name());
        let (backup, rows, bytes) = (&m.backup, m.rows, m.bytes);
        Some(format!(
            "{table:<16} {backup:<42} {rows:>10} rows {bytes:>12} bytes  {codec}"
        ))
    })
}

/// The backups there are.
pub(super) fn backups(all: &[Manifest], json: bool) -> Result<()> {
    in_format(all, json_or(json), |out, all| {
        writeln!(
            out,
            "{:<16} {:<42} {:>10} {:>12} {:<24} sha256",
            "table", "backup", "rows", "bytes", "created"
        )?;
        for m in all {
            let (table, backup, created, sha256) =
                (m.table.name(), &m.backup, &m.created_at, &m.sha256);
            let (rows, bytes) = (m.rows, m.bytes);
            writeln!(
                out,
                "{table:<16} {backup:<42} {rows:>10} {bytes:>12} {created:<24} {sha256}"
            )?;
        }
        Ok(())
    })
}

/// A verdict; the text of a damaged backup is the caller's error message.
pub(super) fn verification(v: &Verification, json: bool) -> Result<()> {
    one(v, json, |v| {
        v.ok.then(|| format!("{} {}: ok, {} rows", v.table.name(), v.backup, v.rows))
    })
}

pub(super) fn restored(r: &Restored, json: bool) -> Result<()> {
    one(r, json, |r| {
        let (table, rows, backup) = (r.table.name(), r.rows, &r.backup);
        Some(format!("{table}: restored {rows} rows from {backup}"))
    })
}

pub(super) fn pruned(p: &Pruned, json: bool) -> Result<()> {
    one(p, json, |p| {
        let (table, kept) = (p.table.name(), p.kept);
        Some(match p.removed.as_slice() {
            [] => format!("{table}: nothing to prune, {kept} kept"),
            removed => format!("{table}: removed {}, {kept} kept", removed.join(", ")),
        })
    })
}
