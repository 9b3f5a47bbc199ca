//! How an `object_store` error classifies for the pool: throttled, retryable, or fatal.
//!
//! object_store turns HTTP failures into `Error::Generic` whose source chain holds the status
//! and response body, but the type that carries them (`RetryError`) is not public. So this
//! module walks the source chain: a typed [`InjectedFault`](crate::InjectedFault), an
//! `object_store::client::HttpError` (transport failure), or a `std::io::Error` classify by
//! their kind; otherwise the status code and S3 error code are read from the error text
//! (`"... status code: 503 ...<Code>SlowDown</Code>"`). The tests in
//! `tests/suite/throttling.rs` pin that format against the real `AmazonS3` client.

use std::error::Error as StdError;

use object_store::client::{HttpError, HttpErrorKind};
use pool_core::{ErrorClass, Retryable};

use crate::chaos::InjectedFault;
use crate::error::PoolFailure;
use crate::integrity::IntegrityError;

/// S3 error codes that mean "slow down" (sent with 503 by S3, with 429 or 503 by others).
const THROTTLE_CODES: [&str; 6] = [
    "SlowDown",
    "Throttling",
    "ThrottlingException",
    "RequestLimitExceeded",
    "TooManyRequests",
    "ServiceUnavailable",
];

/// How object_store's HTTP layer starts the message of a failed request.
const HTTP_REQUEST_FAILED: &str = "Error performing ";

/// object_store's messages for a range the object cannot satisfy (its `InvalidGetRange`,
/// which is not public).
const INVALID_RANGE: [&str; 3] = [
    "Wanted range starting at",
    "Range started at",
    "is larger than system memory limit",
];

/// S3 error codes for transient failures that a retry can fix.
const TRANSIENT_CODES: [&str; 4] = [
    "InternalError",
    "RequestTimeout",
    "OperationAborted",
    "RequestTimeTooSkewed",
];

/// Classifies an `object_store` error for the pool's retry policy and the tuner.
///
/// | error | class |
/// |---|---|
/// | 503 SlowDown, 429, throttling codes (`SlowDown`, `Throttling`, …) | [`ErrorClass::Throttled`] |
/// | 500, 502, 504, 408, `InternalError`/`RequestTimeout` bodies, timeouts, connection errors | [`ErrorClass::Retryable`] |
/// | `NotFound`, `AlreadyExists`, `Precondition`, `NotModified`, `PermissionDenied` (403), `Unauthenticated` (401), other 4xx, invalid ranges, invalid paths, unsupported operations | [`ErrorClass::Fatal`] |
/// | any other failed HTTP request (`"Error performing …"`) whose cause cannot be read | [`ErrorClass::Retryable`] |
/// | [`IntegrityError`] (short body, checksum mismatch) before the bytes were handed out | [`ErrorClass::Retryable`] |
/// | [`IntegrityError`] after they were (a stream's consumer has them) | [`ErrorClass::Fatal`] |
/// | any other `Generic` error (a local store's logic error, e.g. an unknown upload id) | [`ErrorClass::Fatal`] |
///
/// ```
/// use object_store::Error;
/// use pool_core::ErrorClass;
/// let missing = Error::NotFound { path: "a".into(), source: "gone".into() };
/// assert_eq!(s3_client::classify(&missing), ErrorClass::Fatal);
/// ```
pub fn classify(error: &object_store::Error) -> ErrorClass {
    use object_store::Error::*;
    match error {
        NotFound { .. }
        | AlreadyExists { .. }
        | Precondition { .. }
        | NotModified { .. }
        | PermissionDenied { .. }
        | Unauthenticated { .. }
        | InvalidPath { .. }
        | NotSupported { .. }
        | NotImplemented { .. }
        | UnknownConfigurationKey { .. } => ErrorClass::Fatal,
        JoinError { source } if source.is_cancelled() => ErrorClass::Retryable,
        JoinError { .. } => ErrorClass::Fatal,
        Generic { source, .. } => classify_source(source.as_ref()),
        // `Error` is non-exhaustive: a variant added later is most likely a transient one,
        // because every permanent condition above already has its own variant.
        _ => ErrorClass::Retryable,
    }
}

