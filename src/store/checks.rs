//! Checks that need the database's ids, made in memory once the ids are
//! known, by the server backends: the same rules, in the same order, as
//! the SQLite writer applies row by row.

use super::{Candidate, Chunk, TableOutcome, duplicate_error, foreign_key_error, sort_errors};
use crate::dictionary::{FieldError, Row, Table};
use std::collections::{HashMap, HashSet};

/// A set of ids as a bitmap in 8 KiB pages, allocated as ids arrive: a
/// million dense ids take 128 KiB, and no id pattern takes more than
/// 512 MiB (every page of the 32-bit range).
#[derive(Default)]
pub(super) struct IdBitmap {
    pages: HashMap<u32, Box<[u64; 1024]>>,
}

impl IdBitmap {
    fn split(id: i32) -> (u32, usize, u64) {
        let n = id as u32;
        (n >> 16, ((n >> 6) & 1023) as usize, 1u64 << (n & 63))
    }

    pub(super) fn contains(&self, id: i32) -> bool {
        let (page, word, bit) = Self::split(id);
        self.pages.get(&page).is_some_and(|p| p[word] & bit != 0)
    }

    /// Adds `id`; false when it was there already.
    pub(super) fn insert(&mut self, id: i32) -> bool {
        let (page, word, bit) = Self::split(id);
        let p = self
            .pages
            .entry(page)
            .or_insert_with(|| Box::new([0; 1024]));
        let fresh = p[word] & bit == 0;
        p[word] |= bit;
        fresh
    }
}

/// What the database knows of the ids a candidate names.
pub(super) trait Known {
    /// Whether `id` is in the target table (or was inserted earlier in
    /// this input).
    fn taken(&self, id: i32) -> bool;
    /// Marks `id` as taken by a row of this input.
    fn take(&mut self, id: i32);
    /// Whether `parent` has `id`.
    fn has_parent(&self, parent: Table, id: i32) -> bool;
}

/// Admits a candidate, whose id is then taken for the rest of the input,
/// or returns every error it has: the same rules, in the same order, as
/// the SQLite backend's writer.
pub(super) fn judge<'c>(
    table: Table,
    c: &'c Candidate,
    known: &mut impl Known,
) -> Result<&'c Row, Vec<FieldError>> {
    let missing = |value: &dyn Fn(usize) -> Option<i32>, errors: &mut Vec<FieldError>| {
        for (i, column, parent) in table.foreign_keys() {
            if let Some(id) = value(i)
                && !known.has_parent(parent, id)
            {
                errors.push(foreign_key_error(column.name, parent, id));
            }
        }
    };
    let mut errors = match &c.check {
        Ok(row) => {
            let mut errors = Vec::new();
            missing(&|i| row.0[i].as_int(), &mut errors);
            if known.taken(row.id()) {
                errors.push(duplicate_error(row.id()));
            }
            if errors.is_empty() {
                known.take(row.id());
                return Ok(row);
            }
            errors
        }
        Err(checked) => {
            let mut errors = checked.errors.clone();
            if let Some(id) = checked.int(Table::PRIMARY_KEY)
                && known.taken(id)
            {
                errors.push(duplicate_error(id));
            }
            missing(&|i| checked.int(i), &mut errors);
            errors
        }
    };
    sort_errors(table, &mut errors);
    Err(errors)
}

/// Text every server database can hold: PostgreSQL's text types have no
/// NUL character, and SQL Server implementations differ on it (Babelfish
/// refuses code point 0), so one in a rejected row's raw input is kept as
/// U+FFFD, the character a lossy UTF-8 decoding already puts in place of
/// bytes that are not text.
/// The raw text a rejection keeps, from a candidate's bytes: invalid
/// UTF-8 decoded lossily, and an API row cut to its first
/// [`MAX_RAW_KEPT`](crate::csvfile::MAX_RAW_KEPT) bytes, as a CSV record
/// over the size limit is (the response still echoes the whole row).
pub(super) fn kept_raw<'r>(
    source: &str,
    raw: &'r [u8],
    c: &Candidate,
) -> std::borrow::Cow<'r, str> {
    let mut bytes = raw.get(c.raw.clone()).unwrap_or_default();
    if source.starts_with("api:") && bytes.len() > crate::csvfile::MAX_RAW_KEPT {
        bytes = &bytes[..crate::csvfile::MAX_RAW_KEPT];
    }
    String::from_utf8_lossy(bytes)
}

fn storable(text: &str) -> String {
    text.replace('\0', "\u{FFFD}")
}

/// A rejection as the log keeps it: position, the raw input as text, and
/// the errors as JSON. Each one is also traced (codes only, no payload).
pub(super) fn rejection_record(
    table: Table,
    source: &str,
    raw: &[u8],
    c: &Candidate,
    errors: &[FieldError],
) -> (i64, String, String) {
    let text = storable(&kept_raw(source, raw, c));
    let json = serde_json::to_string(errors).unwrap_or_else(|_| "[]".into());
    crate::telemetry::rejected_row(table, source, c.position, errors);
    (c.position as i64, text, json)
}

