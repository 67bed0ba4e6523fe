//! The operations: what the CLI, the HTTP API and the Functions handler all
//! call. Each one takes the store and storage it works on and returns a
//! report; none of them prints.

pub mod backup;
pub mod ingest;
pub mod jobs;
pub mod load;
pub mod ocf;
pub mod sample;
pub mod shape;

/// A progress bar on stderr, drawn only on a terminal: `bytes` of a file,
/// or rows.
pub(crate) fn progress_bar(label: String, len: u64, bytes: bool) -> indicatif::ProgressBar {
    let bar = indicatif::ProgressBar::with_draw_target(
        Some(len),
        indicatif::ProgressDrawTarget::stderr(),
    );
    let template = if bytes {
        "{msg:24} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} eta {eta}"
    } else {
        "{msg:24} [{bar:30}] {human_pos}/{human_len} rows {per_sec} eta {eta}"
    };
    bar.set_style(
        indicatif::ProgressStyle::with_template(template)
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar())
            .progress_chars("=> "),
    );
    bar.set_message(label);
    bar
}

/// A reader that moves a progress bar.
pub(crate) struct Progress<R> {
    pub inner: R,
    pub bar: Option<indicatif::ProgressBar>,
}

impl<R: std::io::Read> std::io::Read for Progress<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        if let Some(bar) = &self.bar {
            bar.inc(n as u64);
        }
        Ok(n)
    }
}

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
