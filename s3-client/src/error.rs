//! What a client call fails with.

use std::fmt;

use pool_core::{ErrorClass, LastFailure, Retryable, TaskError};

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

impl Operation {
    const ALL: [Operation; 11] = [
        Operation::Put,
        Operation::PutMultipart,
        Operation::UploadPart,
        Operation::Get,
        Operation::Head,
        Operation::Delete,
        Operation::DeleteMany,
        Operation::List,
        Operation::Copy,
        Operation::Download,
        Operation::Upload,
    ];

    /// The operation whose [`as_str`](Self::as_str) is `label`, in any case.
    #[cfg_attr(not(feature = "protection"), allow(dead_code))]
    pub(crate) fn from_label(label: &str) -> Option<Self> {
        Self::ALL
            .into_iter()
            .find(|operation| operation.as_str().eq_ignore_ascii_case(label))
    }
}

impl fmt::Display for Operation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A failed [`S3Client`](crate::S3Client) call: which operation, on which path, how the
/// call ended (the pool's [`TaskError`]: out of retries, timed out, stopped, …) and the
/// store's error behind it.
///
/// # Display and source
/// It prints what happened to the call — `put \`photos/a.jpg\`: task failed after 4
/// attempt(s)` — and its [`source`](std::error::Error::source) is the store's error (then
/// that error's own causes), so a report that walks the chain (anyhow's `{:#}`, eyre,
/// `tracing`) prints each cause once:
/// `put \`photos/a.jpg\`: task failed after 4 attempt(s): Generic S3 error: …`. Every
/// message of the chain has any credential a URL in it may carry masked (a store built
/// outside this crate may have them in its endpoint); the store's error itself, unmasked, is
/// [`store_error`](Self::store_error).
///
/// # Retrying it
/// The error carries its retry classification ([`Retryable`]): the store's error as
/// [`classify`](crate::classify) sees it (503 SlowDown → throttled, 5xx → retryable,
/// 404 → fatal, …), a timeout or an exhausted retry budget retryable, a stop, a
/// cancellation, a panic or a rejection fatal. So a
/// [task-manager](https://docs.rs/task-manager) run, or any `pool_core` pool, retries
/// client calls without a classifier of its own.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// use s3_client::{ErrorClass, Path, Retryable, S3Client};
/// let client = S3Client::from_url("memory://").unwrap();
/// let error = client.get(&Path::from("missing")).await.unwrap_err();
/// assert!(error.is_not_found());
/// assert_eq!(error.error_class(), ErrorClass::Fatal);
/// assert_eq!(error.to_string(), "get `missing`: task failed after 1 attempt(s)");
/// let cause = std::error::Error::source(&error).unwrap();
/// assert!(cause.to_string().contains("missing"), "{cause}");
/// # }
/// ```
///
/// Not `Clone`: it owns the store's `object_store::Error`, which is not `Clone` and which
/// [`into_store_error`](Self::into_store_error) hands back whole. Share one behind an `Arc`.
pub struct ClientError {
    operation: Operation,
    path: String,
    class: ErrorClass,
    source: TaskError<object_store::Error>,
    /// The store error's chain, each message masked: what `source()` hands out.
    causes: Option<Box<Cause>>,
}

impl fmt::Display for ClientError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ending = self.source.to_string();
        write!(f, "{} `{}`: {}", self.operation, self.path, redact(&ending))
    }
}

impl std::error::Error for ClientError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.causes.as_deref().map(|cause| cause as _)
    }
}

impl fmt::Debug for ClientError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The source's own `Debug` would show a request URL field by field (user name and
        // password apart), where no text scan finds them: show the masked chain instead.
        let mut chain = redact(&self.source.to_string()).into_owned();
        let mut next = self.causes.as_deref();
        while let Some(cause) = next {
            chain.push_str(": ");
            chain.push_str(&cause.message);
            next = cause.source.as_deref();
        }
        f.debug_struct("ClientError")
            .field("operation", &self.operation)
            .field("path", &self.path)
            .field("kind", &self.source.kind())
            .field("class", &self.class)
            .field("source", &chain)
            .finish()
    }
}

