//! No access key, secret key or session token appears in any `Debug`, `Display`, error
//! message or `tracing` output of this crate (captured with a test subscriber at TRACE).

use std::io::Write;
use std::sync::{Arc, Mutex};

use object_store::path::Path;
use s3_client::testing::S3TestServer;
use s3_client::{S3Client, StoreConfig};
use tracing_subscriber::fmt::MakeWriter;

const ACCESS_KEY: &str = "AKIAS3POOLLEAKCHECK7";
const SECRET_KEY: &str = "wJalrXUtnFEMI-leak-check-secret";
const SESSION_TOKEN: &str = "FQoGZXIvYXdzEleakchecktoken";

#[derive(Clone, Default)]
struct Capture(Arc<Mutex<Vec<u8>>>);

impl Write for Capture {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> MakeWriter<'a> for Capture {
    type Writer = Capture;
    fn make_writer(&'a self) -> Capture {
        self.clone()
    }
}

impl Capture {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }
}

fn assert_no_secret(text: &str, secrets: &[&str]) {
    for secret in secrets {
        assert!(!text.contains(secret), "`{secret}` leaked in:\n{text}");
    }
}

#[tokio::test(flavor = "current_thread")]
async fn credentials_never_reach_debug_display_errors_or_logs() {
    let capture = Capture::default();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_ansi(false)
        .with_writer(capture.clone())
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);
    let mut printed = Vec::new();

    // A configuration holding all three secrets, printed and logged every way.
    let url = format!(
        "s3://bucket-name/prefix?region=eu-west-1&access_key_id={ACCESS_KEY}\
         &secret_access_key={SECRET_KEY}&session_token={SESSION_TOKEN}"
    );
    let config = StoreConfig::parse(&url).unwrap();
    printed.push(format!("{config} {config:?} {:#?}", config.backend));
    tracing::info!(?config, %config, "parsed");
    let client = S3Client::builder_arc(config.build().unwrap())
        .build()
        .unwrap();
    printed.push(format!("{client:?}"));

    // Errors built from strings that carry secrets.
    let bad = [
        format!("s3://bucket-name?access_key_id={ACCESS_KEY}"),
        format!("s3://bucket-name?secret_access_key={SECRET_KEY}"),
        format!("s3://bucket-name?session_token={SESSION_TOKEN}"),
        format!("http://{ACCESS_KEY}:{SECRET_KEY}@127.0.0.1:9000/"),
        format!("http://{ACCESS_KEY}:{SECRET_KEY}@[::1/bucket"),
        format!("http://{ACCESS_KEY}:{SECRET_KEY}@127.0.0.1:9000/Bad_Bucket"),
        format!("gopher://{ACCESS_KEY}:{SECRET_KEY}@host/bucket"),
        format!("s3://bucket-name?region=eu-west-1&secret_access_key={SECRET_KEY}&x=1"),
    ];
    for input in &bad {
        let err = StoreConfig::parse(input).unwrap_err();
        tracing::warn!(%err, ?err, "refused");
        printed.push(format!("{err} {err:?}"));
    }

    // A request that fails at the network: the client's error and its logs.
    let unreachable = format!("http://{ACCESS_KEY}:{SECRET_KEY}@127.0.0.1:1/bucket-name");
    let client = S3Client::builder(StoreConfig::parse(&unreachable).unwrap().build().unwrap())
        .retries(1)
        .retry_delay(std::time::Duration::from_millis(1))
        .build()
        .unwrap();
    let err = client.put(&Path::from("k"), "v").await.unwrap_err();
    tracing::error!(%err, ?err, "put failed");
    printed.push(format!("{err} {err:?}"));

    let all = format!("{}\n{}", printed.join("\n"), capture.text());
    assert!(
        all.contains("refused") && all.contains("put failed"),
        "capture works"
    );
    assert_no_secret(&all, &[ACCESS_KEY, SECRET_KEY, SESSION_TOKEN]);
}

#[tokio::test(flavor = "current_thread")]
async fn signed_requests_to_a_real_server_log_no_secret_key() {
    let capture = Capture::default();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_ansi(false)
        .with_writer(capture.clone())
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);

    let server = S3TestServer::start().await.unwrap();
    let client = S3Client::from_url(&server.connection_string()).unwrap();
    client.put(&Path::from("signed"), "body").await.unwrap();
    let err = client.get(&Path::from("absent")).await.unwrap_err();
    let printed = format!("{client:?} {err} {err:?} {server:?}");

    let credentials = server.credentials();
    let secret = credentials.secret_access_key.expose();
    // The client side: nothing at all. (The access key id is part of every SigV4
    // Authorization header, which the embedded test server's own debug logs print; its secret
    // key must appear nowhere.)
    let client_logs: String = capture
        .text()
        .lines()
        .filter(|line| !line.contains(" s3s"))
        .collect::<Vec<_>>()
        .join("\n");
    assert!(!client_logs.is_empty());
    assert_no_secret(&printed, &[credentials.access_key_id.expose(), secret]);
    assert_no_secret(&client_logs, &[credentials.access_key_id.expose(), secret]);
    assert_no_secret(&capture.text(), &[secret]);
}
