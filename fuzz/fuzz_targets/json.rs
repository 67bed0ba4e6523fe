//! The JSON batch readers (`parse_json` for one table, `parse_json_tables`
//! for several) on arbitrary bytes:
//!
//! - an accepted body is a JSON array (or object of arrays) and every
//!   element is one row, in order, with its raw text as sent: rows received
//!   = elements = accepted + rejected, 1 to 1000 of them;
//! - a refused body is empty, over 1000 rows, nested deeper than the limit,
//!   or not the JSON expected, and the error says which;
//! - the one-pass reader of `parse_json` and the general reader (what
//!   `parse_json_tables` uses) agree on every row of a body;
//! - every accepted row keeps the rules of its columns and reads back the
//!   same from its own JSON text.

#![no_main]

mod common;

use hrmig::dictionary::check::Checked;
use hrmig::dictionary::{Row, Table, Value, datetime};
use hrmig::ops::ingest::{
    IngestError, MAX_BATCH_ROWS, ParsedRows, Syntax, parse_json, parse_json_tables,
};
use libfuzzer_sys::fuzz_target;
use serde_json::value::RawValue;
use std::collections::HashMap;

/// A batch's rows as comparable values: position, raw text, check.
type Rows = Vec<(u64, Vec<u8>, Result<Row, Checked>)>;

fn describe(parsed: &ParsedRows) -> Rows {
    assert_eq!(parsed.syntax, Syntax::Json);
    let chunk = &parsed.batch.chunk;
    let mut end = 0;
    let rows = chunk
        .rows
        .iter()
        .enumerate()
        .map(|(i, c)| {
            assert_eq!(c.position, i as u64, "positions are row indexes");
            assert_eq!(c.raw.start, end, "raw texts back to back");
            end = c.raw.end;
            (
                c.position,
                chunk.raw[c.raw.clone()].to_vec(),
                c.check.clone(),
            )
        })
        .collect();
    assert_eq!(end, chunk.raw.len());
    rows
}

/// A valid row as a JSON object, columns in dictionary order.
fn json_object(table: Table, row: &Row) -> String {
    let fields: Vec<String> = table
        .columns()
        .iter()
        .zip(&row.0)
        .map(|(c, v)| {
            let value = match v {
                Value::Int(n) => n.to_string(),
                Value::Text(s) => serde_json::to_string(s).expect("a string serialises"),
                Value::DateTime(ms) => format!("\"{}\"", datetime::format(*ms)),
            };
            format!("\"{}\":{value}", c.name)
        })
        .collect();
    format!("{{{}}}", fields.join(","))
}

fn check_rows(table: Table, elements: &[&RawValue], rows: &Rows) {
    assert!((1..=MAX_BATCH_ROWS).contains(&rows.len()));
    assert_eq!(rows.len(), elements.len(), "rows received");
    let accepted = rows.iter().filter(|r| r.2.is_ok()).count();
    let rejected = rows.iter().filter(|r| r.2.is_err()).count();
    assert_eq!(accepted + rejected, elements.len());
    for ((_, raw, check), element) in rows.iter().zip(elements) {
        assert_eq!(
            raw[..],
            *element.get().as_bytes(),
            "a row's raw text is as sent"
        );
        match check {
            Ok(row) => {
                common::check_row(table, row);
                let text = format!("[{}]", json_object(table, row));
                let back = parse_json(table, text.as_bytes()).map(|p| describe(&p));
                assert!(
                    matches!(&back, Ok(b) if b.len() == 1 && b[0].2.as_ref() == Ok(row)),
                    "{text} reads back as {back:?}"
                );
            }
            Err(checked) => {
                assert_eq!(checked.values.len(), table.columns().len());
                assert!(!checked.errors.is_empty(), "rejected without a reason");
            }
        }
    }
}

fn is_nesting(e: &IngestError) -> bool {
    matches!(e, IngestError::Json(m) if m.starts_with("nesting deeper than"))
}

fn check_one(table: Table, body: &[u8]) {
    let elements: Result<Vec<&RawValue>, _> = serde_json::from_slice(body);
    match parse_json(table, body) {
        Ok(parsed) => {
            assert_eq!(parsed.batch.table, table);
            let elements = elements.expect("an accepted body is a JSON array");
            let rows = describe(&parsed);
            check_rows(table, &elements, &rows);
            // The same array under its table's name goes the general way.
            let mut wrapped = format!("{{\"{}\":", table.name()).into_bytes();
            wrapped.extend_from_slice(body);
            wrapped.push(b'}');
            match parse_json_tables(&wrapped) {
                Ok(tables) => {
                    assert_eq!(tables.len(), 1);
                    assert_eq!(tables[0].batch.table, table);
                    assert_eq!(describe(&tables[0]), rows, "the two readers disagree");
                }
                // One level deeper than the body, which may be at the limit.
                Err(e) if is_nesting(&e) => {}
                Err(e) => panic!("accepted alone, refused under its table's name: {e}"),
            }
        }
        Err(IngestError::Empty) => assert!(matches!(elements, Ok(v) if v.is_empty())),
        Err(IngestError::TooMany(n)) => {
            assert!(n > MAX_BATCH_ROWS && matches!(&elements, Ok(v) if v.len() == n));
        }
        Err(e @ IngestError::Json(_)) => {
            assert!(elements.is_err() || is_nesting(&e), "{e} for a JSON array");
        }
        Err(e) => panic!("no store, yet {e}"),
    }
}

fn check_tables(body: &[u8]) {
    let parsed = match parse_json_tables(body) {
        Ok(parsed) => parsed,
        Err(IngestError::TooMany(n)) => return assert!(n > MAX_BATCH_ROWS),
        Err(IngestError::Empty | IngestError::Json(_)) => return,
        Err(e) => panic!("no store, yet {e}"),
    };
    assert!(!parsed.is_empty());
    assert!(
        parsed
            .windows(2)
            .all(|w| w[0].batch.table < w[1].batch.table),
        "tables once each, parents first"
    );
    let map: HashMap<String, &RawValue> =
        serde_json::from_slice(body).expect("an accepted body is a JSON object");
    let mut total = 0;
    let mut with_rows = 0;
    for (name, array) in &map {
        let table = Table::parse(name).expect("an accepted body names tables only");
        let elements: Vec<&RawValue> =
            serde_json::from_str(array.get()).expect("an accepted body has arrays of rows");
        let found = parsed.iter().find(|p| p.batch.table == table);
        if elements.is_empty() {
            assert!(found.is_none(), "{table} has no rows");
            continue;
        }
        with_rows += 1;
        let rows = describe(found.expect("every table with rows is in the batch"));
        check_rows(table, &elements, &rows);
        total += rows.len();
        // The same rows sent to the table's own route read the same.
        let alone =
            parse_json(table, array.get().as_bytes()).expect("a part of a batch is a batch");
        assert_eq!(describe(&alone), rows, "the two readers disagree");
    }
    assert_eq!(parsed.len(), with_rows);
    assert!((1..=MAX_BATCH_ROWS).contains(&total));
}

fuzz_target!(|body: &[u8]| {
    for table in Table::ALL {
        check_one(table, body);
    }
    check_tables(body);
});
