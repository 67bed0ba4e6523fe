//! The CSV reader (`CsvRecords`) and the text/csv API body parser on
//! arbitrary bytes, checked against a strict RFC 4180 reading of the same
//! bytes:
//!
//! - the records cover the file in order: each record's raw text is the
//!   file's bytes at the place the model expects (after line ends, blank and
//!   whitespace-only lines, a leading BOM), ends at a line end or the end of
//!   the file, and starts on the physical line the model counts (CR, LF and
//!   CRLF each end one line); blank lines are counted as the model counts;
//! - a record read without a flag has fields that re-encode to exactly its
//!   raw text (quoted where the raw field starts with `"`, quotes doubled),
//!   and are the fields of the strict reading; a record the strict reading
//!   refuses is flagged with the same reason and field, never repaired;
//! - the result does not depend on how the source splits its reads;
//! - `parse_csv` keeps every record but a header line, in order, with its
//!   raw text, refuses an empty or over-long batch, and every row it
//!   accepts reads back the same from its own CSV text.

#![no_main]

mod common;

use hrmig::csvfile::{CsvRecords, MAX_RAW_KEPT, MAX_RECORD_BYTES, Malformed};
use hrmig::dictionary::check::check_csv_row;
use hrmig::dictionary::{Row, Table, Value, datetime};
use hrmig::ops::ingest::{IngestError, MAX_BATCH_ROWS, Syntax, parse_csv};
use libfuzzer_sys::fuzz_target;
use std::io::{self, Read};

/// Most fields a record may have before it is `TooManyFields`.
const MAX_FIELDS: usize = 256;

#[derive(Debug, PartialEq)]
struct Rec {
    line: u64,
    raw: Vec<u8>,
    fields: Vec<Vec<u8>>,
    malformed: Option<Malformed>,
}

/// A source that returns at most `step` bytes per read.
struct Trickle<'a> {
    data: &'a [u8],
    step: usize,
}

impl Read for Trickle<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = buf.len().min(self.data.len()).min(self.step);
        buf[..n].copy_from_slice(&self.data[..n]);
        self.data = &self.data[n..];
        Ok(n)
    }
}

fn read_all(src: impl Read) -> (Vec<Rec>, u64) {
    let mut reader = CsvRecords::new(src);
    let mut recs = Vec::new();
    while let Some(rec) = reader.next_record().expect("reading a slice cannot fail") {
        recs.push(Rec {
            line: rec.line,
            raw: rec.raw.to_vec(),
            fields: rec.fields().map(<[u8]>::to_vec).collect(),
            malformed: rec.malformed,
        });
    }
    (recs, reader.blank_lines())
}

fn is_line_end(b: u8) -> bool {
    b == b'\r' || b == b'\n'
}

/// Line ends in `bytes`: a CR, an LF, or a CRLF counts once.
fn line_ends(bytes: &[u8]) -> u64 {
    let mut after_cr = false;
    let mut n = 0;
    for &b in bytes {
        n += u64::from(b == b'\r' || (b == b'\n' && !after_cr));
        after_cr = b == b'\r';
    }
    n
}

/// Skips what lies between records: line ends, and lines that are empty or
/// only spaces and tabs (each counted in `blank`). `at_line_start` says
/// whether `at` starts a line (else it is right after a record).
fn skip_gap(input: &[u8], at: &mut usize, mut at_line_start: bool, blank: &mut u64) {
    loop {
        match input.get(*at) {
            Some(b'\r') | Some(b'\n') => {
                *blank += u64::from(at_line_start);
                if input[*at] == b'\r' && input.get(*at + 1) == Some(&b'\n') {
                    *at += 1;
                }
                *at += 1;
                at_line_start = true;
            }
            Some(_) if at_line_start => {
                let rest = &input[*at..];
                let len = rest
                    .iter()
                    .position(|b| is_line_end(*b))
                    .unwrap_or(rest.len());
                if !rest[..len].iter().all(|b| *b == b' ' || *b == b'\t') {
                    return;
                }
                *blank += 1;
                *at += len;
                at_line_start = false;
            }
            _ => return,
        }
    }
}

/// A record's text read the strict way (RFC 4180, no repair).
#[derive(Debug, PartialEq)]
enum Strict {
    Fields(Vec<Vec<u8>>),
    /// Ends inside a quoted field.
    Open,
    QuoteInUnquoted(usize),
    TextAfterQuote(usize),
    /// A line end outside quotes: the reader cut the record in the wrong place.
    LineEnd(usize),
}

