//! SQLite's hire counts (see `store::reports`): every change to a hire on
//! the writer connection is tallied as SQLite makes it, by a pre-update
//! hook, so that no write path (loads, batches, upserts, undo, restores)
//! can leave one out; [`commit`] appends the tally to the count changes
//! inside the transaction. A commit that did not (a write path that commits some
//! other way) is refused by the commit hook and rolled back, rather than
//! leave counts that are not true.
//!
//! The hook is SQLite's C API through rusqlite's bundled bindings: the
//! crate's own `preupdate_hook` feature generates its bindings at build
//! time, which needs libclang (see `.cargo/config.toml`).

use super::super::Chunk;
use super::super::StoreError;
use super::super::reports::{self, Tally};
use crate::dictionary::Table;
use rusqlite::{Connection, Transaction, ffi};
use std::cell::{Cell, RefCell};
use std::ffi::{CStr, c_char, c_int, c_void};

thread_local! {
    /// The open transaction's tally, on the writer thread.
    static TALLY: RefCell<Tally> = RefCell::default();
    /// The statement running now is counted by its caller, not by the hook
    /// (see [`uncounted`]).
    static COUNTED_HERE: Cell<bool> = const { Cell::new(false) };
}

/// Runs `run`, an insert into `table` whose rows its caller counts (see
/// [`count_inserted`]), with the hook skipping it: the hook has SQLite
/// decode each row once more, and a lookup in the tally per row on the
/// writer thread made a load of 1 M rows 30 to 40 % slower.
pub(super) fn uncounted<T>(
    table: Table,
    run: impl FnOnce() -> rusqlite::Result<T>,
) -> Result<T, StoreError> {
    if table != Table::HiredEmployees {
        return Ok(run()?);
    }
    /// Ends the skip whatever `run` does.
    struct Counted;
    impl Drop for Counted {
        fn drop(&mut self) {
            COUNTED_HERE.with(|c| c.set(false));
        }
    }
    COUNTED_HERE.with(|c| c.set(true));
    let _counted = Counted;
    Ok(run()?)
}

/// Counts the rows of `chunk` at `inserted` (indices) into `tally`: the
/// hires an insert of [`uncounted`] wrote.
pub(super) fn count_inserted(tally: &mut Tally, chunk: &Chunk, inserted: &[u32]) {
    for &i in inserted {
        match chunk.rows.get(i as usize).map(|r| &r.check) {
            Some(Ok(row)) => tally.add_row(row, 1),
            _ => tally.refuse(format!("row {i} of a chunk was counted but not inserted")),
        }
    }
}

/// [`count_inserted`] into the open transaction's tally.
pub(super) fn count_here(chunk: &Chunk, inserted: &[u32]) {
    TALLY.with(|tally| count_inserted(&mut tally.borrow_mut(), chunk, inserted));
}

/// Adds a tally made on another thread to the open transaction's.
pub(super) fn add(other: Tally) {
    TALLY.with(|tally| tally.borrow_mut().merge(other));
}

/// Tallies the writer connection's changes to the hires from now on.
pub(super) fn watch(conn: &mut Connection) -> rusqlite::Result<()> {
    // SAFETY: the handle is the open connection's, and `on_change` keeps
    // to what SQLite allows in the hook (reading the row's values).
    unsafe {
        ffi::sqlite3_preupdate_hook(conn.handle(), Some(on_change), std::ptr::null_mut());
    }
    conn.rollback_hook(Some(|| TALLY.with(|tally| tally.borrow_mut().clear())))?;
    // `true` turns the commit into a rollback.
    conn.commit_hook(Some(|| TALLY.with(|tally| !tally.borrow().is_empty())))?;
    Ok(())
}

/// Reads a value of the row a change replaces or writes.
type ReadValue =
    unsafe extern "C" fn(*mut ffi::sqlite3, c_int, *mut *mut ffi::sqlite3_value) -> c_int;