impl ClientError {
    pub(crate) fn new(
        operation: Operation,
        path: impl Into<String>,
        source: TaskError<object_store::Error>,
    ) -> Self {
        let causes = Cause::chain(std::error::Error::source(&source));
        ClientError {
            operation,
            path: path.into(),
            class: ending_class(&source),
            source,
            causes,
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

    /// Whether retrying the call may help, and whether the backend asked to slow down: see
    /// [the type's docs](Self#retrying-it). The same as [`Retryable::error_class`].
    pub fn error_class(&self) -> ErrorClass {
        self.class
    }

    /// How the store's error classified, if there was one.
    #[deprecated(
        since = "0.1.0",
        note = "use `error_class()`, which also classifies timeouts, stops and rejections"
    )]
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

impl Retryable for ClientError {
    fn error_class(&self) -> ErrorClass {
        self.class
    }
}

/// How a call's ending classifies for a retry layer above it.
fn ending_class(ending: &TaskError<object_store::Error>) -> ErrorClass {
    match ending {
        TaskError::Failed { error, .. } => classify(error),
        TaskError::RetryBudgetExhausted {
            last: LastFailure::Error(error),
            ..
        }
        | TaskError::RetrySkipped {
            last: LastFailure::Error(error),
            ..
        } => classify(error),
        TaskError::RetryBudgetExhausted {
            last: LastFailure::TimedOut,
            ..
        }
        | TaskError::RetrySkipped {
            last: LastFailure::TimedOut,
            ..
        }
        | TaskError::TimedOut { .. } => ErrorClass::Retryable,
        // Stopped, cancelled, panicked, rejected, and endings added later: a retry layer
        // above cannot help.
        _ => ErrorClass::Fatal,
    }
}

/// One masked message of an error chain, and the rest of the chain.
///
/// `ClientError::source()` hands these out instead of the store's error itself, whose
/// messages (and those of its HTTP client) may quote a request URL with credentials in it.
#[derive(Clone)]
struct Cause {
    message: String,
    source: Option<Box<Cause>>,
}

impl Cause {
    /// The masked chain from `first` down. A message that ends with the next one's (as
    /// object_store's `Generic` error prints its source) keeps only its own part, so that
    /// the chain printed whole says each thing once.
    fn chain(first: Option<&(dyn std::error::Error + 'static)>) -> Option<Box<Cause>> {
        let mut messages = Vec::new();
        let mut next = first;
        while let Some(error) = next {
            messages.push(redact(&error.to_string()).into_owned());
            next = error.source();
        }
        let messages = without_repeats(messages);
        messages.into_iter().rev().fold(None, |source, message| {
            Some(Box::new(Cause { message, source }))
        })
    }
}

/// A chain of messages in which none repeats the next: a message ending with the next one
/// loses that ending (and the `: ` before it); a message that holds the next one elsewhere
/// absorbs it (the next is dropped).
fn without_repeats(messages: Vec<String>) -> Vec<String> {
    let mut kept: Vec<String> = Vec::with_capacity(messages.len());
    for message in messages {
        if message.is_empty() {
            continue;
        }
        if let Some(previous) = kept.last_mut() {
            if let Some(own) = previous.strip_suffix(message.as_str()) {
                let own = own.trim_end_matches([' ', ':', ',', '(', '-']);
                if own.is_empty() {
                    // The same message twice.
                    continue;
                }
                *previous = own.to_owned();
            } else if previous.contains(message.as_str()) {
                continue;
            }
        }
        kept.push(message);
    }
    kept
}

impl fmt::Display for Cause {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl fmt::Debug for Cause {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.message, f)
    }
}

impl std::error::Error for Cause {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.source.as_deref().map(|cause| cause as _)
    }
}

/// Why a pool refused or lost a call, as an error a [`PooledStore`](crate::PooledStore)
/// can return inside `object_store::Error::Generic`. [`classify`](crate::classify) gives it
/// the class [`ClientError`] gives the same ending: a timeout, and a retry declined after a
/// retryable error, are retryable; the rest fatal.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct PoolFailure {
    kind: &'static str,
    class: ErrorClass,
    message: String,
}

