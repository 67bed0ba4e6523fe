//! Writing an object so that nothing shows under its name until it is
//! whole, and nothing already there is replaced.

use super::StorageError;
use object_store::path::Path as ObjectPath;
use object_store::{ObjectStore, ObjectStoreExt, PutMode, PutOptions, PutPayload, WriteMultipart};
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
    /// A temporary file beside its final name.
    Local {
        file: Option<std::io::BufWriter<std::fs::File>>,
        temp: std::path::PathBuf,
        target: std::path::PathBuf,
        folder: std::path::PathBuf,
    },
    /// Uncommitted blocks of a blob: started by the first write, committed
    /// by `commit`, abandoned otherwise (the service discards them).
    Remote {
        store: Arc<dyn ObjectStore>,
        path: ObjectPath,
        location: String,
        runtime: tokio::runtime::Handle,
        parts: Option<WriteMultipart>,
    },
}

impl std::io::Write for Upload {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        match &mut self.0 {
            Writing::Local { file, temp, .. } => match file.as_mut() {
                Some(f) => f.write(buf).map_err(|e| local_failure(temp, e)),
                None => Err(std::io::Error::other("upload already finished")),
            },
            Writing::Remote {
                store,
                path,
                location,
                runtime,
                parts,
            } => {
                let failed = |source| {
                    std::io::Error::other(StorageError::Backend {
                        location: location.clone(),
                        error: source,
                    })
                };
                let writer = match parts {
                    Some(w) => w,
                    None => {
                        let started = runtime
                            .block_on(store.put_multipart(path))
                            .map_err(failed)?;
                        parts.insert(WriteMultipart::new_with_chunk_size(started, PART_BYTES))
                    }
                };
                // Back-pressure: at most PARTS_IN_FLIGHT blocks uploading;
                // a failed block surfaces here.
                runtime
                    .block_on(writer.wait_for_capacity(PARTS_IN_FLIGHT))
                    .map_err(failed)?;
                writer.write(buf);
                Ok(buf.len())
            }
        }
    }
    fn flush(&mut self) -> std::io::Result<()> {
        match &mut self.0 {
            Writing::Local {
                file: Some(f),
                temp,
                ..
            } => f.flush().map_err(|e| local_failure(temp, e)),
            _ => Ok(()),
        }
    }
}

/// A write to a local file as an I/O error carrying the [`StorageError`]
/// (see [`StorageError::from_io`]), so that a full disk reads as one.
fn local_failure(temp: &std::path::Path, e: std::io::Error) -> std::io::Error {
    std::io::Error::other(StorageError::Io(temp.display().to_string(), e))
}

impl Upload {
    /// Makes the object appear under its name, complete.
    ///
    /// Locally: the data is synced to disk, then linked to the final name
    /// (which must not exist yet), then the folder is synced. In a blob
    /// container: the name is checked to be free, then the block list is
    /// committed. Call from a blocking thread.
    pub fn commit(mut self) -> Result<(), StorageError> {
        match &mut self.0 {
            Writing::Local {
                file,
                temp,
                target,
                folder,
            } => {
                let io =
                    |path: &std::path::Path, e| StorageError::Io(path.display().to_string(), e);
                let file = file
                    .take()
                    .ok_or_else(|| io(temp, std::io::Error::other("upload already finished")))?;
                let file = file.into_inner().map_err(|e| io(temp, e.into_error()))?;
                file.sync_all().map_err(|e| io(temp, e))?;
                drop(file);
                std::fs::hard_link(&temp, &target).map_err(|e| match e.kind() {
                    std::io::ErrorKind::AlreadyExists => {
                        StorageError::Exists(target.display().to_string())
                    }
                    _ => io(target, e),
                })?;
                let _ = std::fs::remove_file(&temp);
                std::fs::File::open(&folder)
                    .and_then(|d| d.sync_all())
                    .map_err(|e| io(folder, e))
            }
            Writing::Remote {
                store,
                path,
                location,
                runtime,
                parts,
            } => {
                let failed = |source| StorageError::Backend {
                    location: location.clone(),
                    error: source,
                };
                let parts = parts.take();
                runtime.block_on(async {
                    match store.head(path).await {
                        Ok(_) => return Err(StorageError::Exists(location.clone())),
                        Err(object_store::Error::NotFound { .. }) => {}
                        Err(e) => return Err(failed(e)),
                    }
                    match parts {
                        Some(w) => w.finish().await.map(drop).map_err(failed),
                        None => create_new(store.as_ref(), path, location, PutPayload::new()).await,
                    }
                })
            }
        }
    }
}

impl Drop for Upload {
    fn drop(&mut self) {
        match &mut self.0 {
            // Committed or not, the temporary name goes.
            Writing::Local { file, temp, .. } => {
                file.take();
                let _ = std::fs::remove_file(&*temp);
            }
            // Not committed: the uploaded blocks are abandoned (Azure drops
            // uncommitted blocks after a week). Aborting is asynchronous, so
            // it runs on the runtime rather than blocking this thread.
            Writing::Remote { parts, runtime, .. } => {
                if let Some(w) = parts.take() {
                    runtime.spawn(async move {
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
