//! The data dictionary: the one description of the HR tables.
//!
//! Everything that knows a table's shape reads it from here: validation
//! ([`check`]), the DDL of every SQL dialect (`store::ddl`), CSV column
//! order, and what the API reports about tables. A table is a [`Table`] value,
//! parsed once at the edge; SQL and file names are built only from the
//! `&'static str` names below, never from user input.

pub mod check;
pub mod datetime;

use serde::Serialize;
use std::fmt;

/// The type of a column, as the data rules see it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "UPPERCASE")]
pub enum ColumnType {
    /// Base-10 integer that fits a signed 32-bit `INT`.
    Integer,
    /// UTF-8 text, 1 to [`MAX_STRING_CHARS`] characters after trimming.
    String,
    /// ISO 8601 / RFC 3339 date-time, stored in UTC with millisecond precision.
    #[serde(rename = "DATETIME")]
    DateTime,
}

/// Longest STRING value, in characters (the `NVARCHAR(255)` of every dialect).
pub const MAX_STRING_CHARS: usize = 255;

/// One column of a table.
#[derive(Debug, Clone, Copy, Serialize, utoipa::ToSchema)]
pub struct Column {
    /// Column name, identical in CSV order, JSON keys, SQL and Avro.
    pub name: &'static str,
    /// Type the data rules check.
    #[serde(rename = "type")]
    pub ty: ColumnType,
    /// What the column holds, for people.
    pub description: &'static str,
    /// Parent table whose primary key this column must match.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub references: Option<Table>,
}

impl Column {
    const fn new(name: &'static str, ty: ColumnType, description: &'static str) -> Self {
        Column {
            name,
            ty,
            description,
            references: None,
        }
    }

    const fn refs(mut self, parent: Table) -> Self {
        self.references = Some(parent);
        self
    }
}

/// The tables of the HR migration. Declaration order is load order:
/// parents before the tables that reference them.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Hash,
    PartialOrd,
    Ord,
    Serialize,
    serde::Deserialize,
    utoipa::ToSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum Table {
    /// Departments of the company.
    Departments,
    /// Job titles.
    Jobs,
    /// Employees hired, each in one department and one job.
    HiredEmployees,
}

use ColumnType::{DateTime, Integer, String as Str};

const DEPARTMENTS: [Column; 2] = [
    Column::new("id", Integer, "primary key"),
    Column::new("department", Str, "name of the department"),
];
const JOBS: [Column; 2] = [
    Column::new("id", Integer, "primary key"),
    Column::new("job", Str, "name of the job"),
];
const HIRED_EMPLOYEES: [Column; 5] = [
    Column::new("id", Integer, "primary key"),
    Column::new("name", Str, "name and surname"),
    Column::new("datetime", DateTime, "hire time, ISO 8601, stored in UTC"),
    Column::new("department_id", Integer, "references departments.id").refs(Table::Departments),
    Column::new("job_id", Integer, "references jobs.id").refs(Table::Jobs),
];

impl Table {
    /// Every table, parents first: the order loads and restores of several tables use.
    pub const ALL: [Table; 3] = [Table::Departments, Table::Jobs, Table::HiredEmployees];

    /// The tables a user named, each once and parents first; every table
    /// when none is named.
    pub fn each_once(named: &[Table]) -> Vec<Table> {
        if named.is_empty() {
            return Table::ALL.to_vec();
        }
        let mut tables = named.to_vec();
        tables.sort();
        tables.dedup();
        tables
    }

