//! The loop after a rejection: retry the open rejections (rows whose
//! parent has arrived since pass now), fix one with a corrected row, or
//! dismiss it. A rejection is never deleted; its raw text stays as it was
//! received.

use crate::csvfile::MAX_RAW_KEPT;
use crate::dictionary::{ErrorCode, FieldError, Table};
use crate::ops::ingest::{parse_csv, parse_json};
use crate::store::{
    Chunk, MAX_IDS, OperationKind, Rejection, RejectionFilter, RejectionStatus, Requeue, Store,
    StoreError, TableBatch, TableOutcome,
};
use serde::Serialize;

/// Open rejections checked per operation of a retry: the size of the
/// largest API batch, which every backend applies in one transaction
/// without holding much (raw rows are at most 4 KiB each).
pub const RETRY_ROUND: u32 = 1000;

/// Why a request on the rejection log was refused; nothing was changed.
#[derive(Debug, thiserror::Error)]
pub enum QueueError {
    /// Ids that are not in the log.
    #[error("no rejection with id {}", list(.0))]
    NotFound(Vec<i64>),
    /// A fix of a rejection that is no longer open.
    #[error("rejection {id} is {}, not open: nothing to fix", .status.as_str())]
    NotOpen {
        /// The rejection.
        id: i64,
        /// Its status.
        status: RejectionStatus,
    },
    /// A request the queue cannot take (no ids, too many, a body that is
    /// not a JSON object).
    #[error("{0}")]
    Bad(String),
    /// The database failed; the transaction was rolled back.
    #[error(transparent)]
    Store(#[from] StoreError),
}

fn list(ids: &[i64]) -> String {
    let ids: Vec<String> = ids.iter().map(i64::to_string).collect();
    ids.join(", ")
}

/// Which open rejections a retry checks.
#[derive(Debug, Clone, Default)]
pub struct RetryRequest {
    /// Only this table's.
    pub table: Option<Table>,
    /// Only those with an error of this code.
    pub code: Option<ErrorCode>,
    /// Only this source's (`file:…`, `api:<batch id>`).
    pub source: Option<String>,
}

/// What a retry did to one table's open rejections.
#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq, utoipa::ToSchema)]
pub struct RetriedTable {
    /// The table.
    pub table: String,
    /// Open rejections checked.
    pub checked: u64,
    /// Rows inserted now; their rejections are resolved.
    pub resolved: u64,
    /// Still open, each with the errors it has now.
    pub still_open: u64,
    /// Of those, not checked: the log keeps their raw text altered (see
    /// [`as_received`]), so only a fix can resolve them.
    pub skipped: u64,
}

/// What a retry did: per table, and the history ids of the operations
/// that inserted rows (one per table).
#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq, utoipa::ToSchema)]
pub struct RetryReport {
    /// Open rejections checked.
    pub checked: u64,
    /// Rows inserted; their rejections are resolved.
    pub resolved: u64,
    /// Still open.
    pub still_open: u64,
    /// Of those, not checked: their raw text is kept altered.
    pub skipped: u64,
    /// Each table that had open rejections, parents first.
    pub tables: Vec<RetriedTable>,
    /// History ids of the operations that inserted rows, in order.
    pub operations: Vec<i64>,
}

/// Checks the open rejections that `req` names again, as they were
/// received, parents first: a department or job that passes now is in
/// the table before the employees that name it are checked. Each round of
/// up to [`RETRY_ROUND`] rejections of a table is one transaction; a
/// table's rounds that inserted rows are one operation in the history,
/// which every rejection they resolved names.
pub async fn retry(store: &Store, req: &RetryRequest) -> Result<RetryReport, QueueError> {
    let mut report = RetryReport::default();
    for table in req.table.map_or(Table::ALL.to_vec(), |t| vec![t]) {
        let mut done = RetriedTable {
            table: table.name().to_owned(),
            ..Default::default()
        };
        let mut after = 0;
        // One operation per table, whatever the rounds.
        let source = format!("retry:{}", uuid::Uuid::new_v4());
        loop {
            let open = store
                .rejections(RejectionFilter {
                    table: Some(table),
                    source: req.source.clone(),
                    status: Some(RejectionStatus::Open),
                    code: req.code,
                    after: Some(after),
                    limit: RETRY_ROUND,
                })
                .await?;
            let Some(last) = open.last() else { break };
            after = last.id;
            let round = requeue(store, table, &open, OperationKind::Retry, &source).await?;
            done.checked += open.len() as u64;
            done.resolved += round.inserted;
            done.still_open += open.len() as u64 - round.inserted;
            done.skipped += open.len() as u64 - round.received;
        }
        if done.resolved > 0 {
            let counts = [done.checked, done.resolved, done.still_open];
            store.settle_operation(table, &source, counts).await?;
            let entries = store.operation(&source).await?;
            report.operations.extend(entries.iter().map(|l| l.id));
        }
        if done.checked > 0 {
            report.checked += done.checked;
            report.resolved += done.resolved;
            report.still_open += done.still_open;
            report.skipped += done.skipped;
            report.tables.push(done);
        }
    }
    Ok(report)
}

/// Checks `open` (rejections of `table`) again in one transaction. A raw
/// text that is not the row as received, or does not read as one row,
/// stays open as it is.
async fn requeue(
    store: &Store,
    table: Table,
    open: &[Rejection],
    kind: OperationKind,
    source: &str,
) -> Result<TableOutcome, StoreError> {
    let exact: Vec<&Rejection> = open.iter().filter(|r| as_received(r)).collect();
    let (csv, json): (Vec<&Rejection>, Vec<&Rejection>) =
        exact.into_iter().partition(|r| !is_json(&r.raw));
    let mut chunk = Chunk::default();
    let mut rows = Vec::with_capacity(open.len());
    let alone = match csv_records(table, &csv) {
        Some(all) => {
            let mut all = all.chunk;
            for (c, r) in all.rows.iter_mut().zip(&csv) {
                c.position = rows.len() as u64;
                rows.push((r.id, r.errors.clone()));
            }
            chunk.append(all);
            json
        }
        None => csv.into_iter().chain(json).collect(),
    };
    for r in alone {
        if let Some(one) = reread(table, &r.raw) {
            let mut one = one.chunk;
            one.rows[0].position = rows.len() as u64;
            chunk.append(one);
            rows.push((r.id, r.errors.clone()));
        }
    }
    if rows.is_empty() {
        return Ok(TableOutcome::empty(table));
    }
    let requeue = Requeue {
        kind,
        rows: vec![rows],
    };
    let tables = vec![TableBatch { table, chunk }];
    let outcome = store.requeue(source.to_owned(), tables, requeue).await?;
    Ok((outcome.into_iter().next()).unwrap_or(TableOutcome::empty(table)))
}

/// CSV raw texts read in one pass, one record each, when they read so:
/// every record's raw text is the rejection's, in order. A raw text that
/// reads otherwise (an open quote that would take in the next lines, a
/// header) makes this `None`, and each is then read alone. One pass saves
/// building a CSV reader per record, which costs more than the record.
fn csv_records(table: Table, csv: &[&Rejection]) -> Option<TableBatch> {
    if csv.is_empty() {
        return None;
    }
    let mut body = Vec::with_capacity(csv.iter().map(|r| r.raw.len() + 1).sum());
    for r in csv {
        body.extend_from_slice(r.raw.as_bytes());
        body.push(b'\n');
    }
    let batch = parse_csv(table, &body).ok()?.batch;
    let chunk = &batch.chunk;
    let aligned = chunk.rows.len() == csv.len()
        && (chunk.rows.iter().zip(csv))
            .all(|(c, r)| chunk.raw.get(c.raw.clone()) == Some(r.raw.as_bytes()));
    aligned.then_some(batch)
}

fn is_json(raw: &str) -> bool {
    raw.trim_start().starts_with('{')
}

/// Whether a rejection's raw text is the row exactly as it was received,
/// so that checking it again checks what the client sent. The log keeps
/// bytes that are not UTF-8 (and, on server databases, NUL) as U+FFFD,
/// which only happens to a row with an `encoding` error, and cuts a raw
/// text at [`MAX_RAW_KEPT`] bytes. Such a row, read again, could pass the
/// rules as a row its sender never sent: it is left for a fix.
pub fn as_received(r: &Rejection) -> bool {
    r.raw.len() < MAX_RAW_KEPT && !r.errors.iter().any(|e| e.code == ErrorCode::Encoding)
}

/// A rejection's raw text read again as one row, as the API or the file
/// reader read it: a JSON object (an API row), else a CSV record.
fn reread(table: Table, raw: &str) -> Option<TableBatch> {
    let parsed = match is_json(raw) {
        true => parse_json(table, format!("[{raw}]").as_bytes()),
        false => parse_csv(table, raw.as_bytes()),
    };
    parsed
        .ok()
        .map(|p| p.batch)
        .filter(|b| b.chunk.rows.len() == 1)
}

/// What became of a fix.
#[derive(Debug, Clone, Serialize, PartialEq, Eq, utoipa::ToSchema)]
pub struct FixReport {
    /// The rejection.
    pub id: i64,
    /// `resolved` when the corrected row was inserted; `open` otherwise.
    pub status: RejectionStatus,
    /// The history id of the fix, when it inserted the row.
    pub resolved_by: Option<i64>,
    /// The corrected row's errors, when it was refused (the rejection
    /// stays open, as it was).
    pub errors: Vec<FieldError>,
}

/// Inserts a corrected row for rejection `id`, checked like an API row of
/// the rejection's table, and resolves the rejection; or returns the
/// row's errors and changes nothing. `row` must be one JSON object.
pub async fn fix(store: &Store, id: i64, row: &[u8]) -> Result<FixReport, QueueError> {
    let rejection = store.rejections_by_id(&[id]).await?.into_iter().next();
    let rejection = rejection.ok_or(QueueError::NotFound(vec![id]))?;
    if rejection.status != RejectionStatus::Open {
        return Err(QueueError::NotOpen {
            id,
            status: rejection.status,
        });
    }
    let object: Result<serde_json::Map<String, serde_json::Value>, _> = serde_json::from_slice(row);
    if let Err(e) = object {
        return Err(QueueError::Bad(format!(
            "the corrected row must be one JSON object: {e}"
        )));
    }
    let table = Table::parse(&rejection.table).map_err(|e| StoreError::Task(e.to_string()))?;
    let mut body = Vec::with_capacity(row.len() + 2);
    body.push(b'[');
    body.extend_from_slice(row);
    body.push(b']');
    let parsed = parse_json(table, &body).map_err(|e| QueueError::Bad(e.to_string()))?;
    let requeue = Requeue {
        kind: OperationKind::Fix,
        rows: vec![vec![(id, rejection.errors.clone())]],
    };
    let source = format!("fix:{}", uuid::Uuid::new_v4());
    let outcome = store
        .requeue(source.clone(), vec![parsed.batch], requeue)
        .await?;
    let errors = outcome
        .into_iter()
        .flat_map(|o| o.rejected)
        .flat_map(|(_, e)| e)
        .collect::<Vec<_>>();
    if !errors.is_empty() {
        return Ok(FixReport {
            id,
            status: RejectionStatus::Open,
            resolved_by: None,
            errors,
        });
    }
    let after = store.rejections_by_id(&[id]).await?.into_iter().next();
    Ok(FixReport {
        id,
        status: after.as_ref().map_or(RejectionStatus::Open, |r| r.status),
        resolved_by: after.and_then(|r| r.resolved_by),
        errors: Vec::new(),
    })
}

/// What a dismissal did to one rejection.
#[derive(Debug, Clone, Serialize, PartialEq, Eq, utoipa::ToSchema)]
pub struct Dismissal {
    /// The rejection.
    pub id: i64,
    /// Its status now: `dismissed`, or `resolved` (a resolved rejection is
    /// not dismissed).
    pub status: RejectionStatus,
    /// Whether this request dismissed it (false when it was already).
    pub changed: bool,
}

/// Sets open rejections aside: they are no longer retried. Every id must
/// be in the log, or nothing changes. At most [`MAX_IDS`] at once.
pub async fn dismiss(store: &Store, ids: &[i64]) -> Result<Vec<Dismissal>, QueueError> {
    let mut ids = ids.to_vec();
    ids.sort_unstable();
    ids.dedup();
    match ids.len() {
        0 => return Err(QueueError::Bad("name at least one rejection id".into())),
        n if n > MAX_IDS => {
            return Err(QueueError::Bad(format!(
                "{n} ids: dismiss at most {MAX_IDS} at once"
            )));
        }
        _ => {}
    }
    let before = store.rejections_by_id(&ids).await?;
    let missing: Vec<i64> = (ids.iter())
        .filter(|id| !before.iter().any(|r| r.id == **id))
        .copied()
        .collect();
    if !missing.is_empty() {
        return Err(QueueError::NotFound(missing));
    }
    let open: Vec<i64> = (before.iter())
        .filter(|r| r.status == RejectionStatus::Open)
        .map(|r| r.id)
        .collect();
    store.dismiss(&open).await?;
    let after = store.rejections_by_id(&ids).await?;
    Ok(after
        .into_iter()
        .map(|r| Dismissal {
            id: r.id,
            changed: open.contains(&r.id) && r.status == RejectionStatus::Dismissed,
            status: r.status,
        })
        .collect())
}
