//! Backups of a table to an Avro object container file, their manifests,
//! verification and restore.
//!
//! The file is written first, then its manifest, each under a temporary
//! name until complete: a backup is listed only when both are there
//! (`catalogue` names them and finds them). Every read of a file checks
//! what its manifest promises (`read`); `codec` encodes and decodes the
//! rows, `writer` and `ocf` write and read the container around them.

mod catalogue;
pub mod codec;
mod error;
pub mod ocf;
mod read;
mod retention;
mod writer;

pub use catalogue::{BackupName, FORMAT_VERSION, Manifest};
pub use codec::Codec;
pub use error::BackupError;
pub use retention::{Pruned, Retention, prune};

use crate::dictionary::{Table, datetime};
use crate::ops::{Progress, Unit};
use crate::storage::{Storage, StorageError};
use crate::store::{Feed, Store, StoreError};
use catalogue::{choose, complete, manifest_names, read_manifest};
use read::{Reading, Watched, read_backup};
use serde::Serialize;
use std::sync::Arc;

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
    /// The restore's history entry (its operation id): every row of the
    /// table now has it as its origin.
    pub load_id: i64,
}

/// Backs up `table`: streams a snapshot of it into a new Avro file, then
/// writes the manifest. Returns the manifest.
#[tracing::instrument(skip(store, storage, progress), fields(table = %table, codec = codec.name(), rows))]
pub async fn backup(
    store: &Store,
    storage: &Storage,
    table: Table,
    codec: Codec,
    progress: Arc<dyn Progress>,
) -> Result<Manifest, BackupError> {
    if progress.shown() {
        let rows = store.count(table).await?;
        progress.start(&format!("backup {table}"), Unit::Rows, rows);
    }
    let now = chrono::Utc::now().timestamp_millis();
    let name = BackupName::new(table, now);
    let upload = storage.create(&name.file_path())?;
    let (encoder, writer) = writer::start(table, codec, upload, progress.clone())?;
    let scanned = match store.scan(table, encoder).await {
        Ok(encoder) => encoder.finish(),
        Err(e) => Err(e),
    };
    progress.finish();
    let written = writer
        .await
        .map_err(|e| BackupError::Write(e.to_string()))?;
    // Each side stops when the other does: report the one that failed first.
    let (rows, written) = match (scanned, written) {
        (Ok(rows), Ok(written)) => (rows, written),
        (Err(StoreError::Sink(_)), Err(e)) => return Err(e),
        (Err(e), _) => return Err(e.into()),
        (Ok(_), Err(e)) => return Err(e),
    };
    tracing::Span::current().record("rows", rows);
    let manifest = Manifest {
        format_version: FORMAT_VERSION,
        table,
        backup: name.to_string(),
        file: name.file_name(),
        rows,
        bytes: written.bytes,
        sha256: written.sha256,
        codec,
        schema_fingerprint: codec::fingerprint(codec::schema(table)),
        created_at: datetime::format(now),
        hrmig_version: env!("CARGO_PKG_VERSION").to_owned(),
    };
    catalogue::write_manifest(storage, &name, &manifest).await?;
    Ok(manifest)
}

/// The complete backups of `table` (those with a readable manifest),
/// oldest first.
pub async fn list(storage: &Storage, table: Table) -> Result<Vec<Manifest>, BackupError> {
    let mut out = Vec::new();
    for name in manifest_names(storage, table).await? {
        out.extend(complete(storage, &name).await?);
    }
    Ok(out)
}

/// A chosen backup, its manifest and its Avro file, opened.
type Opened = (BackupName, Manifest, crate::storage::Object);

/// Opens a backup (the newest when `name` is `None`): a manifest that does
/// not read or a file that is gone is a damaged backup.
async fn open(storage: &Storage, table: Table, name: Option<&str>) -> Result<Opened, BackupError> {
    let backup = choose(storage, table, name).await?;
    let manifest = read_manifest(storage, &backup).await?;
    match storage.open_read(&backup.file_path()).await {
        Ok(object) => Ok((backup, manifest, object)),
        Err(StorageError::NotFound { .. }) => Err(BackupError::Damaged {
            problems: vec![format!("file {} is missing", backup.file_name())],
            backup: backup.into(),
        }),
        Err(e) => Err(e.into()),
    }
}

/// Verifies a backup (the newest when `name` is `None`) without touching
/// the database.
#[tracing::instrument(skip(storage, progress))]
pub async fn verify(
    storage: &Storage,
    table: Table,
    name: Option<&str>,
    progress: Arc<dyn Progress>,
) -> Result<Verification, BackupError> {
    let (backup, manifest, object) = match open(storage, table, name).await {
        Ok(opened) => opened,
        Err(BackupError::Damaged { backup, problems }) => {
            return Ok(Verification {
                table,
                backup,
                ok: false,
                rows: 0,
                problems,
            });
        }
        Err(e) => return Err(e),
    };
    progress.start(&format!("verify {table}"), Unit::Bytes, object.size);
    let (reader, failure) = Watched::new(object.reader);
    let name = backup.clone();
    let Reading { rows, problems } = tokio::task::spawn_blocking(move || {
        read_backup(&name, &manifest, Box::new(reader), progress, |_| true)
    })
    .await
    .map_err(|e| BackupError::Write(e.to_string()))?;
    failure.check()?;
    Ok(Verification {
        table,
        backup: backup.into(),
        ok: problems.is_empty(),
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
#[tracing::instrument(skip(store, storage, progress), fields(rows))]
pub async fn restore(
    store: &Store,
    storage: &Storage,
    table: Table,
    name: Option<&str>,
    progress: Arc<dyn Progress>,
) -> Result<Restored, BackupError> {
    let (backup, manifest, object) = open(storage, table, name).await?;
    let (rows, replacement) = tokio::sync::mpsc::channel(4);
    progress.start(&format!("restore {table}"), Unit::Bytes, object.size);
    let (source, failure) = Watched::new(object.reader);
    let name = backup.clone();
    let reader = tokio::task::spawn_blocking(move || {
        let read = read_backup(&name, &manifest, Box::new(source), progress, |chunk| {
            rows.blocking_send(Feed::Rows(chunk)).is_ok()
        });
        // `End` only for a file read whole and unchanged: otherwise the
        // sender is dropped and the store rolls back.
        if read.problems.is_empty() {
            let _ = rows.blocking_send(Feed::End(read.rows));
        }
        read.problems
    });
    let source = format!("backup:{backup}");
    let replaced = store.replace(table, source, replacement).await;
    let problems = reader
        .await
        .map_err(|e| BackupError::Write(e.to_string()))?;
    // A storage that failed midway is not a damaged backup: the table was
    // left as it was, and running the restore again may work.
    failure.check()?;
    let backup = String::from(backup);
    let (rows, load_id) = match replaced {
        Ok(written) if problems.is_empty() => written,
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
        load_id,
    })
}
