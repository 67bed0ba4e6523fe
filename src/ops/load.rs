//! Historic load: stream `<table>.csv` files into the database.
//!
//! Each file is one transaction. A blocking thread reads and checks records
//! (pure rules) and sends chunks through a bounded channel to the store,
//! which checks ids and foreign keys, inserts, and logs rejections, so
//! parsing and writing run side by side and memory stays bounded whatever
//! the file size. The file's SHA-256 keys the load history: the same content
//! is loaded once unless forced.

use super::Hashing;
use super::progress::{Metered, Progress, Quiet, Unit};
use super::shape::{Gate, HEAD_BYTES, Refusal, refuse_head};
use crate::csvfile::CsvRecords;
use crate::dictionary::check::check_csv_row;
use crate::dictionary::{CodeTally, Table, datetime};
use crate::storage::{Storage, StorageError};
use crate::store::{
    Chunk, DryRun, Feed, FeedSummary, FileLoad, InputRow, LoadOutcome, OnDuplicate, Store,
    StoreError, WouldReject,
};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::io::{self, Read};
use std::sync::{Arc, Mutex};
use std::time::Instant;
use tokio::sync::mpsc;

const CHUNK_ROWS: usize = 4096;
const CHUNK_BYTES: usize = 4 << 20;
const CHANNEL_CHUNKS: usize = 4;

/// What to load.
#[derive(Debug, Clone)]
pub struct LoadRequest {
    /// Folder holding `<table>.csv` files.
    pub from: Storage,
    /// Tables to load; loaded parents first whatever the order given.
    pub tables: Vec<Table>,
    /// Load files even when their content was loaded before.
    pub force: bool,
    /// Abort a file (nothing from it committed) once more rows than this are rejected.
    pub max_rejects: Option<u64>,
    /// Make every check a real run makes, and write nothing: no rows,
    /// rejections or history. Each file is checked against the database and
    /// against what the files before it in the run would have inserted.
    pub dry_run: bool,
    /// What a valid row whose id is taken does: rejected as a duplicate
    /// (the default), or an update of the stored row.
    pub on_duplicate: OnDuplicate,
    /// Where each file's bytes read are reported.
    pub progress: Arc<dyn Progress>,
    /// File names other than `<table>.csv`, by table.
    pub names: BTreeMap<Table, String>,
    /// Where to say how far the file being read has got, for a watcher on
    /// another task (a load job's heartbeat).
    pub watch: Option<Arc<LoadWatch>>,
}

impl LoadRequest {
    /// A request for `tables` from `from` with every option at its default.
    pub fn new(from: Storage, tables: Vec<Table>) -> LoadRequest {
        LoadRequest {
            from,
            tables,
            force: false,
            max_rejects: None,
            dry_run: false,
            on_duplicate: OnDuplicate::Reject,
            progress: Arc::new(Quiet),
            names: BTreeMap::new(),
            watch: None,
        }
    }

    /// The file that holds `table`'s rows.
    pub fn file_name(&self, table: Table) -> String {
        self.names
            .get(&table)
            .cloned()
            .unwrap_or_else(|| file_name(table))
    }
}

/// The table whose file is being read and the records read so far,
/// updated once per chunk of records.
#[derive(Debug, Default)]
pub struct LoadWatch(Mutex<Option<(Table, u64)>>);

impl LoadWatch {
    /// The file being read, and how many records so far; `None` between files.
    pub fn get(&self) -> Option<(Table, u64)> {
        *self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn set(&self, now: Option<(Table, u64)>) {
        *self.0.lock().unwrap_or_else(|e| e.into_inner()) = now;
    }
}

/// How a file's load ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum LoadStatus {
    /// Valid rows inserted, rejected rows logged, all committed.
    Loaded,
    /// This content was loaded before; nothing changed.
    AlreadyLoaded,
    /// Too many rejections, or not a CSV of the table; nothing from the file
    /// was committed (see the report's `message`).
    Aborted,
}

impl LoadStatus {
    /// The status as the contract spells it.
    pub fn as_str(self) -> &'static str {
        match self {
            LoadStatus::Loaded => "loaded",
            LoadStatus::AlreadyLoaded => "already_loaded",
            LoadStatus::Aborted => "aborted",
        }
    }
}

