//! Files: the historic CSVs and (later) backups, behind one interface.
//!
//! A [`Storage`] is a root (a local directory now; object stores such as Azure
//! Blob fit the same `object_store` interface) plus a prefix inside it. Names
//! passed in are relative object paths built by the operations from
//! dictionary names; `object_store`'s `Path` refuses `..` segments, so nothing
//! outside the root is reachable through it.

use futures::TryStreamExt;
use object_store::local::LocalFileSystem;
use object_store::path::Path as ObjectPath;
use object_store::{GetResultPayload, ObjectStore, ObjectStoreExt};
use std::io::Read;
use std::sync::Arc;

/// Errors of the storage layer.
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    /// The storage URL is not one hrmig understands.
    #[error("unsupported storage URL {0:?}: use a directory or file:///PATH")]
    BadUrl(String),
    /// No object (file) at that location.
    #[error("{root}/{path} does not exist")]
    NotFound {
        /// The storage root, as configured.
        root: String,
        /// The object's path below the root: what an API client may see.
        path: String,
    },
    /// The storage refused or failed.
    #[error("{location}: {source}")]
    Backend {
        /// Where.
        location: String,
        /// Why.
        source: object_store::Error,
    },
    /// An object bigger than the caller accepts.
    #[error("{location} is larger than {limit} bytes")]
    TooLarge {
        /// Where.
        location: String,
        /// The limit.
        limit: u64,
    },
    /// A local directory could not be created.
    #[error("{0}: {1}")]
    Io(String, std::io::Error),
}

/// An object being written: a temporary file beside its final name.
pub struct Upload {
    file: Option<std::io::BufWriter<std::fs::File>>,
    temp: std::path::PathBuf,
    target: std::path::PathBuf,
    folder: std::path::PathBuf,
}

impl std::io::Write for Upload {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        match self.file.as_mut() {
            Some(f) => f.write(buf),
            None => Err(std::io::Error::other("upload already finished")),
        }
    }
    fn flush(&mut self) -> std::io::Result<()> {
        match self.file.as_mut() {
            Some(f) => f.flush(),
            None => Ok(()),
        }
    }
}

impl Upload {
    /// Makes the object appear under its name, complete: the data is synced
    /// to disk, then linked to the final name (which must not exist yet: an
    /// object is never overwritten), then the folder is synced.
    pub fn commit(mut self) -> Result<(), StorageError> {
        let io = |path: &std::path::Path, e| StorageError::Io(path.display().to_string(), e);
        let file = self
            .file
            .take()
            .ok_or_else(|| io(&self.temp, std::io::Error::other("upload already finished")))?;
        let file = file
            .into_inner()
            .map_err(|e| io(&self.temp, e.into_error()))?;
        file.sync_all().map_err(|e| io(&self.temp, e))?;
        drop(file);
        std::fs::hard_link(&self.temp, &self.target).map_err(|e| io(&self.target, e))?;
        let _ = std::fs::remove_file(&self.temp);
        std::fs::File::open(&self.folder)
            .and_then(|d| d.sync_all())
            .map_err(|e| io(&self.folder, e))
    }
}

impl Drop for Upload {
    fn drop(&mut self) {
        // Committed or not, the temporary name goes.
        self.file.take();
        let _ = std::fs::remove_file(&self.temp);
    }
}

/// A readable, streamed object.
pub struct Object {
    /// The bytes, read synchronously (call from a blocking thread).
    pub reader: Box<dyn Read + Send>,
    /// Size in bytes.
    pub size: u64,
    /// Where it is, for messages and the rejection log.
    pub location: String,
}

/// A storage root and a prefix inside it.
#[derive(Clone, Debug)]
pub struct Storage {
    store: Arc<dyn ObjectStore>,
    prefix: ObjectPath,
    display: String,
    /// How the root itself is shown (children keep it).
    root: Arc<str>,
    local_root: Option<std::path::PathBuf>,
}

impl Storage {
    /// Opens a storage root: a local directory (created when missing) or a
    /// `file:///` URL.
    pub fn open(url: &str) -> Result<Storage, StorageError> {
        let dir = if let Some(rest) = url.strip_prefix("file://") {
            std::path::PathBuf::from(rest)
        } else if url.contains("://") {
            return Err(StorageError::BadUrl(url.to_owned()));
        } else {
            std::path::PathBuf::from(url)
        };
        std::fs::create_dir_all(&dir)
            .map_err(|e| StorageError::Io(dir.display().to_string(), e))?;
        let root = std::fs::canonicalize(&dir)
            .map_err(|e| StorageError::Io(dir.display().to_string(), e))?;
        let fs =
            LocalFileSystem::new_with_prefix(&root).map_err(|source| StorageError::Backend {
                location: root.display().to_string(),
                source,
            })?;
        Ok(Storage {
            store: Arc::new(fs),
            prefix: ObjectPath::default(),
            display: root.display().to_string(),
            root: root.display().to_string().into(),
            local_root: Some(root),
        })
    }

