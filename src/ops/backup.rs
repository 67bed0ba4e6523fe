//! Backups of a table to an Avro object container file, their manifests,
//! verification and restore.
//!
//! Layout under the storage root: `backups/<table>/<name>.avro` and
//! `backups/<table>/<name>.manifest.json`, where `<name>` is
//! `<table>-<UTC yyyymmddTHHMMSSmmmZ>`. The manifest is written after the
//! file, each under a temporary name first: a backup is listed only when
//! both are complete. Avro alone cannot tell a file cut at a block boundary
//! from a whole one, so the manifest's row count, size and SHA-256 are what
//! make a backup trustworthy; every read checks them.

use super::ocf::{self, OcfReader, get_long, put_long};
use super::{Hashing, Progress, progress_bar};
use crate::dictionary::{ColumnType, Row, Table, datetime};
use crate::storage::{Storage, StorageError};
use crate::store::{Feed, Field, Store, StoreError};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::io::{Read, Write};
use std::sync::{Arc, Mutex, OnceLock};

/// Version of the backup layout and manifest written by this build.
pub const FORMAT_VERSION: u32 = 1;

/// Largest manifest read (they are a few hundred bytes).
const MAX_MANIFEST_BYTES: u64 = 64 * 1024;

/// Most problems a verification lists (the first ones found).
const MAX_PROBLEMS: usize = 20;

/// Uncompressed bytes per Avro block: large enough for the codecs to work
/// well, small enough that a damaged block loses little.
const BLOCK_BYTES: usize = 256 * 1024;

// Every block written, up to a row of the largest size a load accepts past
// the threshold, is one the reader takes with room to spare.
const _: () = assert!(2 * (BLOCK_BYTES + crate::csvfile::MAX_RECORD_BYTES) <= ocf::MAX_BLOCK_BYTES);

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

    fn avro(self) -> apache_avro::Codec {
        match self {
            Codec::Null => apache_avro::Codec::Null,
            Codec::Deflate => apache_avro::Codec::Deflate(Default::default()),
            Codec::Snappy => apache_avro::Codec::Snappy,
            Codec::Zstandard => apache_avro::Codec::Zstandard(Default::default()),
        }
    }
}

/// What is known of a backup, stored beside its file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Manifest {
    /// Layout version ([`FORMAT_VERSION`]).
    pub format_version: u32,
    /// The table backed up.
    pub table: Table,
    /// The backup's name (`<table>-<UTC yyyymmddTHHMMSSmmmZ>`).
    pub backup: String,
    /// The Avro file, beside the manifest.
    pub file: String,
    /// Rows in the file.
    pub rows: u64,
    /// Size of the file in bytes.
    pub bytes: u64,
    /// SHA-256 of the file, hex.
    pub sha256: String,
    /// Block compression.
    pub codec: Codec,
    /// SHA-256 of the Avro schema's canonical form, hex.
    pub schema_fingerprint: String,
    /// When the snapshot was taken (UTC).
    pub created_at: String,
    /// The hrmig version that wrote it.
    pub hrmig_version: String,
}

/// The outcome of a verification: `ok` with no problems, or what is wrong.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Verification {
    /// The table.
    pub table: Table,
    /// The backup checked.
    pub backup: String,
    /// Whether the backup can be restored.
    pub ok: bool,
    /// Rows read from the file.
    pub rows: u64,
    /// What is wrong (the first ones found), empty when `ok`.
    pub problems: Vec<String>,
}

/// The outcome of a restore.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Restored {
    /// The table.
    pub table: Table,
    /// The backup restored.
    pub backup: String,
    /// Rows the table now holds.
    pub rows: u64,
}