/// The outcome of one file.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, utoipa::ToSchema)]
pub struct LoadReport {
    /// Target table.
    pub table: Table,
    /// `file:<location>`.
    pub source: String,
    /// How it ended.
    pub status: LoadStatus,
    /// Records read (a header line is not counted).
    pub rows_read: u64,
    /// Rows inserted.
    pub inserted: u64,
    /// Rows that replaced a stored row of the same id (`on_duplicate`
    /// update; 0 otherwise): `rows_read = inserted + updated + rejected`.
    #[serde(default)]
    pub updated: u64,
    /// Rows written to the rejection log.
    pub rejected: u64,
    /// Those rows per code (a row with errors of two codes counts under
    /// each); absent when none was rejected.
    #[serde(default, skip_serializing_if = "CodeTally::is_empty")]
    #[schema(value_type = std::collections::HashMap<String, u64>)]
    pub rejected_by_code: CodeTally,
    /// Blank and whitespace-only lines skipped.
    pub blank: u64,
    /// Wall time.
    pub seconds: f64,
    /// Why the file was aborted (too many rejections, or why it is not a
    /// CSV of the table).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// `true` in a dry run: the status and counts are what a real run would
    /// have given, and nothing was written. Absent otherwise.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub dry_run: bool,
    /// The load's history entry, its operation id (`hrmig undo`, `POST
    /// /api/loads/{id}/undo`), when it committed rows; absent otherwise.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub load_id: Option<i64>,
    /// In a dry run, the first 100 rows a real run would reject, with
    /// their reasons (a real run logs them all instead). Absent otherwise.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub rejections: Vec<WouldReject>,
}

/// Why a load could not run.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// A file could not be found or opened.
    #[error(transparent)]
    Storage(#[from] StorageError),
    /// The database failed; the file's transaction was rolled back.
    #[error("{location}: {source}")]
    Store {
        /// The file being loaded.
        location: String,
        /// Why.
        source: StoreError,
    },
    /// Reading the file failed midway; its transaction was rolled back.
    #[error("{location}: read failed: {source}")]
    Read {
        /// The file.
        location: String,
        /// Why.
        source: io::Error,
    },
}

/// The file name of a table's historic CSV.
pub fn file_name(table: Table) -> String {
    format!("{}.csv", table.name())
}

/// Loads the requested tables, parents first. Every file is checked to exist
/// before any is loaded, so a missing file changes nothing.
#[tracing::instrument(skip_all, fields(from = req.from.location()))]
pub async fn load(store: &Store, req: &LoadRequest) -> Result<Vec<LoadReport>, LoadError> {
    load_reporting(store, req, |_| {}).await
}

/// The tables `req` loads, parents first, once every one's file is found
/// to exist.
pub async fn check_files(req: &LoadRequest) -> Result<Vec<Table>, LoadError> {
    let tables = Table::each_once(&req.tables);
    for &table in &tables {
        req.from.size(&req.file_name(table)).await?;
    }
    Ok(tables)
}

/// [`load`], handing each file's report to `done` as soon as it is known.
pub async fn load_reporting(
    store: &Store,
    req: &LoadRequest,
    mut done: impl FnMut(&LoadReport),
) -> Result<Vec<LoadReport>, LoadError> {
    let tables = check_files(req).await?;
    let mut reports = Vec::with_capacity(tables.len());
    let mut dry = req.dry_run.then(DryRun::default);
    for table in tables {
        let report = match load_file(store, req, table, dry.as_mut()).await {
            // The store has switched to plain inserts; the file's transaction
            // was rolled back, so loading it again from the start is safe.
            Err(LoadError::Store {
                location,
                source: StoreError::BulkCopyFailed(e),
            }) => {
                tracing::warn!(
                    table = table.name(),
                    %location,
                    error = %e,
                    "bulk copy failed; loading the file again with INSERT statements"
                );
                load_file(store, req, table, dry.as_mut()).await?
            }
            other => other?,
        };
        done(&report);
        reports.push(report);
    }
    Ok(reports)
}

