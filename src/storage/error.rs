//! The storage layer's errors, and which of them mean the storage cannot
//! take writes for now.

/// `EIO` on Linux and macOS alike: a failing disk (std has no stable kind).
pub(super) const EIO: i32 = 5;

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
