//! What the store reads back: stored rows, the rejection log, the load
//! history and the reports.

use crate::dictionary::{ErrorCode, FieldError, Table};
use serde::Serialize;

use super::StoreError;

/// Rows per chunk of rows handed between threads.
pub const SCAN_CHUNK: usize = 4096;

/// A column value read back from the store, valid for one row: rows are
/// streamed without an allocation each (a backup reads millions).
///
/// Text comes as the database holds it, not yet checked: the consumer
/// checks it where it costs least (a backup on its writing thread, so that
/// the reading thread only reads). [`Field::text`] and
/// [`Field::datetime`] do the checks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Field<'a> {
    /// INTEGER.
    Int(i32),
    /// STRING: bytes that should be UTF-8.
    Text(&'a [u8]),
    /// DATETIME, UTC milliseconds.
    DateTime(i64),
    /// DATETIME as stored text (canonical `YYYY-MM-DDTHH:MM:SS[.mmm]Z`).
    DateTimeText(&'a [u8]),
}

impl<'a> Field<'a> {
    /// The text of a STRING, checked as UTF-8.
    pub fn text(self) -> Option<&'a str> {
        match self {
            Field::Text(b) => std::str::from_utf8(b).ok(),
            _ => None,
        }
    }

    /// The UTC milliseconds of a DATETIME, parsed when stored as text.
    pub fn datetime(self) -> Option<i64> {
        match self {
            Field::DateTime(ms) => Some(ms),
            Field::DateTimeText(b) => crate::dictionary::datetime::parse_bytes(b).ok(),
            _ => None,
        }
    }
}

/// Where [`super::Store::scan`] sends each row: its fields in column order.
pub trait RowSink: Send + 'static {
    /// One row; an error stops the scan.
    fn row(&mut self, fields: &[Field<'_>]) -> Result<(), StoreError>;
}

/// One entry of the rejection log.
#[derive(Debug, Clone, Serialize, PartialEq, Eq, utoipa::ToSchema)]
pub struct Rejection {
    /// Log id, increasing.
    pub id: i64,
    /// Table the row was meant for.
    pub table: String,
    /// `file:<location>` or `api:<batch id>`.
    pub source: String,
    /// CSV line (from 1) or batch index (from 0).
    pub position: i64,
    /// The raw input: CSV text or the JSON object as received.
    pub raw: String,
    /// Every broken rule.
    pub errors: Vec<FieldError>,
    /// When it was rejected (UTC).
    pub rejected_at: String,
    /// Where it stands in the work queue.
    pub status: RejectionStatus,
    /// The history id of the operation that inserted its row, once resolved.
    pub resolved_by: Option<i64>,
}

/// Where a rejection stands: rejections are a work queue, never deleted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, utoipa::ToSchema, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum RejectionStatus {
    /// Its row is not in the table yet.
    Open,
    /// Its row was inserted since, by a retry or a fix.
    Resolved,
    /// Set aside by someone: not retried.
    Dismissed,
}

impl RejectionStatus {
    /// Every status.
    pub const ALL: [RejectionStatus; 3] = [
        RejectionStatus::Open,
        RejectionStatus::Resolved,
        RejectionStatus::Dismissed,
    ];

    /// The name stored in the log and shown by the API.
    pub const fn as_str(self) -> &'static str {
        match self {
            RejectionStatus::Open => "open",
            RejectionStatus::Resolved => "resolved",
            RejectionStatus::Dismissed => "dismissed",
        }
    }

    /// Parses a stored or requested name.
    pub fn parse(s: &str) -> Option<RejectionStatus> {
        Self::ALL.into_iter().find(|r| r.as_str() == s)
    }
}

/// How many rejections of one table have one code and one status (a
/// rejection with errors of two codes counts under each).
#[derive(Debug, Clone, Serialize, PartialEq, Eq, utoipa::ToSchema)]
pub struct RejectionCount {
    /// The table.
    pub table: String,
    /// The error code.
    pub code: String,
    /// The status.
    pub status: RejectionStatus,
    /// Rejections.
    pub count: i64,
}

/// Which rejections to read.
#[derive(Debug, Clone, Default)]
pub struct RejectionFilter {
    /// Only this table.
    pub table: Option<Table>,
    /// Only this source.
    pub source: Option<String>,
    /// Only rejections with this status.
    pub status: Option<RejectionStatus>,
    /// Only rejections with an error of this code.
    pub code: Option<ErrorCode>,
    /// Only ids greater than this (for paging).
    pub after: Option<i64>,
    /// At most this many.
    pub limit: u32,
}