/// The file being loaded, as its report and its errors name it.
struct Loading {
    table: Table,
    location: String,
    /// `file:PATH` for a local file, the `az://` URL of a blob.
    source: String,
    started: Instant,
    dry_run: bool,
}

impl Loading {
    fn report(
        &self,
        status: LoadStatus,
        rows_read: u64,
        inserted: u64,
        rejected: u64,
        blank: u64,
        message: Option<String>,
    ) -> LoadReport {
        LoadReport {
            table: self.table,
            source: self.source.clone(),
            status,
            rows_read,
            inserted,
            updated: 0,
            rejected,
            rejected_by_code: CodeTally::default(),
            blank,
            seconds: self.started.elapsed().as_secs_f64(),
            message,
            dry_run: self.dry_run,
            load_id: None,
            rejections: Vec::new(),
        }
    }

    /// A read that failed; a blob read that failed midway carries the
    /// storage's own error.
    fn read_err(&self, source: io::Error) -> LoadError {
        match StorageError::from_io(source) {
            Ok(storage) => LoadError::Storage(storage),
            Err(source) => LoadError::Read {
                location: self.location.clone(),
                source,
            },
        }
    }

    fn store_err(&self, source: StoreError) -> LoadError {
        LoadError::Store {
            location: self.location.clone(),
            source,
        }
    }
}

#[tracing::instrument(skip_all, fields(table = table.name(), rows))]
async fn load_file(
    store: &Store,
    req: &LoadRequest,
    table: Table,
    dry: Option<&mut DryRun>,
) -> Result<LoadReport, LoadError> {
    let started = Instant::now();
    let started_at = datetime::now_text();
    let name = req.file_name(table);
    let object = req.from.open_read(&name).await?;
    let location = object.location.clone();
    let source = match location.contains("://") {
        true => location.clone(),
        false => format!("file:{location}"),
    };
    let file = Loading {
        table,
        location,
        source,
        started,
        dry_run: dry.is_some(),
    };

    // Hash first: a file already loaded is skipped without parsing it.
    // The second read must see the bytes that were hashed.
    let version = object.version.clone();
    let sha256 = tokio::task::spawn_blocking(move || sha256_of(object.reader))
        .await
        .map_err(|e| file.read_err(io::Error::other(e)))?
        .map_err(|e| file.read_err(e))?;
    if !req.force
        && store
            .already_loaded(table, &sha256)
            .await
            .map_err(|e| file.store_err(e))?
    {
        tracing::info!(table = table.name(), "already loaded");
        return Ok(file.report(LoadStatus::AlreadyLoaded, 0, 0, 0, 0, None));
    }

    let object = req.from.open_same(&name, version).await?;
    let file_load = FileLoad {
        table,
        source: file.source.clone(),
        force: req.force,
        max_rejects: req.max_rejects,
        started_at,
        bytes: Some(object.size),
        dry_run: dry.as_deref().cloned(),
        on_duplicate: req.on_duplicate,
    };
    req.progress.start(table.name(), Unit::Bytes, object.size);
    let (tx, rx) = mpsc::channel(CHANNEL_CHUNKS);
    let reader = Metered {
        inner: object.reader,
        progress: req.progress.clone(),
    };
    let watch = req.watch.clone();
    let parser = tokio::task::spawn_blocking(move || parse(table, reader, tx, watch.as_deref()));
    let outcome = store.load_file(file_load.clone(), rx).await;
    let parsed = parser
        .await
        .map_err(|e| file.read_err(io::Error::other(e)))?;
    if let Some(watch) = &req.watch {
        watch.set(None);
    }
    req.progress.finish();
    let mut outcome = outcome;
    let mut rejections = Vec::new();
    if let (
        Ok(LoadOutcome::WouldLoad {
            ids, rejections: r, ..
        }),
        Some(dry),
    ) = (&mut outcome, dry)
    {
        // What the next files of the dry run are checked against.
        if !ids.is_empty() {
            dry.inserted.insert(table, Arc::new(std::mem::take(ids)));
        }
        rejections = std::mem::take(r);
    }
    let mut report = conclude(store, req, &file, &file_load, sha256, outcome, parsed).await?;
    report.rejections = rejections;
    Ok(report)
}

