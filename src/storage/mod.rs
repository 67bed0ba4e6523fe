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
mod resend;

use futures::TryStreamExt;
use object_store::local::LocalFileSystem;
use object_store::path::Path as ObjectPath;
use object_store::{
    GetOptions, GetResultPayload, ObjectStore, ObjectStoreExt, PutMode, PutOptions, PutPayload,
    WriteMultipart,
};
use std::io::Read;
use std::sync::Arc;

/// Size of the blocks of a blob upload: 50,000 blocks (Azure's limit) of
/// 8 MiB allow a 390 GiB backup; two in flight bound the memory.
const PART_BYTES: usize = 8 << 20;
/// Blocks uploaded at once.
const PARTS_IN_FLIGHT: usize = 2;

/// `EIO` on Linux and macOS alike: a failing disk (std has no stable kind).
const EIO: i32 = 5;

/// Errors of the storage layer.
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    /// The storage URL is not one hrmig understands.
    #[error(
        "unsupported storage URL {0:?}: use a directory, file:///PATH or az://CONTAINER[/PREFIX]"
    )]
    BadUrl(String),
    /// No object (file) at that location.
    #[error("{root}/{path} does not exist")]
    NotFound {
        /// The storage root, as configured.
        root: String,
        /// The object's path below the root: what an API client may see.
        path: String,
    },
    /// The storage refused or failed. (`error` is not a `source`: the
    /// message already says everything, once.)
    #[error("{location}: {}", summary(error))]
    Backend {
        /// Where.
        location: String,
        /// Why.
        error: object_store::Error,
    },
    /// An object bigger than the caller accepts.
    #[error("{location} is larger than {limit} bytes")]
    TooLarge {
        /// Where.
        location: String,
        /// The limit.
        limit: u64,
    },
    /// An `az://` storage whose account or credentials are missing or
    /// malformed in the environment.
    #[error("{url}: {why}")]
    Setup {
        /// The storage URL.
        url: String,
        /// What is missing or wrong (never a secret).
        why: String,
    },
    /// A local directory could not be created.
    #[error("{0}: {1}")]
    Io(String, std::io::Error),
    /// A write would replace an existing object.
    #[error("{0} already exists; it is never overwritten")]
    Exists(String),
    /// The object changed between two reads of one operation.
    #[error("{0} changed while it was being read; run the operation again")]
    Changed(String),
}

/// An `object_store` error in one line: each layer of its chain repeats
/// the ones below, so this keeps the request ("Error performing GET … in
/// 1.2s, after 4 retries") and the innermost cause.
fn summary(e: &object_store::Error) -> String {
    let mut request = None;
    let mut innermost = e.to_string();
    let mut next: Option<&dyn std::error::Error> = Some(e);
    while let Some(layer) = next {
        let text = layer.to_string();
        if request.is_none()
            && let Some(start) = text.rfind("Error performing ")
        {
            let op = &text[start..];
            let op = op.split(" - ").next().unwrap_or(op);
            let op = op.split(", max_retries").next().unwrap_or(op);
            request = Some(op.trim().to_owned());
        }
        innermost = text;
        next = layer.source();
    }
    // A service error's XML body: its code and the first line of its message.
    let tag = |name: &str| {
        let open = format!("<{name}>");
        let start = innermost.find(&open)? + open.len();
        let len = innermost[start..].find(['<', '\n'])?;
        Some(innermost[start..start + len].trim().to_owned())
    };
    if let (Some(code), Some(message)) = (tag("Code"), tag("Message")) {
        let status = innermost
            .split("status code: ")
            .nth(1)
            .and_then(|s| s.split(':').next())
            .unwrap_or("error");
        innermost = format!("{status}: {code}: {message}");
    }
    match request {
        Some(r) if !innermost.contains(&r) => format!("{r}: {innermost}"),
        _ => innermost,
    }
}

impl StorageError {
    /// Whether the storage service (not the request) failed: unreachable,
    /// timing out, or answering with an error. Callers report it as
    /// "storage unavailable" and change nothing.
    ///
    /// A local disk that is full, read-only or failing counts too: the
    /// request was fine and may succeed later.
    pub fn is_service(&self) -> bool {
        use std::io::ErrorKind;
        match self {
            StorageError::Backend { .. } => true,
            StorageError::Io(_, e) => {
                matches!(
                    e.kind(),
                    ErrorKind::StorageFull
                        | ErrorKind::ReadOnlyFilesystem
                        | ErrorKind::QuotaExceeded
                ) || e.raw_os_error() == Some(EIO)
            }
            _ => false,
        }
    }

    /// The storage error carried inside an I/O error (a failed read or
    /// write of a streamed object), if there is one.
    pub fn from_io(e: std::io::Error) -> Result<StorageError, std::io::Error> {
        e.downcast::<StorageError>()
    }
}

/// An object being written. Write it from a blocking thread; nothing
/// appears under its name until [`Upload::commit`], and an upload dropped
/// before that leaves nothing behind.
pub struct Upload(Writing);

enum Writing {
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
async fn create_new(
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
            return Ok(Upload(Writing::Remote {
                store: self.store.clone(),
                path: self.checked_path(name)?,
                location: self.describe(name),
                runtime: tokio::runtime::Handle::current(),
                parts: None,
            }));
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
        Ok(Upload(Writing::Local {
            file: Some(std::io::BufWriter::with_capacity(256 * 1024, file)),
            temp,
            target,
            folder,
        }))
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
            Error::from_raw_os_error(EIO),
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