    /// The table's name in SQL, file names, URLs and Avro records.
    pub const fn name(self) -> &'static str {
        match self {
            Table::Departments => "departments",
            Table::Jobs => "jobs",
            Table::HiredEmployees => "hired_employees",
        }
    }

    /// Columns in CSV order. The first one is always the integer primary key `id`.
    pub const fn columns(self) -> &'static [Column] {
        match self {
            Table::Departments => &DEPARTMENTS,
            Table::Jobs => &JOBS,
            Table::HiredEmployees => &HIRED_EMPLOYEES,
        }
    }

    /// The Avro schema of the table's backups: a record named after the
    /// table, one field per column in CSV order, none nullable (every
    /// column is required). INTEGER is `int`, STRING `string`, DATETIME a
    /// `long` of UTC milliseconds with logical type `timestamp-millis`.
    pub fn avro_schema(self) -> String {
        let fields: Vec<serde_json::Value> = self
            .columns()
            .iter()
            .map(|c| {
                let ty = match c.ty {
                    ColumnType::Integer => serde_json::json!("int"),
                    ColumnType::String => serde_json::json!("string"),
                    ColumnType::DateTime => {
                        serde_json::json!({"type": "long", "logicalType": "timestamp-millis"})
                    }
                };
                serde_json::json!({"name": c.name, "type": ty, "doc": c.description})
            })
            .collect();
        serde_json::json!({
            "type": "record",
            "name": self.name(),
            "namespace": "hrmig",
            "fields": fields,
        })
        .to_string()
    }

    /// Index of the primary key column in [`Table::columns`].
    pub const PRIMARY_KEY: usize = 0;

    /// Columns that reference another table: `(column index, column, parent)`.
    pub fn foreign_keys(self) -> impl Iterator<Item = (usize, &'static Column, Table)> {
        self.columns()
            .iter()
            .enumerate()
            .filter_map(|(i, c)| c.references.map(|p| (i, c, p)))
    }

    /// Tables whose rows reference this one.
    pub fn children(self) -> impl Iterator<Item = Table> {
        Table::ALL
            .into_iter()
            .filter(move |t| t.foreign_keys().any(|(_, _, p)| p == self))
    }

    /// Parses a table name exactly as [`Table::name`] spells it.
    pub fn parse(name: &str) -> Result<Table, UnknownTable> {
        Table::ALL
            .into_iter()
            .find(|t| t.name() == name)
            .ok_or_else(|| UnknownTable(name.chars().take(64).collect()))
    }
}

impl fmt::Display for Table {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl std::str::FromStr for Table {
    type Err = UnknownTable;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Table::parse(s)
    }
}

/// A table name that is not in the dictionary.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown table {0:?} (tables: departments, jobs, hired_employees)")]
pub struct UnknownTable(pub String);

/// A typed, valid value of a column.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Value {
    /// An INTEGER column.
    Int(i32),
    /// A STRING column, already trimmed.
    Text(String),
    /// A DATETIME column: milliseconds since the Unix epoch, UTC.
    DateTime(i64),
}

impl Value {
    /// The integer, for INTEGER columns.
    pub fn as_int(&self) -> Option<i32> {
        match self {
            Value::Int(v) => Some(*v),
            _ => None,
        }
    }
}

/// A row that passed every data rule a single row can be checked against,
/// values in [`Table::columns`] order. Duplicate ids and foreign keys are
/// checked by the store, against the database.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Row(pub Vec<Value>);

impl Row {
    /// The primary key.
    pub fn id(&self) -> i32 {
        self.0[Table::PRIMARY_KEY].as_int().unwrap_or_default()
    }
}

/// Why a value or a row breaks the data rules. The `snake_case` names are the
/// stable codes of the contract.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, serde::Deserialize, utoipa::ToSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    /// Empty after trimming, `null`, or absent.
    Missing,
    /// Not of the column's type (`abc` for an integer, `"12"` in JSON).
    Type,
    /// The right type but out of the column's range.
    Range,
    /// Not a valid date-time (or a CSV record that is not well formed).
    Format,
    /// Longer than the column (or the record) allows.
    TooLong,
    /// Not valid UTF-8, or holding a NUL byte that no database stores.
    Encoding,
    /// Wrong number of CSV fields, or unknown / repeated JSON fields.
    Columns,
    /// Primary key already in the table or earlier in the same file/batch.
    Duplicate,
    /// A reference to a parent row that does not exist.
    ForeignKey,
}

impl ErrorCode {
    /// Every code.
    pub const ALL: [ErrorCode; 9] = [
        ErrorCode::Missing,
        ErrorCode::Type,
        ErrorCode::Range,
        ErrorCode::Format,
        ErrorCode::TooLong,
        ErrorCode::Encoding,
        ErrorCode::Columns,
        ErrorCode::Duplicate,
        ErrorCode::ForeignKey,
    ];

    /// The code a user names, by its contract string; an unknown one is
    /// an error that lists them all (one message for every door).
    pub fn parse(name: &str) -> Result<ErrorCode, String> {
        Self::ALL
            .into_iter()
            .find(|c| c.as_str() == name)
            .ok_or_else(|| {
                let codes: Vec<&str> = Self::ALL.iter().map(|c| c.as_str()).collect();
                format!("unknown error code {name:?}: one of {}", codes.join(", "))
            })
    }

    /// The contract's code string.
    pub const fn as_str(self) -> &'static str {
        match self {
            ErrorCode::Missing => "missing",
            ErrorCode::Type => "type",
            ErrorCode::Range => "range",
            ErrorCode::Format => "format",
            ErrorCode::TooLong => "too_long",
            ErrorCode::Encoding => "encoding",
            ErrorCode::Columns => "columns",
            ErrorCode::Duplicate => "duplicate",
            ErrorCode::ForeignKey => "foreign_key",
        }
    }
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Rejected rows counted per code: a row counts once under each code among
/// its errors (a row with two codes counts under both, as the rejection
/// log's summary counts it). Serialized as a map from code to count,
/// holding only the codes that occurred.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CodeTally([u64; ErrorCode::ALL.len()]);

