//! [`Backend`]: where the operations' objects go.

use std::fmt;
use std::str::FromStr;
use std::sync::Arc;

use object_store::memory::InMemory;
use object_store::ObjectStore;
use s3_client::StoreConfig;

use crate::error::BenchError;

/// The store a benchmark writes to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Backend {
    /// object_store's `InMemory`: a fresh, empty store per run.
    Memory,
    /// s3-client's in-process S3 server (s3s over loopback HTTP), started by the
    /// orchestrating process; cases reach it as a connection string. Needs feature
    /// `s3-loopback` (on by default).
    S3Loopback,
    /// Any connection string s3-client understands (`s3://bucket`, `http://…`,
    /// `memory://`, `file://…`).
    Url(String),
}

impl Backend {
    /// Opens a store for this backend. [`Backend::S3Loopback`] cannot be opened directly:
    /// the orchestrator starts the server and hands cases its connection string.
    pub fn open(&self) -> Result<Arc<dyn ObjectStore>, BenchError> {
        match self {
            Backend::Memory => Ok(Arc::new(InMemory::new())),
            Backend::Url(url) => StoreConfig::parse(url)
                .and_then(|config| config.build())
                .map_err(|error| BenchError::Backend(error.to_string())),
            Backend::S3Loopback => Err(BenchError::Backend(
                "s3-loopback is started by the matrix orchestrator; pass its connection string"
                    .to_owned(),
            )),
        }
    }

    /// The name written to the results (a connection string's credentials are dropped).
    pub fn label(&self) -> String {
        match self {
            Backend::Memory => "memory".to_owned(),
            Backend::S3Loopback => "s3-loopback".to_owned(),
            Backend::Url(url) => StoreConfig::parse(url)
                .map(|config| config.to_string())
                .unwrap_or_else(|_| "url".to_owned()),
        }
    }
}

impl fmt::Display for Backend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.label())
    }
}

impl FromStr for Backend {
    type Err = BenchError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        match text {
            "memory" => Ok(Backend::Memory),
            "s3-loopback" if cfg!(feature = "s3-loopback") => Ok(Backend::S3Loopback),
            "s3-loopback" => Err(BenchError::LoopbackUnavailable),
            url if url.contains("://") => {
                StoreConfig::parse(url).map_err(|error| BenchError::Backend(error.to_string()))?;
                Ok(Backend::Url(url.to_owned()))
            }
            other => Err(BenchError::UnknownBackend(other.to_owned())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_names_and_connection_strings() {
        assert_eq!("memory".parse::<Backend>().unwrap(), Backend::Memory);
        assert_eq!(
            "memory://".parse::<Backend>().unwrap(),
            Backend::Url("memory://".into())
        );
        assert!(matches!(
            "tape".parse::<Backend>(),
            Err(BenchError::UnknownBackend(name)) if name == "tape"
        ));
        assert!(matches!(
            "s3://".parse::<Backend>(),
            Err(BenchError::Backend(_))
        ));
    }
}
