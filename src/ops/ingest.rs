//! API ingest: a batch of 1 to 1000 rows, as JSON objects or CSV lines,
//! checked by the pure rules and applied in one transaction with its
//! rejections (and its idempotency key, when the client sent one).

use crate::csvfile::CsvRecords;
use crate::dictionary::check::{Checked, JsonScalar, check_csv, check_json};
use crate::dictionary::{ErrorCode, FieldError, Table};
use crate::store::{
    Candidate, Chunk, Idempotency, IngestOutcome, Store, StoreError, TableBatch, TableOutcome,
};
use serde::de::{Deserialize, Deserializer, MapAccess, Visitor};
use serde_json::value::RawValue;
use sha2::{Digest, Sha256};

/// Most rows one request may carry (all tables together).
pub const MAX_BATCH_ROWS: usize = 1000;

/// Why a whole request was refused. Nothing was inserted or logged.
#[derive(Debug, thiserror::Error)]
pub enum IngestError {
    /// No rows.
    #[error("the batch is empty: send 1 to {MAX_BATCH_ROWS} rows")]
    Empty,
    /// Over the limit.
    #[error("{0} rows: a batch holds at most {MAX_BATCH_ROWS}")]
    TooMany(usize),
    /// Not the JSON expected.
    #[error("invalid JSON body: {0}")]
    Json(String),
    /// A CSV body that cannot be read.
    #[error("invalid CSV body: {0}")]
    Csv(String),
    /// The idempotency key was used before with another body.
    #[error("the Idempotency-Key was already used with a different request body")]
    KeyReused,
    /// The database failed; the transaction was rolled back.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// The rows of one table, parsed from a request body.
#[derive(Debug)]
pub struct ParsedRows {
    /// Rows and raw text.
    pub batch: TableBatch,
    /// Whether each raw text is a JSON object (else a CSV line).
    pub json: bool,
}

/// A JSON object's entries in the order received, repeated keys included,
/// borrowing from the body where the text has no escapes.
struct Entries<'a>(Vec<(Key<'a>, JsonScalar<'a>)>);

/// An object key, borrowed when possible.
struct Key<'a>(std::borrow::Cow<'a, str>);

impl AsRef<str> for Key<'_> {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl<'de> Deserialize<'de> for Key<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Key<'de>;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a field name")
            }
            fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Key<'de>, E> {
                Ok(Key(std::borrow::Cow::Borrowed(v)))
            }
            fn visit_str<E>(self, v: &str) -> Result<Key<'de>, E> {
                Ok(Key(std::borrow::Cow::Owned(v.to_owned())))
            }
        }
        d.deserialize_str(V)
    }
}

impl<'de> Deserialize<'de> for Entries<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Entries<'de>;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Entries<'de>, A::Error> {
                let mut out = Vec::with_capacity(8);
                while let Some(entry) = map.next_entry::<Key<'de>, JsonScalar<'de>>()? {
                    out.push(entry);
                }
                Ok(Entries(out))
            }
        }
        d.deserialize_map(V)
    }
}

/// Deepest nesting a body may have: rows are flat objects, so anything
/// deeper is refused before parsing (and before any recursion).
pub const MAX_JSON_DEPTH: usize = 32;

