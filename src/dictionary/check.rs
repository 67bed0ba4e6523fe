//! Pure validation: a raw record (CSV fields or a JSON object) in, the typed
//! values and every broken rule out. No I/O happens here; duplicates and
//! foreign keys need the database and are checked by the store.

use super::datetime::{self, DateTimeError};
use super::{Column, ColumnType, ErrorCode, FieldError, MAX_STRING_CHARS, Row, Table, Value};

/// More columns than any table of the dictionary has (checked at compile
/// time), so that a row's values fit a fixed array.
pub const MAX_COLUMNS: usize = 16;

/// The outcome of checking one record: a value for every column that passed
/// its rules, and the errors of all the others.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checked {
    /// One slot per column, in [`Table::columns`] order; `None` where the value broke a rule.
    pub values: Vec<Option<Value>>,
    /// Every broken rule, in column order.
    pub errors: Vec<FieldError>,
}

const _: () = {
    let mut i = 0;
    while i < Table::ALL.len() {
        assert!(Table::ALL[i].columns().len() <= MAX_COLUMNS);
        i += 1;
    }
};

impl Checked {
    /// The valid row, or `None` when any rule was broken.
    pub fn into_row(self) -> Result<Row, Checked> {
        if self.errors.is_empty() && self.values.iter().all(Option::is_some) {
            let mut row = Vec::with_capacity(self.values.len());
            row.extend(self.values.into_iter().flatten());
            Ok(Row(row))
        } else {
            Err(self)
        }
    }

    /// The integer of column `index`, when it parsed.
    pub fn int(&self, index: usize) -> Option<i32> {
        self.values.get(index)?.as_ref()?.as_int()
    }

    fn record_error(table: Table, error: FieldError) -> Checked {
        Checked {
            values: vec![None; table.columns().len()],
            errors: vec![error],
        }
    }
}

/// Checks the fields of one CSV record against `table`'s columns.
pub fn check_csv<'a>(table: Table, fields: impl ExactSizeIterator<Item = &'a [u8]>) -> Checked {
    let columns = table.columns();
    if fields.len() != columns.len() {
        return Checked::record_error(
            table,
            FieldError::record(
                ErrorCode::Columns,
                format!(
                    "expected {} fields ({}), found {}",
                    columns.len(),
                    column_list(table),
                    fields.len()
                ),
            ),
        );
    }
    let mut values = Vec::with_capacity(columns.len());
    let mut errors = Vec::new();
    for (column, field) in columns.iter().zip(fields) {
        let checked = match std::str::from_utf8(field) {
            Ok(text) => check_text(column, text),
            Err(e) => Err(FieldError::column(
                column.name,
                ErrorCode::Encoding,
                format!("invalid UTF-8 at byte {} of the field", e.valid_up_to()),
            )),
        };
        push(&mut values, &mut errors, checked);
    }
    Checked { values, errors }
}

/// [`check_csv`] then [`Checked::into_row`], with one allocation for the
/// common record: every field valid. Anything else takes the full check,
/// which names every broken rule.
pub fn check_csv_row<'a>(
    table: Table,
    fields: impl ExactSizeIterator<Item = &'a [u8]> + Clone,
) -> Result<Row, Checked> {
    let columns = table.columns();
    if fields.len() == columns.len() {
        let mut row = Vec::with_capacity(columns.len());
        for (column, field) in columns.iter().zip(fields.clone()) {
            match std::str::from_utf8(field).map(|text| check_text(column, text)) {
                Ok(Ok(v)) => row.push(v),
                _ => break,
            }
        }
        if row.len() == columns.len() {
            return Ok(Row(row));
        }
    }
    check_csv(table, fields).into_row()
}

