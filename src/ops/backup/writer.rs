//! Writing a backup's Avro object container file: the header, then the
//! rows as blocks.
//!
//! The table scan encodes rows into staged blocks ([`BlockEncoder`]); a
//! thread of its own finishes each block (checks its text, parses its
//! datetimes), compresses it and uploads it, so that reading the table and
//! writing the file run side by side.

use super::catalogue::FORMAT_VERSION;
use super::codec::{Codec, get_long, put_long, schema};
use super::error::BackupError;
use crate::dictionary::{ColumnType, Table, datetime};
use crate::ops::{Hashing, Progress};
use crate::storage::{StorageError, Upload};
use crate::store::{Field, StoreError};
use sha2::Digest;
use std::io::Write;
use std::sync::Arc;

/// Uncompressed bytes per Avro block: large enough for the codecs to work
/// well, small enough that a damaged block loses little.
const BLOCK_BYTES: usize = 256 * 1024;

// Every block written, up to a row of the largest size a load accepts past
// the threshold, is one the reader takes with room to spare.
const _: () =
    assert!(2 * (BLOCK_BYTES + crate::csvfile::MAX_RECORD_BYTES) <= super::ocf::MAX_BLOCK_BYTES);

/// A staged block and its row count, from the encoder to the file writer;
/// `None` once the scan is done.
type Staged = Option<(u64, Vec<u8>)>;

/// The thread writing the file; its result once the file is committed.
pub(super) type FileWriter = tokio::task::JoinHandle<Result<Written, BackupError>>;

/// The file as written: its size and SHA-256 (hex).
pub(super) struct Written {
    pub bytes: u64,
    pub sha256: String,
}

/// Starts writing `table`'s container file to `upload`: the header now,
/// then the blocks that the returned encoder (the table scan's sink) hands
/// over. The file is committed once the encoder is finished and the last
/// block written; if either side stops first, nothing is.
pub(super) fn start(
    table: Table,
    codec: Codec,
    upload: Upload,
    progress: Arc<dyn Progress>,
) -> Result<(BlockEncoder, FileWriter), BackupError> {
    let marker = *uuid::Uuid::new_v4().as_bytes();
    let head = header(table, codec, marker)?;
    let (blocks, received) = std::sync::mpsc::sync_channel::<Staged>(4);
    let writer = tokio::task::spawn_blocking(move || {
        write_file(table, codec, marker, &head, Hashing::new(upload), received)
    });
    let encoder = BlockEncoder {
        table,
        block: Vec::with_capacity(BLOCK_BYTES + 4096),
        rows: 0,
        total: 0,
        blocks,
        progress,
    };
    Ok((encoder, writer))
}

/// The writing thread: header, then each block finished, compressed and
/// framed, then the commit.
fn write_file(
    table: Table,
    codec: Codec,
    marker: [u8; 16],
    head: &[u8],
    mut upload: Hashing<Upload>,
    received: std::sync::mpsc::Receiver<Staged>,
) -> Result<Written, BackupError> {
    let io = |e: std::io::Error| match StorageError::from_io(e) {
        Ok(storage) => BackupError::Storage(storage),
        Err(e) => BackupError::Write(e.to_string()),
    };
    upload.write_all(head).map_err(io)?;
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
    Ok(Written {
        bytes,
        sha256: hex::encode(hash.finalize()),
    })
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
/// is read back by [`ocf`](super::ocf) (`verify`) and, in the tests, by
/// fastavro.
pub(super) struct BlockEncoder {
    table: Table,
    block: Vec<u8>,
    rows: u64,
    total: u64,
    blocks: std::sync::mpsc::SyncSender<Staged>,
    progress: Arc<dyn Progress>,
}

impl BlockEncoder {
    /// Sends the last block, then the end; the rows encoded in all.
    pub(super) fn finish(mut self) -> Result<u64, StoreError> {
        self.send()?;
        let _ = self.blocks.send(None);
        Ok(self.total)
    }

    fn send(&mut self) -> Result<(), StoreError> {
        if self.rows == 0 {
            return Ok(());
        }
        let block = std::mem::replace(&mut self.block, Vec::with_capacity(BLOCK_BYTES + 4096));
        self.progress.advance(self.rows);
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