/// The report of a file whose rows went to the store, from what the store
/// and the parser each say; an aborted file is recorded as such.
async fn conclude(
    store: &Store,
    req: &LoadRequest,
    file: &Loading,
    file_load: &FileLoad,
    sha256: String,
    outcome: Result<LoadOutcome, StoreError>,
    parsed: Result<FeedSummary, ParseStop>,
) -> Result<LoadReport, LoadError> {
    let table = file.table;
    let (outcome, mut summary) = match (outcome, parsed) {
        // The parser refused the file and stopped feeding: the store rolled back.
        (
            Ok(LoadOutcome::Aborted { .. }) | Err(StoreError::FeedInterrupted),
            Err(ParseStop::Refused(refusal, mut summary)),
        ) => {
            let message = refusal.to_string();
            tracing::warn!(table = table.name(), %message, "file refused");
            summary.sha256 = sha256;
            if !file.dry_run {
                store
                    .record_aborted(file_load, &summary, 0, &message)
                    .await
                    .map_err(|e| file.store_err(e))?;
            }
            return Ok(file.report(
                LoadStatus::Aborted,
                summary.rows_read,
                0,
                0,
                summary.blank,
                Some(message),
            ));
        }
        (Ok(outcome), Ok(summary)) => (outcome, summary),
        (Ok(LoadOutcome::Aborted { rejected }), Err(ParseStop::Receiver(summary))) => {
            (LoadOutcome::Aborted { rejected }, summary)
        }
        (_, Err(ParseStop::Io(e))) => return Err(file.read_err(e)),
        (Err(e), _) => return Err(file.store_err(e)),
        (Ok(_), Err(ParseStop::Receiver(_) | ParseStop::Refused(..))) => {
            return Err(file.store_err(StoreError::FeedInterrupted));
        }
    };
    let load_id = match outcome {
        LoadOutcome::Loaded { load_id, .. } => Some(load_id),
        _ => None,
    };
    match outcome {
        LoadOutcome::Loaded {
            inserted,
            updated,
            rejected,
            codes,
            ..
        }
        | LoadOutcome::WouldLoad {
            inserted,
            updated,
            rejected,
            codes,
            ..
        } => {
            if summary.sha256 != sha256 {
                // Committed content differs from what was hashed first: keep
                // the commit (it is self-consistent and recorded under its own
                // hash) but say so.
                tracing::warn!(
                    table = table.name(),
                    "file changed between hashing and loading"
                );
            }
            tracing::Span::current().record("rows", summary.rows_read);
            let mut report = file.report(
                LoadStatus::Loaded,
                summary.rows_read,
                inserted,
                rejected,
                summary.blank,
                None,
            );
            report.updated = updated;
            report.rejected_by_code = codes;
            report.load_id = load_id;
            Ok(report)
        }
        LoadOutcome::AlreadyLoaded => Ok(file.report(LoadStatus::AlreadyLoaded, 0, 0, 0, 0, None)),
        LoadOutcome::Aborted { rejected } => {
            let max = req.max_rejects.unwrap_or_default();
            let message = format!(
                "aborted after more than {max} rejected rows ({rejected} by line {}): \
                 nothing from this file was committed; check its delimiter and encoding",
                summary.rows_read
            );
            summary.sha256 = sha256;
            if !file.dry_run {
                store
                    .record_aborted(file_load, &summary, rejected, &message)
                    .await
                    .map_err(|e| file.store_err(e))?;
            }
            Ok(file.report(
                LoadStatus::Aborted,
                summary.rows_read,
                0,
                rejected,
                summary.blank,
                Some(message),
            ))
        }
    }
}

fn sha256_of(mut reader: impl Read) -> io::Result<String> {
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        match reader.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => hasher.update(&buf[..n]),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(hex::encode(hasher.finalize()))
}