/// SQLite's pre-update hook: called before each row is inserted, deleted
/// or updated, with the row's values readable.
unsafe extern "C" fn on_change(
    _: *mut c_void,
    db: *mut ffi::sqlite3,
    op: c_int,
    schema: *const c_char,
    table: *const c_char,
    _: i64,
    _: i64,
) {
    if COUNTED_HERE.with(Cell::get) {
        return;
    }
    // SAFETY: SQLite passes NUL-terminated names.
    let (schema, table) = unsafe { (CStr::from_ptr(schema), CStr::from_ptr(table)) };
    if schema.to_bytes() != b"main" || table.to_bytes() != Table::HiredEmployees.name().as_bytes() {
        return;
    }
    // Nothing here panics; if it did, the tally would refuse the commit
    // rather than unwind into SQLite.
    let counted = std::panic::catch_unwind(|| {
        TALLY.with(|tally| {
            let tally = &mut tally.borrow_mut();
            // SAFETY: inside the hook, on the connection it was called for.
            unsafe {
                match op {
                    ffi::SQLITE_INSERT => count(tally, db, ffi::sqlite3_preupdate_new, 1),
                    ffi::SQLITE_DELETE => count(tally, db, ffi::sqlite3_preupdate_old, -1),
                    ffi::SQLITE_UPDATE => {
                        count(tally, db, ffi::sqlite3_preupdate_old, -1);
                        count(tally, db, ffi::sqlite3_preupdate_new, 1);
                    }
                    _ => tally.refuse(format!("a change SQLite names {op}")),
                }
            }
        })
    });
    if counted.is_err() {
        TALLY.with(|tally| {
            if let Ok(mut tally) = tally.try_borrow_mut() {
                tally.refuse("the count of a change failed".into());
            }
        });
    }
}

/// Counts a hire's `datetime`, `department_id` and `job_id`, read by
/// `read` (the old row or the new one).
///
/// # Safety
/// Only inside the pre-update hook, with the `db` it was called for.
unsafe fn count(tally: &mut Tally, db: *mut ffi::sqlite3, read: ReadValue, n: i32) {
    let [at, department, job] = reports::HIRE_COLUMNS.map(|i| i as c_int);
    let mut values = [std::ptr::null_mut::<ffi::sqlite3_value>(); 3];
    for (value, column) in values.iter_mut().zip([at, department, job]) {
        // SAFETY: see the function's contract.
        if unsafe { read(db, column, value) } != ffi::SQLITE_OK || value.is_null() {
            return tally.refuse(format!("column {column} of a hire could not be read"));
        }
    }
    // SAFETY: the values SQLite returned, valid until the hook returns;
    // the text's bytes are read before any other call on the value.
    unsafe {
        let kinds = values.map(|v| ffi::sqlite3_value_type(v));
        if kinds != [ffi::SQLITE_TEXT, ffi::SQLITE_INTEGER, ffi::SQLITE_INTEGER] {
            return tally.refuse(format!("a hire stored with the types {kinds:?}"));
        }
        let text = ffi::sqlite3_value_text(values[0]);
        let len = usize::try_from(ffi::sqlite3_value_bytes(values[0])).unwrap_or(0);
        if text.is_null() {
            return tally.refuse("a hire's datetime could not be read".into());
        }
        let at = std::slice::from_raw_parts(text, len);
        let department = ffi::sqlite3_value_int64(values[1]);
        let job = ffi::sqlite3_value_int64(values[2]);
        tally.add(at, department, job, n);
    }
}

/// Folds the count changes into the counts, in a transaction of its own.
pub(super) fn fold(conn: &mut Connection) -> Result<(), StoreError> {
    let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
    fold_in(&tx)?;
    commit(tx)
}

/// Moves every change into the counts: the writer's transaction, so no
/// other writer runs. The changes are summed here, one upsert a group,
/// rather than by SQL over each group of each change.
fn fold_in(tx: &Transaction<'_>) -> Result<(), StoreError> {
    let [read, forget] = reports::sqlite_change_rows();
    let mut sums = reports::Sums::default();
    let mut changes = tx.prepare_cached(&read)?;
    let mut rows = changes.query([])?;
    while let Some(row) = rows.next()? {
        let packed = row.get_ref(0)?.as_blob().map_err(rusqlite::Error::from)?;
        reports::sqlite_unpack(packed, &mut sums)?;
    }
    let mut sums: Vec<_> = sums.into_iter().collect();
    // In key order: the counts' B-tree is written front to back.
    sums.sort_unstable_by_key(|(group, _)| *group);
    let mut add = tx.prepare_cached(&reports::sqlite_fold_group())?;
    for ((year, department, job), [q1, q2, q3, q4]) in sums {
        add.execute(rusqlite::params![year, department, job, q1, q2, q3, q4])?;
    }
    tx.execute(&forget, [])?;
    Ok(())
}

/// Appends the transaction's tally to the count changes, folds them into
/// the counts when they are many, and commits.
pub(super) fn commit(tx: Transaction<'_>) -> Result<(), StoreError> {
    let changed = TALLY.with(|tally| tally.borrow_mut().take())?;
    if !changed.is_empty() {
        let mut add = tx.prepare_cached(&reports::sqlite_add())?;
        add.execute([reports::sqlite_pack(&changed)])?;
        let mut pending = tx.prepare_cached(&reports::sqlite_changes())?;
        let pending: i64 = pending.query_row([], |r| r.get(0))?;
        if pending >= reports::SQLITE_FOLD_AT {
            fold_in(&tx)?;
        }
    }
    tx.commit()?;
    Ok(())
}
