//! What every target checks of a row the dictionary accepted.

use hrmig::dictionary::{ColumnType, MAX_STRING_CHARS, Row, Table, Value, datetime};

/// A valid row has one value per column, of the column's type, within the
/// column's rules: text trimmed, 1 to 255 characters, no NUL; datetimes in
/// years 1 to 9999.
pub fn check_row(table: Table, row: &Row) {
    assert_eq!(row.0.len(), table.columns().len());
    for (v, c) in row.0.iter().zip(table.columns()) {
        let ok = match (c.ty, v) {
            (ColumnType::Integer, Value::Int(_)) => true,
            (ColumnType::DateTime, Value::DateTime(ms)) => datetime::in_range(*ms),
            (ColumnType::String, Value::Text(s)) => {
                s.trim() == s
                    && !s.is_empty()
                    && !s.contains('\0')
                    && s.chars().count() <= MAX_STRING_CHARS
            }
            _ => false,
        };
        assert!(ok, "{table}: {v:?} in column {}", c.name);
    }
}
