//! # pool-redis
//!
//! Limits shared by many processes and machines, kept in Redis: one concurrency limit
//! ([`RedisPermits`], global permits leased on Redis) and rate limits per key
//! ([`RedisRateLimiter`], a GCRA whose schedule and adaptive rate live in Redis, e.g. S3's
//! per-prefix rates shared by every process writing to a bucket).
//!
//! A [`RedisPermits`] is a pool's admission policy (`PoolBuilder::admission`, pool-core's
//! seam for where permits come from besides the pool's own local limit): every attempt holds
//! its local slot *and* one global permit, and a task waiting for its permit is parked
//! without its slot until the permit is granted. Permits are leases
//! in a Redis sorted set scored by expiry, taken and given back by Lua scripts (each step is
//! atomic), renewed while their task runs and reclaimed at the latest one lease TTL after a
//! holder dies. Waiting is first come first served within a process and fair-share across
//! processes, woken by pub/sub with a capped exponential backoff as a fallback. The limit is
//! a Redis key: [`RedisPermits::set_limit`] applies to every process at once. When Redis
//! cannot be reached, [`FailMode`] decides: refuse tasks, or run them under the local limit
//! alone; both emit a [`PermitEvent`] and a warning. Passwords never appear in `Debug`,
//! `Display`, errors or logs ([`RedisUrl`]).
//!
//! Redis is one server or a Redis Cluster ([`RedisEndpoint`]), plain or over TLS
//! (`rediss://`, rustls, the server's certificate always verified). All keys of a limit share
//! the hash tag `{name}`, so they live on one cluster slot; see the crate README for Cluster,
//! failover, clock jumps and managed Redis.
//!
//! ## Layout
//! - [`RedisEndpoint`]: where Redis is (URL or cluster nodes, TLS settings).
//! - [`RedisPermits`], [`RedisPermitsBuilder`]: the handle and its settings.
//! - [`Lease`]: one held permit. [`PermitStatus`]: what this process knows.
//! - [`RedisRateLimiter`], [`RedisRateLimiterBuilder`], [`RateStatus`]: shared rate limits
//!   per key, a `KeyedRatePolicy` for pools and s3-client.
//! - [`FailMode`], [`PermitEvent`], [`PermitError`]: failure handling (both kinds of limit).

#![cfg_attr(docsrs, feature(doc_cfg))]
mod agent;
mod backoff;
mod builder;
mod claims;
mod endpoint;
mod error;
mod event;
mod keys;
mod lease;
mod permits;
mod rate;
mod redact;
mod scripts;
mod subscriber;

pub use builder::RedisPermitsBuilder;
pub use endpoint::RedisEndpoint;
pub use error::PermitError;
pub use event::{FailMode, PermitEvent};
pub use lease::Lease;
pub use permits::{PermitStatus, RedisPermits};
pub use rate::{RateStatus, RedisRateLimiter, RedisRateLimiterBuilder};
pub use redact::RedisUrl;