fn check_depth(body: &[u8]) -> Result<(), IngestError> {
    let (mut depth, mut in_string, mut escaped) = (0usize, false, false);
    for (i, &b) in body.iter().enumerate() {
        if in_string {
            match b {
                _ if escaped => escaped = false,
                b'\\' => escaped = true,
                b'"' => in_string = false,
                _ => {}
            }
            continue;
        }
        match b {
            b'"' => in_string = true,
            b'[' | b'{' => {
                depth += 1;
                if depth > MAX_JSON_DEPTH {
                    return Err(IngestError::Json(format!(
                        "nesting deeper than {MAX_JSON_DEPTH} levels at byte {i}"
                    )));
                }
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    Ok(())
}

fn json_error(e: &serde_json::Error) -> IngestError {
    IngestError::Json(format!("{e} (line {}, column {})", e.line(), e.column()))
}

/// Parses a JSON array of row objects for `table`.
pub fn parse_json(table: Table, body: &[u8]) -> Result<ParsedRows, IngestError> {
    check_depth(body)?;
    let items: Vec<&RawValue> = serde_json::from_slice(body).map_err(|e| json_error(&e))?;
    let rows = items.iter().map(|raw| (table, *raw)).collect::<Vec<_>>();
    check_count(rows.len())?;
    Ok(ParsedRows {
        batch: json_batch(table, &rows),
        json: true,
    })
}

/// Parses `{"departments":[…],"jobs":[…],"hired_employees":[…]}`: the
/// tables in load order (parents first), at most 1000 rows in all.
pub fn parse_json_tables(body: &[u8]) -> Result<Vec<ParsedRows>, IngestError> {
    check_depth(body)?;
    let map: Vec<(String, Vec<&RawValue>)> = serde_json::from_slice::<Ordered<'_>>(body)
        .map_err(|e| json_error(&e))?
        .0;
    let mut by_table: Vec<(Table, Vec<&RawValue>)> = Vec::new();
    for (name, items) in map {
        let table = Table::parse(&name).map_err(|e| IngestError::Json(e.to_string()))?;
        if by_table.iter().any(|(t, _)| *t == table) {
            return Err(IngestError::Json(format!(
                "table {name:?} appears more than once"
            )));
        }
        by_table.push((table, items));
    }
    by_table.sort_by_key(|(t, _)| *t);
    check_count(by_table.iter().map(|(_, rows)| rows.len()).sum())?;
    Ok(by_table
        .into_iter()
        .filter(|(_, rows)| !rows.is_empty())
        .map(|(table, items)| {
            let rows: Vec<_> = items.into_iter().map(|r| (table, r)).collect();
            ParsedRows {
                batch: json_batch(table, &rows),
                json: true,
            }
        })
        .collect())
}

/// A JSON object of arrays, keys in order (repeats kept to be refused).
struct Ordered<'a>(Vec<(String, Vec<&'a RawValue>)>);

impl<'de: 'a, 'a> Deserialize<'de> for Ordered<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V<'a>(std::marker::PhantomData<&'a ()>);
        impl<'de: 'a, 'a> Visitor<'de> for V<'a> {
            type Value = Ordered<'a>;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("an object of table name to array of rows")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Ordered<'a>, A::Error> {
                let mut out = Vec::new();
                while let Some(entry) = map.next_entry::<String, Vec<&'de RawValue>>()? {
                    out.push(entry);
                }
                Ok(Ordered(out))
            }
        }
        d.deserialize_map(V(std::marker::PhantomData))
    }
}

fn json_batch(table: Table, items: &[(Table, &RawValue)]) -> TableBatch {
    let mut chunk = Chunk::default();
    for (index, (_, raw)) in items.iter().enumerate() {
        let text = raw.get();
        let check = match serde_json::from_str::<Entries>(text) {
            Ok(entries) => check_json(table, &entries.0).into_row(),
            Err(e) => Err(Checked {
                values: vec![None; table.columns().len()],
                errors: vec![FieldError::record(
                    ErrorCode::Columns,
                    format!("not a row object: {e}"),
                )],
            }),
        };
        let start = chunk.raw.len();
        chunk.raw.extend_from_slice(text.as_bytes());
        chunk.rows.push(Candidate {
            position: index as u64,
            raw: start..chunk.raw.len(),
            check,
        });
    }
    TableBatch { table, chunk }
}

/// Parses CSV lines in the historic format for `table` (an optional header
/// line is skipped); positions are row indexes from 0.
pub fn parse_csv(table: Table, body: &[u8]) -> Result<ParsedRows, IngestError> {
    let mut records = CsvRecords::new(body);
    let mut chunk = Chunk::default();
    let mut first = true;
    while let Some(rec) = records
        .next_record()
        .map_err(|e| IngestError::Csv(e.to_string()))?
    {
        if std::mem::take(&mut first)
            && rec.malformed.is_none()
            && crate::ops::load::is_header(table, rec.fields())
        {
            continue;
        }
        if chunk.rows.len() >= MAX_BATCH_ROWS {
            return Err(IngestError::TooMany(chunk.rows.len() + 1));
        }
        let check = match rec.malformed {
            Some(m) => Err(crate::ops::load::malformed(table, m, rec.line)),
            None => check_csv(table, rec.fields()).into_row(),
        };
        let start = chunk.raw.len();
        chunk.raw.extend_from_slice(rec.raw);
        let position = chunk.rows.len() as u64;
        chunk.rows.push(Candidate {
            position,
            raw: start..chunk.raw.len(),
            check,
        });
    }
    check_count(chunk.rows.len())?;
    Ok(ParsedRows {
        batch: TableBatch { table, chunk },
        json: false,
    })
}

