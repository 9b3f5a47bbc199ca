//! [`Backend`]: where the operations' objects go.

use std::fmt;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use object_store::memory::InMemory;
use object_store::ObjectStore;
use s3_client::{ChaosConfig, ChaosStore, StoreConfig};

use crate::error::BenchError;

/// The store a benchmark writes to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Backend {
    /// object_store's `InMemory`: a fresh, empty store per run.
    Memory,
    /// `InMemory` behind s3-client's `ChaosStore` adding this delay to every call
    /// (`memory-latency=1ms`): requests really pend, as over a network, so `join_all` has
    /// every operation in flight, deterministically and without a server.
    MemoryLatency(Duration),
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
            Backend::MemoryLatency(delay) => {
                let config = ChaosConfig::new(0).latency(1.0, *delay..*delay);
                let store = ChaosStore::new(InMemory::new(), config)
                    .map_err(|error| BenchError::Backend(error.to_string()))?;
                Ok(Arc::new(store))
            }
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
            Backend::MemoryLatency(delay) => format!("memory-latency={}us", delay.as_micros()),
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
            latency if latency.starts_with("memory-latency=") => {
                parse_delay(&latency["memory-latency=".len()..])
                    .map(Backend::MemoryLatency)
                    .ok_or_else(|| BenchError::UnknownBackend(latency.to_owned()))
            }
            url if url.contains("://") => {
                StoreConfig::parse(url).map_err(|error| BenchError::Backend(error.to_string()))?;
                Ok(Backend::Url(url.to_owned()))
            }
            other => Err(BenchError::UnknownBackend(other.to_owned())),
        }
    }
}

/// `1ms`, `500us` → a duration.
fn parse_delay(text: &str) -> Option<Duration> {
    if let Some(ms) = text.strip_suffix("ms") {
        ms.parse().ok().map(Duration::from_millis)
    } else {
        text.strip_suffix("us")?
            .parse()
            .ok()
            .map(Duration::from_micros)
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
        let latency = "memory-latency=2ms".parse::<Backend>().unwrap();
        assert_eq!(latency, Backend::MemoryLatency(Duration::from_millis(2)));
        assert_eq!(latency.label(), "memory-latency=2000us");
        assert_eq!(latency.label().parse::<Backend>().unwrap(), latency);
        assert!(matches!(
            "memory-latency=2s".parse::<Backend>(),
            Err(BenchError::UnknownBackend(_))
        ));
    }
}