/// The HTTP status code behind an `object_store` error, when the error came from an HTTP
/// response (or from a [`ChaosStore`](crate::ChaosStore) fault that imitates one).
///
/// ```
/// let missing = object_store::Error::NotFound { path: "a".into(), source: "gone".into() };
/// assert_eq!(s3_client::http_status(&missing), None);
/// ```
pub fn http_status(error: &object_store::Error) -> Option<u16> {
    let mut current: Option<&(dyn StdError + 'static)> = Some(error);
    while let Some(err) = current {
        if let Some(fault) = err.downcast_ref::<InjectedFault>() {
            return fault.kind().http_status();
        }
        if let Some(status) = status_in_text(&err.to_string()) {
            return Some(status);
        }
        current = err.source();
    }
    None
}

fn classify_source(source: &(dyn StdError + Send + Sync + 'static)) -> ErrorClass {
    let mut http_request = false;
    let mut current: Option<&(dyn StdError + 'static)> = Some(source);
    while let Some(err) = current {
        if let Some(fault) = err.downcast_ref::<InjectedFault>() {
            return fault.kind().class();
        }
        if let Some(failure) = err.downcast_ref::<PoolFailure>() {
            return failure.class();
        }
        if let Some(integrity) = err.downcast_ref::<IntegrityError>() {
            return if integrity.is_retryable() {
                ErrorClass::Retryable
            } else {
                ErrorClass::Fatal
            };
        }
        if let Some(http) = err.downcast_ref::<HttpError>() {
            return classify_transport(http.kind());
        }
        if let Some(io) = err.downcast_ref::<std::io::Error>() {
            return io.error_class();
        }
        let text = err.to_string();
        if let Some(class) = classify_text(&text) {
            return class;
        }
        http_request |= text.starts_with(HTTP_REQUEST_FAILED);
        current = err.source();
    }
    // A request that failed in a way we cannot read is worth another try; a local store's
    // own error (InMemory, LocalFileSystem) is a logic error that a retry repeats.
    if http_request {
        ErrorClass::Retryable
    } else {
        ErrorClass::Fatal
    }
}

fn classify_transport(kind: HttpErrorKind) -> ErrorClass {
    match kind {
        HttpErrorKind::Connect
        | HttpErrorKind::Request
        | HttpErrorKind::Timeout
        | HttpErrorKind::Interrupted
        | HttpErrorKind::Decode => ErrorClass::Retryable,
        // Not a network condition (e.g. a request the client could not build).
        HttpErrorKind::Unknown => ErrorClass::Fatal,
        _ => ErrorClass::Retryable,
    }
}

/// Reads a response's status and S3 error code from an error message of object_store's
/// request layer. `None` when the text is not such a message.
fn classify_text(text: &str) -> Option<ErrorClass> {
    if INVALID_RANGE.iter().any(|marker| text.contains(marker)) {
        return Some(ErrorClass::Fatal);
    }
    if let Some(code) = s3_error_code(text) {
        if THROTTLE_CODES.contains(&code) {
            return Some(ErrorClass::Throttled);
        }
        if TRANSIENT_CODES.contains(&code) {
            return Some(ErrorClass::Retryable);
        }
    }
    status_in_text(text).map(classify_status)
}

/// How an HTTP status classifies when the body names no known S3 error code.
pub(crate) fn classify_status(status: u16) -> ErrorClass {
    match status {
        429 | 503 => ErrorClass::Throttled,
        408 | 500..=599 => ErrorClass::Retryable,
        _ => ErrorClass::Fatal,
    }
}

/// `"Server returned non-2xx status code: 503 Service Unavailable: ..."` → 503.
fn status_in_text(text: &str) -> Option<u16> {
    const MARKER: &str = "status code: ";
    let start = text.find(MARKER)? + MARKER.len();
    let digits = text.get(start..start + 3)?;
    let status: u16 = digits.parse().ok()?;
    (100..600).contains(&status).then_some(status)
}

/// `"...<Code>SlowDown</Code>..."` → `"SlowDown"`.
fn s3_error_code(text: &str) -> Option<&str> {
    let start = text.find("<Code>")? + "<Code>".len();
    let len = text[start..].find("</Code>")?;
    Some(&text[start..start + len])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn generic(message: &str) -> object_store::Error {
        object_store::Error::Generic {
            store: "S3",
            source: message.to_owned().into(),
        }
    }

    #[test]
    fn slow_down_body_is_throttled_whatever_the_status() {
        let err = generic(
            "Server returned non-2xx status code: 500 Internal Server Error: \
             <Error><Code>SlowDown</Code></Error>",
        );
        assert_eq!(classify(&err), ErrorClass::Throttled);
        assert_eq!(http_status(&err), Some(500));
    }

    #[test]
    fn status_codes_classify_without_a_body() {
        let cases = [
            (429, ErrorClass::Throttled),
            (503, ErrorClass::Throttled),
            (500, ErrorClass::Retryable),
            (502, ErrorClass::Retryable),
            (408, ErrorClass::Retryable),
            (400, ErrorClass::Fatal),
            (405, ErrorClass::Fatal),
        ];
        for (status, class) in cases {
            let err = generic(&format!(
                "Server returned non-2xx status code: {status} X: "
            ));
            assert_eq!(classify(&err), class, "status {status}");
        }
    }

    #[test]
    fn request_timeout_code_on_400_is_retryable() {
        let err = generic(
            "Server returned non-2xx status code: 400 Bad Request: \
             <Error><Code>RequestTimeout</Code></Error>",
        );
        assert_eq!(classify(&err), ErrorClass::Retryable);
    }

    #[test]
    fn io_errors_classify_by_kind() {
        let reset = object_store::Error::Generic {
            store: "S3",
            source: Box::new(std::io::Error::from(std::io::ErrorKind::ConnectionReset)),
        };
        assert_eq!(classify(&reset), ErrorClass::Retryable);
        let denied = object_store::Error::Generic {
            store: "LocalFileSystem",
            source: Box::new(std::io::Error::from(std::io::ErrorKind::PermissionDenied)),
        };
        assert_eq!(classify(&denied), ErrorClass::Fatal);
    }

    #[test]
    fn permanent_variants_are_fatal() {
        let errors = [
            object_store::Error::NotFound {
                path: "k".into(),
                source: "x".into(),
            },
            object_store::Error::AlreadyExists {
                path: "k".into(),
                source: "x".into(),
            },
            object_store::Error::Precondition {
                path: "k".into(),
                source: "x".into(),
            },
            object_store::Error::NotModified {
                path: "k".into(),
                source: "x".into(),
            },
            object_store::Error::PermissionDenied {
                path: "k".into(),
                source: "x".into(),
            },
        ];
        for err in errors {
            assert_eq!(classify(&err), ErrorClass::Fatal, "{err}");
        }
    }

    #[test]
    fn unreadable_http_failures_retry_and_local_logic_errors_do_not() {
        let http = generic("Error performing GET http://h/b/k in 2ms - connection closed");
        assert_eq!(classify(&http), ErrorClass::Retryable);
        assert_eq!(classify(&generic("upload id not found")), ErrorClass::Fatal);
    }

    #[test]
    fn unsatisfiable_ranges_are_fatal() {
        let err = generic("Wanted range starting at 100, but object was only 10 bytes long");
        assert_eq!(classify(&err), ErrorClass::Fatal);
    }
}
