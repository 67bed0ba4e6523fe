//! hrmig moves a company's HR data (departments, jobs, hired employees) into
//! a SQL database, validated row by row, and keeps it safe there.
//!
//! The layers, from the outside in:
//!
//! - **Doors** — [`cli`] (the `hrmig` command) and [`http`] (the axum API,
//!   also what the Azure Functions host forwards to). Doors parse input, call
//!   an operation and render its report; they hold no business logic.
//! - **Operations** — [`ops`]: historic load ([`ops::load`]) and load jobs
//!   ([`ops::jobs`]), API batches ([`ops::ingest`]: parsing, applying,
//!   the response), backups ([`ops::backup`]: the catalogue of names and
//!   manifests, the Avro codec and container, backup, verify, restore and
//!   retention) and sample data ([`ops::sample`]). Each returns a report and never
//!   prints; a long one tells the [`ops::Progress`] its door hands in how
//!   far it has got.
//! - **Data dictionary** — [`dictionary`]: the tables, their columns and
//!   types, and the pure validation of a CSV record or JSON object. It drives
//!   the DDL of every dialect too ([`store::ddl`]).
//! - **Store** — [`store`]: the SQL database (SQLite by default, a
//!   PostgreSQL server shared by several processes, or Azure SQL / SQL
//!   Server) behind one interface; checks that need the database (duplicate
//!   ids, foreign keys), the rejection log and idempotency keys happen
//!   there, in the same transaction as the rows; the reports read its
//!   views. What the backends share (statements rendered per dialect, the
//!   admission rules, batches, loads and restores) is written once; each
//!   backend keeps its connections, type conversions and bulk path.
//! - **Metrics** — [`metrics`]: what a server counts for Prometheus
//!   (`GET /api/metrics`), moved by the doors from the operations' reports.
//! - **Storage** — [`storage`]: files (historic CSVs) behind the
//!   `object_store` interface; [`csvfile`] reads them as positioned records
//!   (and knows a header line and the rejection of a malformed record).

pub mod cli;
pub mod csvfile;
pub mod dictionary;
pub mod http;
pub mod metrics;
pub mod ops;
pub mod storage;
pub mod store;
pub mod telemetry;
