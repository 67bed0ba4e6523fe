//! How far a long operation has got, told to whoever shows it.
//!
//! Operations never draw or print: the door that calls one hands it a
//! [`Progress`] (the CLI's draws bars on a terminal; the HTTP API and the
//! Functions handler pass [`Quiet`]), and the operation reports its tasks to
//! it. A load reports one task per file, in bytes read; a backup one task in
//! rows written; verify and restore one task in bytes read.

use std::sync::Arc;

/// What a task is counted in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unit {
    /// Bytes of a file read.
    Bytes,
    /// Rows of a table.
    Rows,
}

/// Where an operation reports its tasks: one at a time, each started, then
/// advanced, then finished. Called from the operation's worker threads too,
/// hence `Send + Sync`.
pub trait Progress: Send + Sync {
    /// Whether anyone looks. When no one does, an operation skips work done
    /// only to size a task (counting a table's rows before a backup).
    fn shown(&self) -> bool {
        true
    }

    /// A task begins: `label`, `total` `unit`s long.
    fn start(&self, label: &str, unit: Unit, total: u64);

    /// `n` more units of the task are done.
    fn advance(&self, n: u64);

    /// The task has ended, done or not.
    fn finish(&self);
}

impl std::fmt::Debug for dyn Progress {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.shown() { "Progress" } else { "Quiet" })
    }
}

/// No one looks: every report is dropped.
#[derive(Debug, Clone, Copy, Default)]
pub struct Quiet;

impl Progress for Quiet {
    fn shown(&self) -> bool {
        false
    }
    fn start(&self, _: &str, _: Unit, _: u64) {}
    fn advance(&self, _: u64) {}
    fn finish(&self) {}
}

/// A reader that reports the bytes read through it.
pub(crate) struct Metered<R> {
    pub inner: R,
    pub progress: Arc<dyn Progress>,
}

impl<R: std::io::Read> std::io::Read for Metered<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.progress.advance(n as u64);
        Ok(n)
    }
}
