//! Undoing an operation, written once for every backend: the rows it
//! inserted removed in one transaction, or nothing changed and the reason
//! counted. A backend runs [`run`] in a transaction it opens, and commits
//! or rolls back as it says.

use super::batch::Done;
use super::lineage::Undo;
use super::sql::{self, Operation};
use super::tx::Statements;
use super::{Dialect, HistoryStatus, LoadRecord, OperationKind, StoreError, ddl};
use crate::dictionary::Table;

/// A run this long is deleted as a range of the key; shorter ones by
/// their ids.
const LONG_RUN: i64 = 64;

/// Ids deleted by one statement, at most (one text parameter).
const IDS_PER_DELETE: usize = 10_000;

/// What became of an undo.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UndoOutcome {
    /// The rows are gone; the undo has entry `undo` in the history.
    Undone {
        /// The undo's own history entry.
        undo: i64,
        /// Rows removed.
        removed: u64,
    },
    /// Undone before, by entry `undo`: nothing changed now.
    AlreadyUndone {
        /// The undo that did it.
        undo: i64,
    },
    /// Refused: nothing changed.
    Refused(UndoRefusal),
}

/// Why an operation cannot be undone, with the counts that say so.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, utoipa::ToSchema)]
pub struct UndoRefusal {
    /// What stands in the way, in words.
    pub reason: String,
    /// Rows the operation updated: their earlier values are not kept, so
    /// removing them would not put the table back as it was.
    pub updated: u64,
    /// Rows of other tables that reference rows it inserted.
    pub referenced: u64,
    /// Writes later operations made to rows it inserted (an upsert, a
    /// restore): removing them would remove those writes too.
    pub written_since: u64,
}

/// The refusal an entry gets before any transaction: what its kind and
/// counts say alone.
pub(super) fn refused_as_such(entry: &LoadRecord) -> Option<UndoRefusal> {
    let reason = match (entry.kind, entry.status) {
        (_, HistoryStatus::Aborted) => "the load was aborted: it wrote nothing".to_owned(),
        (OperationKind::Restore, _) => {
            "a restore replaced the whole table: restore an earlier backup instead".to_owned()
        }
        (OperationKind::Undo, _) => "an undo cannot be undone: load the rows again".to_owned(),
        _ if entry.updated > 0 => format!(
            "it updated {} rows, whose earlier values are not kept",
            entry.updated
        ),
        _ => return None,
    };
    Some(UndoRefusal {
        reason,
        updated: entry.updated.max(0) as u64,
        ..Default::default()
    })
}

/// Undoes `entry` (not undone when it was read) in the transaction of
/// `tx`: claims it, checks that no other row depends on its rows and
/// that no later operation wrote them, removes them, reopens the
/// rejections it resolved, and records the undo.
pub(super) async fn run(
    tx: &mut impl Statements,
    d: Dialect,
    entry: &LoadRecord,
    table: Table,
) -> Result<Done<UndoOutcome>, StoreError> {
    let undo = Undo::new(d, entry, table);
    for st in undo.lock() {
        tx.execute(&st).await?;
    }
    if tx.execute(&undo.claim()).await? == 0 {
        // Another undo got there first; it has committed (the claim waited
        // for it) or the entry would still be free.
        let by = tx
            .query(&sql::load_by_id(d, entry.id), sql::load_record)
            .await?;
        let undo = by.first().and_then(|e| e.undone_by).unwrap_or_default();
        return Ok(Done::Rollback(UndoOutcome::AlreadyUndone { undo }));
    }
    let (written_since, first_later) = tx.int_pair(&undo.written_since()).await?;
    let mut referenced = 0u64;
    let mut example = None;
    for child in table.children() {
        for (_, column, _) in child.foreign_keys().filter(|(_, _, p)| *p == table) {
            let (count, first) = tx.int_pair(&undo.referenced(child, column.name)).await?;
            if count > 0 {
                referenced += count as u64;
                example.get_or_insert((child, first));
            }
        }
    }
    if written_since > 0 || referenced > 0 {
        let mut reasons = Vec::new();
        if written_since > 0 {
            reasons.push(format!(
                "operation {first_later} (and maybe others) wrote its rows again since \
                 ({written_since} writes)"
            ));
        }
        if let Some((child, id)) = example {
            reasons.push(format!(
                "{referenced} rows of other tables reference its rows (e.g. {child} id {id}): \
                 undo those first"
            ));
        }
        return Ok(Done::Rollback(UndoOutcome::Refused(UndoRefusal {
            reason: reasons.join("; "),
            updated: 0,
            referenced,
            written_since: written_since as u64,
        })));
    }
    // The runs a page at a time: a long run's rows by their range, the
    // others' by their ids, a list at a time.
    let (mut removed, mut after, mut ids) = (0, i64::MIN, Vec::new());
    loop {
        let page = undo.runs(after);
        let runs = tx.query(&page, |r| Ok((r.int(0)?, r.int(1)?))).await?;
        let Some(&(last_first, _)) = runs.last() else {
            break;
        };
        for (first, last) in runs {
            if last - first + 1 >= LONG_RUN {
                removed += tx.execute(&undo.delete_range(first, last)).await?;
                continue;
            }
            ids.extend(first..=last);
            if ids.len() >= IDS_PER_DELETE {
                removed += tx.execute(&undo.delete_ids(&ids)).await?;
                ids.clear();
            }
        }
        after = last_first;
    }
    if !ids.is_empty() {
        removed += tx.execute(&undo.delete_ids(&ids)).await?;
    }
    if matches!(entry.kind, OperationKind::Retry | OperationKind::Fix) {
        tx.execute(&reopen(d, entry.id)).await?;
    }
    let source = format!("undo:{}", entry.id);
    let mut op = Operation::new(OperationKind::Undo, table, &source);
    op.removed = removed;
    let undo_id = tx.int(&sql::record(d, &op)).await?;
    tx.execute(&undo.undone_by(undo_id)).await?;
    Ok(Done::Commit(UndoOutcome::Undone {
        undo: undo_id,
        removed,
    }))
}

/// The rejections a retry or a fix resolved are open again once its rows
/// are gone.
fn reopen(d: Dialect, operation: i64) -> sql::Statement {
    let mut st = sql::Statement::new(d);
    let op = st.int(operation);
    let sql = format!(
        "UPDATE {} SET {status} = 'open', {by} = NULL WHERE {by} = {op}",
        d.quote(ddl::REJECTIONS),
        status = d.quote("status"),
        by = d.quote("resolved_by"),
    );
    st.sql(sql)
}
