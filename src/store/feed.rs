//! What producers hand the store: rows in order, then the end.
//!
//! A file load, an API batch read in pieces and a restore all stream rows
//! into one transaction over one kind of channel (tokio's bounded
//! [`mpsc`], which a blocking thread reads with `blocking_recv` and a task
//! with `recv().await`). A sender dropped before [`Feed::End`] aborts:
//! the transaction is rolled back and the table keeps its contents.

use super::StoreError;
use crate::dictionary::Row;
use crate::dictionary::check::Checked;
use std::ops::Range;
use tokio::sync::mpsc;

/// One message of a producer: more rows, or the end and what the producer
/// knows once it is there.
#[derive(Debug)]
pub enum Feed<R, E = ()> {
    /// More rows.
    Rows(R),
    /// Every row was sent.
    End(E),
}

/// A file load's rows, then facts about the whole file.
pub type FileFeed = mpsc::Receiver<Feed<Chunk, FeedSummary>>;

/// The rest of a batch's last table while the request is still being
/// parsed, so that the store writes the first rows meanwhile.
pub type BatchRest = mpsc::Receiver<Feed<Chunk>>;

/// A restore's rows in id order, then how many were sent (checked against
/// the rows written).
pub type RestoreFeed = mpsc::Receiver<Feed<Vec<Row>, u64>>;

/// Facts about a file known once it has been read to the end.
#[derive(Debug, Clone)]
pub struct FeedSummary {
    /// Records read (the header line excluded).
    pub rows_read: u64,
    /// Blank lines skipped.
    pub blank: u64,
    /// SHA-256 of the file's bytes, hex.
    pub sha256: String,
}

/// One row of the input (a CSV record or a row of a request) as the pure
/// checks left it: where it came from, its raw text, and the typed row or
/// what is wrong with it.
#[derive(Debug)]
pub struct InputRow {
    /// CSV line (from 1) or batch index (from 0).
    pub position: u64,
    /// The record's raw text, as a range of the chunk's `raw` bytes.
    pub raw: Range<usize>,
    /// The valid row, or what was wrong with it.
    pub check: Result<Row, Checked>,
}

/// A slice of a file on its way to the database.
#[derive(Debug, Default)]
pub struct Chunk {
    /// Raw text of every input row, back to back.
    pub raw: Vec<u8>,
    /// The input rows, in file order.
    pub rows: Vec<InputRow>,
}

impl Chunk {
    /// Moves `more`'s input rows to the end of this chunk.
    pub fn append(&mut self, more: Chunk) {
        let shift = self.raw.len();
        self.raw.extend_from_slice(&more.raw);
        self.rows.extend(more.rows.into_iter().map(|mut c| {
            c.raw = c.raw.start + shift..c.raw.end + shift;
            c
        }));
    }
}

impl super::BatchRequest {
    /// Moves the rest of the last table (see [`BatchRest`]) into it before
    /// a server backend's transaction starts: the server backends say they
    /// are never idle, so batches normally arrive whole, but a caller may
    /// still send the rest. (The producer's channel holds every piece of the
    /// largest batch, so it never waits for this future to be polled.)
    pub(super) async fn collect_rest(&mut self) -> Result<(), StoreError> {
        let Some(mut rest) = self.rest.take() else {
            return Ok(());
        };
        let mut more = Chunk::default();
        loop {
            match rest.recv().await {
                Some(Feed::Rows(chunk)) => more.append(chunk),
                Some(Feed::End(())) => break,
                None => return Err(StoreError::FeedInterrupted),
            }
        }
        if let Some(last) = self.tables.last_mut() {
            last.chunk.append(more);
        }
        Ok(())
    }
}
