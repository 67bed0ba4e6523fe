//! Request bodies to input rows: a JSON array of row objects, an object
//! of such arrays by table, or CSV lines. Each row is checked by the pure
//! rules as it is read and kept with its raw text, for the rejection log.
//!
//! The common JSON body (an array of flat objects) is read in one pass
//! that borrows from the body ([`ObjectArray`]); anything else takes the
//! general path, which finds the precise error or rejection.

use super::error::{IngestError, MAX_BATCH_ROWS};
use crate::csvfile::CsvRecords;
use crate::dictionary::check::{Checked, JsonScalar, check_csv_row, check_json_row};
use crate::dictionary::{ErrorCode, FieldError, Table};
use crate::store::{Chunk, InputRow, TableBatch};
use serde::de::{Deserialize, Deserializer, MapAccess, Visitor};
use serde_json::value::RawValue;

/// The rows of one table, parsed from a request body.
#[derive(Debug)]
pub struct ParsedRows {
    /// Rows and raw text.
    pub batch: TableBatch,
    /// What each row's raw text is.
    pub syntax: Syntax,
}

/// What the raw text of a parsed row is, which decides how a rejected row
/// is sent back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Syntax {
    /// A JSON value (an object, unless the row is rejected for not being one).
    Json,
    /// A CSV line.
    Csv,
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

/// A JSON object's entries as they are read, into a container that may
/// refuse one (`Err` says why): one map visitor serves every such shape.
trait Collect<'de>: Default {
    const EXPECTING: &'static str;
    fn push(&mut self, entry: (Key<'de>, JsonScalar<'de>)) -> Result<(), &'static str>;
}

/// The visitor of a [`Collect`].
struct Collector<T>(std::marker::PhantomData<T>);

impl<'de, T: Collect<'de>> Visitor<'de> for Collector<T> {
    type Value = T;
    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(T::EXPECTING)
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<T, A::Error> {
        let mut out = T::default();
        while let Some(entry) = map.next_entry::<Key<'de>, JsonScalar<'de>>()? {
            out.push(entry).map_err(serde::de::Error::custom)?;
        }
        Ok(out)
    }
}

impl Default for Entries<'_> {
    fn default() -> Self {
        Entries(Vec::with_capacity(8))
    }
}

impl<'de> Collect<'de> for Entries<'de> {
    const EXPECTING: &'static str = "a JSON object";
    fn push(&mut self, entry: (Key<'de>, JsonScalar<'de>)) -> Result<(), &'static str> {
        self.0.push(entry);
        Ok(())
    }
}

impl<'de> Deserialize<'de> for Entries<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_map(Collector(std::marker::PhantomData))
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

/// serde_json's message already says where ("… at line 3 column 7").
fn json_error(e: &serde_json::Error) -> IngestError {
    IngestError::Json(e.to_string())
}

/// Parses a JSON array of row objects for `table`.
pub fn parse_json(table: Table, body: &[u8]) -> Result<ParsedRows, IngestError> {
    match common_shape(table, body) {
        Some(batch) => Ok(ParsedRows {
            batch,
            syntax: Syntax::Json,
        }),
        None => parse_json_general(table, body),
    }
}

/// The rows of a body in the common shape (see [`ObjectArray`]), in one pass.
fn common_shape(table: Table, body: &[u8]) -> Option<TableBatch> {
    let mut rows = ObjectArray::new(table, body)?;
    let mut chunk = Chunk::default();
    rows.fill(&mut chunk, MAX_BATCH_ROWS)?
        .then_some(TableBatch { table, chunk })
}

