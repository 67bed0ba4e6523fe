//! Whether a file is a CSV of its table at all, decided from its first bytes
//! and records, before anything from it commits.
//!
//! A file in another format (compressed, binary, another delimiter, another
//! table's columns) would otherwise load as every row rejected and then be
//! skipped as already loaded. These checks refuse it whole instead:
//!
//! - its first bytes are a compression or archive magic number;
//! - its first record holds a NUL byte (binary data, or UTF-16 text);
//! - its first record is a header (see [`looks_like_header`]) but not this
//!   table's columns in order;
//! - none of its first [`FIELD_COUNT_SAMPLE`] records (all, if fewer) has the
//!   table's field count.

use crate::csvfile::{Malformed, Record};
use crate::dictionary::Table;

/// Records looked at by the field-count check (the header line excluded).
pub const FIELD_COUNT_SAMPLE: u64 = 1000;

/// Bytes [`refuse_head`] needs to see.
pub const HEAD_BYTES: usize = 8;

/// Magic numbers of compressed files and archives, by format.
const MAGIC: &[(&[u8], &str)] = &[
    (b"\x1f\x8b", "gzip"),
    (b"PK\x03\x04", "zip"),
    (b"\x28\xb5\x2f\xfd", "zstd"),
    (b"BZh", "bzip2"),
    (b"\xfd7zXZ\x00", "xz"),
    (b"7z\xbc\xaf\x27\x1c", "7z"),
];

/// Why a file is not a CSV of its table.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// It starts with a compression or archive magic number.
    #[error("not a CSV of {table}: it starts like a {format} file; decompress it first")]
    Compressed {
        /// The table it was meant for.
        table: Table,
        /// The format its first bytes name.
        format: &'static str,
    },
    /// Its first record holds a NUL byte.
    #[error(
        "not a CSV of {table}: its first line holds a NUL byte (a binary file, or text not in UTF-8)"
    )]
    Binary {
        /// The table it was meant for.
        table: Table,
    },
    /// Its first line is a header, but not of this table's columns in order.
    #[error("not a CSV of {table}: its header names {found}; expected {expected}")]
    Header {
        /// The table it was meant for.
        table: Table,
        /// The names in the file's header, comma separated.
        found: String,
        /// The table's columns, comma separated.
        expected: String,
    },
    /// None of its first records has the table's field count.
    #[error(
        "not a CSV of {table}: none of its first {records} records has the {expected} fields of a {table} row; check its delimiter"
    )]
    FieldCount {
        /// The table it was meant for.
        table: Table,
        /// Records looked at.
        records: u64,
        /// The table's field count.
        expected: usize,
    },
}

/// Refuses a file whose first bytes (up to [`HEAD_BYTES`]) are a magic number.
pub fn refuse_head(table: Table, head: &[u8]) -> Result<(), Refusal> {
    match MAGIC.iter().find(|(magic, _)| head.starts_with(magic)) {
        Some(&(_, format)) => Err(Refusal::Compressed { table, format }),
        None => Ok(()),
    }
}

/// Whether a record's fields read as column names rather than values: every
/// field, trimmed, is a word of up to 64 characters that starts with an
/// ASCII letter or `_` and holds only ASCII letters, digits, `_`, `-`, `.`
/// and spaces. No INTEGER or DATETIME value is such a word, and a row of
/// this table always has an INTEGER id first, so a data row is taken for a
/// header only when its id is not a number (a `type` error anyway).
pub fn looks_like_header<'a>(fields: impl Iterator<Item = &'a [u8]>) -> bool {
    let mut any = false;
    for field in fields {
        any = true;
        let f = field.trim_ascii();
        let name_like = !f.is_empty()
            && f.len() <= 64
            && (f[0].is_ascii_alphabetic() || f[0] == b'_')
            && f.iter()
                .all(|b| b.is_ascii_alphanumeric() || b"_-. ".contains(b));
        if !name_like {
            return false;
        }
    }
    any
}

/// Follows the first records of one file and refuses it as soon as it is
/// known not to be a CSV of its table.
#[derive(Debug)]
pub struct Gate {
    table: Table,
    /// Data records seen so far, up to [`FIELD_COUNT_SAMPLE`].
    seen: u64,
    /// Of those, the records split into fields but not the table's number.
    wrong: u64,
    /// Set once a record settles that the file is a CSV of the table.
    open: bool,
}

impl Gate {
    /// A gate for a file of `table`.
    pub fn new(table: Table) -> Gate {
        Gate {
            table,
            seen: 0,
            wrong: 0,
            open: false,
        }
    }