/// Ids looked up for one batch.
pub(super) struct BatchKnown {
    pub(super) taken: HashSet<i32>,
    pub(super) parents: HashMap<Table, HashSet<i32>>,
}

impl Known for BatchKnown {
    fn taken(&self, id: i32) -> bool {
        self.taken.contains(&id)
    }
    fn take(&mut self, id: i32) {
        self.taken.insert(id);
    }
    fn has_parent(&self, parent: Table, id: i32) -> bool {
        self.parents.get(&parent).is_some_and(|s| s.contains(&id))
    }
}

/// One table of an API batch sorted by the admission rules, before its
/// insert: the rows to insert and the rows rejected so far.
pub(super) struct Sorted<'a> {
    pub(super) chosen: Vec<(&'a Candidate, &'a Row)>,
    rejected: Vec<(&'a Candidate, Vec<FieldError>)>,
}

/// Rejected rows of a batch, in input order, with their errors.
pub(super) type Rejected<'a> = Vec<(&'a Candidate, Vec<FieldError>)>;

impl<'a> Sorted<'a> {
    /// Judges every row of `chunk` against the ids looked up for it.
    pub(super) fn new(table: Table, chunk: &'a Chunk, mut known: BatchKnown) -> Sorted<'a> {
        let mut sorted = Sorted {
            chosen: Vec::new(),
            rejected: Vec::new(),
        };
        for c in &chunk.rows {
            match judge(table, c, &mut known) {
                Ok(row) => sorted.chosen.push((c, row)),
                Err(errors) => sorted.rejected.push((c, errors)),
            }
        }
        sorted
    }

    /// After the insert: a chosen row whose id is not in `won` was inserted
    /// by another writer since the lookup, and is a duplicate. Returns the
    /// rows inserted and every rejection, in input order.
    pub(super) fn settle(self, won: &HashSet<i32>) -> (u64, Rejected<'a>) {
        let Sorted {
            chosen,
            mut rejected,
        } = self;
        let mut inserted = 0;
        for (c, row) in chosen {
            if won.contains(&row.id()) {
                inserted += 1;
            } else {
                rejected.push((c, vec![duplicate_error(row.id())]));
            }
        }
        rejected.sort_by_key(|(c, _)| c.position);
        (inserted, rejected)
    }
}

/// What one table of a batch came to.
pub(super) fn outcome(
    table: Table,
    chunk: &Chunk,
    inserted: u64,
    rejected: Rejected<'_>,
) -> TableOutcome {
    TableOutcome {
        table,
        received: chunk.rows.len() as u64,
        inserted,
        rejected: rejected
            .into_iter()
            .map(|(c, errors)| (c.position, errors))
            .collect(),
    }
}

/// Ids held for a whole load, under a lock that keeps other writers out.
pub(super) struct LoadKnown {
    pub(super) taken: IdBitmap,
    pub(super) parents: HashMap<Table, IdBitmap>,
}

impl Known for LoadKnown {
    fn taken(&self, id: i32) -> bool {
        self.taken.contains(id)
    }
    fn take(&mut self, id: i32) {
        self.taken.insert(id);
    }
    fn has_parent(&self, parent: Table, id: i32) -> bool {
        self.parents.get(&parent).is_some_and(|s| s.contains(id))
    }
}

/// The ints of column `i` named by the candidates (valid or not).
pub(super) fn ints(chunk: &Chunk, i: usize) -> Vec<i32> {
    let mut v: Vec<i32> = chunk
        .rows
        .iter()
        .filter_map(|c| match &c.check {
            Ok(row) => row.0[i].as_int(),
            Err(checked) => checked.int(i),
        })
        .collect();
    v.sort_unstable();
    v.dedup();
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bitmap_holds_any_i32() {
        let mut ids = IdBitmap::default();
        for id in [0, 1, -1, i32::MIN, i32::MAX, 65_535, 65_536, 1_000_000] {
            assert!(!ids.contains(id));
            assert!(ids.insert(id));
            assert!(!ids.insert(id));
            assert!(ids.contains(id));
        }
        assert!(!ids.contains(2));
        assert!(!ids.contains(-2));
    }

    #[test]
    fn a_nul_in_raw_text_is_logged_as_the_replacement_character() {
        use crate::dictionary::{ErrorCode, FieldError, check::Checked};
        let raw = b"7,Ann\0e,x\xff";
        let errors = vec![FieldError {
            column: None,
            code: ErrorCode::Columns,
            message: "3 fields".into(),
        }];
        let c = Candidate {
            position: 4,
            raw: 0..raw.len(),
            check: Err(Checked {
                values: Vec::new(),
                errors: errors.clone(),
            }),
        };
        let (position, text, json) =
            rejection_record(Table::Departments, "api:x", raw, &c, &errors);
        assert_eq!(position, 4);
        assert_eq!(text, "7,Ann\u{FFFD}e,x\u{FFFD}");
        assert!(json.contains("\"columns\""), "{json}");
    }
}