impl CodeTally {
    /// Counts one rejected row.
    pub fn add(&mut self, errors: &[FieldError]) {
        for (n, code) in self.0.iter_mut().zip(ErrorCode::ALL) {
            *n += u64::from(errors.iter().any(|e| e.code == code));
        }
    }

    /// The rows counted under `code`.
    pub fn get(&self, code: ErrorCode) -> u64 {
        self.0[code as usize]
    }

    /// The codes that occurred, with their counts, in the contract's order.
    pub fn iter(&self) -> impl Iterator<Item = (ErrorCode, u64)> + '_ {
        (ErrorCode::ALL.into_iter().zip(self.0)).filter(|(_, n)| *n > 0)
    }

    /// Whether no row was counted.
    pub fn is_empty(&self) -> bool {
        self.0.iter().all(|n| *n == 0)
    }
}

impl Serialize for CodeTally {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_map(self.iter().map(|(code, n)| (code.as_str(), n)))
    }
}

impl<'de> serde::Deserialize<'de> for CodeTally {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let counts = std::collections::HashMap::<ErrorCode, u64>::deserialize(d)?;
        let mut tally = CodeTally::default();
        for (code, n) in counts {
            tally.0[code as usize] = n;
        }
        Ok(tally)
    }
}

/// One broken rule: which column (none when the whole record is at fault),
/// which code, and a message for people.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize, utoipa::ToSchema)]
pub struct FieldError {
    /// The column, or `None` for record-level errors (field count, a broken quote).
    pub column: Option<String>,
    /// The stable code.
    pub code: ErrorCode,
    /// What is wrong, naming the value where that helps.
    pub message: String,
}

impl FieldError {
    /// An error about one column.
    pub fn column(column: &str, code: ErrorCode, message: impl Into<String>) -> Self {
        FieldError {
            column: Some(column.to_owned()),
            code,
            message: message.into(),
        }
    }

    /// An error about the record as a whole.
    pub fn record(code: ErrorCode, message: impl Into<String>) -> Self {
        FieldError {
            column: None,
            code,
            message: message.into(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::ErrorCode;

    #[test]
    fn every_error_code_is_named_and_parsed_as_the_contract_spells_it() {
        for code in ErrorCode::ALL {
            let json = serde_json::to_value(code).unwrap();
            assert_eq!(json, code.as_str());
            assert_eq!(ErrorCode::parse(code.as_str()), Ok(code));
        }
        let distinct: std::collections::HashSet<ErrorCode> = ErrorCode::ALL.into();
        assert_eq!(distinct.len(), ErrorCode::ALL.len());
        let unknown = ErrorCode::parse("nope").unwrap_err();
        assert!(unknown.contains("foreign_key"), "{unknown}");
    }

    #[test]
    fn a_tally_counts_a_row_once_per_code_and_round_trips_as_a_map() {
        use super::{CodeTally, FieldError};
        for (i, code) in ErrorCode::ALL.into_iter().enumerate() {
            assert_eq!(code as usize, i, "ALL is in declaration order");
        }
        let mut tally = CodeTally::default();
        assert!(tally.is_empty());
        let fk = |c| FieldError::column(c, ErrorCode::ForeignKey, "no parent");
        tally.add(&[fk("department_id"), fk("job_id")]);
        tally.add(&[
            fk("job_id"),
            FieldError::record(ErrorCode::Columns, "3 fields"),
        ]);
        assert_eq!(tally.get(ErrorCode::ForeignKey), 2);
        assert_eq!(tally.get(ErrorCode::Columns), 1);
        assert_eq!(tally.get(ErrorCode::Missing), 0);
        let json = serde_json::to_value(tally).unwrap();
        assert_eq!(json, serde_json::json!({"columns": 1, "foreign_key": 2}));
        let back: CodeTally = serde_json::from_value(json).unwrap();
        assert_eq!(back, tally);
        assert!(serde_json::from_str::<CodeTally>(r#"{"nope": 1}"#).is_err());
    }

    use super::Table::{self, *};

    #[test]
    fn tables_named_come_once_and_parents_first() {
        assert_eq!(Table::each_once(&[]), Table::ALL);
        assert_eq!(
            Table::each_once(&[HiredEmployees, Jobs, HiredEmployees, Departments]),
            [Departments, Jobs, HiredEmployees]
        );
        assert_eq!(Table::each_once(&[Jobs, Jobs]), [Jobs]);
    }
}
