//! The operations: what the CLI, the HTTP API and the Functions handler all
//! call. Each one takes the store and storage it works on and returns a
//! report; none of them prints. The door hands in a [`Progress`] for
//! what takes long (loads, backups, restores).

pub mod backup;
pub mod ingest;
pub mod jobs;
pub mod lineage;
pub mod load;
pub mod progress;
pub mod rejections;
pub mod sample;
pub mod shape;

pub use progress::{Progress, Quiet, Unit};

/// A reader or writer that hashes (SHA-256) and counts what goes through.
pub(crate) struct Hashing<T> {
    pub inner: T,
    pub hash: sha2::Sha256,
    pub bytes: u64,
}

impl<T> Hashing<T> {
    pub fn new(inner: T) -> Self {
        Hashing {
            inner,
            hash: sha2::Digest::new(),
            bytes: 0,
        }
    }

    /// The hex digest of everything that went through.
    pub fn hex_digest(self) -> String {
        hex::encode(sha2::Digest::finalize(self.hash))
    }

    fn seen(&mut self, data: &[u8]) {
        sha2::Digest::update(&mut self.hash, data);
        self.bytes += data.len() as u64;
    }
}

impl<R: std::io::Read> std::io::Read for Hashing<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.seen(&buf[..n]);
        Ok(n)
    }
}

impl<W: std::io::Write> std::io::Write for Hashing<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.seen(&buf[..n]);
        Ok(n)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}
