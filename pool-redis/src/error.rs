//! The one error type of this crate. Messages never contain credentials.

use pool_core::{Rejection, RejectionKind};

/// What went wrong configuring or reaching a shared limit (global permits or shared rate
/// limits).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PermitError {
    /// The limit's name cannot be used in a Redis key.
    #[error("invalid limit name {name:?}: {reason}")]
    InvalidName {
        /// The name (at most its first 128 characters).
        name: String,
        /// Why it was refused.
        reason: &'static str,
    },
    /// A setting is out of range.
    #[error("invalid setting: {0}")]
    InvalidSetting(String),
    /// The connection URL was refused by the driver (shown with its password masked).
    #[error("invalid Redis URL {url}: {message}")]
    InvalidUrl {
        /// The URL, password masked.
        url: String,
        /// The driver's reason, scrubbed of secrets.
        message: String,
    },
    /// Redis could not be reached or refused the request (connection lost, timeout, auth).
    #[error("Redis at {url} unavailable: {message}")]
    Unavailable {
        /// The URL, password masked.
        url: String,
        /// The driver's reason, scrubbed of secrets.
        message: String,
    },
    /// The background agent of this limit has stopped (its runtime shut down).
    #[error("the permit agent has stopped")]
    Closed,
}

impl PermitError {
    /// The rejection a pool resolves a refused task with (fail-closed).
    pub fn to_rejection(&self) -> Rejection {
        Rejection::new(RejectionKind::Unavailable, self.to_string())
    }
}

impl From<PermitError> for Rejection {
    fn from(error: PermitError) -> Self {
        error.to_rejection()
    }
}
