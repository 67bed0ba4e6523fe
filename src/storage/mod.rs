//! Files: the historic CSVs and backups, behind one interface.
//!
//! A [`Storage`] is a root (a local directory, or an Azure Blob container
//! through `object_store`) plus a prefix inside it. Names passed in are
//! relative object paths built by the operations from dictionary names;
//! `object_store`'s `Path` refuses `..` segments, so nothing outside the
//! root is reachable through it.
//!
//! Writes never show a partial object and never replace one: a local file is
//! written under a hidden temporary name and hard-linked to its name (which
//! fails if the name exists); a blob is uploaded as uncommitted blocks that
//! only become the blob when the block list is committed, after checking
//! that the name is free, and small objects are created with
//! `If-None-Match: *`.

pub mod azure;
mod error;
mod resend;
mod upload;

pub use error::StorageError;
pub use upload::Upload;
use upload::{BlobBlocks, LocalFile, Writing, create_new};

use futures::TryStreamExt;
use object_store::local::LocalFileSystem;
use object_store::path::Path as ObjectPath;
use object_store::{GetOptions, GetResultPayload, ObjectStore, ObjectStoreExt};
use std::io::Read;
use std::sync::Arc;

/// A readable, streamed object.
pub struct Object {
    /// The bytes, read synchronously (call from a blocking thread).
    pub reader: Box<dyn Read + Send>,
    /// Size in bytes.
    pub size: u64,
    /// Where it is, for messages and the rejection log.
    pub location: String,
    /// The object's version (ETag), when the storage gives one.
    pub version: Option<String>,
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
    /// Opens a storage root: a local directory (created when missing), a
    /// `file:///` URL, or `az://CONTAINER[/PREFIX]` (an Azure Blob
    /// container, which must exist; credentials come from the environment,
    /// see [`azure::open`]).
    pub fn open(url: &str) -> Result<Storage, StorageError> {
        if let Some(rest) = url.strip_prefix("az://") {
            return Storage::open_azure(url, rest);
        }
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
                error: source,
            })?;
        Ok(Storage {
            store: Arc::new(fs),
            prefix: ObjectPath::default(),
            display: root.display().to_string(),
            root: root.display().to_string().into(),
            local_root: Some(root),
        })
    }

    /// Opens a storage root to read from: like [`Storage::open`], but a
    /// local directory must exist (a mistyped `--from` is an error, not a
    /// new empty folder).
    pub fn open_existing(url: &str) -> Result<Storage, StorageError> {
        let local = match url.strip_prefix("file://") {
            Some(rest) => Some(rest),
            None if !url.contains("://") => Some(url),
            None => None,
        };
        if let Some(dir) = local
            && !std::path::Path::new(dir).is_dir()
        {
            return Err(StorageError::Io(
                dir.to_owned(),
                std::io::Error::new(
                    std::io::ErrorKind::NotFound,
                    "no such folder (give the folder that holds the CSV files)",
                ),
            ));
        }
        Storage::open(url)
    }

    fn open_azure(url: &str, rest: &str) -> Result<Storage, StorageError> {
        let (container, prefix) = rest.split_once('/').unwrap_or((rest, ""));
        if !azure::valid_container(container) {
            return Err(StorageError::BadUrl(format!(
                "{url}: {container:?} is not a container name (3-63 lowercase letters, \
                 digits and single hyphens)"
            )));
        }
        if prefix.split('/').any(|p| p == "." || p == "..") {
            return Err(StorageError::BadUrl(url.to_owned()));
        }
        let store = azure::open(container)?;
        let root = Storage {
            store: Arc::new(store),
            prefix: ObjectPath::default(),
            display: format!("az://{container}"),
            root: format!("az://{container}").into(),
            local_root: None,
        };
        if prefix.trim_matches('/').is_empty() {
            Ok(root)
        } else {
            root.child(prefix)
        }
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

    /// The path below this storage of blob `blob` in Azure container
    /// `container` (as a storage event names it); `None` when the blob is
    /// not below this storage, or this storage is not a container.
    pub fn blob_below_root(&self, container: &str, blob: &str) -> Option<String> {
        if self.root.strip_prefix("az://")? != container {
            return None;
        }
        let prefix = self.prefix.as_ref();
        let rest = match prefix.is_empty() {
            true => blob,
            false => blob.strip_prefix(prefix)?.strip_prefix('/')?,
        };
        (!rest.is_empty()).then(|| rest.to_owned())
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
    /// dropped before it leaves nothing behind. Call within the runtime;
    /// write from a blocking thread.
    pub fn create(&self, name: &str) -> Result<Upload, StorageError> {
        let Some(dir) = self.local_root.as_ref() else {
            return Ok(Upload(Writing::Remote(BlobBlocks {
                store: self.store.clone(),
                path: self.checked_path(name)?,
                location: self.describe(name),
                runtime: tokio::runtime::Handle::current(),
                parts: None,
            })));
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
        Ok(Upload(Writing::Local(LocalFile {
            file: Some(std::io::BufWriter::with_capacity(256 * 1024, file)),
            temp,
            target,
            folder,
        })))
    }

    /// Writes a small object whole under `name`, which must not exist yet.
    pub async fn put_new(&self, name: &str, bytes: Vec<u8>) -> Result<(), StorageError> {
        if self.local_root.is_none() {
            let path = self.checked_path(name)?;
            return create_new(
                self.store.as_ref(),
                &path,
                &self.describe(name),
                bytes.into(),
            )
            .await;
        }
        let upload = self.create(name)?;
        let location = self.describe(name);
        tokio::task::spawn_blocking(move || {
            let mut upload = upload;
            std::io::Write::write_all(&mut upload, &bytes).map_err(|e| {
                StorageError::from_io(e).unwrap_or_else(|e| StorageError::Io(location.clone(), e))
            })?;
            upload.commit()
        })
        .await
        .map_err(|e| StorageError::Io(self.describe(name), std::io::Error::other(e)))?
    }

    /// Removes `name`, an object this process has just written (a backup
    /// whose manifest could not follow it). A missing object is no error.
    pub async fn remove(&self, name: &str) -> Result<(), StorageError> {
        let path = self.checked_path(name)?;
        match self.store.delete(&path).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(error) => Err(StorageError::Backend {
                location: self.describe(name),
                error,
            }),
        }
    }

    /// The object path of `name`, refusing `.` and `..` segments.
    fn checked_path(&self, name: &str) -> Result<ObjectPath, StorageError> {
        if name.split('/').any(|p| p == "." || p == "..") {
            return Err(StorageError::BadUrl(name.to_owned()));
        }
        Ok(self.path(name))
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
                error: source,
            })?;
        Ok(listing
            .objects
            .into_iter()
            .filter_map(|o| o.location.filename().map(str::to_owned))
            .collect())
    }

    /// Checks that `name` exists, without reading it (one HEAD request for
    /// a blob); returns its size.
    pub async fn size(&self, name: &str) -> Result<u64, StorageError> {
        match self.store.head(&self.path(name)).await {
            Ok(meta) => Ok(meta.size),
            Err(object_store::Error::NotFound { .. }) => Err(StorageError::NotFound {
                root: self.root.to_string(),
                path: self.path(name).to_string(),
            }),
            Err(error) => Err(StorageError::Backend {
                location: self.describe(name),
                error,
            }),
        }
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
        .map_err(|e| StorageError::from_io(e).unwrap_or_else(|e| StorageError::Io(location, e)))
    }

    /// Opens `name` for streaming. Local files are read directly; blobs
    /// through a synchronous bridge, so the reader must be used from a
    /// blocking thread.
    pub async fn open_read(&self, name: &str) -> Result<Object, StorageError> {
        self.open_version(name, None).await
    }

    /// Opens `name` as it was when `version` (an [`Object::version`]) was
    /// read: an object replaced since is an error ([`StorageError::Changed`]),
    /// so two reads of one operation (hash, then parse) see the same bytes.
    pub async fn open_same(
        &self,
        name: &str,
        version: Option<String>,
    ) -> Result<Object, StorageError> {
        self.open_version(name, version).await
    }

    async fn open_version(
        &self,
        name: &str,
        version: Option<String>,
    ) -> Result<Object, StorageError> {
        let location = self.describe(name);
        let options = GetOptions {
            if_match: version,
            ..GetOptions::default()
        };
        let result = match self.store.get_opts(&self.path(name), options).await {
            Ok(r) => r,
            Err(object_store::Error::NotFound { .. }) => {
                return Err(StorageError::NotFound {
                    root: self.root.to_string(),
                    path: self.path(name).to_string(),
                });
            }
            Err(object_store::Error::Precondition { .. }) => {
                return Err(StorageError::Changed(location));
            }
            Err(source) => {
                return Err(StorageError::Backend {
                    location,
                    error: source,
                });
            }
        };
        let size = result.meta.size;
        let version = result.meta.e_tag.clone();
        let reader: Box<dyn Read + Send> = match result.payload {
            GetResultPayload::File(file, _) => Box::new(file),
            GetResultPayload::Stream(stream) => {
                let failed = location.clone();
                let stream = stream.map_err(move |source| {
                    std::io::Error::other(StorageError::Backend {
                        location: failed.clone(),
                        error: source,
                    })
                });
                Box::new(tokio_util::io::SyncIoBridge::new(
                    tokio_util::io::StreamReader::new(stream),
                ))
            }
        };
        Ok(Object {
            reader,
            size,
            location,
            version,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[tokio::test]
    async fn a_file_replaced_between_two_reads_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let storage = Storage::open(dir.path().to_str().unwrap()).unwrap();
        std::fs::write(dir.path().join("a.csv"), "1,Sales\n").unwrap();
        let first = storage.open_read("a.csv").await.unwrap();
        let version = first.version.clone();
        assert!(version.is_some());
        // Unchanged: the same version opens.
        storage.open_same("a.csv", version.clone()).await.unwrap();
        std::fs::write(dir.path().join("a.csv"), "1,Sales\n2,Legal\n").unwrap();
        match storage.open_same("a.csv", version).await {
            Err(StorageError::Changed(location)) => assert!(location.ends_with("/a.csv")),
            other => panic!("expected Changed, got {:?}", other.map(|o| o.location)),
        }
    }

    #[tokio::test]
    async fn writes_never_replace_an_object() {
        let dir = tempfile::tempdir().unwrap();
        let storage = Storage::open(dir.path().to_str().unwrap()).unwrap();
        storage
            .put_new("b/m.json", b"first".to_vec())
            .await
            .unwrap();
        let again = storage.put_new("b/m.json", b"second".to_vec()).await;
        assert!(matches!(again, Err(StorageError::Exists(_))), "{again:?}");
        let mut upload = storage.create("b/m.json").unwrap();
        upload.write_all(b"third").unwrap();
        assert!(matches!(upload.commit(), Err(StorageError::Exists(_))));
        assert_eq!(
            std::fs::read(dir.path().join("b/m.json")).unwrap(),
            b"first"
        );
        // Nothing left behind by the refused writes.
        assert_eq!(std::fs::read_dir(dir.path().join("b")).unwrap().count(), 1);
    }

    #[test]
    fn full_read_only_and_failing_disks_are_the_storage_failing() {
        use std::io::{Error, ErrorKind};
        let io = |e| StorageError::Io("backups/x".into(), e);
        for e in [
            Error::from(ErrorKind::StorageFull),
            Error::from(ErrorKind::ReadOnlyFilesystem),
            Error::from(ErrorKind::QuotaExceeded),
            Error::from_raw_os_error(error::EIO),
        ] {
            assert!(io(e).is_service());
        }
        assert!(!io(Error::from(ErrorKind::PermissionDenied)).is_service());
        assert!(!StorageError::Exists("x".into()).is_service());
    }

    #[test]
    fn service_errors_are_summed_up_in_one_line() {
        let e = StorageError::Backend {
            location: "az://hr/x".into(),
            error: object_store::Error::NotImplemented {
                operation: "list".into(),
                implementer: "test".into(),
            },
        };
        let text = e.to_string();
        assert!(text.starts_with("az://hr/x: "), "{text}");
        assert!(!text.contains('\n'), "{text}");
        assert!(e.is_service());
        let io = std::io::Error::other(e);
        assert!(StorageError::from_io(io).is_ok_and(|e| e.is_service()));
        assert!(StorageError::from_io(std::io::Error::other("plain")).is_err());
    }

    #[test]
    fn azure_urls_are_checked_before_any_request() {
        for (url, expect) in [
            ("az://", "is not a container name"),
            ("az://UPPER/x", "is not a container name"),
            ("az://ok-name/../x", "../x"),
            ("az://ok-name/a/./b", "a/./b"),
            ("s3://bucket", "unsupported storage URL"),
        ] {
            let e = Storage::open(url).unwrap_err().to_string();
            assert!(e.contains(expect), "{url}: {e}");
        }
    }
}