fn strict(raw: &[u8]) -> Strict {
    let (mut fields, mut i) = (Vec::new(), 0);
    loop {
        let n = fields.len();
        let mut field = Vec::new();
        if raw.get(i) == Some(&b'"') {
            i += 1;
            loop {
                match raw.get(i) {
                    None => return Strict::Open,
                    Some(b'"') if raw.get(i + 1) == Some(&b'"') => {
                        field.push(b'"');
                        i += 2;
                    }
                    Some(b'"') => {
                        i += 1;
                        break;
                    }
                    Some(&b) => {
                        field.push(b);
                        i += 1;
                    }
                }
            }
            if !matches!(raw.get(i), None | Some(b',')) {
                return Strict::TextAfterQuote(n);
            }
        } else {
            while let Some(&b) = raw.get(i) {
                match b {
                    b',' => break,
                    b'"' => return Strict::QuoteInUnquoted(n),
                    b'\r' | b'\n' => return Strict::LineEnd(n),
                    _ => field.push(b),
                }
                i += 1;
            }
        }
        fields.push(field);
        if raw.get(i).is_none() {
            return Strict::Fields(fields);
        }
        i += 1;
    }
}

/// Whether `fields`, written back the way `raw` writes each of them (quoted
/// when its text starts with `"`), give `raw` byte for byte.
fn re_encodes(raw: &[u8], fields: &[Vec<u8>]) -> bool {
    let mut out = Vec::with_capacity(raw.len());
    for (i, field) in fields.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        if raw.get(out.len()) == Some(&b'"') {
            out.push(b'"');
            for &b in field {
                if b == b'"' {
                    out.push(b'"');
                }
                out.push(b);
            }
            out.push(b'"');
        } else {
            if field
                .iter()
                .any(|b| matches!(b, b'"' | b',' | b'\r' | b'\n'))
            {
                return false;
            }
            out.extend_from_slice(field);
        }
    }
    out == raw
}

fn check_records(input: &[u8], recs: &[Rec], blank_lines: u64) {
    let bom = input.starts_with(b"\xef\xbb\xbf");
    let mut at = if bom { 3 } else { 0 };
    let mut blank = 0;
    let mut last_line = 0;
    for (i, rec) in recs.iter().enumerate() {
        skip_gap(input, &mut at, i == 0, &mut blank);
        let start = at;
        assert!(start < input.len(), "record {i} past the end of the input");
        let from = if bom { 3 } else { 0 };
        assert_eq!(rec.line, 1 + line_ends(&input[from..start]), "record {i}");
        assert!(rec.line > last_line);
        last_line = rec.line;
        let len = match rec.malformed {
            Some(Malformed::TooLong { bytes }) => {
                assert!(bytes > MAX_RECORD_BYTES && rec.raw.len() == MAX_RAW_KEPT);
                bytes
            }
            _ => rec.raw.len(),
        };
        assert!(!rec.raw.is_empty());
        assert_eq!(&input[start..start + rec.raw.len()], rec.raw, "record {i}");
        let end = start + len;
        assert!(end == input.len() || is_line_end(input[end]), "record {i}");
        at = end;

        if let Some(m) = rec.malformed {
            assert!(rec.fields.is_empty(), "a flagged record has no fields");
            if m == Malformed::UnterminatedQuote {
                // An open quote runs to the end of the file (its last line end aside).
                assert_eq!(i, recs.len() - 1, "records after an open quote");
                assert!(end == input.len() || (end + 1 == input.len() && is_line_end(input[end])));
            }
        } else {
            assert!(
                re_encodes(&rec.raw, &rec.fields),
                "record {i}: fields {:?} do not re-encode to {:?}",
                rec.fields,
                String::from_utf8_lossy(&rec.raw)
            );
        }
        if matches!(rec.malformed, Some(Malformed::TooLong { .. })) {
            continue;
        }
        let want = match strict(&rec.raw) {
            Strict::Fields(f) if f.len() > MAX_FIELDS => Some(Malformed::TooManyFields),
            Strict::Fields(f) => {
                if rec.malformed.is_none() {
                    assert_eq!(rec.fields, f, "record {i}");
                }
                None
            }
            Strict::Open => Some(Malformed::UnterminatedQuote),
            Strict::QuoteInUnquoted(field) => Some(Malformed::QuoteInUnquotedField { field }),
            Strict::TextAfterQuote(field) => Some(Malformed::TextAfterQuote { field }),
            Strict::LineEnd(field) => {
                panic!("record {i}: a line end outside quotes in field {field}")
            }
        };
        // Too many fields is said before any quoting problem, and counts the
        // fields as the tokeniser split them: with broken quotes that may
        // differ from the strict reading, never with sound ones.
        if rec.malformed == Some(Malformed::TooManyFields) {
            assert!(
                want.is_some(),
                "record {i}: a sound record of at most {MAX_FIELDS} fields"
            );
            assert!(rec.raw.iter().filter(|b| **b == b',').count() >= MAX_FIELDS);
        } else {
            assert_eq!(
                rec.malformed,
                want,
                "record {i}: {:?}",
                String::from_utf8_lossy(&rec.raw)
            );
        }
    }
    skip_gap(input, &mut at, recs.is_empty(), &mut blank);
    assert_eq!(at, input.len(), "input left unread");
    assert_eq!(blank_lines, blank, "blank lines");
}

