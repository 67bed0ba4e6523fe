//! hrmig moves a company's HR data (departments, jobs, hired employees) into
//! a SQL database, validated row by row, and keeps it safe there.
//!
//! The layers, from the outside in:
//!
//! - **Doors** — [`cli`] (the `hrmig` command). Doors parse input, call an
//!   operation and render its report; they hold no business logic.
//! - **Operations** — [`ops`]: historic load ([`ops::load`]) and sample data
//!   ([`ops::sample`]). Each returns a report and never prints.
//! - **Data dictionary** — [`dictionary`]: the tables, their columns and
//!   types, and the pure validation of a CSV record or JSON object. It drives
//!   the DDL of every dialect too ([`store::ddl`]).
//! - **Store** — [`store`]: the SQL database (SQLite by default) behind one
//!   interface; checks that need the database (duplicate ids, foreign keys)
//!   and the rejection log happen there, in the same transaction as the rows.
//! - **Storage** — [`storage`]: files (historic CSVs) behind the
//!   `object_store` interface; [`csvfile`] reads them as positioned records.

pub mod cli;
pub mod csvfile;
pub mod dictionary;
pub mod http;
pub mod ops;
pub mod storage;
pub mod store;
pub mod telemetry;
