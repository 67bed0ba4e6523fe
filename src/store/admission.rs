//! The admission rules that need the database: an id already taken, a
//! parent that does not exist. Every backend admits rows through
//! [`admit`]; what differs is how it knows the ids ([`Known`]): the
//! server backends look them up for a whole batch or load and decide in
//! memory, SQLite asks its prepared statements row by row.
//!
//! Rejected rows are logged with [`rejection_record`], the same record in
//! every backend.

use super::{Chunk, Dialect, InputRow, StoreError, TableOutcome, WouldReject};
use crate::dictionary::{ErrorCode, FieldError, Row, Table};
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

/// What an admitted row does to its table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Admitted {
    /// Its id was free: a new row.
    Inserted,
    /// Its id was taken (in the table, or earlier in this input), and
    /// the input asked for updates: it replaces the stored values.
    Updated,
}

/// What the database knows of the ids an input row names.
pub(super) trait Known {
    /// Whether `id` is in the target table (or was admitted earlier in
    /// this input).
    fn taken(&mut self, id: i32) -> Result<bool, StoreError>;
    /// Admits a row whose parents exist: `None` when its id turns out to be
    /// taken and `update` is false. A backend may write the row here (SQLite
    /// does, and lets the insert find the duplicate); the others take the id
    /// in memory.
    fn admit(&mut self, row: &Row, update: bool) -> Result<Option<Admitted>, StoreError>;
    /// Whether `parent` has `id`.
    fn has_parent(&mut self, parent: Table, id: i32) -> Result<bool, StoreError>;
}

/// Admits an input row, or returns every error it has, ordered by column:
/// the pure checks' errors, a missing parent per foreign key, a taken id
/// (unless `update`: a valid row whose id is taken then replaces the
/// stored one, and an update is checked against its parents as an insert
/// is).
pub(super) fn admit<'c>(
    table: Table,
    c: &'c InputRow,
    known: &mut impl Known,
    update: bool,
) -> Result<Result<(&'c Row, Admitted), Vec<FieldError>>, StoreError> {
    let (mut errors, id) = match &c.check {
        Ok(row) => (Vec::new(), Some(row.id())),
        Err(checked) => (checked.errors.clone(), checked.int(Table::PRIMARY_KEY)),
    };
    for (i, column, parent) in table.foreign_keys() {
        let value = match &c.check {
            Ok(row) => row.0[i].as_int(),
            Err(checked) => checked.int(i),
        };
        if let Some(value) = value
            && !known.has_parent(parent, value)?
        {
            errors.push(foreign_key_error(column.name, parent, value));
        }
    }
    if let Ok(row) = &c.check
        && errors.is_empty()
    {
        if let Some(admitted) = known.admit(row, update)? {
            return Ok(Ok((row, admitted)));
        }
        errors.push(duplicate_error(row.id()));
    } else if let Some(id) = id
        && !update
        && known.taken(id)?
    {
        errors.push(duplicate_error(id));
    }
    sort_errors(table, &mut errors);
    Ok(Err(errors))
}

/// Orders a row's errors by column (record-level errors first), so that
/// errors found by the store sit beside those of the pure checks.
fn sort_errors(table: Table, errors: &mut [FieldError]) {
    let rank = |e: &FieldError| match &e.column {
        None => 0,
        Some(c) => {
            1 + table
                .columns()
                .iter()
                .position(|col| col.name == c)
                .unwrap_or(99)
        }
    };
    errors.sort_by_key(rank);
}

/// An id that is already in the table, or earlier in the input.
pub(super) fn duplicate_error(id: i32) -> FieldError {
    FieldError::column(
        "id",
        ErrorCode::Duplicate,
        format!("id {id} is already in the table or earlier in this input"),
    )
}

fn foreign_key_error(column: &str, parent: Table, id: i32) -> FieldError {
    FieldError::column(
        column,
        ErrorCode::ForeignKey,
        format!("{parent} has no id {id}"),
    )
}

/// The raw text a rejection keeps, from an input row's bytes: invalid
/// UTF-8 decoded lossily, and an API row cut to its first
/// [`MAX_RAW_KEPT`](crate::csvfile::MAX_RAW_KEPT) bytes, as a CSV record
/// over the size limit is (the response still echoes the whole row).
pub(super) fn kept_raw<'r>(source: &str, raw: &'r [u8], c: &InputRow) -> std::borrow::Cow<'r, str> {
    let mut bytes = raw.get(c.raw.clone()).unwrap_or_default();
    if source.starts_with("api:") && bytes.len() > crate::csvfile::MAX_RAW_KEPT {
        bytes = &bytes[..crate::csvfile::MAX_RAW_KEPT];
    }
    String::from_utf8_lossy(bytes)
}

