//! Where the objects live: connection strings parsed into a typed [`StoreConfig`], and the
//! `ObjectStore` built from it.

mod error;
mod store_config;

pub use error::ConnectionError;
pub use store_config::{Backend, S3Config, StoreConfig};