fn is_header(table: Table, fields: &[Vec<u8>]) -> bool {
    let cols = table.columns();
    fields.len() == cols.len()
        && fields
            .iter()
            .zip(cols)
            .all(|(f, c)| f.trim_ascii().eq_ignore_ascii_case(c.name.as_bytes()))
}

/// A valid row as a CSV line: text always quoted, datetimes canonical.
fn csv_line(row: &Row) -> Vec<u8> {
    let mut out = Vec::new();
    for (i, v) in row.0.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        match v {
            Value::Int(n) => out.extend_from_slice(n.to_string().as_bytes()),
            Value::DateTime(ms) => out.extend_from_slice(datetime::format(*ms).as_bytes()),
            Value::Text(s) => {
                out.push(b'"');
                out.extend_from_slice(s.replace('"', "\"\"").as_bytes());
                out.push(b'"');
            }
        }
    }
    out
}

/// Checks `parse_csv` of `input` against its records; returns the rows accepted.
fn check_body(table: Table, input: &[u8], recs: &[Rec]) -> Vec<Row> {
    let skip = recs
        .first()
        .is_some_and(|r| r.malformed.is_none() && is_header(table, &r.fields));
    let recs = &recs[usize::from(skip)..];
    let parsed = parse_csv(table, input);
    if recs.is_empty() {
        assert!(matches!(parsed, Err(IngestError::Empty)), "{parsed:?}");
        return Vec::new();
    }
    if recs.len() > MAX_BATCH_ROWS {
        assert!(
            matches!(parsed, Err(IngestError::TooMany(n)) if n == MAX_BATCH_ROWS + 1),
            "{parsed:?}"
        );
        return Vec::new();
    }
    let parsed = parsed.expect("1 to 1000 records are a batch");
    assert_eq!(parsed.syntax, Syntax::Csv);
    assert_eq!(parsed.batch.table, table);
    let chunk = &parsed.batch.chunk;
    assert_eq!(chunk.rows.len(), recs.len(), "rows received");
    let mut end = 0;
    let mut accepted = Vec::new();
    for (i, (c, rec)) in chunk.rows.iter().zip(recs).enumerate() {
        assert_eq!(c.position, i as u64);
        assert_eq!(c.raw.start, end, "raw texts back to back");
        end = c.raw.end;
        assert_eq!(chunk.raw[c.raw.clone()], rec.raw[..]);
        match (&c.check, rec.malformed) {
            (Ok(row), None) => {
                common::check_row(table, row);
                accepted.push(row.clone());
            }
            (Ok(row), Some(m)) => panic!("a {m:?} record was accepted as {row:?}"),
            (Err(checked), _) => {
                assert_eq!(checked.values.len(), table.columns().len());
                assert!(!checked.errors.is_empty(), "rejected without a reason");
                if rec.malformed.is_some() {
                    assert!(checked.values.iter().all(Option::is_none));
                }
            }
        }
    }
    assert_eq!(end, chunk.raw.len());
    accepted
}

/// The accepted rows of every table, written back as CSV lines, read as
/// the same rows (one reader for all: building one costs more than a body).
fn check_round_trip(accepted: &[(Table, Row)]) {
    let mut text = Vec::new();
    for (_, row) in accepted {
        text.extend_from_slice(&csv_line(row));
        text.push(b'\n');
    }
    let (back, _) = read_all(&text[..]);
    assert_eq!(
        back.len(),
        accepted.len(),
        "{:?}",
        String::from_utf8_lossy(&text)
    );
    for (rec, (table, row)) in back.iter().zip(accepted) {
        assert_eq!(rec.malformed, None);
        let again = check_csv_row(*table, rec.fields.iter().map(Vec::as_slice));
        assert_eq!(
            again.as_ref(),
            Ok(row),
            "{table}: {:?}",
            String::from_utf8_lossy(&rec.raw)
        );
    }
}

fuzz_target!(|input: &[u8]| {
    let whole = read_all(input);
    // Byte by byte splits every token; other sizes split some, in other
    // company. The size follows from the input, so that a crash replays.
    let step = if input.len() % 2 == 0 {
        1
    } else {
        input.len() % 7 + 2
    };
    let trickled = read_all(Trickle { data: input, step });
    assert!(
        whole == trickled,
        "the records depend on a read size of {step}"
    );
    check_records(input, &whole.0, whole.1);
    let mut accepted = Vec::new();
    for table in Table::ALL {
        let rows = check_body(table, input, &whole.0);
        accepted.extend(rows.into_iter().map(|row| (table, row)));
    }
    check_round_trip(&accepted);
});
