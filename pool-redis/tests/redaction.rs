//! Passwords never show: a matrix of passwords holding each character a URL reserves, given
//! raw and percent-encoded, through every entry point (standalone, `rediss://`, cluster node
//! lists; permit and rate-limit builders, endpoints, connection errors, refusals, events and
//! logs at TRACE). Alone
//! in its own test binary: it asserts on captured `tracing` output, and tracing's
//! process-wide callsite state is best not shared with tests running beside it.

#[path = "suite/support/mod.rs"]
mod support;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use pool_core::policy::RateLimit;
use pool_core::TaskInfo;
use pool_redis::{RedisEndpoint, RedisPermits, RedisRateLimiter};
use support::{recorder, RedisServer};

const TTL: Duration = Duration::from_millis(600);

/// Each holds one of `/ ? # @ : % +` between distinctive pieces (no piece of three
/// characters or more appears in ordinary text).
const PASSWORDS: [&str; 8] = [
    "Zq9k/Xk7w",
    "Zq9k?Xk7w",
    "Zq9k#Xk7w",
    "Zq9k@Xk7w",
    "Zq9k:Xk7w",
    "Zq9k%Xk7w",
    "Zq9k+Xk7w",
    "Vb5q/Wm3?Rt6#Pn1@Hy8:Lc4%Jd2+Gf7",
];

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

/// `text` percent-encoded for a URL's user information.
fn encode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// Whether `text` shows `password` or any piece of it of three characters or more.
fn leaks(text: &str, password: &str) -> bool {
    text.contains(password)
        || password
            .split(['/', '?', '#', '@', ':', '%', '+'])
            .any(|piece| piece.len() >= 3 && text.contains(piece))
}

#[test]
fn no_password_ever_shows() {
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
    let mut shown: Vec<(String, String)> = Vec::new();
    runtime.block_on(async {
        for password in PASSWORDS {
            let mut show = |text: String| shown.push((password.to_owned(), text));
            // A live server that requires the password: connect with it percent-encoded,
            // then lose the server and look at every refusal.
            let mut server = RedisServer::start_with_password(password);
            let good = server.url().replace(password, &encode(password));
            let (events, on_event) = recorder();
            let permits = RedisPermits::builder(good.as_str(), "secret", 2)
                .lease_ttl(TTL)
                .io_timeout(Duration::from_millis(200))
                .on_event(on_event)
                .connect()
                .await
                .expect("connect with the percent-encoded password");
            let lease = permits.lease().await.expect("lease");
            show(format!("{permits:?}"));
            server.stop();
            drop(lease);
            let refused = permits.lease().await.expect_err("Redis is down");
            show(format!("{refused} / {refused:?}"));
            show(format!("{:?}", refused.to_rejection()));
            show(format!("{}", refused.to_rejection()));
            show(format!("{:?}", events.lock().unwrap()));
            server.restart();
            let wrong = good.replace(&encode(password), "wrong-one");
            let denied = RedisPermits::builder(wrong.as_str(), "secret", 2)
                .connect()
                .await
                .expect_err("wrong password");
            show(format!("{denied} / {denied:?}"));
            // Every other entry point, with the password raw (and percent-encoded, for the
            // password that holds every reserved character: encoded ones connect above).
            let encoded = (password == PASSWORDS[PASSWORDS.len() - 1]).then(|| encode(password));
            for secret in std::iter::once(password.to_owned()).chain(encoded) {
                let urls = [
                    format!("redis://:{secret}@127.0.0.1:1"),
                    format!("redis://app:{secret}@127.0.0.1:notaport/0"),
                    format!("rediss://app:{secret}@127.0.0.1:1/0"),
                    format!("redis+unix:///tmp/none.sock?db=0&pass={secret}"),
                ];
                for url in &urls {
                    let builder = RedisPermits::builder(url.as_str(), "secret", 2)
                        .io_timeout(Duration::from_millis(200));
                    show(format!("{builder:?}"));
                    match builder.connect().await {
                        Ok(permits) => show(format!("{permits:?}")),
                        Err(error) => {
                            show(format!("{error} / {error:?} / {}", error.to_rejection()))
                        }
                    }
                    let rates = RedisRateLimiter::builder(
                        url.as_str(),
                        "secret",
                        |task: &TaskInfo| task.metadata.get("key").map(str::to_owned),
                        |_: &String| RateLimit::new(3_500.0, 350).expect("a valid limit"),
                    )
                    .io_timeout(Duration::from_millis(200));
                    show(format!("{rates:?}"));
                    match rates.connect().await {
                        Ok(rates) => show(format!("{rates:?}")),
                        Err(error) => {
                            show(format!("{error} / {error:?} / {}", error.to_rejection()))
                        }
                    }
                    let endpoint = RedisEndpoint::new(url.as_str()).ca_certificate("not a CA");
                    show(format!("{endpoint} / {endpoint:?}"));
                }
                let cluster = RedisEndpoint::cluster(urls[..3].iter().map(String::as_str));
                show(format!("{cluster} / {cluster:?}"));
                let builder = RedisPermits::builder(cluster, "secret", 2)
                    .io_timeout(Duration::from_millis(200));
                show(format!("{builder:?}"));
                if let Err(error) = builder.connect().await {
                    show(format!("{error} / {error:?} / {}", error.to_rejection()));
                }
            }
        }
    });
    drop(runtime);
    let logs = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
    assert!(
        logs.contains("unavailable"),
        "the failures were logged: {logs}"
    );
    for (password, text) in &shown {
        assert!(!leaks(text, password), "{password:?} shown in: {text}");
        assert!(text.contains("***"), "nothing masked in: {text}");
    }
    for password in PASSWORDS {
        assert!(!leaks(&logs, password), "{password:?} in the logs: {logs}");
    }
    eprintln!(
        "{} texts and {} bytes of TRACE logs checked",
        shown.len(),
        logs.len()
    );
}