/// Why the parser stopped early.
#[derive(Debug)]
enum ParseStop {
    /// Reading failed.
    Io(io::Error),
    /// The store stopped listening (it aborted the load); what was read so far.
    Receiver(FeedSummary),
    /// The file is not a CSV of its table; what was read until that was known.
    Refused(Refusal, FeedSummary),
}

/// Reads up to `head.len()` bytes: fewer only at the end of the file.
fn read_head(reader: &mut impl Read, head: &mut [u8]) -> io::Result<usize> {
    let mut n = 0;
    while n < head.len() {
        match reader.read(&mut head[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}

/// Reads, checks and sends the records of one file, or refuses it (see
/// [`super::shape`]) by stopping without `Feed::End`, before the store can
/// commit anything from it.
fn parse(
    table: Table,
    reader: impl Read,
    tx: mpsc::Sender<Feed<Chunk, FeedSummary>>,
    watch: Option<&LoadWatch>,
) -> Result<FeedSummary, ParseStop> {
    if let Some(watch) = watch {
        watch.set(Some((table, 0)));
    }
    let mut hashing = Hashing::new(reader);
    let mut head = [0u8; HEAD_BYTES];
    let n = read_head(&mut hashing, &mut head).map_err(ParseStop::Io)?;
    let head = &head[..n];
    let summary = |blank, rows_read| FeedSummary {
        rows_read,
        blank,
        sha256: String::new(),
    };
    // Dropping the sender without `Feed::End` makes the store roll back.
    if let Err(refusal) = refuse_head(table, head) {
        return Err(ParseStop::Refused(refusal, summary(0, 0)));
    }
    let mut records = CsvRecords::new(head.chain(hashing));
    let mut chunk = Chunk::default();
    let mut rows_read = 0u64;
    let mut first = true;
    let mut gate = Gate::new(table);
    let refused = |refusal, records: &CsvRecords<_>, rows_read| {
        ParseStop::Refused(refusal, summary(records.blank_lines(), rows_read))
    };
    loop {
        let rec = match records.next_record() {
            Ok(Some(rec)) => rec,
            Ok(None) => break,
            Err(e) => return Err(ParseStop::Io(e)),
        };
        if std::mem::take(&mut first) {
            match gate.first(&rec) {
                Ok(true) => continue,
                Ok(false) => {}
                Err(refusal) => return Err(refused(refusal, &records, rows_read)),
            }
        }
        if let Err(refusal) = gate.record(&rec) {
            return Err(refused(refusal, &records, rows_read + 1));
        }
        rows_read += 1;
        let check = match rec.malformed {
            Some(m) => Err(m.rejection(table, rec.line)),
            None => check_csv_row(table, rec.fields()),
        };
        let start = chunk.raw.len();
        chunk.raw.extend_from_slice(rec.raw);
        chunk.rows.push(InputRow {
            position: rec.line,
            raw: start..chunk.raw.len(),
            check,
        });
        if chunk.rows.len() >= CHUNK_ROWS || chunk.raw.len() >= CHUNK_BYTES {
            let full = std::mem::replace(
                &mut chunk,
                Chunk {
                    raw: Vec::with_capacity(CHUNK_ROWS * 64),
                    rows: Vec::with_capacity(CHUNK_ROWS),
                },
            );
            if tx.blocking_send(Feed::Rows(full)).is_err() {
                return Err(ParseStop::Receiver(summary(
                    records.blank_lines(),
                    rows_read,
                )));
            }
            if let Some(watch) = watch {
                watch.set(Some((table, rows_read)));
            }
        }
    }
    if let Err(refusal) = gate.end() {
        return Err(refused(refusal, &records, rows_read));
    }
    if !chunk.rows.is_empty() && tx.blocking_send(Feed::Rows(chunk)).is_err() {
        return Err(ParseStop::Receiver(summary(
            records.blank_lines(),
            rows_read,
        )));
    }
    let mut done = summary(records.blank_lines(), rows_read);
    done.sha256 = records.into_inner().into_inner().1.hex_digest();
    if tx.blocking_send(Feed::End(done.clone())).is_err() {
        return Err(ParseStop::Receiver(done));
    }
    Ok(done)
}