fn check_count(n: usize) -> Result<(), IngestError> {
    match n {
        0 => Err(IngestError::Empty),
        n if n > MAX_BATCH_ROWS => Err(IngestError::TooMany(n)),
        _ => Ok(()),
    }
}

/// The fingerprint that ties an idempotency key to one request.
pub fn fingerprint(route: &str, body: &[u8]) -> String {
    let mut h = Sha256::new();
    h.update(route.as_bytes());
    h.update([0]);
    h.update(body);
    hex::encode(h.finalize())
}

/// How the response of a batch is shaped.
#[derive(Debug, Clone, Copy)]
pub enum Shape {
    /// One table: the table's object.
    Table,
    /// Several tables: `{"batch_id","received","inserted","tables":{name: object}}`.
    Tables,
}

/// Applies parsed rows in one transaction and returns the response body.
/// A replayed key returns the first response unchanged.
#[tracing::instrument(skip_all, fields(batch_id = batch_id, rows))]
pub async fn ingest(
    store: &Store,
    batch_id: &str,
    parsed: Vec<ParsedRows>,
    idempotency: Option<Idempotency>,
    shape: Shape,
) -> Result<(String, bool), IngestError> {
    let json: Vec<bool> = parsed.iter().map(|p| p.json).collect();
    let id = batch_id.to_owned();
    let render = Box::new(move |outcomes: &[TableOutcome], batches: &[TableBatch]| {
        render(&id, shape, outcomes, batches, &json)
    });
    let rows: usize = parsed.iter().map(|p| p.batch.chunk.rows.len()).sum();
    tracing::Span::current().record("rows", rows);
    let tables = parsed.into_iter().map(|p| p.batch).collect();
    match store
        .ingest(format!("api:{batch_id}"), tables, idempotency, render)
        .await?
    {
        IngestOutcome::Applied(body) => Ok((body, false)),
        IngestOutcome::Replayed(body) => Ok((body, true)),
        IngestOutcome::KeyReused => Err(IngestError::KeyReused),
    }
}

/// A rejected row in a batch response.
#[derive(Debug, Clone, serde::Serialize, utoipa::ToSchema)]
pub struct RejectedRow {
    /// Index of the row in the request (from 0).
    pub index: u64,
    /// The row as received: the JSON object, or the CSV line as a string.
    #[schema(value_type = Object)]
    pub row: serde_json::Value,
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
    /// Rows rejected (and logged).
    pub rejected: Vec<RejectedRow>,
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
    /// Per table.
    pub tables: std::collections::BTreeMap<String, TableResult>,
}

fn render(
    batch_id: &str,
    shape: Shape,
    outcomes: &[TableOutcome],
    batches: &[TableBatch],
    json: &[bool],
) -> String {
    let table_result = |o: &TableOutcome, (batch, is_json): (&TableBatch, &bool)| {
        let chunk = &batch.chunk;
        let rejected = o
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
                let row = if *is_json {
                    serde_json::from_str(&text)
                        .unwrap_or(serde_json::Value::String(text.into_owned()))
                } else {
                    serde_json::Value::String(text.into_owned())
                };
                RejectedRow {
                    index: *index,
                    row,
                    errors: errors.clone(),
                }
            })
            .collect();
        TableResult {
            batch_id: batch_id.to_owned(),
            table: o.table,
            received: o.received,
            inserted: o.inserted,
            rejected,
        }
    };
    let rendered = match shape {
        Shape::Table => match outcomes.first().zip(batches.iter().zip(json).next()) {
            Some((o, r)) => serde_json::to_string(&table_result(o, r)),
            None => Ok("null".to_owned()),
        },
        Shape::Tables => serde_json::to_string(&BatchesResult {
            batch_id: batch_id.to_owned(),
            received: outcomes.iter().map(|o| o.received).sum(),
            inserted: outcomes.iter().map(|o| o.inserted).sum(),
            tables: outcomes
                .iter()
                .zip(batches.iter().zip(json))
                .map(|(o, r)| (o.table.name().to_owned(), table_result(o, r)))
                .collect(),
        }),
    };
    // Plain structs of strings and numbers always serialise.
    rendered.unwrap_or_else(|_| "null".to_owned())
}
