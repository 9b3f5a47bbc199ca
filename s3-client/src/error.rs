//! What a client call fails with.

use std::fmt;

use pool_core::{ErrorClass, TaskError};

use crate::classify::classify;
use crate::redact::redact;

/// The operation a [`ClientError`] or pool event is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Operation {
    /// A single-request upload.
    Put,
    /// A multipart upload of a large body.
    PutMultipart,
    /// One part or the completion of a multipart upload.
    UploadPart,
    /// A whole-object or range download.
    Get,
    /// Object metadata.
    Head,
    /// One delete.
    Delete,
    /// Deletes of many paths.
    DeleteMany,
    /// A listing.
    List,
    /// A server-side copy.
    Copy,
    /// A download to a file or writer (ranged GETs).
    Download,
    /// An upload from a file, reader or stream (parts).
    Upload,
}

impl Operation {
    /// A short, stable name (`"put"`, `"get"`, …), also the `op` label in task metadata.
    pub fn as_str(self) -> &'static str {
        match self {
            Operation::Put => "put",
            Operation::PutMultipart => "put_multipart",
            Operation::UploadPart => "upload_part",
            Operation::Get => "get",
            Operation::Head => "head",
            Operation::Delete => "delete",
            Operation::DeleteMany => "delete_many",
            Operation::List => "list",
            Operation::Copy => "copy",
            Operation::Download => "download",
            Operation::Upload => "upload",
        }
    }
}

impl fmt::Display for Operation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A failed [`S3Client`](crate::S3Client) call: which operation, on which path, and why
/// (the store's error after the pool's retries, a timeout, a stop, a panic…).
///
/// Its `Display` and `Debug` show the store's error as text with any credential a URL in it
/// may carry masked (a store built outside this crate may have them in its endpoint); the
/// error itself is [`store_error`](Self::store_error).
pub struct ClientError {
    operation: Operation,
    path: String,
    source: TaskError<object_store::Error>,
}

impl fmt::Display for ClientError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let reason = self.source.to_string();
        write!(
            f,
            "{} `{}` failed: {}",
            self.operation,
            self.path,
            redact(&reason)
        )
    }
}

impl std::error::Error for ClientError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.source)
    }
}

impl fmt::Debug for ClientError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The source's own `Debug` would show a request URL field by field (user name and
        // password apart), where no text scan finds them: show its redacted chain instead.
        let mut chain = self.source.to_string();
        let mut next = std::error::Error::source(&self.source);
        while let Some(cause) = next {
            chain.push_str(": ");
            chain.push_str(&cause.to_string());
            next = cause.source();
        }
        f.debug_struct("ClientError")
            .field("operation", &self.operation)
            .field("path", &self.path)
            .field("kind", &self.source.kind())
            .field("source", &redact(&chain))
            .finish()
    }
}

impl ClientError {
    pub(crate) fn new(
        operation: Operation,
        path: impl Into<String>,
        source: TaskError<object_store::Error>,
    ) -> Self {
        ClientError {
            operation,
            path: path.into(),
            source,
        }
    }

    /// The operation that failed.
    pub fn operation(&self) -> Operation {
        self.operation
    }

    /// The object path (or prefix) of the call.
    pub fn path(&self) -> &str {
        &self.path
    }

    /// How the call ended, as the pool reports it.
    pub fn task_error(&self) -> &TaskError<object_store::Error> {
        &self.source
    }

    /// The store's own error, if the last attempt returned one.
    pub fn store_error(&self) -> Option<&object_store::Error> {
        self.source.task_error()
    }

    /// Consumes the error and returns the store's own error, if any.
    pub fn into_store_error(self) -> Option<object_store::Error> {
        self.source.into_task_error()
    }

    /// The integrity check that failed, if the bytes that came back were wrong (a short
    /// body, a checksum mismatch).
    pub fn integrity(&self) -> Option<&crate::IntegrityError> {
        match self.store_error()? {
            object_store::Error::Generic { source, .. } => source.downcast_ref(),
            _ => None,
        }
    }

    /// How the store's error classified, if there was one.
    pub fn class(&self) -> Option<ErrorClass> {
        self.store_error().map(classify)
    }

    /// True if the object does not exist.
    pub fn is_not_found(&self) -> bool {
        matches!(
            self.store_error(),
            Some(object_store::Error::NotFound { .. })
        )
    }
}

/// Why a pool refused or lost a call, as an error a [`PooledStore`](crate::PooledStore)
/// can return inside `object_store::Error::Generic`. [`classify`](crate::classify) maps a
/// timeout to retryable and the rest to fatal.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct PoolFailure {
    kind: &'static str,
    message: String,
}

impl PoolFailure {
    /// The pool's name for it: `"timed_out"`, `"stopped"`, `"cancelled"`, `"panicked"`,
    /// `"retry_budget_exhausted"`.
    pub fn kind(&self) -> &'static str {
        self.kind
    }

    pub(crate) fn class(&self) -> ErrorClass {
        match self.kind {
            "timed_out" | "retry_budget_exhausted" => ErrorClass::Retryable,
            _ => ErrorClass::Fatal,
        }
    }
}

/// Turns a pool result back into an `object_store` error: the store's own error when the
/// last attempt returned one, otherwise a [`PoolFailure`].
pub(crate) fn into_store_error(error: TaskError<object_store::Error>) -> object_store::Error {
    let kind = error.kind();
    let message = error.to_string();
    match error.into_task_error() {
        Some(store_error) => store_error,
        None => object_store::Error::Generic {
            store: "PooledStore",
            source: Box::new(PoolFailure { kind, message }),
        },
    }
}