/// Checks one text value against a column's rules. Surrounding whitespace is
/// trimmed first; an empty result is `missing`.
pub fn check_text(column: &Column, text: &str) -> Result<Value, FieldError> {
    let text = text.trim();
    if text.is_empty() {
        return Err(FieldError::column(
            column.name,
            ErrorCode::Missing,
            "value is required",
        ));
    }
    if text.contains('\0') {
        return Err(FieldError::column(
            column.name,
            ErrorCode::Encoding,
            "contains a NUL byte, which no database column can store",
        ));
    }
    match column.ty {
        ColumnType::Integer => parse_int(column, text).map(Value::Int),
        ColumnType::String => {
            let chars = text.chars().count();
            if chars > MAX_STRING_CHARS {
                Err(FieldError::column(
                    column.name,
                    ErrorCode::TooLong,
                    format!("{chars} characters, at most {MAX_STRING_CHARS} allowed"),
                ))
            } else {
                Ok(Value::Text(text.to_owned()))
            }
        }
        ColumnType::DateTime => datetime::parse(text)
            .map(Value::DateTime)
            .map_err(|e| match e {
                DateTimeError::Format(m) => FieldError::column(column.name, ErrorCode::Format, m),
                DateTimeError::Range(m) => FieldError::column(column.name, ErrorCode::Range, m),
            }),
    }
}

fn parse_int(column: &Column, text: &str) -> Result<i32, FieldError> {
    let digits = text.strip_prefix(['-', '+']).unwrap_or(text);
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(FieldError::column(
            column.name,
            ErrorCode::Type,
            format!("{:?} is not a base-10 integer", shorten(text)),
        ));
    }
    text.parse::<i32>().map_err(|_| {
        FieldError::column(
            column.name,
            ErrorCode::Range,
            format!(
                "{} is outside the 32-bit integer range {}..{}",
                shorten(text),
                i32::MIN,
                i32::MAX
            ),
        )
    })
}

/// A JSON value as the data rules see it: scalars, with arrays and objects
/// only named. Strings borrow from the request body when they can, so a
/// batch is checked without building a JSON tree per row.
#[derive(Debug, Clone, PartialEq)]
pub enum JsonScalar<'a> {
    /// `null`.
    Null,
    /// `true` / `false`.
    Bool(bool),
    /// An integer that fits i64.
    Int(i64),
    /// A positive integer over i64.
    UInt(u64),
    /// A number with a fraction or exponent.
    Float(f64),
    /// A string.
    Str(std::borrow::Cow<'a, str>),
    /// An array (contents not kept).
    Array,
    /// An object (contents not kept).
    Object,
}

impl<'a> From<&'a serde_json::Value> for JsonScalar<'a> {
    fn from(v: &'a serde_json::Value) -> Self {
        match v {
            serde_json::Value::Null => JsonScalar::Null,
            serde_json::Value::Bool(b) => JsonScalar::Bool(*b),
            serde_json::Value::Number(n) => match (n.as_i64(), n.as_u64()) {
                (Some(i), _) => JsonScalar::Int(i),
                (None, Some(u)) => JsonScalar::UInt(u),
                _ => JsonScalar::Float(n.as_f64().unwrap_or(f64::NAN)),
            },
            serde_json::Value::String(s) => JsonScalar::Str(std::borrow::Cow::Borrowed(s)),
            serde_json::Value::Array(_) => JsonScalar::Array,
            serde_json::Value::Object(_) => JsonScalar::Object,
        }
    }
}

impl<'de> serde::Deserialize<'de> for JsonScalar<'de> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        use serde::de::{IgnoredAny, MapAccess, SeqAccess, Visitor};
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = JsonScalar<'de>;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a JSON value")
            }
            fn visit_unit<E>(self) -> Result<Self::Value, E> {
                Ok(JsonScalar::Null)
            }
            fn visit_none<E>(self) -> Result<Self::Value, E> {
                Ok(JsonScalar::Null)
            }
            fn visit_bool<E>(self, v: bool) -> Result<Self::Value, E> {
                Ok(JsonScalar::Bool(v))
            }
            fn visit_i64<E>(self, v: i64) -> Result<Self::Value, E> {
                Ok(JsonScalar::Int(v))
            }
            fn visit_u64<E>(self, v: u64) -> Result<Self::Value, E> {
                Ok(i64::try_from(v).map_or(JsonScalar::UInt(v), JsonScalar::Int))
            }
            fn visit_f64<E>(self, v: f64) -> Result<Self::Value, E> {
                Ok(JsonScalar::Float(v))
            }
            fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Self::Value, E> {
                Ok(JsonScalar::Str(std::borrow::Cow::Borrowed(v)))
            }
            fn visit_str<E>(self, v: &str) -> Result<Self::Value, E> {
                Ok(JsonScalar::Str(std::borrow::Cow::Owned(v.to_owned())))
            }
            fn visit_string<E>(self, v: String) -> Result<Self::Value, E> {
                Ok(JsonScalar::Str(std::borrow::Cow::Owned(v)))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
                while seq.next_element::<IgnoredAny>()?.is_some() {}
                Ok(JsonScalar::Array)
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
                Ok(JsonScalar::Object)
            }
        }
        d.deserialize_any(V)
    }
}