/// Any JSON body: the request errors and row rejections of every shape.
fn parse_json_general(table: Table, body: &[u8]) -> Result<ParsedRows, IngestError> {
    check_depth(body)?;
    let items: Vec<&RawValue> = serde_json::from_slice(body).map_err(|e| json_error(&e))?;
    let rows = items.iter().map(|raw| (table, *raw)).collect::<Vec<_>>();
    check_count(rows.len())?;
    Ok(ParsedRows {
        batch: json_batch(table, &rows),
        syntax: Syntax::Json,
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
                syntax: Syntax::Json,
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

fn skip_whitespace(body: &[u8], mut at: usize) -> usize {
    while body
        .get(at)
        .is_some_and(|b| matches!(b, b' ' | b'\t' | b'\n' | b'\r'))
    {
        at += 1;
    }
    at
}

/// The common case in one pass: an array of 1 to 1000 flat objects, each
/// checked as it is read, its raw text kept from the body. Anything else
/// (not an array, an element that is not a flat object, bad syntax, a count
/// out of bounds) makes [`ObjectArray::fill`] return `None`; [`parse_json`]
/// then takes the general path, which finds the precise error or rejection.
pub(super) struct ObjectArray<'a> {
    table: Table,
    text: &'a str,
    /// Byte offset of the next element.
    at: usize,
    rows: usize,
}

impl<'a> ObjectArray<'a> {
    pub(super) fn new(table: Table, body: &'a [u8]) -> Option<Self> {
        // Checked once here, so that strings are not checked again one by one.
        let text = std::str::from_utf8(body).ok()?;
        let at = skip_whitespace(body, 0);
        (body.get(at) == Some(&b'[')).then(|| ObjectArray {
            table,
            text,
            at: skip_whitespace(body, at + 1),
            rows: 0,
        })
    }

    /// Adds up to `max` rows to `chunk`; `Some(true)` once the array ended.
    pub(super) fn fill(&mut self, chunk: &mut Chunk, max: usize) -> Option<bool> {
        let body = self.text.as_bytes();
        chunk.raw.reserve(max * 128);
        for _ in 0..max {
            if self.rows == MAX_BATCH_ROWS || body.get(self.at) != Some(&b'{') {
                return None;
            }
            let mut stream =
                serde_json::Deserializer::from_str(self.text.get(self.at..)?).into_iter::<Flat>();
            let entries = stream.next()?.ok()?;
            let end = self.at + stream.byte_offset();
            let start = chunk.raw.len();
            chunk.raw.extend_from_slice(&body[self.at..end]);
            chunk.rows.push(InputRow {
                position: self.rows as u64,
                raw: start..chunk.raw.len(),
                check: check_json_row(self.table, entries.as_slice()),
            });
            self.rows += 1;
            self.at = skip_whitespace(body, end);
            match body.get(self.at) {
                Some(b',') => self.at = skip_whitespace(body, self.at + 1),
                Some(b']') => {
                    return (skip_whitespace(body, self.at + 1) == body.len()).then_some(true);
                }
                _ => return None,
            }
        }
        Some(false)
    }
}

/// Most entries a row in the common shape has (every table has fewer
/// columns); more go to the general path.
const FLAT_ENTRIES: usize = 8;

/// An object whose values are all scalars (no array or object), with at
/// most [`FLAT_ENTRIES`] entries, kept in place (no allocation per row);
/// anything else is left to the general path.
struct Flat<'a> {
    entries: [(Key<'a>, JsonScalar<'a>); FLAT_ENTRIES],
    len: usize,
}

impl<'a> Flat<'a> {
    fn as_slice(&self) -> &[(Key<'a>, JsonScalar<'a>)] {
        &self.entries[..self.len]
    }
}

impl Default for Flat<'_> {
    fn default() -> Self {
        Flat {
            entries: std::array::from_fn(|_| {
                (Key(std::borrow::Cow::Borrowed("")), JsonScalar::Null)
            }),
            len: 0,
        }
    }
}

impl<'de> Collect<'de> for Flat<'de> {
    const EXPECTING: &'static str = "a flat JSON object";
    fn push(&mut self, entry: (Key<'de>, JsonScalar<'de>)) -> Result<(), &'static str> {
        if self.len == FLAT_ENTRIES || matches!(entry.1, JsonScalar::Array | JsonScalar::Object) {
            return Err("not a flat row");
        }
        self.entries[self.len] = entry;
        self.len += 1;
        Ok(())
    }
}

impl<'de> Deserialize<'de> for Flat<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_map(Collector(std::marker::PhantomData))
    }
}

