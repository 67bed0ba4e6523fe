//! API ingest: a batch of 1 to 1000 rows, as JSON objects or CSV lines,
//! checked by the pure rules and applied in one transaction with its
//! rejections (and its idempotency key, when the client sent one).

mod error;
mod parse;
mod response;

pub use error::{IngestError, MAX_BATCH_ROWS};
pub use parse::{MAX_JSON_DEPTH, ParsedRows, Syntax, parse_csv, parse_json, parse_json_tables};
pub use response::{BatchesResult, RejectedRow, Shape, TableResult};

use crate::dictionary::{CodeTally, Table};
use crate::metrics::RowCounts;
use crate::store::{
    BatchRequest, BatchRest, Chunk, Feed, Idempotency, IngestOutcome, OnDuplicate, Store,
    TableBatch, TableOutcome,
};
use parse::ObjectArray;
use sha2::{Digest, Sha256};

/// The response body of a batch, as first given or replayed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    /// The batch was applied now; the body is its response, and the
    /// counts what each table's rows came to (none in a dry run: nothing
    /// was written).
    Applied(String, Vec<(Table, RowCounts)>),
    /// The idempotency key came before with this body: the first response,
    /// unchanged, and nothing applied again.
    Replayed(String),
}

/// The fingerprint that ties an idempotency key to one request.
pub fn fingerprint(route: &str, body: &[u8]) -> String {
    let mut h = Sha256::new();
    h.update(route.as_bytes());
    h.update([0]);
    h.update(body);
    hex::encode(h.finalize())
}

/// Rows checked before a batch sent in pieces goes to the store, and per
/// piece after that: small enough that the writer starts early, large
/// enough that handing a piece over costs little next to writing it.
const FIRST_PIECE: usize = 100;
const PIECE: usize = 225;
/// Pieces waiting for the store: every piece of the largest batch, so that
/// sending one never waits (a server backend receives them only when the
/// batch's future is polled again, after the last one is sent).
const PIECES_QUEUED: usize = MAX_BATCH_ROWS / PIECE + 2;

/// Applies a JSON array of rows for `table` and returns the response body.
///
/// When the store's writer has nothing else to do, the rows go to it in
/// pieces while the rest of the body is still being checked, so that the
/// two overlap (one client's latency is then about the write alone). When
/// writes are queued, the batch is checked whole first, so that it never
/// holds the writer while it is parsed.
pub async fn ingest_json(
    store: &Store,
    batch_id: &str,
    table: Table,
    body: &[u8],
    idempotency: Option<Idempotency>,
    how: How,
) -> Result<Answer, IngestError> {
    if idempotency.is_none()
        && store.writer_idle()
        && let Some(done) = ingest_in_pieces(store, batch_id, table, body, how).await
    {
        return done;
    }
    let parsed = parse_json(table, body)?;
    ingest(store, batch_id, vec![parsed], None, idempotency, how).await
}

/// How a batch is applied and answered.
#[derive(Debug, Clone, Copy)]
pub struct How {
    /// The response's shape.
    pub shape: Shape,
    /// Every check made, nothing written: no rows, no rejections, no
    /// idempotency key (a dry run neither reads nor stores one).
    pub dry_run: bool,
    /// What a valid row whose id is taken does.
    pub on_duplicate: OnDuplicate,
}

/// `None` when the body is not in the common shape (nothing was applied):
/// the caller then takes the general path.
async fn ingest_in_pieces(
    store: &Store,
    batch_id: &str,
    table: Table,
    body: &[u8],
    how: How,
) -> Option<Result<Answer, IngestError>> {
    let mut rows = ObjectArray::new(table, body)?;
    let mut first = Chunk::default();
    let whole = rows.fill(&mut first, FIRST_PIECE)?;
    let parsed = vec![ParsedRows {
        batch: TableBatch {
            table,
            chunk: first,
        },
        syntax: Syntax::Json,
    }];
    if whole {
        return Some(ingest(store, batch_id, parsed, None, None, how).await);
    }
    let (pieces, more) = tokio::sync::mpsc::channel(PIECES_QUEUED);
    let mut applying = std::pin::pin!(ingest(store, batch_id, parsed, Some(more), None, how));
    // The first poll hands the batch to the store, which starts writing.
    if let std::task::Poll::Ready(done) = futures::poll!(applying.as_mut()) {
        return Some(done);
    }
    loop {
        let mut chunk = Chunk::default();
        let Some(end) = rows.fill(&mut chunk, PIECE) else {
            // Not the common shape after all: the store rolls back.
            drop(pieces);
            let _ = applying.await;
            return None;
        };
        // A send fails only when the store gave up; its result says why.
        if pieces.send(Feed::Rows(chunk)).await.is_err() || end {
            let _ = pieces.send(Feed::End(())).await;
            break;
        }
    }
    Some(applying.await)
}

/// Applies parsed rows in one transaction and returns the response body.
/// A replayed key returns the first response unchanged. With `more`, the
/// last table's rows continue in pieces (see [`BatchRest`]).
#[tracing::instrument(skip_all, fields(batch_id = batch_id, rows))]
pub async fn ingest(
    store: &Store,
    batch_id: &str,
    parsed: Vec<ParsedRows>,
    more: Option<BatchRest>,
    idempotency: Option<Idempotency>,
    how: How,
) -> Result<Answer, IngestError> {
    let How {
        shape,
        dry_run,
        on_duplicate,
    } = how;
    let syntax: Vec<Syntax> = parsed.iter().map(|p| p.syntax).collect();
    let id = batch_id.to_owned();
    // What the batch came to, taken where it is rendered (on the store's
    // writer for a keyed batch).
    let counts = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let counted = counts.clone();
    let render = Box::new(move |outcomes: &[TableOutcome], batches: &[TableBatch]| {
        let tally = outcomes.iter().map(|o| (o.table, row_counts(o))).collect();
        *counted.lock().unwrap_or_else(|e| e.into_inner()) = tally;
        response::render(&id, shape, dry_run, outcomes, batches, &syntax)
    });
    let batch = BatchRequest {
        source: format!("api:{batch_id}"),
        tables: parsed.into_iter().map(|p| p.batch).collect(),
        rest: more,
        idempotency,
        render,
        dry_run,
        on_duplicate,
        requeue: None,
    };
    let outcome = store.ingest(batch).await;
    let counts = std::mem::take(&mut *counts.lock().unwrap_or_else(|e| e.into_inner()));
    let received: u64 = counts.iter().map(|(_, c)| c.received).sum();
    tracing::Span::current().record("rows", received);
    match outcome? {
        IngestOutcome::Applied(body) if dry_run => Ok(Answer::Applied(body, Vec::new())),
        IngestOutcome::Applied(body) => Ok(Answer::Applied(body, counts)),
        IngestOutcome::Replayed(body) => Ok(Answer::Replayed(body)),
        IngestOutcome::KeyReused => Err(IngestError::KeyReused),
    }
}

/// What one table of a batch came to, for the metrics.
fn row_counts(o: &TableOutcome) -> RowCounts {
    let mut codes = CodeTally::default();
    for (_, errors) in &o.rejected {
        codes.add(errors);
    }
    RowCounts {
        received: o.received,
        inserted: o.inserted,
        updated: o.updated,
        rejected: o.rejected.len() as u64,
        codes,
    }
}