    /// Checks the file's first record; `Ok(true)` when it is this table's
    /// header (to be skipped).
    pub fn first(&mut self, rec: &Record<'_>) -> Result<bool, Refusal> {
        let table = self.table;
        if rec.raw.contains(&0) {
            return Err(Refusal::Binary { table });
        }
        if rec.malformed.is_some() || !looks_like_header(rec.fields()) {
            return Ok(false);
        }
        if crate::csvfile::is_header(table, rec.fields()) {
            return Ok(true);
        }
        let found: Vec<String> = rec
            .fields()
            .map(|f| String::from_utf8_lossy(f.trim_ascii()).into_owned())
            .collect();
        let expected: Vec<&str> = table.columns().iter().map(|c| c.name).collect();
        Err(Refusal::Header {
            table,
            found: found.join(","),
            expected: expected.join(","),
        })
    }

    /// Counts a data record (not the header); refuses the file at the
    /// [`FIELD_COUNT_SAMPLE`]th record when none so far had the table's
    /// field count and some had another.
    pub fn record(&mut self, rec: &Record<'_>) -> Result<(), Refusal> {
        if self.open {
            return Ok(());
        }
        self.seen += 1;
        match rec.malformed {
            None if rec.fields().len() == self.table.columns().len() => {
                self.open = true;
                return Ok(());
            }
            None | Some(Malformed::TooManyFields) => self.wrong += 1,
            // Not split into fields (too long, a broken quote): says
            // nothing about the delimiter either way.
            Some(_) => {}
        }
        if self.seen >= FIELD_COUNT_SAMPLE {
            self.open = self.wrong == 0;
            return self.end();
        }
        Ok(())
    }

    /// At the end of the file (or of the sample): refuses it when no record
    /// had the table's field count and some had another (a file with no
    /// records is not refused).
    pub fn end(&self) -> Result<(), Refusal> {
        match !self.open && self.wrong > 0 {
            true => Err(Refusal::FieldCount {
                table: self.table,
                records: self.seen,
                expected: self.table.columns().len(),
            }),
            false => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(s: &str) -> impl Iterator<Item = &[u8]> {
        s.split(',').map(str::as_bytes)
    }

    #[test]
    fn headers_are_words_not_values() {
        for header in [
            "id,name,datetime,department_id,job_id",
            "ID , Job ",
            "emp id,emp-name,date.hired",
            "_id",
        ] {
            assert!(looks_like_header(words(header)), "{header}");
        }
        for row in [
            "1,Sales",
            ",Sales",
            "id;department",
            "x,2021-07-27T16:02:08Z",
            "id,name\u{e9}",
            "-1,a",
        ] {
            assert!(!looks_like_header(words(row)), "{row}");
        }
    }

    #[test]
    fn the_field_count_check_ignores_records_it_cannot_split() {
        use crate::csvfile::CsvRecords;
        let verdict = |input: &[u8]| {
            let mut records = CsvRecords::new(input);
            let mut gate = Gate::new(Table::Jobs);
            while let Some(rec) = records.next_record().unwrap() {
                gate.record(&rec)?;
            }
            gate.end()
        };
        let refused = |records| {
            Err(Refusal::FieldCount {
                table: Table::Jobs,
                records,
                expected: 2,
            })
        };
        assert_eq!(verdict(b"1;a\"b\n2;c\n"), refused(2));
        assert_eq!(verdict(b"1,a\"b\n"), Ok(()));
        assert_eq!(verdict(b"1;a\n2,b\n"), Ok(()));
        assert_eq!(verdict(b""), Ok(()));
        let many: Vec<u8> = (0..1500).flat_map(|_| *b"1;a\n").collect();
        let mut records = CsvRecords::new(&many[..]);
        let mut gate = Gate::new(Table::Jobs);
        let mut read = 0;
        let stop = loop {
            let rec = records.next_record().unwrap().unwrap();
            read += 1;
            if let Err(r) = gate.record(&rec) {
                break r;
            }
        };
        assert_eq!((read, Err(stop)), (1000, refused(1000)));
    }

    #[test]
    fn magic_numbers_are_refused() {
        for (head, format) in [
            (&b"\x1f\x8b\x08\x00\x00\x00\x00\x00"[..], "gzip"),
            (b"PK\x03\x04\x14\x00", "zip"),
            (b"\x28\xb5\x2f\xfd\x04", "zstd"),
            (b"BZh91AY", "bzip2"),
            (b"\xfd7zXZ\x00\x00", "xz"),
        ] {
            assert_eq!(
                refuse_head(Table::Jobs, head),
                Err(Refusal::Compressed {
                    table: Table::Jobs,
                    format
                })
            );
        }
        assert_eq!(refuse_head(Table::Jobs, b"1,PK"), Ok(()));
        assert_eq!(refuse_head(Table::Jobs, b""), Ok(()));
    }
}