/// Checks one JSON object, given as its entries in the order received
/// (repeated keys included, so that they can be reported).
///
/// JSON types are strict: an INTEGER must be a JSON number without a
/// fraction, STRING and DATETIME must be JSON strings; nothing is coerced.
pub fn check_json<K: AsRef<str>>(table: Table, entries: &[(K, JsonScalar<'_>)]) -> Checked {
    let columns = table.columns();
    // No table has more than a handful of columns: no allocation per row.
    let mut slots: [Option<&JsonScalar<'_>>; MAX_COLUMNS] = [None; MAX_COLUMNS];
    let mut errors = Vec::new();
    for (key, value) in entries {
        let key = key.as_ref();
        match columns.iter().position(|c| c.name == key) {
            Some(i) if slots[i].is_some() => errors.push(FieldError::column(
                key,
                ErrorCode::Columns,
                format!("field {key:?} appears more than once"),
            )),
            Some(i) => slots[i] = Some(value),
            None => errors.push(FieldError::column(
                shorten(key),
                ErrorCode::Columns,
                format!(
                    "unknown field {:?} (fields: {})",
                    shorten(key),
                    column_list(table)
                ),
            )),
        }
    }
    let mut values = Vec::with_capacity(columns.len());
    let mut column_errors = Vec::new();
    for (column, slot) in columns.iter().zip(slots) {
        let checked = match slot {
            None | Some(JsonScalar::Null) => Err(FieldError::column(
                column.name,
                ErrorCode::Missing,
                "value is required",
            )),
            Some(v) => check_json_value(column, v),
        };
        push(&mut values, &mut column_errors, checked);
    }
    column_errors.extend(errors);
    Checked {
        values,
        errors: column_errors,
    }
}

/// [`check_json`] then [`Checked::into_row`], with one allocation for the
/// common row: every column once, in dictionary order, every value valid.
/// Anything else takes the full check, which names every broken rule.
pub fn check_json_row<K: AsRef<str>>(
    table: Table,
    entries: &[(K, JsonScalar<'_>)],
) -> Result<Row, Checked> {
    let columns = table.columns();
    if entries.len() == columns.len() {
        let mut row = Vec::with_capacity(columns.len());
        for ((key, value), column) in entries.iter().zip(columns) {
            if key.as_ref() != column.name || *value == JsonScalar::Null {
                break;
            }
            match check_json_value(column, value) {
                Ok(v) => row.push(v),
                Err(_) => break,
            }
        }
        if row.len() == columns.len() {
            return Ok(Row(row));
        }
    }
    check_json(table, entries).into_row()
}

fn check_json_value(column: &Column, value: &JsonScalar<'_>) -> Result<Value, FieldError> {
    let wrong_type = |expected: &str| {
        FieldError::column(
            column.name,
            ErrorCode::Type,
            format!("expected {expected}, got {}", json_kind(value)),
        )
    };
    let out_of_range = |n: &dyn std::fmt::Display| {
        FieldError::column(
            column.name,
            ErrorCode::Range,
            format!("{n} is outside the 32-bit integer range"),
        )
    };
    match (column.ty, value) {
        (ColumnType::Integer, JsonScalar::Int(i)) => i32::try_from(*i)
            .map(Value::Int)
            .map_err(|_| out_of_range(i)),
        (ColumnType::Integer, JsonScalar::UInt(u)) => Err(out_of_range(u)),
        // JSON's `-0` is an integer the parser can only give as a float.
        (ColumnType::Integer, JsonScalar::Float(f)) if *f == 0.0 && f.is_sign_negative() => {
            Ok(Value::Int(0))
        }
        // An integer written with more digits than 64 bits hold comes as a
        // float too; whatever its exact value, it is outside the range.
        (ColumnType::Integer, JsonScalar::Float(f))
            if f.is_finite() && f.fract() == 0.0 && f.abs() >= 9.2e18 =>
        {
            Err(out_of_range(f))
        }
        (ColumnType::Integer, JsonScalar::Float(f)) => Err(FieldError::column(
            column.name,
            ErrorCode::Type,
            format!("{f} is not an integer"),
        )),
        (ColumnType::Integer, _) => Err(wrong_type("an integer number")),
        (ColumnType::String | ColumnType::DateTime, JsonScalar::Str(s)) => check_text(column, s),
        (ColumnType::String, _) => Err(wrong_type("a string")),
        (ColumnType::DateTime, _) => Err(wrong_type("an ISO 8601 date-time string")),
    }
}

fn push(
    values: &mut Vec<Option<Value>>,
    errors: &mut Vec<FieldError>,
    checked: Result<Value, FieldError>,
) {
    match checked {
        Ok(v) => values.push(Some(v)),
        Err(e) => {
            values.push(None);
            errors.push(e);
        }
    }
}

fn json_kind(v: &JsonScalar<'_>) -> &'static str {
    match v {
        JsonScalar::Null => "null",
        JsonScalar::Bool(_) => "a boolean",
        JsonScalar::Int(_) | JsonScalar::UInt(_) | JsonScalar::Float(_) => "a number",
        JsonScalar::Str(_) => "a string",
        JsonScalar::Array => "an array",
        JsonScalar::Object => "an object",
    }
}

fn column_list(table: Table) -> String {
    table
        .columns()
        .iter()
        .map(|c| c.name)
        .collect::<Vec<_>>()
        .join(", ")
}

/// Keeps messages short when a value is huge.
fn shorten(text: &str) -> &str {
    match text.char_indices().nth(64) {
        Some((i, _)) => &text[..i],
        None => text,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// The errors as `column:code`, separated by spaces (`*` for the
    /// record as a whole).
    fn codes(c: &Checked) -> String {
        let error = |e: &FieldError| format!("{}:{}", e.column.as_deref().unwrap_or("*"), e.code);
        c.errors.iter().map(error).collect::<Vec<_>>().join(" ")
    }

    fn csv(table: Table, line: &str) -> Checked {
        let fields: Vec<&str> = line.split(',').collect();
        fields_of(table, &fields)
    }

    fn fields_of(table: Table, fields: &[&str]) -> Checked {
        check_csv(table, fields.iter().map(|f| f.as_bytes()))
    }

    #[test]
    fn a_valid_employee_becomes_a_typed_row() {
        let row = csv(
            Table::HiredEmployees,
            "4535, Marcelo Gonzalez ,2021-07-27T16:02:08Z,1,2",
        )
        .into_row()
        .unwrap();
        assert_eq!(
            row.0,
            vec![
                Value::Int(4535),
                Value::Text("Marcelo Gonzalez".into()),
                Value::DateTime(1_627_401_728_000),
                Value::Int(1),
                Value::Int(2)
            ]
        );
    }

    #[test]
    fn missing_in_every_column() {
        let table = Table::HiredEmployees;
        for i in 0..5 {
            let mut fields = vec!["1", "Ann", "2021-07-27T16:02:08Z", "1", "2"];
            fields[i] = "  ";
            let c = fields_of(table, &fields);
            assert_eq!(codes(&c), format!("{}:missing", table.columns()[i].name));
        }
    }

    #[test]
    fn integer_rules() {
        let cases = [
            ("abc", ErrorCode::Type),
            ("12.0", ErrorCode::Type),
            ("1e3", ErrorCode::Type),
            ("-", ErrorCode::Type),
            ("2147483648", ErrorCode::Range),
            ("-2147483649", ErrorCode::Range),
            ("99999999999999999999999", ErrorCode::Range),
        ];
        for (text, code) in cases {
            let c = csv(Table::Departments, &format!("{text},Sales"));
            assert_eq!(codes(&c), format!("id:{code}"), "{text}");
        }
        for (text, v) in [
            ("2147483647", i32::MAX),
            ("-2147483648", i32::MIN),
            ("+7", 7),
        ] {
            let row = csv(Table::Departments, &format!("{text},Sales"))
                .into_row()
                .unwrap();
            assert_eq!(row.0[0], Value::Int(v));
        }
    }

    #[test]
    fn string_rules() {
        let c = csv(Table::Jobs, &format!("1,{}", "x".repeat(256)));
        assert_eq!(codes(&c), "job:too_long");
        // 255 characters of 2 bytes each is still fine: the limit counts characters.
        assert!(
            csv(Table::Jobs, &format!("1,{}", "é".repeat(255)))
                .into_row()
                .is_ok()
        );
        let c = fields_of(Table::Jobs, &["1", "a\0b"]);
        assert_eq!(codes(&c), "job:encoding");
        let c = check_csv(
            Table::Jobs,
            [b"1".as_slice(), b"caf\xe9".as_slice()].into_iter(),
        );
        assert_eq!(codes(&c), "job:encoding");
    }

    #[test]
    fn datetime_rules() {
        for (text, code) in [
            ("2021-02-30T10:00:00Z", ErrorCode::Format),
            ("2021-13-01T00:00:00Z", ErrorCode::Format),
            ("yesterday", ErrorCode::Format),
            ("0000-01-01T00:00:00Z", ErrorCode::Range),
        ] {
            let c = csv(Table::HiredEmployees, &format!("1,Ann,{text},1,2"));
            assert_eq!(codes(&c), format!("datetime:{code}"), "{text}");
        }
    }

    #[test]
    fn every_error_of_a_row_is_reported() {
        let c = csv(Table::HiredEmployees, "x,,nope,2147483648,");
        assert_eq!(
            codes(&c),
            "id:type name:missing datetime:format department_id:range job_id:missing"
        );
    }

    /// Every code that a single value can earn, on every column type, from
    /// CSV text and from JSON.
    #[test]
    fn every_value_code_on_every_column_type() {
        use serde_json::json;
        let int = Column::new("c", ColumnType::Integer, "");
        let string = Column::new("c", ColumnType::String, "");
        let dt = Column::new("c", ColumnType::DateTime, "");
        let long = "x".repeat(256);
        let text_cases: [(&Column, &str, ErrorCode); 13] = [
            (&int, " ", ErrorCode::Missing),
            (&int, "abc", ErrorCode::Type),
            (&int, "2147483648", ErrorCode::Range),
            (&int, "1\0", ErrorCode::Encoding),
            (&string, "", ErrorCode::Missing),
            (&string, &long, ErrorCode::TooLong),
            (&string, "a\0", ErrorCode::Encoding),
            (&dt, "", ErrorCode::Missing),
            (&dt, "2021-02-30T00:00:00Z", ErrorCode::Format),
            (&dt, "0000-06-01T00:00:00Z", ErrorCode::Range),
            (&dt, "\0", ErrorCode::Encoding),
            (&dt, &long, ErrorCode::Format),
            (&int, "-", ErrorCode::Type),
        ];
        for (col, text, code) in text_cases {
            assert_eq!(
                check_text(col, text).unwrap_err().code,
                code,
                "{:?} {text:?}",
                col.ty
            );
        }
        let json_cases = [
            (&int, json!(null), ErrorCode::Missing),
            (&int, json!("1"), ErrorCode::Type),
            (&int, json!(1.5), ErrorCode::Type),
            (&int, json!(-2_147_483_649i64), ErrorCode::Range),
            (&string, json!(null), ErrorCode::Missing),
            (&string, json!(1), ErrorCode::Type),
            (&string, json!(long), ErrorCode::TooLong),
            (&dt, json!(null), ErrorCode::Missing),
            (&dt, json!(1_627_401_728), ErrorCode::Type),
            (&dt, json!("2021-13-01T00:00:00Z"), ErrorCode::Format),
        ];
        for (col, value, code) in json_cases {
            // Through the whole object check, which is where `null` is handled.
            let (table, name) = match col.ty {
                ColumnType::Integer => (Table::Jobs, "id"),
                ColumnType::String => (Table::Jobs, "job"),
                ColumnType::DateTime => (Table::HiredEmployees, "datetime"),
            };
            let checked = check_json(table, &[(name.to_owned(), value.clone())]);
            let got = checked
                .errors
                .iter()
                .find(|e| e.column.as_deref() == Some(name))
                .map(|e| e.code)
                .unwrap_or_else(|| panic!("no error for {name} = {value}"));
            assert_eq!(got, code, "{:?} {value}", col.ty);
        }
        // Invalid UTF-8 is an encoding error in a column of any type.
        for table in Table::ALL {
            for i in 0..table.columns().len() {
                let mut fields: Vec<&[u8]> = vec![b"1"; table.columns().len()];
                fields[i] = b"\xff";
                let c = check_csv(table, fields.into_iter());
                assert!(c.errors.iter().any(|e| e.code == ErrorCode::Encoding
                    && e.column.as_deref() == Some(table.columns()[i].name)));
            }
        }
    }

    #[test]
    fn wrong_field_count_is_columns() {
        for line in ["1", "1,Sales,extra"] {
            let c = csv(Table::Departments, line);
            assert_eq!(codes(&c), "*:columns", "{line}");
        }
    }

    fn entries(v: serde_json::Value) -> Vec<(String, serde_json::Value)> {
        v.as_object().unwrap().clone().into_iter().collect()
    }

    fn check_json(table: Table, e: &[(String, serde_json::Value)]) -> Checked {
        let scalars: Vec<(&str, JsonScalar<'_>)> =
            e.iter().map(|(k, v)| (k.as_str(), v.into())).collect();
        super::check_json(table, &scalars)
    }

    #[test]
    fn json_types_are_strict() {
        let c = check_json(
            Table::HiredEmployees,
            &entries(
                json!({"id": "12", "name": 12, "datetime": 5, "department_id": 1.5, "job_id": true}),
            ),
        );
        assert_eq!(
            codes(&c),
            "id:type name:type datetime:type department_id:type job_id:type"
        );
        let c = check_json(
            Table::Jobs,
            &entries(json!({"id": 3_000_000_000u64, "job": null})),
        );
        assert_eq!(codes(&c), "id:range job:missing");
        let c = check_json(
            Table::Jobs,
            &entries(json!({"id": 18446744073709551615u64, "job": "x"})),
        );
        assert_eq!(codes(&c), "id:range");
    }

    #[test]
    fn json_minus_zero_is_zero_and_integers_past_64_bits_are_out_of_range() {
        // As the parser gives them: from the text of a body.
        let parse = |text: &str| -> Vec<(String, serde_json::Value)> {
            entries(serde_json::from_str(text).unwrap())
        };
        let c = check_json(Table::Jobs, &parse(r#"{"id": -0, "job": "x"}"#));
        assert!(c.errors.is_empty(), "{:?}", c.errors);
        assert_eq!(c.int(0), Some(0));
        for id in [
            "99999999999999999999",
            "-99999999999999999999",
            "123456789012345678901234567890",
        ] {
            let c = check_json(
                Table::Jobs,
                &parse(&format!(r#"{{"id": {id}, "job": "x"}}"#)),
            );
            assert_eq!(codes(&c), "id:range", "{id}");
        }
        // A number with a fraction or an exponent is still not an integer.
        for id in ["1.5", "5.0", "1e3", "-0.5"] {
            let c = check_json(
                Table::Jobs,
                &parse(&format!(r#"{{"id": {id}, "job": "x"}}"#)),
            );
            assert_eq!(codes(&c), "id:type", "{id}");
        }
    }

    #[test]
    fn json_unknown_repeated_and_absent_fields() {
        let e = vec![
            ("id".to_owned(), json!(1)),
            ("id".to_owned(), json!(2)),
            ("jobb".to_owned(), json!("x")),
        ];
        let c = check_json(Table::Jobs, &e);
        assert_eq!(codes(&c), "job:missing id:columns jobb:columns");
        // The first occurrence of a repeated key is the value that counts.
        assert_eq!(c.int(0), Some(1));
    }

    #[test]
    fn json_valid_row() {
        let row = check_json(
            Table::HiredEmployees,
            &entries(json!({"id": 1, "name": "Ann", "datetime": "2021-07-27T16:02:08+02:00", "department_id": 1, "job_id": 2})),
        )
        .into_row()
        .unwrap();
        assert_eq!(row.0[2], Value::DateTime(1_627_394_528_000));
    }
}
