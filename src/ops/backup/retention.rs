//! Backup retention: the older complete backups of a table go, the newest
//! ones stay.
//!
//! A backup is removed manifest first: from that moment it is no longer
//! listed as complete, so a prune cut short (a crash, a storage failure)
//! leaves at worst a file without its manifest, never a listed backup
//! without its file.

use super::catalogue::{BackupName, Manifest};
use super::{BackupError, list};
use crate::dictionary::{Table, datetime};
use crate::storage::Storage;
use serde::Serialize;
use std::num::NonZeroUsize;

/// Which backups a prune keeps.
#[derive(Debug, Clone, Copy)]
pub struct Retention {
    /// The newest complete backups always kept (at least one: a prune never
    /// removes a table's newest backup).
    pub keep: NonZeroUsize,
    /// When set, only backups taken more than this many days ago are
    /// removed, however many there are.
    pub older_than_days: Option<u64>,
    /// The moment ages are counted from (UTC milliseconds): when the
    /// retention was made, unless [`Retention::as_of`] says otherwise.
    now_ms: i64,
}

/// The longest age a prune takes, in days (a hundred years).
pub const MAX_AGE_DAYS: u64 = 36_500;
/// The most backups a prune may be asked to keep per table.
pub const MAX_KEEP: u64 = 1_000_000;

impl Retention {
    /// A retention keeping `keep` backups; 0 is refused (a table would be
    /// left without a backup), as is an age over `MAX_AGE_DAYS`.
    pub fn new(keep: u64, older_than_days: Option<u64>) -> Result<Retention, BackupError> {
        if let Some(days) = older_than_days.filter(|d| *d > MAX_AGE_DAYS) {
            return Err(BackupError::BadRetention(format!(
                "the age must be 0 to {MAX_AGE_DAYS} days, not {days}"
            )));
        }
        let keep = usize::try_from(keep)
            .ok()
            .filter(|k| *k as u64 <= MAX_KEEP)
            .and_then(NonZeroUsize::new)
            .ok_or_else(|| {
                BackupError::BadRetention(format!(
                    "keep must be 1 or more (at most {MAX_KEEP}): a prune never removes a \
                     table's newest backup"
                ))
            })?;
        Ok(Retention {
            keep,
            older_than_days,
            now_ms: chrono::Utc::now().timestamp_millis(),
        })
    }

    /// The same retention, with ages counted from `now_ms`.
    pub fn as_of(self, now_ms: i64) -> Retention {
        Retention { now_ms, ..self }
    }
}

/// What a prune did to one table's backups.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Pruned {
    /// The table.
    pub table: Table,
    /// The backups removed, oldest first.
    pub removed: Vec<String>,
    /// The complete backups left.
    pub kept: usize,
}

/// Removes the complete backups of `table` that `retention` does not keep.
#[tracing::instrument(skip(storage), fields(removed))]
pub async fn prune(
    storage: &Storage,
    table: Table,
    retention: Retention,
) -> Result<Pruned, BackupError> {
    let all = list(storage, table).await?;
    let beyond = all.len().saturating_sub(retention.keep.get());
    let cutoff = retention
        .older_than_days
        .map(|days| retention.now_ms - days as i64 * 86_400_000);
    let mut removed = Vec::new();
    for manifest in &all[..beyond] {
        if cutoff.is_some_and(|cutoff| taken_ms(manifest) > cutoff) {
            continue;
        }
        let name = BackupName::parse(table, &manifest.backup)?;
        remove(storage, &name).await?;
        removed.push(manifest.backup.clone());
    }
    tracing::Span::current().record("removed", removed.len());
    Ok(Pruned {
        table,
        kept: all.len() - removed.len(),
        removed,
    })
}

/// When a backup was taken; one whose time does not read counts as taken
/// now, so that an age limit never removes it.
fn taken_ms(manifest: &Manifest) -> i64 {
    datetime::parse(&manifest.created_at).unwrap_or(i64::MAX)
}

/// Removes one backup: the manifest, then the file (either already gone is
/// no failure).
async fn remove(storage: &Storage, name: &BackupName) -> Result<(), BackupError> {
    storage.remove(&name.manifest_path()).await?;
    storage.remove(&name.file_path()).await?;
    Ok(())
}
