//! The Avro encoding of the dictionary's records: the block compression
//! codecs, each table's schema and its fingerprint, and the datums.
//!
//! The datum encoding of these schemas is three primitives (zig-zag `int`
//! and `long`, length-prefixed `string`), so rows are written and read here
//! straight from and into the database's values and [`Row`]s, with no
//! intermediate record value: that is what lets a backup run at the speed
//! of the table scan.

use crate::dictionary::check::check_text;
use crate::dictionary::{ColumnType, Row, Table, Value, datetime};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::sync::OnceLock;

/// Compression of the Avro blocks.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum, utoipa::ToSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum Codec {
    /// No compression.
    Null,
    /// Deflate (RFC 1951), required of every Avro reader; no checksum.
    Deflate,
    /// Snappy, with a CRC-32 of every block.
    Snappy,
    /// Zstandard.
    Zstandard,
}

impl Codec {
    /// The codec used when none is given.
    pub const DEFAULT: Codec = Codec::Snappy;

    /// The name in the Avro header (`avro.codec`).
    pub fn name(self) -> &'static str {
        match self {
            Codec::Null => "null",
            Codec::Deflate => "deflate",
            Codec::Snappy => "snappy",
            Codec::Zstandard => "zstandard",
        }
    }

    pub(super) fn avro(self) -> apache_avro::Codec {
        match self {
            Codec::Null => apache_avro::Codec::Null,
            Codec::Deflate => apache_avro::Codec::Deflate(Default::default()),
            Codec::Snappy => apache_avro::Codec::Snappy,
            Codec::Zstandard => apache_avro::Codec::Zstandard(Default::default()),
        }
    }
}

/// The parsed Avro schema of each table (built once from the dictionary).
pub(super) fn schema(table: Table) -> &'static apache_avro::Schema {
    static SCHEMAS: OnceLock<Vec<apache_avro::Schema>> = OnceLock::new();
    let schemas = SCHEMAS.get_or_init(|| {
        Table::ALL
            .iter()
            .map(|t| {
                // Built from the dictionary by code: a parse failure is a bug
                // that every test would show.
                apache_avro::Schema::parse_str(&t.avro_schema())
                    .unwrap_or_else(|e| panic!("schema of {t}: {e}"))
            })
            .collect()
    });
    &schemas[Table::ALL.iter().position(|t| *t == table).unwrap_or(0)]
}

/// SHA-256 of a schema's Avro canonical form, hex.
pub(super) fn fingerprint(schema: &apache_avro::Schema) -> String {
    hex::encode(Sha256::digest(schema.canonical_form().as_bytes()))
}

/// Appends `n` in Avro's zig-zag variable-length encoding (`int` and
/// `long` alike).
pub(crate) fn put_long(buf: &mut Vec<u8>, n: i64) {
    let mut z = ((n << 1) ^ (n >> 63)) as u64;
    while z >= 0x80 {
        buf.push((z as u8) | 0x80);
        z >>= 7;
    }
    buf.push(z as u8);
}

/// Reads back a [`put_long`] value at `*at`: `None` when `buf` ends first
/// or the number runs past ten bytes.
pub(crate) fn get_long(buf: &[u8], at: &mut usize) -> Option<i64> {
    let mut z = 0u64;
    for shift in (0..64).step_by(7) {
        let b = *buf.get(*at)?;
        *at += 1;
        z |= u64::from(b & 0x7f) << shift;
        if b < 0x80 {
            return Some((z >> 1) as i64 ^ -((z & 1) as i64));
        }
    }
    None
}