/// Why a backup operation failed. Nothing was changed in the database.
#[derive(Debug, thiserror::Error)]
pub enum BackupError {
    /// A backup name that is not one this tool writes for that table.
    #[error(
        "invalid backup name {0:?}: expected <table>-<yyyymmddTHHMMSSmmmZ> (e.g. jobs-20240101T000000000Z)"
    )]
    BadName(String),
    /// No such backup, or no backup of the table.
    #[error("{0}")]
    NotFound(String),
    /// The backup failed verification; the problems say why.
    #[error("backup {backup} is damaged: {}", problems.join("; "))]
    Damaged {
        /// The backup.
        backup: String,
        /// What is wrong.
        problems: Vec<String>,
    },
    /// The restore would break the database's rules (a foreign key).
    #[error("restore of {table} refused, table unchanged: {reason}")]
    Refused {
        /// The table.
        table: Table,
        /// Why.
        reason: String,
    },
    /// Writing the Avro file failed.
    #[error("writing the backup failed: {0}")]
    Write(String),
    /// The storage failed.
    #[error(transparent)]
    Storage(#[from] StorageError),
    /// The database failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// The parsed Avro schema of each table (built once from the dictionary).
fn schema(table: Table) -> &'static apache_avro::Schema {
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
fn fingerprint(schema: &apache_avro::Schema) -> String {
    hex::encode(Sha256::digest(schema.canonical_form().as_bytes()))
}

/// A new backup name for `table` at `ms` (UTC milliseconds).
fn new_name(table: Table, ms: i64) -> String {
    let text = datetime::format(ms);
    // 2024-01-02T03:04:05.678Z or 2024-01-02T03:04:05Z
    let digits: String = text.chars().filter(char::is_ascii_digit).collect();
    let digits = format!("{digits:0<17}");
    format!("{}-{}T{}Z", table.name(), &digits[..8], &digits[8..17])
}

/// Checks a user-given backup name for `table`: `<table>-<8 digits>T<9
/// digits>Z`, optionally with `.avro`. Nothing else (no separators, dots,
/// encodings or other tables' names) can reach the storage.
///
/// A well-formed name of another table's backup is not found rather than
/// malformed: it is a name this tool writes, just not for `table`.
pub fn check_name(table: Table, name: &str) -> Result<String, BackupError> {
    let stem = name.strip_suffix(".avro").unwrap_or(name);
    let bad = || BackupError::BadName(name.chars().take(100).collect());
    let (owner, stamp) = Table::ALL
        .into_iter()
        .find_map(|t| Some((t, stem.strip_prefix(t.name())?.strip_prefix('-')?)))
        .ok_or_else(bad)?;
    let b = stamp.as_bytes();
    let shape = b.len() == 19
        && b[..8].iter().all(u8::is_ascii_digit)
        && b[8] == b'T'
        && b[9..18].iter().all(u8::is_ascii_digit)
        && b[18] == b'Z';
    match (shape, owner == table) {
        (false, _) => Err(bad()),
        (true, false) => Err(BackupError::NotFound(format!(
            "{stem} is a backup of {owner}, not of {table}"
        ))),
        (true, true) => Ok(stem.to_owned()),
    }
}

fn folder(table: Table) -> String {
    format!("backups/{}", table.name())
}

fn file_path(table: Table, backup: &str) -> String {
    format!("{}/{backup}.avro", folder(table))
}

fn manifest_path(table: Table, backup: &str) -> String {
    format!("{}/{backup}.manifest.json", folder(table))
}

/// Turns a staged block (see [`BlockEncoder`]) into Avro datums: checks
/// every string as UTF-8 and parses every datetime.
fn finish_block(table: Table, staged: &[u8], out: &mut Vec<u8>) -> Result<(), BackupError> {
    let columns = table.columns();
    let broken = || BackupError::Write("a staged block is malformed".into());
    let mut at = 0;
    while at < staged.len() {
        let mut id = 0;
        for (i, column) in columns.iter().enumerate() {
            match column.ty {
                ColumnType::Integer => {
                    let n = get_long(staged, &mut at).ok_or_else(broken)?;
                    if i == Table::PRIMARY_KEY {
                        id = n;
                    }
                    put_long(out, n);
                }
                ColumnType::String | ColumnType::DateTime => {
                    let len = get_long(staged, &mut at).ok_or_else(broken)?;
                    let end = usize::try_from(len)
                        .ok()
                        .and_then(|l| at.checked_add(l))
                        .filter(|e| *e <= staged.len())
                        .ok_or_else(broken)?;
                    let bytes = &staged[at..end];
                    at = end;
                    let bad = |message: &str| {
                        BackupError::Store(StoreError::BadStoredValue {
                            table,
                            id,
                            message: format!("{}: {message}", column.name),
                        })
                    };
                    if column.ty == ColumnType::String {
                        std::str::from_utf8(bytes).map_err(|_| bad("not UTF-8 text"))?;
                        put_long(out, len);
                        out.extend_from_slice(bytes);
                    } else {
                        let ms = datetime::parse_bytes(bytes)
                            .map_err(|e| bad(&format!("not a datetime: {e:?}")))?;
                        put_long(out, ms);
                    }
                }
            }
        }
    }
    Ok(())
}

/// Encodes rows as Avro datums of the table's schema into blocks of about
/// [`BLOCK_BYTES`], handed to the file writer as they fill.
///
/// The datum encoding of these schemas is three primitives (zig-zag `int`
/// and `long`, length-prefixed `string`), written here straight from the
/// database's values: no record value or allocation per row, which is what
/// makes a backup run at the speed of the table scan. The container around
/// the blocks (header, codec, sync markers) is apache-avro's; every file
/// is read back by [`ocf`] (`verify`) and, in the tests, by fastavro.
struct BlockEncoder {
    table: Table,
    block: Vec<u8>,
    rows: u64,
    total: u64,
    blocks: std::sync::mpsc::SyncSender<Option<(u64, Vec<u8>)>>,
    bar: Option<indicatif::ProgressBar>,
}

impl BlockEncoder {
    fn send(&mut self) -> Result<(), StoreError> {
        if self.rows == 0 {
            return Ok(());
        }
        let block = std::mem::replace(&mut self.block, Vec::with_capacity(BLOCK_BYTES + 4096));
        if let Some(bar) = &self.bar {
            bar.inc(self.rows);
        }
        self.blocks
            .send(Some((std::mem::take(&mut self.rows), block)))
            .map_err(|_| StoreError::Sink("the backup file writer stopped".into()))
    }
}

impl crate::store::RowSink for BlockEncoder {
    fn row(&mut self, fields: &[Field<'_>]) -> Result<(), StoreError> {
        if fields.len() != self.table.columns().len() {
            return Err(StoreError::Sink("a row does not match the table".into()));
        }
        // Staged as Avro datums, except that text is not checked yet and a
        // datetime is its text: the writing thread finishes both.
        for field in fields {
            match *field {
                Field::Int(n) => put_long(&mut self.block, i64::from(n)),
                Field::Text(t) | Field::DateTimeText(t) => {
                    put_long(&mut self.block, t.len() as i64);
                    self.block.extend_from_slice(t);
                }
                Field::DateTime(ms) => {
                    let mut buf = [0u8; 24];
                    let text = datetime::format_ascii(ms, &mut buf);
                    put_long(&mut self.block, text.len() as i64);
                    self.block.extend_from_slice(text);
                }
            }
        }
        self.rows += 1;
        self.total += 1;
        if self.block.len() >= BLOCK_BYTES {
            self.send()?;
        }
        Ok(())
    }
}

/// The header of an Avro object container file for `table` (schema,
/// codec, our metadata, the sync marker), as apache-avro writes it.
fn header(table: Table, codec: Codec, marker: [u8; 16]) -> Result<Vec<u8>, BackupError> {
    let metadata: std::collections::HashMap<String, apache_avro::types::Value> = [
        ("hrmig.table", table.name().to_owned()),
        ("hrmig.format_version", FORMAT_VERSION.to_string()),
    ]
    .into_iter()
    .map(|(k, v)| {
        (
            k.to_owned(),
            apache_avro::types::Value::Bytes(v.into_bytes()),
        )
    })
    .collect();
    let write = |e: apache_avro::Error| BackupError::Write(e.to_string());
    apache_avro::Writer::builder()
        .schema(schema(table))
        .writer(Vec::new())
        .codec(codec.avro())
        .marker(marker)
        .user_metadata(metadata)
        .build()
        .map_err(write)?
        .into_inner()
        .map_err(write)
}

/// Backs up `table`: streams a snapshot of it into a new Avro file, then
/// writes the manifest. Returns the manifest.
///
/// `progress` draws a bar on a terminal.
#[tracing::instrument(skip(store, storage), fields(table = %table, codec = codec.name(), rows))]
pub async fn backup(
    store: &Store,
    storage: &Storage,
    table: Table,
    codec: Codec,
    progress: bool,
) -> Result<Manifest, BackupError> {
    let bar = match progress {
        true => Some(progress_bar(
            format!("backup {table}"),
            store.count(table).await?,
            false,
        )),
        false => None,
    };
    let now = chrono::Utc::now().timestamp_millis();
    let name = new_name(table, now);
    let mut upload = Hashing::new(storage.create(&file_path(table, &name))?);
    let marker = *uuid::Uuid::new_v4().as_bytes();
    let head = header(table, codec, marker)?;
    let (blocks, received) = std::sync::mpsc::sync_channel::<Option<(u64, Vec<u8>)>>(4);
    // Blocks are compressed and written on a thread of their own while the
    // snapshot is read and encoded.
    let writer = tokio::task::spawn_blocking(move || -> Result<_, BackupError> {
        let io = |e: std::io::Error| match StorageError::from_io(e) {
            Ok(storage) => BackupError::Storage(storage),
            Err(e) => BackupError::Write(e.to_string()),
        };
        upload.write_all(&head).map_err(io)?;
        let mut frame = Vec::with_capacity(32);
        loop {
            match received.recv() {
                Ok(Some((count, staged))) => {
                    let mut block = Vec::with_capacity(staged.len());
                    finish_block(table, &staged, &mut block)?;
                    codec
                        .avro()
                        .compress(&mut block)
                        .map_err(|e| BackupError::Write(e.to_string()))?;
                    frame.clear();
                    put_long(&mut frame, count as i64);
                    put_long(&mut frame, block.len() as i64);
                    upload.write_all(&frame).map_err(io)?;
                    upload.write_all(&block).map_err(io)?;
                    upload.write_all(&marker).map_err(io)?;
                }
                Ok(None) => break,
                // The snapshot failed: the upload is dropped, nothing appears.
                Err(_) => return Err(BackupError::Write("the table read stopped".into())),
            }
        }
        upload.flush().map_err(io)?;
        let Hashing { inner, hash, bytes } = upload;
        inner.commit()?;
        Ok((bytes, hex::encode(hash.finalize())))
    });
    let encoder = BlockEncoder {
        table,
        block: Vec::with_capacity(BLOCK_BYTES + 4096),
        rows: 0,
        total: 0,
        blocks,
        bar,
    };
    let scanned = match store.scan(table, encoder).await {
        Ok(mut encoder) => encoder.send().map(|()| {
            let _ = encoder.blocks.send(None);
            if let Some(bar) = &encoder.bar {
                bar.finish_and_clear();
            }
            encoder.total
        }),
        Err(e) => Err(e),
    };
    let written = writer
        .await
        .map_err(|e| BackupError::Write(e.to_string()))?;
    // Each side stops when the other does: report the one that failed first.
    let (rows, (bytes, sha256)) = match (scanned, written) {
        (Ok(rows), Ok(written)) => (rows, written),
        (Err(StoreError::Sink(_)), Err(e)) => return Err(e),
        (Err(e), _) => return Err(e.into()),
        (Ok(_), Err(e)) => return Err(e),
    };
    tracing::Span::current().record("rows", rows);
    let manifest = Manifest {
        format_version: FORMAT_VERSION,
        table,
        backup: name.clone(),
        file: format!("{name}.avro"),
        rows,
        bytes,
        sha256,
        codec,
        schema_fingerprint: fingerprint(schema(table)),
        created_at: datetime::format(now),
        hrmig_version: env!("CARGO_PKG_VERSION").to_owned(),
    };
    let text =
        serde_json::to_vec_pretty(&manifest).map_err(|e| BackupError::Write(e.to_string()))?;
    // Without its manifest the file is never listed; it goes rather than
    // lingering as an orphan beside the backups.
    if let Err(e) = storage.put_new(&manifest_path(table, &name), text).await {
        if let Err(left) = storage.remove(&file_path(table, &name)).await {
            tracing::warn!(error = %left, "a backup without its manifest stays behind");
        }
        return Err(e.into());
    }
    Ok(manifest)
}

/// The complete backups of `table` (those with a readable manifest),
/// oldest first.
pub async fn list(storage: &Storage, table: Table) -> Result<Vec<Manifest>, BackupError> {
    let mut out = Vec::new();
    for name in manifest_names(storage, table).await? {
        out.extend(complete(storage, table, &name).await?);
    }
    Ok(out)
}

/// Names of the backups of `table` that have a manifest, oldest first.
async fn manifest_names(storage: &Storage, table: Table) -> Result<Vec<String>, BackupError> {
    let mut names: Vec<String> = storage
        .list(&folder(table))
        .await?
        .into_iter()
        .filter_map(|f| f.strip_suffix(".manifest.json").map(str::to_owned))
        .filter(|stem| check_name(table, stem).is_ok())
        .collect();
    names.sort();
    Ok(names)
}

/// The manifest of a complete backup: readable and describing that backup.
/// `None` for a damaged or missing manifest; an error when the storage
/// itself fails (a backup must not vanish from a listing because the
/// storage was briefly unreachable).
async fn complete(
    storage: &Storage,
    table: Table,
    name: &str,
) -> Result<Option<Manifest>, BackupError> {
    match read_manifest(storage, table, name).await {
        Ok(m) => Ok(Some(m).filter(|m| m.table == table && m.backup == name)),
        Err(BackupError::Storage(e)) if e.is_service() => Err(BackupError::Storage(e)),
        Err(_) => Ok(None),
    }
}

async fn read_manifest(
    storage: &Storage,
    table: Table,
    name: &str,
) -> Result<Manifest, BackupError> {
    let bytes = storage
        .read_small(&manifest_path(table, name), MAX_MANIFEST_BYTES)
        .await
        .map_err(|e| match e {
            StorageError::NotFound { .. } => BackupError::Damaged {
                backup: name.to_owned(),
                problems: vec![format!("manifest {name}.manifest.json is missing")],
            },
            e => e.into(),
        })?;
    serde_json::from_slice(&bytes).map_err(|e| BackupError::Damaged {
        backup: name.to_owned(),
        problems: vec![format!("manifest is not readable: {e}")],
    })
}

/// The backup to use: the given name (checked), or the newest complete one.
async fn choose(
    storage: &Storage,
    table: Table,
    name: Option<&str>,
) -> Result<String, BackupError> {
    match name {
        Some(n) => {
            let stem = check_name(table, n)?;
            let exists = storage
                .list(&folder(table))
                .await?
                .iter()
                .any(|f| f == &format!("{stem}.avro") || f == &format!("{stem}.manifest.json"));
            if exists {
                Ok(stem)
            } else {
                Err(BackupError::NotFound(format!(
                    "no backup named {stem} for {table}"
                )))
            }
        }
        None => {
            // The newest complete one: manifests are read newest first, and
            // only until one is readable.
            for name in manifest_names(storage, table).await?.into_iter().rev() {
                if complete(storage, table, &name).await?.is_some() {
                    return Ok(name);
                }
            }
            Err(BackupError::NotFound(format!("no backup of {table} yet")))
        }
    }
}

/// Reads one backup file: checks everything the manifest promises and every
/// row's data rules; `each` gets the valid rows in chunks. Returns the rows
/// read and the problems found (reading stops at the first damage).
///
/// Nothing the file claims is allocated before it is checked (see
/// [`ocf`]): a file, however made, is refused within a few blocks' worth
/// of memory.
fn read_backup(
    table: Table,
    name: &str,
    manifest: &Manifest,
    reader: Box<dyn Read + Send>,
    bar: Option<indicatif::ProgressBar>,
    mut each: impl FnMut(Vec<Row>) -> bool,
) -> (u64, Vec<String>) {
    let mut problems = Vec::new();
    if manifest.format_version != FORMAT_VERSION {
        problems.push(format!(
            "manifest format version {} (this build reads {FORMAT_VERSION})",
            manifest.format_version
        ));
    }
    if manifest.table != table || manifest.backup != name {
        problems.push(format!(
            "manifest describes {} backup {}, not {table} backup {name}",
            manifest.table, manifest.backup
        ));
    }
    if manifest.schema_fingerprint != fingerprint(schema(table)) {
        problems.push("manifest schema fingerprint differs from the dictionary's".into());
    }
    let mut hashing = Hashing::new(Progress {
        inner: reader,
        bar: bar.clone(),
    });
    let mut rows = 0u64;
    {
        let input = std::io::BufReader::with_capacity(64 * 1024, &mut hashing);
        match OcfReader::new(input, table) {
            Err(e) => problems.push(e.to_string()),
            Ok(mut file) => {
                problems.extend(header_problems(table, file.header()));
                if problems.is_empty()
                    && let Err(e) = read_rows(table, &mut file, &mut rows, &mut each)
                {
                    problems.push(e);
                }
            }
        }
    }
    // Read to its end (bytes after the last block are refused as a block),
    // so the size and hash below cover the whole file.
    if problems.is_empty() {
        if rows != manifest.rows {
            problems.push(format!(
                "{rows} rows in the file, {} in the manifest",
                manifest.rows
            ));
        }
        if hashing.bytes != manifest.bytes {
            problems.push(format!(
                "file is {} bytes, the manifest says {}",
                hashing.bytes, manifest.bytes
            ));
        }
        let sha = hex::encode(hashing.hash.finalize());
        if sha != manifest.sha256 {
            problems.push(format!(
                "SHA-256 {sha} differs from the manifest's {}",
                manifest.sha256
            ));
        }
    }
    if let Some(bar) = bar {
        bar.finish_and_clear();
    }
    problems.truncate(MAX_PROBLEMS);
    (rows, problems)
}

/// What is wrong with a file's header for `table`: its schema (compared by
/// canonical form with the dictionary's) and the table it says it holds.
fn header_problems(table: Table, header: &ocf::Header) -> Vec<String> {
    let mut problems = Vec::new();
    match apache_avro::Schema::parse_str(header.schema()) {
        Ok(s) if s.canonical_form() == schema(table).canonical_form() => {}
        Ok(s) => problems.push(format!(
            "schema differs from the dictionary's {table} record: {}",
            shorten(&s.canonical_form())
        )),
        Err(e) => problems.push(format!(
            "schema is not a valid Avro schema: {}",
            shorten(&e.to_string())
        )),
    }
    let meta_table = header.metadata("hrmig.table");
    if meta_table != Some(table.name().as_bytes()) {
        problems.push(format!(
            "file says it holds table {:?}",
            shorten(&String::from_utf8_lossy(meta_table.unwrap_or_default()))
        ));
    }
    problems
}

/// At most 1000 characters of a text taken from a file, so that a problem
/// stays readable.
fn shorten(text: &str) -> String {
    match text.char_indices().nth(1000) {
        Some((at, _)) => format!("{}…", &text[..at]),
        None => text.to_owned(),
    }
}

/// Reads every block's rows in order, checking the rules and the id order,
/// and hands them to `each` in chunks; `rows` counts the valid ones. The
/// first problem ends the read.
fn read_rows<R: Read>(
    table: Table,
    file: &mut OcfReader<R>,
    rows: &mut u64,
    each: &mut impl FnMut(Vec<Row>) -> bool,
) -> Result<(), String> {
    let stopped = || "the restore stopped".to_owned();
    let mut chunk = Vec::with_capacity(crate::store::SCAN_CHUNK);
    let mut last_id: Option<i32> = None;
    while let Some(block) = file.next_block().map_err(|e| e.to_string())? {
        let mut at = 0;
        for _ in 0..block.count {
            let n = *rows + 1;
            let row = ocf::read_row(table, block.data, &mut at)
                .map_err(|e| format!("block {}, row {n}: {e}", block.number))?;
            let id = row.id();
            if last_id.is_some_and(|last| id <= last) {
                return Err(format!(
                    "block {}, row {n}: id {id} is not above the previous id (ids must be unique and in order)",
                    block.number
                ));
            }
            last_id = Some(id);
            *rows = n;
            chunk.push(row);
            if chunk.len() == crate::store::SCAN_CHUNK
                && !each(std::mem::replace(
                    &mut chunk,
                    Vec::with_capacity(crate::store::SCAN_CHUNK),
                ))
            {
                return Err(stopped());
            }
        }
        if at != block.data.len() {
            return Err(block
                .damaged(format!(
                    "{} bytes are left after its {} rows",
                    block.data.len() - at,
                    block.count
                ))
                .to_string());
        }
    }
    if !chunk.is_empty() && !each(chunk) {
        return Err(stopped());
    }
    Ok(())
}

/// A reader that remembers a storage failure, so that a blob service
/// going away mid-read is reported as such, not as a damaged backup.
struct Watched {
    inner: Box<dyn Read + Send>,
    failure: Arc<Mutex<Option<StorageError>>>,
}

/// The failure a [`Watched`] reader saw, if any.
struct Failure(Arc<Mutex<Option<StorageError>>>);

impl Watched {
    fn new(inner: Box<dyn Read + Send>) -> (Watched, Failure) {
        let failure = Arc::new(Mutex::new(None));
        let watched = Watched {
            inner,
            failure: failure.clone(),
        };
        (watched, Failure(failure))
    }
}

impl Read for Watched {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        self.inner
            .read(buf)
            .map_err(|e| match StorageError::from_io(e) {
                Ok(storage) => {
                    let message = storage.to_string();
                    if let Ok(mut slot) = self.failure.lock() {
                        slot.get_or_insert(storage);
                    }
                    std::io::Error::other(message)
                }
                Err(e) => e,
            })
    }
}

impl Failure {
    fn check(self) -> Result<(), BackupError> {
        match self.0.lock().ok().and_then(|mut slot| slot.take()) {
            Some(e) => Err(BackupError::Storage(e)),
            None => Ok(()),
        }
    }
}

/// Verifies a backup (the newest when `name` is `None`) without touching
/// the database.
#[tracing::instrument(skip(storage))]
pub async fn verify(
    storage: &Storage,
    table: Table,
    name: Option<&str>,
    progress: bool,
) -> Result<Verification, BackupError> {
    let backup = choose(storage, table, name).await?;
    let manifest = match read_manifest(storage, table, &backup).await {
        Ok(m) => m,
        Err(BackupError::Damaged { problems, .. }) => {
            return Ok(Verification {
                table,
                ok: false,
                backup,
                rows: 0,
                problems,
            });
        }
        Err(e) => return Err(e),
    };
    let object = match storage.open_read(&file_path(table, &backup)).await {
        Ok(o) => o,
        Err(StorageError::NotFound { .. }) => {
            return Ok(Verification {
                table,
                ok: false,
                backup: backup.clone(),
                rows: 0,
                problems: vec![format!("file {backup}.avro is missing")],
            });
        }
        Err(e) => return Err(e.into()),
    };
    let name = backup.clone();
    let bar = progress.then(|| progress_bar(format!("verify {table}"), object.size, true));
    let (reader, failure) = Watched::new(object.reader);
    let (rows, problems) = tokio::task::spawn_blocking(move || {
        read_backup(table, &name, &manifest, Box::new(reader), bar, |_| true)
    })
    .await
    .map_err(|e| BackupError::Write(e.to_string()))?;
    failure.check()?;
    Ok(Verification {
        table,
        ok: problems.is_empty(),
        backup,
        rows,
        problems,
    })
}

/// Restores `table` from a backup (the newest when `name` is `None`).
///
/// The file is verified as it is read, in the same pass that replaces the
/// table's rows inside one transaction: the manifest, header and schema
/// before the first row, each row as it comes, then the row count, size
/// and SHA-256 before the commit. Any problem rolls the transaction back:
/// the table is left exactly as it was. (One pass instead of a verify pass
/// then a load pass: a restore reads the file once.)
#[tracing::instrument(skip(store, storage), fields(rows))]
pub async fn restore(
    store: &Store,
    storage: &Storage,
    table: Table,
    name: Option<&str>,
    progress: bool,
) -> Result<Restored, BackupError> {
    let backup = choose(storage, table, name).await?;
    let manifest = read_manifest(storage, table, &backup).await?;
    let object = match storage.open_read(&file_path(table, &backup)).await {
        Ok(o) => o,
        Err(StorageError::NotFound { .. }) => {
            return Err(BackupError::Damaged {
                problems: vec![format!("file {backup}.avro is missing")],
                backup,
            });
        }
        Err(e) => return Err(e.into()),
    };
    let (rows, replacement) = tokio::sync::mpsc::channel(4);
    let name = backup.clone();
    let bar = progress.then(|| progress_bar(format!("restore {table}"), object.size, true));
    let (source, failure) = Watched::new(object.reader);
    let reader = tokio::task::spawn_blocking(move || {
        let (read, problems) =
            read_backup(table, &name, &manifest, Box::new(source), bar, |chunk| {
                rows.blocking_send(Feed::Rows(chunk)).is_ok()
            });
        // `End` only for a file read whole and unchanged: otherwise the
        // sender is dropped and the store rolls back.
        if problems.is_empty() {
            let _ = rows.blocking_send(Feed::End(read));
        }
        problems
    });
    let replaced = store.replace(table, replacement).await;
    let problems = reader
        .await
        .map_err(|e| BackupError::Write(e.to_string()))?;
    // A storage that failed midway is not a damaged backup: the table was
    // left as it was, and running the restore again may work.
    failure.check()?;
    let rows = match replaced {
        Ok(rows) if problems.is_empty() => rows,
        // The file's problem is why the store saw the rows stop.
        Ok(_) | Err(StoreError::FeedInterrupted) => {
            return Err(BackupError::Damaged { backup, problems });
        }
        Err(StoreError::Refused(reason)) => return Err(BackupError::Refused { table, reason }),
        Err(e) => return Err(e.into()),
    };
    tracing::Span::current().record("rows", rows);
    Ok(Restored {
        table,
        backup,
        rows,
    })
}
