//! Reading a backup file against its manifest: what the manifest
//! promises (layout version, table, schema, row count, size, SHA-256) and
//! every row's data rules, checked in one pass as the rows stream out.
//!
//! Avro alone cannot tell a file cut at a block boundary from a whole one,
//! so the manifest's row count, size and SHA-256 are what make a backup
//! trustworthy; every read checks them.

use super::catalogue::{BackupName, FORMAT_VERSION, Manifest};
use super::codec::{fingerprint, read_row, schema};
use super::error::BackupError;
use super::ocf::{self, OcfReader};
use crate::dictionary::{Row, Table};
use crate::ops::progress::Metered;
use crate::ops::{Hashing, Progress};
use crate::storage::StorageError;
use sha2::Digest;
use std::io::Read;
use std::sync::{Arc, Mutex};

/// Most problems a verification lists (the first ones found).
const MAX_PROBLEMS: usize = 20;

/// What a read of a backup file found.
pub(super) struct Reading {
    /// Rows read and valid.
    pub rows: u64,
    /// What is wrong (the first ones found); empty when the file is whole.
    pub problems: Vec<String>,
}

/// Reads one backup file: checks everything the manifest promises and every
/// row's data rules; `each` gets the valid rows in chunks (and stops the
/// read by returning `false`). Reading stops at the first damage.
///
/// Nothing the file claims is allocated before it is checked (see
/// [`ocf`]): a file, however made, is refused within a few blocks' worth
/// of memory.
pub(super) fn read_backup(
    name: &BackupName,
    manifest: &Manifest,
    reader: Box<dyn Read + Send>,
    progress: Arc<dyn Progress>,
    mut each: impl FnMut(Vec<Row>) -> bool,
) -> Reading {
    let table = name.table();
    let mut problems = manifest_problems(name, manifest);
    let mut hashing = Hashing::new(Metered {
        inner: reader,
        progress: progress.clone(),
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
    progress.finish();
    problems.truncate(MAX_PROBLEMS);
    Reading { rows, problems }
}

/// What is wrong with a manifest read for the backup `name`, before its
/// file is opened.
fn manifest_problems(name: &BackupName, manifest: &Manifest) -> Vec<String> {
    let table = name.table();
    let mut problems = Vec::new();
    if manifest.format_version != FORMAT_VERSION {
        problems.push(format!(
            "manifest format version {} (this build reads {FORMAT_VERSION})",
            manifest.format_version
        ));
    }
    if manifest.table != table || manifest.backup != name.as_str() {
        problems.push(format!(
            "manifest describes {} backup {}, not {table} backup {name}",
            manifest.table, manifest.backup
        ));
    }
    if manifest.schema_fingerprint != fingerprint(schema(table)) {
        problems.push("manifest schema fingerprint differs from the dictionary's".into());
    }
    problems
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
            let row = read_row(table, block.data, &mut at)
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
pub(super) struct Watched {
    inner: Box<dyn Read + Send>,
    failure: Arc<Mutex<Option<StorageError>>>,
}

/// The failure a [`Watched`] reader saw, if any.
pub(super) struct Failure(Arc<Mutex<Option<StorageError>>>);

impl Watched {
    pub(super) fn new(inner: Box<dyn Read + Send>) -> (Watched, Failure) {
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
    /// The storage's failure, if the reader saw one.
    pub(super) fn check(self) -> Result<(), BackupError> {
        match self.0.lock().ok().and_then(|mut slot| slot.take()) {
            Some(e) => Err(BackupError::Storage(e)),
            None => Ok(()),
        }
    }
}