fn json_batch(table: Table, items: &[(Table, &RawValue)]) -> TableBatch {
    let mut chunk = Chunk::default();
    for (index, (_, raw)) in items.iter().enumerate() {
        let text = raw.get();
        let check = match serde_json::from_str::<Entries>(text) {
            Ok(entries) => check_json_row(table, &entries.0),
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
        chunk.rows.push(InputRow {
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
    let mut records = CsvRecords::with_buffer(body, body.len() + 1);
    let mut chunk = Chunk::default();
    let mut first = true;
    while let Some(rec) = records
        .next_record()
        .map_err(|e| IngestError::Csv(e.to_string()))?
    {
        if std::mem::take(&mut first)
            && rec.malformed.is_none()
            && crate::csvfile::is_header(table, rec.fields())
        {
            continue;
        }
        if chunk.rows.len() >= MAX_BATCH_ROWS {
            return Err(IngestError::TooMany(chunk.rows.len() + 1));
        }
        let check = match rec.malformed {
            Some(m) => Err(m.rejection(table, rec.line)),
            None => check_csv_row(table, rec.fields()),
        };
        let start = chunk.raw.len();
        chunk.raw.extend_from_slice(rec.raw);
        let position = chunk.rows.len() as u64;
        chunk.rows.push(InputRow {
            position,
            raw: start..chunk.raw.len(),
            check,
        });
    }
    check_count(chunk.rows.len())?;
    Ok(ParsedRows {
        batch: TableBatch { table, chunk },
        syntax: Syntax::Csv,
    })
}

fn check_count(n: usize) -> Result<(), IngestError> {
    match n {
        0 => Err(IngestError::Empty),
        n if n > MAX_BATCH_ROWS => Err(IngestError::TooMany(n)),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// One JSON element as text: flat row objects (with valid, invalid,
    /// escaped and repeated fields) and, less often, shapes the common
    /// path must hand over to the general one.
    fn element() -> impl Strategy<Value = (String, bool)> {
        let scalar = prop_oneof![
            Just("null".to_owned()),
            Just("true".to_owned()),
            any::<i64>().prop_map(|n| n.to_string()),
            any::<u64>().prop_map(|n| n.to_string()),
            Just("1.5e3".to_owned()),
            Just("\"2021-07-27T16:02:08Z\"".to_owned()),
            Just("\"2021-02-30T00:00:00Z\"".to_owned()),
            Just("\"caf\\u00e9 \\\"x\\\"\\n\"".to_owned()),
            "[a-zA-Z ]{0,12}".prop_map(|s| format!("{s:?}")),
        ];
        let key = prop_oneof![
            Just("id"),
            Just("name"),
            Just("datetime"),
            Just("department_id"),
            Just("job_id"),
            Just("extra"),
            Just("n\\u0061me"),
        ];
        let ws = prop_oneof![Just(""), Just(" "), Just("\n\t ")];
        let flat = prop::collection::vec((key, ws.clone(), scalar), 0..11).prop_map(|fields| {
            let body: Vec<String> = fields
                .iter()
                .map(|(k, w, v)| format!("{w}\"{k}\"{w}:{w}{v}{w}"))
                .collect();
            (
                format!("{{{}}}", body.join(",")),
                fields.len() <= FLAT_ENTRIES,
            )
        });
        prop_oneof![
            8 => flat,
            1 => Just(("{\"id\": [1]}".to_owned(), false)),
            1 => Just(("{\"name\": {\"a\": 1}}".to_owned(), false)),
            1 => Just(("7".to_owned(), false)),
            1 => Just(("\"\\ud800\"".to_owned(), false)),
            1 => Just(("{\"name\": \"\\ud800\"}".to_owned(), false)),
        ]
    }

    fn describe(batch: &TableBatch) -> Vec<(u64, Vec<u8>, String)> {
        let chunk = &batch.chunk;
        chunk
            .rows
            .iter()
            .map(|c| {
                (
                    c.position,
                    chunk.raw[c.raw.clone()].to_vec(),
                    format!("{:?}", c.check),
                )
            })
            .collect()
    }

    proptest! {
        /// The one-pass path and the general path agree on every row
        /// whenever the one-pass path accepts a body, and it accepts every
        /// array of flat objects.
        #[test]
        fn common_shape_agrees_with_the_general_path(
            elements in prop::collection::vec(element(), 0..40),
            sep in prop_oneof![Just(","), Just(" , "), Just(",\n")],
            tail in prop_oneof![4 => Just(""), 1 => Just(" x"), 1 => Just(",")],
        ) {
            let texts: Vec<&str> = elements.iter().map(|(t, _)| t.as_str()).collect();
            let body = format!(" [ {} ]{tail} ", texts.join(sep));
            let common = common_shape(Table::HiredEmployees, body.as_bytes());
            let general = parse_json_general(Table::HiredEmployees, body.as_bytes());
            if let Some(batch) = &common {
                let general = general.as_ref().map_err(|e| e.to_string());
                prop_assert_eq!(describe(batch), describe(&general.unwrap().batch));
            }
            let regular = !elements.is_empty() && elements.iter().all(|(_, flat)| *flat) && tail.is_empty();
            prop_assert_eq!(common.is_some(), regular, "{}", body);
        }
    }

    #[test]
    fn more_than_a_batch_is_left_to_the_general_path() {
        let row =
            r#"{"id":1,"name":"a","datetime":"2021-01-01T00:00:00Z","department_id":1,"job_id":1}"#;
        let body = |n: usize| format!("[{}]", vec![row; n].join(","));
        assert!(common_shape(Table::HiredEmployees, body(MAX_BATCH_ROWS).as_bytes()).is_some());
        assert!(common_shape(Table::HiredEmployees, body(MAX_BATCH_ROWS + 1).as_bytes()).is_none());
        assert!(matches!(
            parse_json(Table::HiredEmployees, body(MAX_BATCH_ROWS + 1).as_bytes()),
            Err(IngestError::TooMany(1001))
        ));
    }
}