/// Text every server database can hold: PostgreSQL's text types have no
/// NUL character, and SQL Server implementations differ on it (Babelfish
/// refuses code point 0), so one in a rejected row's raw input is kept as
/// U+FFFD, the character a lossy UTF-8 decoding already puts in place of
/// bytes that are not text. SQLite keeps it.
fn storable(text: &str) -> String {
    text.replace('\0', "\u{FFFD}")
}

/// A rejection as the log keeps it.
pub(super) struct LoggedRejection {
    /// CSV line (from 1) or batch index (from 0).
    pub(super) position: i64,
    /// The raw input as text (see [`kept_raw`]).
    pub(super) raw: String,
    /// The errors, as JSON.
    pub(super) errors: String,
}

/// A rejection as the log of dialect `d` keeps it. Each one is also traced
/// (codes only, no payload).
pub(super) fn rejection_record(
    d: Dialect,
    table: Table,
    source: &str,
    raw: &[u8],
    c: &InputRow,
    errors: &[FieldError],
) -> LoggedRejection {
    let kept = kept_raw(source, raw, c);
    let raw = match d {
        Dialect::Sqlite => kept.into_owned(),
        Dialect::Postgres | Dialect::Mssql => storable(&kept),
    };
    let json = serde_json::to_string(errors).unwrap_or_else(|_| "[]".into());
    crate::telemetry::rejected_row(table, source, c.position, errors);
    LoggedRejection {
        position: c.position as i64,
        raw,
        errors: json,
    }
}

/// Keeps a dry run's rejection while fewer than [`WouldReject::KEPT`] are.
pub(super) fn keep_sample(
    samples: &mut Vec<WouldReject>,
    source: &str,
    raw: &[u8],
    c: &InputRow,
    errors: &[FieldError],
) {
    if samples.len() < WouldReject::KEPT {
        samples.push(WouldReject {
            line: c.position,
            raw: kept_raw(source, raw, c).into_owned(),
            errors: errors.to_vec(),
        });
    }
}

/// What a row admitted in memory does: `fresh` when its id was free.
fn in_memory(fresh: bool, update: bool) -> Option<Admitted> {
    match (fresh, update) {
        (true, _) => Some(Admitted::Inserted),
        (false, true) => Some(Admitted::Updated),
        (false, false) => None,
    }
}

/// Ids looked up for one batch.
pub(super) struct BatchKnown {
    pub(super) taken: HashSet<i32>,
    pub(super) parents: HashMap<Table, HashSet<i32>>,
}

impl Known for BatchKnown {
    fn taken(&mut self, id: i32) -> Result<bool, StoreError> {
        Ok(self.taken.contains(&id))
    }
    fn admit(&mut self, row: &Row, update: bool) -> Result<Option<Admitted>, StoreError> {
        Ok(in_memory(self.taken.insert(row.id()), update))
    }
    fn has_parent(&mut self, parent: Table, id: i32) -> Result<bool, StoreError> {
        Ok(self.parents.get(&parent).is_some_and(|s| s.contains(&id)))
    }
}

/// One table of an API batch sorted by the admission rules, before its
/// insert: the rows to write and the rows rejected so far.
pub(super) struct Sorted<'a> {
    chosen: Vec<(&'a InputRow, &'a Row)>,
    rejected: Vec<(&'a InputRow, Vec<FieldError>)>,
}

/// Rejected rows of a batch, in input order, with their errors.
pub(super) type Rejected<'a> = Vec<(&'a InputRow, Vec<FieldError>)>;

/// What a batch's table came to once written: rows inserted, rows updated
/// and every rejection, in input order.
pub(super) struct Settled<'a> {
    pub(super) inserted: u64,
    pub(super) updated: u64,
    pub(super) rejected: Rejected<'a>,
    /// The rows written (inserted or updated), id and position, in input
    /// order: their lineage.
    pub(super) written: Vec<(i32, u64)>,
}