impl PoolFailure {
    /// The pool's name for it: `"timed_out"`, `"stopped"`, `"cancelled"`, `"panicked"`,
    /// `"retry_budget_exhausted"`, `"retry_skipped"`, `"deadline_exceeded"`.
    pub fn kind(&self) -> &'static str {
        self.kind
    }

    pub(crate) fn class(&self) -> ErrorClass {
        self.class
    }
}

/// Turns a pool result back into an `object_store` error: the store's own error when the
/// last attempt returned one, otherwise a [`PoolFailure`] — also when a retry was declined
/// (by the retry budget, the pressure rule or the deadline), so that the error says which and
/// why.
pub(crate) fn into_store_error(error: TaskError<object_store::Error>) -> object_store::Error {
    let kind = error.kind();
    let class = ending_class(&error);
    let mut message = error.to_string();
    if matches!(
        error,
        TaskError::RetryBudgetExhausted { .. }
            | TaskError::RetrySkipped { .. }
            | TaskError::DeadlineExceeded { .. }
    ) {
        if let Some(store_error) = error.task_error() {
            message = format!("{message}: {}", redact(&store_error.to_string()));
        }
        return object_store::Error::Generic {
            store: "PooledStore",
            source: Box::new(PoolFailure {
                kind,
                class,
                message,
            }),
        };
    }
    match error.into_task_error() {
        Some(store_error) => store_error,
        None => object_store::Error::Generic {
            store: "PooledStore",
            source: Box::new(PoolFailure {
                kind,
                class,
                message,
            }),
        },
    }
}

#[cfg(test)]
mod tests {
    use pool_core::{ErrorClass, LastFailure, Saturation, TaskError};

    use super::{ending_class, into_store_error, without_repeats};
    use crate::classify::classify;

    fn slow_down() -> object_store::Error {
        object_store::Error::Generic {
            store: "S3",
            source: "503 SlowDown".into(),
        }
    }

    /// A `PooledStore` error and a `ClientError` for the same ending must agree, so that a
    /// retry layer above either one decides alike.
    #[test]
    fn a_pooled_store_error_classifies_as_the_client_error_of_the_same_ending() {
        let saturation = Saturation::new(400, 100, 100, 4.0);
        let endings = [
            TaskError::RetrySkipped {
                last: LastFailure::Error(slow_down()),
                attempts: 1,
                saturation,
            },
            TaskError::RetrySkipped {
                last: LastFailure::TimedOut,
                attempts: 2,
                saturation,
            },
            TaskError::RetryBudgetExhausted {
                last: LastFailure::Error(slow_down()),
                attempts: 1,
            },
            TaskError::Failed {
                error: slow_down(),
                attempts: 3,
            },
            TaskError::Stopped,
        ];
        for ending in endings {
            let expected = ending_class(&ending);
            let kind = ending.kind();
            assert_eq!(classify(&into_store_error(ending)), expected, "{kind}");
        }
        let skipped = TaskError::<object_store::Error>::RetrySkipped {
            last: LastFailure::TimedOut,
            attempts: 2,
            saturation,
        };
        assert_eq!(classify(&into_store_error(skipped)), ErrorClass::Retryable);
    }

    fn chain(messages: &[&str]) -> Vec<String> {
        without_repeats(messages.iter().map(|m| m.to_string()).collect())
    }

    #[test]
    fn a_message_ending_with_its_source_keeps_only_its_own_part() {
        assert_eq!(
            chain(&["Generic S3 error: 503 SlowDown", "503 SlowDown", "io"]),
            ["Generic S3 error", "503 SlowDown", "io"]
        );
    }

    #[test]
    fn a_message_holding_its_source_elsewhere_absorbs_it() {
        assert_eq!(
            chain(&["request (503 SlowDown) failed", "503 SlowDown"]),
            ["request (503 SlowDown) failed"]
        );
        assert_eq!(chain(&["same", "same", "other"]), ["same", "other"]);
    }

    #[test]
    fn distinct_messages_stay() {
        assert_eq!(chain(&["a", "b", "c"]), ["a", "b", "c"]);
        assert_eq!(chain(&["a", ""]), ["a"]);
    }
}