/// One entry of the load history.
#[derive(Debug, Clone, Serialize, PartialEq, Eq, utoipa::ToSchema)]
pub struct LoadRecord {
    /// History id: the id of the operation.
    pub id: i64,
    /// What kind of operation wrote the entry.
    pub kind: OperationKind,
    /// Target table.
    pub table: String,
    /// `file:<location>`, `api:<batch id>`, `backup:<name>`,
    /// `retry:<id>` / `fix:<id>` for rows of the rejection log, or
    /// `undo:<operation id>`.
    pub source: String,
    /// SHA-256 of the file content.
    pub sha256: String,
    /// How the load ended.
    pub status: HistoryStatus,
    /// Records read.
    pub rows_read: i64,
    /// Rows inserted.
    pub inserted: i64,
    /// Rows that replaced stored ones (`on_duplicate` update).
    pub updated: i64,
    /// Rows rejected.
    pub rejected: i64,
    /// Blank lines skipped.
    pub blank: i64,
    /// Why the load was aborted.
    pub message: Option<String>,
    /// Start time (UTC).
    pub started_at: String,
    /// End time (UTC).
    pub finished_at: String,
    /// Rows an undo removed (0 for other kinds).
    pub removed: i64,
    /// The entry of the undo that removed this operation's rows, if one did.
    pub undone_by: Option<i64>,
}

/// What kind of operation a history entry records.
#[derive(Debug, Clone, Copy, Serialize, PartialEq, Eq, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum OperationKind {
    /// A file load.
    Load,
    /// A retry of open rejections.
    Retry,
    /// A corrected row of one rejection.
    Fix,
    /// One table of an API batch.
    Batch,
    /// A table replaced by a backup's rows.
    Restore,
    /// The removal of the rows an earlier operation inserted.
    Undo,
}

impl OperationKind {
    /// The name stored in the history and shown by the API.
    pub const fn as_str(self) -> &'static str {
        match self {
            OperationKind::Load => "load",
            OperationKind::Retry => "retry",
            OperationKind::Fix => "fix",
            OperationKind::Batch => "batch",
            OperationKind::Restore => "restore",
            OperationKind::Undo => "undo",
        }
    }

    /// Parses a stored name.
    pub fn parse(s: &str) -> Option<OperationKind> {
        [
            OperationKind::Load,
            OperationKind::Retry,
            OperationKind::Fix,
            OperationKind::Batch,
            OperationKind::Restore,
            OperationKind::Undo,
        ]
        .into_iter()
        .find(|k| k.as_str() == s)
    }
}

/// How a load recorded in the history ended.
#[derive(Debug, Clone, Copy, Serialize, PartialEq, Eq, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum HistoryStatus {
    /// Committed.
    Loaded,
    /// Rolled back (too many rejections, a wrong file); only recorded.
    Aborted,
}

impl HistoryStatus {
    /// The name stored in the history and shown by the API.
    pub const fn as_str(self) -> &'static str {
        match self {
            HistoryStatus::Loaded => "loaded",
            HistoryStatus::Aborted => "aborted",
        }
    }

    /// Parses a stored name.
    pub fn parse(s: &str) -> Option<HistoryStatus> {
        [HistoryStatus::Loaded, HistoryStatus::Aborted]
            .into_iter()
            .find(|h| h.as_str() == s)
    }
}

/// A row of the hires-by-quarter report.
#[derive(Debug, Clone, Serialize, PartialEq, Eq, utoipa::ToSchema)]
pub struct QuarterRow {
    /// Department name.
    pub department: String,
    /// Job name.
    pub job: String,
    /// Hires in January–March.
    pub q1: i64,
    /// Hires in April–June.
    pub q2: i64,
    /// Hires in July–September.
    pub q3: i64,
    /// Hires in October–December.
    pub q4: i64,
}

/// A row of the departments-above-mean report.
#[derive(Debug, Clone, Serialize, PartialEq, Eq, utoipa::ToSchema)]
pub struct DepartmentHires {
    /// Department id.
    pub id: i64,
    /// Department name.
    pub department: String,
    /// Hires in the year.
    pub hired: i64,
}
