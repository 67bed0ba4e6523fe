//! Writing an object so that nothing shows under its name until it is
//! whole, and nothing already there is replaced.

use super::StorageError;
use object_store::path::Path as ObjectPath;
use object_store::{ObjectStore, ObjectStoreExt, PutMode, PutOptions, PutPayload, WriteMultipart};
use std::io::Write;
use std::sync::Arc;

/// Size of the blocks of a blob upload: 50,000 blocks (Azure's limit) of
/// 8 MiB allow a 390 GiB backup; two in flight bound the memory.
const PART_BYTES: usize = 8 << 20;
/// Blocks uploaded at once.
const PARTS_IN_FLIGHT: usize = 2;

/// An object being written. Write it from a blocking thread; nothing
/// appears under its name until [`Upload::commit`], and an upload dropped
/// before that leaves nothing behind.
pub struct Upload(pub(super) Writing);

pub(super) enum Writing {
    Local(LocalFile),
    Remote(BlobBlocks),
}

/// A temporary file beside its final name.
pub(super) struct LocalFile {
    pub(super) file: Option<std::io::BufWriter<std::fs::File>>,
    pub(super) temp: std::path::PathBuf,
    pub(super) target: std::path::PathBuf,
    pub(super) folder: std::path::PathBuf,
}

/// Uncommitted blocks of a blob: started by the first write, committed by
/// `commit`, abandoned otherwise (the service discards them).
pub(super) struct BlobBlocks {
    pub(super) store: Arc<dyn ObjectStore>,
    pub(super) path: ObjectPath,
    pub(super) location: String,
    pub(super) runtime: tokio::runtime::Handle,
    pub(super) parts: Option<WriteMultipart>,
}

impl std::io::Write for Upload {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        match &mut self.0 {
            Writing::Local(local) => local.write(buf),
            Writing::Remote(blob) => blob.write(buf),
        }
    }

    fn flush(&mut self) -> std::io::Result<()> {
        match &mut self.0 {
            Writing::Local(local) => local.flush(),
            // Blocks go up as they fill; `commit` sends the rest.
            Writing::Remote(_) => Ok(()),
        }
    }
}

impl Upload {
    /// Makes the object appear under its name, complete. Call from a
    /// blocking thread.
    pub fn commit(mut self) -> Result<(), StorageError> {
        match &mut self.0 {
            Writing::Local(local) => local.commit(),
            Writing::Remote(blob) => blob.commit(),
        }
    }
}

impl LocalFile {
    fn file(&mut self) -> std::io::Result<&mut std::io::BufWriter<std::fs::File>> {
        self.file
            .as_mut()
            .ok_or_else(|| std::io::Error::other("upload already finished"))
    }

    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let written = self.file()?.write(buf);
        written.map_err(|e| self.failure(e))
    }

    fn flush(&mut self) -> std::io::Result<()> {
        match self.file.as_mut().map(|f| f.flush()) {
            Some(Err(e)) => Err(self.failure(e)),
            Some(Ok(())) | None => Ok(()),
        }
    }

    /// A write to the file as an I/O error carrying the [`StorageError`]
    /// (see [`StorageError::from_io`]), so that a full disk reads as one.
    fn failure(&self, e: std::io::Error) -> std::io::Error {
        std::io::Error::other(StorageError::Io(self.temp.display().to_string(), e))
    }

    /// The data is synced to disk, then linked to the final name (which
    /// must not exist yet), then the folder is synced.
    fn commit(&mut self) -> Result<(), StorageError> {
        let io = |path: &std::path::Path, e| StorageError::Io(path.display().to_string(), e);
        let (temp, target) = (&self.temp, &self.target);
        let file = self
            .file
            .take()
            .ok_or_else(|| io(temp, std::io::Error::other("upload already finished")))?;
        let file = file.into_inner().map_err(|e| io(temp, e.into_error()))?;
        file.sync_all().map_err(|e| io(temp, e))?;
        drop(file);
        std::fs::hard_link(temp, target).map_err(|e| match e.kind() {
            std::io::ErrorKind::AlreadyExists => StorageError::Exists(target.display().to_string()),
            _ => io(target, e),
        })?;
        let _ = std::fs::remove_file(temp);
        std::fs::File::open(&self.folder)
            .and_then(|d| d.sync_all())
            .map_err(|e| io(&self.folder, e))
    }
}

impl BlobBlocks {
    fn failed(&self, error: object_store::Error) -> StorageError {
        StorageError::Backend {
            location: self.location.clone(),
            error,
        }
    }

    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let writer = match self.parts.take() {
            Some(w) => w,
            None => {
                let started = self.runtime.block_on(self.store.put_multipart(&self.path));
                let started = started.map_err(|e| std::io::Error::other(self.failed(e)))?;
                WriteMultipart::new_with_chunk_size(started, PART_BYTES)
            }
        };
        // Back-pressure: at most PARTS_IN_FLIGHT blocks uploading; a failed
        // block surfaces here (and the upload stays, to be abandoned).
        let writer = self.parts.insert(writer);
        let room = self
            .runtime
            .block_on(writer.wait_for_capacity(PARTS_IN_FLIGHT));
        match room {
            Ok(()) => {
                writer.write(buf);
                Ok(buf.len())
            }
            Err(e) => Err(std::io::Error::other(self.failed(e))),
        }
    }

    /// The name is checked to be free, then the block list is committed.
    fn commit(&mut self) -> Result<(), StorageError> {
        let parts = self.parts.take();
        self.runtime.block_on(async {
            match self.store.head(&self.path).await {
                Ok(_) => return Err(StorageError::Exists(self.location.clone())),
                Err(object_store::Error::NotFound { .. }) => {}
                Err(e) => return Err(self.failed(e)),
            }
            match parts {
                Some(w) => w.finish().await.map(drop).map_err(|e| self.failed(e)),
                None => {
                    let (store, path) = (self.store.as_ref(), &self.path);
                    create_new(store, path, &self.location, PutPayload::new()).await
                }
            }
        })
    }
}

impl Drop for Upload {
    fn drop(&mut self) {
        match &mut self.0 {
            // Committed or not, the temporary name goes.
            Writing::Local(local) => {
                local.file.take();
                let _ = std::fs::remove_file(&local.temp);
            }
            // Not committed: the uploaded blocks are abandoned (Azure drops
            // uncommitted blocks after a week). Aborting is asynchronous, so
            // it runs on the runtime rather than blocking this thread.
            Writing::Remote(blob) => {
                if let Some(w) = blob.parts.take() {
                    blob.runtime.spawn(async move {
                        let _ = w.abort().await;
                    });
                }
            }
        }
    }
}

/// Writes a whole object under a name that must be free (`If-None-Match: *`
/// for blobs): two writers racing for one name cannot both succeed.
pub(super) async fn create_new(
    store: &dyn ObjectStore,
    path: &ObjectPath,
    location: &str,
    payload: PutPayload,
) -> Result<(), StorageError> {
    let opts = PutOptions {
        mode: PutMode::Create,
        ..PutOptions::default()
    };
    match store.put_opts(path, payload, opts).await {
        Ok(_) => Ok(()),
        Err(object_store::Error::AlreadyExists { .. }) => {
            Err(StorageError::Exists(location.to_owned()))
        }
        Err(source) => Err(StorageError::Backend {
            location: location.to_owned(),
            error: source,
        }),
    }
}
