//! hrmig moves a company's HR data (departments, jobs, hired employees) into
//! a SQL database, validated row by row, and keeps it safe there.
//!
//! The layers, from the outside in:
//!
//! - **Doors** — [`cli`] (the `hrmig` command) and [`http`] (the axum API,
//!   also what the Azure Functions host forwards to). Doors parse input, call
//!   an operation and render its report; they hold no business logic.
//! - **Operations** — [`ops`]: historic load ([`ops::load`]), API batches
//!   ([`ops::ingest`]) and sample data ([`ops::sample`]). Each returns a
//!   report and never prints.
//! - **Data dictionary** — [`dictionary`]: the tables, their columns and
//!   types, and the pure validation of a CSV record or JSON object. It drives
//!   the DDL of every dialect too ([`store::ddl`]).
//! - **Store** — [`store`]: the SQL database (SQLite by default, or a
//!   PostgreSQL server shared by several processes) behind one interface;
//!   checks that need the database (duplicate ids, foreign keys), the
//!   rejection log and idempotency keys happen there, in the same
//!   transaction as the rows; the reports read its views.
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