    /// The same storage, rooted at `sub` below the current prefix. `sub` is a
    /// `/`-separated relative path; empty, `.` and `..` segments are refused.
    pub fn child(&self, sub: &str) -> Result<Storage, StorageError> {
        let mut prefix = self.prefix.clone();
        for part in sub.split('/').filter(|p| !p.is_empty()) {
            if part == "." || part == ".." {
                return Err(StorageError::BadUrl(sub.to_owned()));
            }
            prefix = prefix.clone().join(part);
        }
        Ok(Storage {
            store: self.store.clone(),
            display: format!("{}/{}", self.display, sub.trim_matches('/')),
            root: self.root.clone(),
            local_root: self.local_root.as_ref().map(|r| r.join(sub)),
            prefix,
        })
    }

    /// Where this storage points, for people.
    pub fn location(&self) -> &str {
        &self.display
    }

    /// The local directory behind this storage, when it is one.
    pub fn local_dir(&self) -> Option<&std::path::Path> {
        self.local_root.as_deref()
    }

    /// The object path of `name`, a `/`-separated path below this storage
    /// (empty, `.` and `..` segments are dropped: never above the prefix).
    fn path(&self, name: &str) -> ObjectPath {
        name.split('/')
            .filter(|p| !p.is_empty() && *p != "." && *p != "..")
            .fold(self.prefix.clone(), |path, part| path.join(part))
    }

    fn describe(&self, name: &str) -> String {
        format!("{}/{}", self.display, name)
    }

    /// Starts writing `name` (a `/`-separated path below this storage).
    /// Nothing appears under that name until [`Upload::commit`]; an upload
    /// dropped before it leaves nothing behind.
    pub fn create(&self, name: &str) -> Result<Upload, StorageError> {
        let Some(dir) = self.local_root.as_ref() else {
            return Err(StorageError::BadUrl(self.display.clone()));
        };
        let target = name.split('/').filter(|p| !p.is_empty()).try_fold(
            dir.clone(),
            |path, part| match part {
                "." | ".." => Err(StorageError::BadUrl(name.to_owned())),
                _ => Ok(path.join(part)),
            },
        )?;
        let folder = target
            .parent()
            .map(std::path::Path::to_path_buf)
            .unwrap_or_else(|| dir.clone());
        std::fs::create_dir_all(&folder)
            .map_err(|e| StorageError::Io(folder.display().to_string(), e))?;
        let file_name = target
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let temp = folder.join(format!(".{file_name}.{}.partial", uuid::Uuid::new_v4()));
        let file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&temp)
            .map_err(|e| StorageError::Io(temp.display().to_string(), e))?;
        Ok(Upload {
            file: Some(std::io::BufWriter::with_capacity(256 * 1024, file)),
            temp,
            target,
            folder,
        })
    }

    /// Names of the objects directly under `folder` (not in sub-folders).
    pub async fn list(&self, folder: &str) -> Result<Vec<String>, StorageError> {
        let prefix = self.path(folder);
        let listing = self
            .store
            .list_with_delimiter(Some(&prefix))
            .await
            .map_err(|source| StorageError::Backend {
                location: self.describe(folder),
                source,
            })?;
        Ok(listing
            .objects
            .into_iter()
            .filter_map(|o| o.location.filename().map(str::to_owned))
            .collect())
    }

    /// Reads a small object whole (at most `limit` bytes, else an error).
    pub async fn read_small(&self, name: &str, limit: u64) -> Result<Vec<u8>, StorageError> {
        let object = self.open_read(name).await?;
        if object.size > limit {
            return Err(StorageError::TooLarge {
                location: object.location,
                limit,
            });
        }
        let location = object.location.clone();
        tokio::task::spawn_blocking(move || {
            let mut out = Vec::with_capacity(object.size as usize);
            object
                .reader
                .take(limit + 1)
                .read_to_end(&mut out)
                .map(|_| out)
        })
        .await
        .map_err(|e| StorageError::Io(location.clone(), std::io::Error::other(e)))?
        .map_err(|e| StorageError::Io(location, e))
    }

    /// Opens `name` for streaming. Local files are read directly; other
    /// stores through a synchronous bridge, so the reader must be used from a
    /// blocking thread.
    pub async fn open_read(&self, name: &str) -> Result<Object, StorageError> {
        let location = self.describe(name);
        let result = match self.store.get(&self.path(name)).await {
            Ok(r) => r,
            Err(object_store::Error::NotFound { .. }) => {
                return Err(StorageError::NotFound {
                    root: self.root.to_string(),
                    path: self.path(name).to_string(),
                });
            }
            Err(source) => return Err(StorageError::Backend { location, source }),
        };
        let size = result.meta.size;
        let reader: Box<dyn Read + Send> = match result.payload {
            GetResultPayload::File(file, _) => Box::new(file),
            GetResultPayload::Stream(stream) => {
                let stream = stream.map_err(std::io::Error::other);
                Box::new(tokio_util::io::SyncIoBridge::new(
                    tokio_util::io::StreamReader::new(stream),
                ))
            }
        };
        Ok(Object {
            reader,
            size,
            location,
        })
    }
}
