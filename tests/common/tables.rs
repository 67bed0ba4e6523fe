//! What `GET /api/tables` answers.

/// The row count of `table` in a `GET /api/tables` answer.
pub fn rows_in(tables: &serde_json::Value, table: &str) -> u64 {
    let entry = tables
        .as_array()
        .and_then(|all| all.iter().find(|t| t["name"] == table));
    entry
        .and_then(|t| t["rows"].as_u64())
        .unwrap_or_else(|| panic!("no row count of {table} in {tables}"))
}
