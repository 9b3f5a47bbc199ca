//! s3-client's integration tests in one binary. `secrets` stays alone: it captures tracing output
//! at TRACE.

mod support;

#[cfg(all(feature = "metrics", feature = "tuning"))]
mod attachments;
mod awaitables;
mod bodies;
#[cfg(all(feature = "aws-sdk", feature = "testing"))]
mod bucket_admin;
mod bulk_defaults;
mod chaos;
mod checksums;
mod client;
mod conformance;
mod errors;
mod extremes;
mod hedging;
mod moto;
mod object_store_suite;
mod parse_fuzz;
mod protection;
mod throttling;
mod transfers;