impl<'a> Sorted<'a> {
    /// Judges every row of `chunk` against the ids looked up for it.
    pub(super) fn new(
        table: Table,
        chunk: &'a Chunk,
        mut known: BatchKnown,
        update: bool,
    ) -> Result<Sorted<'a>, StoreError> {
        let mut sorted = Sorted {
            chosen: Vec::new(),
            rejected: Vec::new(),
        };
        for c in &chunk.rows {
            match admit(table, c, &mut known, update)? {
                Ok((row, _)) => sorted.chosen.push((c, row)),
                Err(errors) => sorted.rejected.push((c, errors)),
            }
        }
        Ok(sorted)
    }

    /// The rows to write: each admitted row, or, for an upsert, the last
    /// occurrence of each id (the later one wins), in input order.
    pub(super) fn rows(&self, update: bool) -> Vec<&'a Row> {
        if !update {
            return self.chosen.iter().map(|(_, row)| *row).collect();
        }
        let mut last: HashMap<i32, usize> = HashMap::with_capacity(self.chosen.len());
        for (i, (_, row)) in self.chosen.iter().enumerate() {
            last.insert(row.id(), i);
        }
        (self.chosen.iter().enumerate())
            .filter(|(i, (_, row))| last.get(&row.id()) == Some(i))
            .map(|(_, (_, row))| *row)
            .collect()
    }

    /// After an insert: a chosen row whose id is not in `inserted_ids` was
    /// inserted by another writer since the lookup, and is a duplicate.
    pub(super) fn settle(self, inserted_ids: &HashSet<i32>) -> Settled<'a> {
        let Sorted {
            chosen,
            mut rejected,
        } = self;
        let mut inserted = 0;
        let mut written = Vec::with_capacity(chosen.len());
        for (c, row) in chosen {
            if inserted_ids.contains(&row.id()) {
                inserted += 1;
                written.push((row.id(), c.position));
            } else {
                rejected.push((c, vec![duplicate_error(row.id())]));
            }
        }
        rejected.sort_by_key(|(c, _)| c.position);
        Settled {
            inserted,
            updated: 0,
            rejected,
            written,
        }
    }

    /// After an upsert, which says of each id it wrote whether it inserted
    /// it (`true`) or updated it: the first occurrence of an id counts as
    /// the database says (another writer may have inserted or deleted it
    /// since the lookup), the later ones as updates of it.
    pub(super) fn settle_upserted(self, written: &HashMap<i32, bool>) -> Settled<'a> {
        let Sorted {
            chosen,
            mut rejected,
        } = self;
        let (mut inserted, mut updated) = (0, 0);
        let mut seen = HashSet::with_capacity(chosen.len());
        let mut lineage = Vec::with_capacity(chosen.len());
        for (c, row) in chosen {
            match written.get(&row.id()) {
                Some(&fresh) if seen.insert(row.id()) && fresh => inserted += 1,
                Some(_) => updated += 1,
                None => {
                    rejected.push((c, vec![duplicate_error(row.id())]));
                    continue;
                }
            }
            lineage.push((row.id(), c.position));
        }
        rejected.sort_by_key(|(c, _)| c.position);
        Settled {
            inserted,
            updated,
            rejected,
            written: lineage,
        }
    }
}

/// What one table of a batch came to.
pub(super) fn outcome(table: Table, chunk: &Chunk, settled: Settled<'_>) -> TableOutcome {
    TableOutcome {
        table,
        received: chunk.rows.len() as u64,
        inserted: settled.inserted,
        updated: settled.updated,
        rejected: settled
            .rejected
            .into_iter()
            .map(|(c, errors)| (c.position, errors))
            .collect(),
        load_id: None,
    }
}

/// Ids held for a whole load, under a lock that keeps other writers out.
pub(super) struct LoadKnown {
    pub(super) taken: IdBitmap,
    pub(super) parents: HashMap<Table, IdBitmap>,
}

impl Known for LoadKnown {
    fn taken(&mut self, id: i32) -> Result<bool, StoreError> {
        Ok(self.taken.contains(id))
    }
    fn admit(&mut self, row: &Row, update: bool) -> Result<Option<Admitted>, StoreError> {
        Ok(in_memory(self.taken.insert(row.id()), update))
    }
    fn has_parent(&mut self, parent: Table, id: i32) -> Result<bool, StoreError> {
        Ok(self.parents.get(&parent).is_some_and(|s| s.contains(id)))
    }
}

/// The ints of column `i` named by the input rows (valid or not).
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
        let c = InputRow {
            position: 4,
            raw: 0..raw.len(),
            check: Err(Checked {
                values: Vec::new(),
                errors: errors.clone(),
            }),
        };
        let logged = rejection_record(
            Dialect::Postgres,
            Table::Departments,
            "api:x",
            raw,
            &c,
            &errors,
        );
        assert_eq!(logged.position, 4);
        assert_eq!(logged.raw, "7,Ann\u{FFFD}e,x\u{FFFD}");
        assert!(logged.errors.contains("\"columns\""), "{}", logged.errors);
        let logged = rejection_record(
            Dialect::Sqlite,
            Table::Departments,
            "api:x",
            raw,
            &c,
            &errors,
        );
        assert_eq!(logged.raw, "7,Ann\0e,x\u{FFFD}");
    }
}
