//! Shared by the integration tests: a private redis-server, a worker process, small helpers.
#![allow(dead_code, unreachable_pub)]

pub mod cluster;
pub mod redis_server;
pub mod tls;
pub mod worker;

use std::future::Future;
use std::time::Duration;

pub use redis_server::RedisServer;

/// A plain connection for the tests' own reads (sampling, TIME).
///
/// redis-rs answers a command with a timeout after 500 ms by default; the checks made through
/// this connection are not under test, and on a loaded machine one can wait longer than that,
/// so it waits up to a hang guard instead.
pub async fn plain_connection(url: &str) -> redis::aio::MultiplexedConnection {
    let patience = Some(Duration::from_secs(30));
    let config = redis::AsyncConnectionConfig::new()
        .set_connection_timeout(patience)
        .set_response_timeout(patience);
    redis::Client::open(url)
        .expect("url")
        .get_multiplexed_async_connection_with_config(&config)
        .await
        .expect("connect to the test redis-server")
}

/// Number of leases in the limit's sorted set that have not expired (Redis time).
pub async fn live_leases(conn: &mut redis::aio::MultiplexedConnection, holders: &str) -> u64 {
    let now = redis_now_ms(conn).await;
    redis::cmd("ZCOUNT")
        .arg(holders)
        .arg(format!("({now}"))
        .arg("+inf")
        .query_async(conn)
        .await
        .expect("ZCOUNT")
}

/// Redis server time in ms.
pub async fn redis_now_ms(conn: &mut redis::aio::MultiplexedConnection) -> u64 {
    let (secs, micros): (u64, u64) = redis::cmd("TIME").query_async(conn).await.expect("TIME");
    secs * 1000 + micros / 1000
}

/// Polls `condition` every 10 ms until it holds; panics with `what` after `limit` (a guard
/// against hangs, not a speed assertion).
pub async fn wait_until<F, Fut>(what: &str, limit: Duration, mut condition: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + limit;
    while !condition().await {
        assert!(
            tokio::time::Instant::now() < deadline,
            "gave up waiting for: {what}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Records a permit agent's events for later inspection.
pub fn recorder() -> (
    std::sync::Arc<std::sync::Mutex<Vec<pool_redis::PermitEvent>>>,
    impl Fn(&pool_redis::PermitEvent) + Send + Sync,
) {
    let events = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let sink = std::sync::Arc::clone(&events);
    (events, move |event: &pool_redis::PermitEvent| {
        sink.lock().unwrap().push(event.clone())
    })
}
