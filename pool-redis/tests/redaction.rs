//! Passwords never show. Alone in its own test binary: it asserts on captured `tracing`
//! output, and tracing's process-wide callsite state is best not shared with tests running
//! beside it.

#[path = "suite/support/mod.rs"]
mod support;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use pool_redis::RedisPermits;
use support::{recorder, RedisServer};

const TTL: Duration = Duration::from_millis(600);

#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Captured {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(bytes);
        Ok(bytes.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[test]
fn the_password_never_shows() {
    const PASSWORD: &str = "s3cr3t-Pa55word";
    let captured = Captured::default();
    let writer = captured.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_ansi(false)
        .with_writer(move || writer.clone())
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);
    // One thread: the agent's logs go to the subscriber set above.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let mut shown = Vec::new();
    runtime.block_on(async {
        let mut server = RedisServer::start_with_password(PASSWORD);
        assert!(server.url().contains(PASSWORD));
        let (events, on_event) = recorder();
        let permits = RedisPermits::builder(server.url(), "secret", 2)
            .lease_ttl(TTL)
            .io_timeout(Duration::from_millis(200))
            .on_event(on_event)
            .connect()
            .await
            .expect("connect with the password");
        let lease = permits.lease().await.expect("lease");
        shown.push(format!("{permits:?}"));
        server.stop();
        drop(lease);
        let refused = permits.lease().await.expect_err("Redis is down");
        shown.push(format!("{refused} / {refused:?}"));
        shown.push(format!("{:?}", refused.to_rejection()));
        shown.push(format!("{:?}", events.lock().unwrap()));
        server.restart();
        let wrong = server.url().replace(PASSWORD, "wrong-one");
        let denied = RedisPermits::builder(wrong.as_str(), "secret", 2)
            .connect()
            .await
            .expect_err("wrong password");
        shown.push(format!("{denied} / {denied:?}"));
        let bad = format!("redis://:{PASSWORD}@127.0.0.1:notaport");
        let invalid = RedisPermits::builder(bad.as_str(), "secret", 2)
            .connect()
            .await
            .expect_err("bad port");
        shown.push(format!("{invalid} / {invalid:?}"));
        shown.push(format!(
            "{:?}",
            RedisPermits::builder(server.url(), "secret", 2)
        ));
    });
    drop(runtime);
    let logs = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
    assert!(
        logs.contains("unavailable"),
        "the failure was logged: {logs}"
    );
    for text in shown.iter().chain(std::iter::once(&logs)) {
        assert!(!text.contains(PASSWORD), "password shown in: {text}");
    }
    assert!(shown.iter().all(|text| text.contains("***")), "{shown:#?}");
}
