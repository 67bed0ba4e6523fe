//! Where backups are and what is known of them: their names, their paths
//! under the storage root, their manifests, and which ones are complete.
//!
//! Layout: `backups/<table>/<name>.avro` and
//! `backups/<table>/<name>.manifest.json`, where `<name>` is
//! `<table>-<UTC yyyymmddTHHMMSSmmmZ>`. A backup is listed only once its
//! manifest is there and readable.

use super::codec::Codec;
use super::error::BackupError;
use crate::dictionary::{Table, datetime};
use crate::storage::{Storage, StorageError};
use serde::{Deserialize, Serialize};

/// Version of the backup layout and manifest written by this build.
pub const FORMAT_VERSION: u32 = 1;

/// Largest manifest read (they are a few hundred bytes).
const MAX_MANIFEST_BYTES: u64 = 64 * 1024;

/// The name of one backup of one table, checked: `<table>-<8 digits>T<9
/// digits>Z`. Nothing else (no separators, dots, encodings or other
/// tables' names) can reach the storage, since every path is made from one.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct BackupName {
    table: Table,
    name: String,
}

impl BackupName {
    /// A new name for a backup of `table` taken at `ms` (UTC milliseconds).
    pub fn new(table: Table, ms: i64) -> BackupName {
        let text = datetime::format(ms);
        // 2024-01-02T03:04:05.678Z or 2024-01-02T03:04:05Z
        let digits: String = text.chars().filter(char::is_ascii_digit).collect();
        let digits = format!("{digits:0<17}");
        BackupName {
            table,
            name: format!("{}-{}T{}Z", table.name(), &digits[..8], &digits[8..17]),
        }
    }

    /// Checks a user-given name of a backup of `table`, with or without
    /// `.avro`.
    ///
    /// A well-formed name of another table's backup is
    /// [`BackupError::NotFound`] rather than [`BackupError::BadName`]: it is
    /// a name this tool writes, just not for `table`.
    pub fn parse(table: Table, name: &str) -> Result<BackupName, BackupError> {
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
            (true, true) => Ok(BackupName {
                table,
                name: stem.to_owned(),
            }),
        }
    }

    /// The table backed up.
    pub fn table(&self) -> Table {
        self.table
    }

    /// The name, without `.avro`.
    pub fn as_str(&self) -> &str {
        &self.name
    }

    /// The Avro file's name, as the manifest gives it.
    pub fn file_name(&self) -> String {
        format!("{}.avro", self.name)
    }

    /// The Avro file, from the storage root.
    pub(super) fn file_path(&self) -> String {
        format!("{}/{}", folder(self.table), self.file_name())
    }

    /// The manifest's name.
    fn manifest_name(&self) -> String {
        format!("{}.manifest.json", self.name)
    }

    /// The manifest, from the storage root.
    pub(super) fn manifest_path(&self) -> String {
        format!("{}/{}", folder(self.table), self.manifest_name())
    }
}

impl std::fmt::Display for BackupName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.pad(&self.name)
    }
}

impl From<BackupName> for String {
    fn from(name: BackupName) -> String {
        name.name
    }
}

/// The folder of `table`'s backups, from the storage root.
fn folder(table: Table) -> String {
    format!("backups/{}", table.name())
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

/// Names of the backups of `table` that have a manifest, oldest first.
pub(super) async fn manifest_names(
    storage: &Storage,
    table: Table,
) -> Result<Vec<BackupName>, BackupError> {
    let mut names: Vec<BackupName> = storage
        .list(&folder(table))
        .await?
        .into_iter()
        .filter_map(|f| {
            let stem = f.strip_suffix(".manifest.json")?;
            BackupName::parse(table, stem)
                .ok()
                .filter(|name| name.as_str() == stem)
        })
        .collect();
    names.sort();
    Ok(names)
}

/// The manifest of a complete backup: readable and describing that backup.
/// `None` for a damaged or missing manifest; an error when the storage
/// itself fails (a backup must not vanish from a listing because the
/// storage was briefly unreachable).
pub(super) async fn complete(
    storage: &Storage,
    name: &BackupName,
) -> Result<Option<Manifest>, BackupError> {
    match read_manifest(storage, name).await {
        Ok(m) => Ok(Some(m).filter(|m| m.table == name.table && m.backup == name.as_str())),
        Err(BackupError::Storage(e)) if e.is_service() => Err(BackupError::Storage(e)),
        Err(_) => Ok(None),
    }
}

/// The manifest of a backup, as stored; [`BackupError::Damaged`] when it is
/// missing or unreadable.
pub(super) async fn read_manifest(
    storage: &Storage,
    name: &BackupName,
) -> Result<Manifest, BackupError> {
    let bytes = storage
        .read_small(&name.manifest_path(), MAX_MANIFEST_BYTES)
        .await
        .map_err(|e| match e {
            StorageError::NotFound { .. } => BackupError::Damaged {
                backup: name.to_string(),
                problems: vec![format!("manifest {} is missing", name.manifest_name())],
            },
            e => e.into(),
        })?;
    serde_json::from_slice(&bytes).map_err(|e| BackupError::Damaged {
        backup: name.to_string(),
        problems: vec![format!("manifest is not readable: {e}")],
    })
}

/// The backup to use: the given name (checked), or the newest complete one.
pub(super) async fn choose(
    storage: &Storage,
    table: Table,
    name: Option<&str>,
) -> Result<BackupName, BackupError> {
    match name {
        Some(n) => {
            let name = BackupName::parse(table, n)?;
            let (file, manifest) = (name.file_name(), name.manifest_name());
            let exists = storage
                .list(&folder(table))
                .await?
                .iter()
                .any(|f| *f == file || *f == manifest);
            if exists {
                Ok(name)
            } else {
                Err(BackupError::NotFound(format!(
                    "no backup named {name} for {table}"
                )))
            }
        }
        None => {
            // The newest complete one: manifests are read newest first, and
            // only until one is readable.
            for name in manifest_names(storage, table).await?.into_iter().rev() {
                if complete(storage, &name).await?.is_some() {
                    return Ok(name);
                }
            }
            Err(BackupError::NotFound(format!("no backup of {table} yet")))
        }
    }
}

/// Writes the manifest of the backup `name`, never over another one. A
/// file left without its manifest would never be listed: it is removed
/// rather than lingering as an orphan beside the backups.
pub(super) async fn write_manifest(
    storage: &Storage,
    name: &BackupName,
    manifest: &Manifest,
) -> Result<(), BackupError> {
    let text =
        serde_json::to_vec_pretty(manifest).map_err(|e| BackupError::Write(e.to_string()))?;
    if let Err(e) = storage.put_new(&name.manifest_path(), text).await {
        if let Err(left) = storage.remove(&name.file_path()).await {
            tracing::warn!(error = %left, "a backup without its manifest stays behind");
        }
        return Err(e.into());
    }
    Ok(())
}
