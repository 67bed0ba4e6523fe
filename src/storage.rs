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
    /// A local directory could not be created.
    #[error("{0}: {1}")]
    Io(String, std::io::Error),
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

    fn path(&self, name: &str) -> ObjectPath {
        self.prefix.clone().join(name)
    }

    fn describe(&self, name: &str) -> String {
        format!("{}/{}", self.display, name)
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
