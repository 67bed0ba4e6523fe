//! The response of a batch: per table, what was received and inserted,
//! and every rejected row as it was sent with the rules it broke.

use super::parse::Syntax;
use crate::dictionary::{FieldError, Table};
use crate::store::{TableBatch, TableOutcome};
use serde_json::value::RawValue;

/// A rejected row in a batch response.
#[derive(Debug, Clone, serde::Serialize, utoipa::ToSchema)]
pub struct RejectedRow {
    /// Index of the row in the request (from 0).
    pub index: u64,
    /// The row as received, byte for byte: the JSON value as sent (keys in
    /// their order, numbers as written), or the CSV line as a string. Any
    /// JSON value: a row that is not an object comes back as it was.
    #[schema(value_type = Value)]
    pub row: Box<RawValue>,
    /// Every broken rule.
    pub errors: Vec<FieldError>,
}

/// The response for one table of a batch.
#[derive(Debug, Clone, serde::Serialize, utoipa::ToSchema)]
pub struct TableResult {
    /// Id of the batch; rejections are logged with source `api:<batch_id>`.
    pub batch_id: String,
    /// The table.
    pub table: Table,
    /// Rows received.
    pub received: u64,
    /// Rows inserted.
    pub inserted: u64,
    /// Rows that replaced a stored row of the same id
    /// (`?on_duplicate=update`; 0 otherwise): `received = inserted +
    /// updated + rejected`.
    pub updated: u64,
    /// Rows rejected (and logged).
    pub rejected: Vec<RejectedRow>,
    /// This table's part of the batch in the history: its operation id
    /// (`GET /api/tables/{t}/rows/{id}` names it as a row's origin, and
    /// `POST /api/loads/{id}/undo` takes it). Absent in a dry run.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub load_id: Option<i64>,
    /// `true` in a dry run (`?dry_run=true`): the counts and rejections are
    /// what a real run would make, and nothing was written. Absent otherwise.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub dry_run: bool,
}

/// The response of a several-table batch.
#[derive(Debug, Clone, serde::Serialize, utoipa::ToSchema)]
pub struct BatchesResult {
    /// Id of the batch.
    pub batch_id: String,
    /// Rows received, all tables.
    pub received: u64,
    /// Rows inserted, all tables.
    pub inserted: u64,
    /// Rows that replaced stored ones, all tables.
    pub updated: u64,
    /// Per table.
    pub tables: std::collections::BTreeMap<String, TableResult>,
    /// `true` in a dry run: nothing was written. Absent otherwise.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub dry_run: bool,
}

/// How the response of a batch is shaped.
#[derive(Debug, Clone, Copy)]
pub enum Shape {
    /// One table: the table's object.
    Table,
    /// Several tables: `{"batch_id","received","inserted","tables":{name: object}}`.
    Tables,
}

/// The response body of a batch, from the store's outcome of each table
/// and the rows as parsed (`syntax` says, per table, what their raw text is).
pub(super) fn render(
    batch_id: &str,
    shape: Shape,
    dry_run: bool,
    outcomes: &[TableOutcome],
    batches: &[TableBatch],
    syntax: &[Syntax],
) -> String {
    let tables = outcomes.iter().zip(batches.iter().zip(syntax));
    let rendered = match shape {
        Shape::Table => match tables.into_iter().next() {
            Some((o, (batch, syntax))) => {
                serde_json::to_string(&table_result(batch_id, dry_run, o, batch, *syntax))
            }
            None => Ok("null".to_owned()),
        },
        Shape::Tables => serde_json::to_string(&BatchesResult {
            batch_id: batch_id.to_owned(),
            received: outcomes.iter().map(|o| o.received).sum(),
            inserted: outcomes.iter().map(|o| o.inserted).sum(),
            updated: outcomes.iter().map(|o| o.updated).sum(),
            tables: tables
                .map(|(o, (batch, syntax))| {
                    let result = table_result(batch_id, dry_run, o, batch, *syntax);
                    (o.table.name().to_owned(), result)
                })
                .collect(),
            dry_run,
        }),
    };
    // Plain structs of strings and numbers always serialise.
    rendered.unwrap_or_else(|_| "null".to_owned())
}

fn table_result(
    batch_id: &str,
    dry_run: bool,
    outcome: &TableOutcome,
    batch: &TableBatch,
    syntax: Syntax,
) -> TableResult {
    let chunk = &batch.chunk;
    let rejected = outcome
        .rejected
        .iter()
        .map(|(index, errors)| {
            // A batch's positions are its row indexes.
            let text = chunk
                .rows
                .get(*index as usize)
                .and_then(|c| chunk.raw.get(c.raw.clone()))
                .map(String::from_utf8_lossy)
                .unwrap_or_default();
            RejectedRow {
                index: *index,
                row: row_as_sent(&text, syntax),
                errors: errors.clone(),
            }
        })
        .collect();
    TableResult {
        batch_id: batch_id.to_owned(),
        table: outcome.table,
        received: outcome.received,
        inserted: outcome.inserted,
        updated: outcome.updated,
        rejected,
        load_id: outcome.load_id,
        dry_run,
    }
}

/// A JSON row goes back as its own text when that text is JSON a client
/// can read back (a lone surrogate escape, say, is not), else as a string;
/// a CSV line as a string.
fn row_as_sent(text: &str, syntax: Syntax) -> Box<RawValue> {
    let as_string = |text: &str| {
        let quoted = serde_json::to_string(text).unwrap_or_else(|_| "\"\"".into());
        RawValue::from_string(quoted).unwrap_or_else(|_| RawValue::NULL.to_owned())
    };
    let readable =
        syntax == Syntax::Json && serde_json::from_str::<serde_json::Value>(text).is_ok();
    match readable {
        true => RawValue::from_string(text.trim().to_owned()).unwrap_or_else(|_| as_string(text)),
        false => as_string(text),
    }
}