/// Decodes one datum of `table`'s record at `*at` in a block's data and
/// checks it against the data rules, as a load does; what is wrong
/// otherwise (the column first).
pub fn read_row(table: Table, data: &[u8], at: &mut usize) -> Result<Row, String> {
    let columns = table.columns();
    let mut row = Vec::with_capacity(columns.len());
    for column in columns {
        let name = column.name;
        let long = |at: &mut usize| {
            get_long(data, at).ok_or_else(|| {
                format!("unreadable: {name}: the block ends inside it, or it is not an Avro number")
            })
        };
        let value = match column.ty {
            ColumnType::Integer => {
                let n = long(at)?;
                Value::Int(i32::try_from(n).map_err(|_| {
                    format!("unreadable: {name}: {n} is outside the range of an Avro int")
                })?)
            }
            ColumnType::String => {
                let len = long(at)?;
                let left = data.len().saturating_sub(*at);
                let bytes = usize::try_from(len)
                    .ok()
                    .filter(|l| *l <= left)
                    .and_then(|l| data.get(*at..*at + l))
                    .ok_or_else(|| {
                        format!(
                            "unreadable: {name}: a string of {len} bytes where {left} are left in the block"
                        )
                    })?;
                *at += bytes.len();
                let text =
                    std::str::from_utf8(bytes).map_err(|_| format!("{name}: not UTF-8 text"))?;
                check_text(column, text).map_err(|e| format!("{name}: {}", e.message))?
            }
            ColumnType::DateTime => {
                let ms = long(at)?;
                if !datetime::in_range(ms) {
                    return Err(format!("{name}: {ms} ms is outside years 1 to 9999"));
                }
                Value::DateTime(ms)
            }
        };
        row.push(value);
    }
    Ok(Row(row))
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;

    /// Encoded jobs rows.
    pub(in crate::ops::backup) fn jobs(rows: &[(i64, &str)]) -> Vec<u8> {
        let mut out = Vec::new();
        for (id, job) in rows {
            put_long(&mut out, *id);
            put_long(&mut out, job.len() as i64);
            out.extend_from_slice(job.as_bytes());
        }
        out
    }

    #[test]
    fn longs_round_trip_and_truncation_is_none() {
        for n in [0, 1, -1, 63, -64, 64, i32::MAX as i64, i64::MAX, i64::MIN] {
            let mut buf = Vec::new();
            put_long(&mut buf, n);
            let mut at = 0;
            assert_eq!(get_long(&buf, &mut at), Some(n));
            assert_eq!(at, buf.len());
            let mut at = 0;
            assert_eq!(get_long(&buf[..buf.len() - 1], &mut at), None, "{n}");
        }
        assert_eq!(get_long(&[0xff; 11], &mut 0), None);
    }

    #[test]
    fn datums_are_decoded_and_checked() {
        let row = |t: Table, data: &[u8]| read_row(t, data, &mut 0);
        // A string claiming 300 MB in a few bytes.
        let mut data = Vec::new();
        put_long(&mut data, 1);
        put_long(&mut data, 300_000_000);
        data.extend_from_slice(b"abc");
        let e = row(Table::Jobs, &data).unwrap_err();
        assert_eq!(
            e,
            "unreadable: job: a string of 300000000 bytes where 3 are left in the block"
        );
        let mut data = Vec::new();
        put_long(&mut data, 1 << 40);
        assert!(
            row(Table::Jobs, &data)
                .unwrap_err()
                .contains("range of an Avro int")
        );
        assert_eq!(
            row(Table::Jobs, &jobs(&[(1, "   ")])).unwrap_err(),
            "job: value is required"
        );
        assert!(
            row(Table::Jobs, &jobs(&[(1, "\u{0}x")]))
                .unwrap_err()
                .contains("NUL")
        );
        let mut data = jobs(&[(1, "")]);
        data.pop();
        put_long(&mut data, 2);
        data.extend_from_slice(&[0xff, 0xfe]);
        assert_eq!(row(Table::Jobs, &data).unwrap_err(), "job: not UTF-8 text");
        // hired_employees: id, name, datetime, department_id, job_id.
        let employee = |ms: i64| {
            let mut d = jobs(&[(7, "Ann")]);
            put_long(&mut d, ms);
            put_long(&mut d, 1);
            put_long(&mut d, 2);
            d
        };
        let ok = row(Table::HiredEmployees, &employee(0)).unwrap();
        assert_eq!(ok.0[2], Value::DateTime(0));
        let e = row(Table::HiredEmployees, &employee(datetime::MAX_MS + 1)).unwrap_err();
        assert!(
            e.starts_with("datetime: ") && e.contains("years 1 to 9999"),
            "{e}"
        );
    }
}
