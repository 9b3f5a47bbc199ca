//! No access key, secret key or session token appears in any `Debug`, `Display`, error
//! message or `tracing` output of this crate (captured with a test subscriber at TRACE):
//! fixed credentials through the common paths, then a matrix of credentials holding each of
//! `+ / ? # @ % :` through every way of giving them, raw and percent-encoded.

use std::io::Write;
use std::sync::{Arc, Mutex};

use object_store::path::Path;
use s3_client::testing::{percent_encode, S3TestServer};
use s3_client::{Backend, Credentials, S3Client, S3Config, StoreConfig};
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

/// The characters a credential may hold that a URL reserves, one at a time and all at once.
const SPECIALS: [&str; 8] = ["+", "/", "?", "#", "@", "%", ":", "+/?#@%:"];

/// Words that make up the matrix's credentials: none may ever be printed, whole or in part
/// (a credential cut at a special character leaks its head or its tail).
const WORDS: [&str; 6] = [
    "AkidHead",
    "AkidTail",
    "SecretHead",
    "SecretTail",
    "TokenHead",
    "TokenTail",
];

struct Matrix {
    access_key: String,
    secret_key: String,
    token: String,
    printed: Vec<String>,
}

impl Matrix {
    fn new(special: &str) -> Self {
        Matrix {
            access_key: format!("AkidHead{special}AkidTail"),
            secret_key: format!("SecretHead{special}SecretTail"),
            token: format!("TokenHead{special}TokenTail"),
            printed: Vec::new(),
        }
    }

    fn print(&mut self, text: String) {
        self.printed.push(text);
    }

    /// Parses `input`, builds what it names, makes a request that fails (nothing listens on
    /// port 1), and prints and logs everything on the way. Returns the parsed configuration.
    async fn through(&mut self, label: &str, input: &str) -> Option<StoreConfig> {
        match StoreConfig::parse(input) {
            Err(err) => {
                tracing::warn!(%err, ?err, label, "refused");
                self.print(format!("{label}: {err} {err:?}"));
                None
            }
            Ok(config) => {
                tracing::info!(%config, ?config, label, "parsed");
                self.print(format!("{label}: {config} {config:?} {config:#?}"));
                self.build_and_fail(label, &config).await;
                match S3Client::from_url(input) {
                    Ok(client) => self.print(format!("{client:?} {:?}", client.store())),
                    Err(err) => self.print(format!("{err} {err:?}")),
                }
                Some(config)
            }
        }
    }

    async fn build_and_fail(&mut self, label: &str, config: &StoreConfig) {
        let store = match config.build() {
            Ok(store) => store,
            Err(err) => {
                tracing::warn!(%err, ?err, label, "not built");
                return self.print(format!("{label}: {err} {err:?}"));
            }
        };
        self.print(format!("{store:?} {store}"));
        let client = S3Client::builder_arc(store).retries(0).build().unwrap();
        self.print(format!(
            "{client:?} {:?} {:#?}",
            client.store(),
            client.store()
        ));
        let err = client.put(&Path::from("k"), "v").await.unwrap_err();
        tracing::error!(%err, ?err, label, "put failed");
        self.print(format!("{err} {err:?} {err:#?}"));
    }

    /// The credentials `config` holds equal the matrix's: a credential given encoded arrives
    /// whole, `+` included.
    fn assert_intact(&self, label: &str, config: &StoreConfig, with_token: bool) {
        let Backend::S3(s3) = &config.backend else {
            panic!("{label}: not S3")
        };
        let credentials = s3.credentials.as_ref().expect("credentials parsed");
        assert!(
            credentials.access_key_id.expose() == self.access_key
                && credentials.secret_access_key.expose() == self.secret_key
                && credentials.session_token.as_ref().map(|t| t.expose())
                    == with_token.then_some(self.token.as_str()),
            "{label}: the credentials were changed on the way"
        );
    }
}

#[tokio::test(flavor = "current_thread")]
async fn credentials_with_reserved_characters_never_leak_through_any_entry_point() {
    let capture = Capture::default();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_ansi(false)
        .with_writer(capture.clone())
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);
    let mut printed = Vec::new();

    for special in SPECIALS {
        let mut m = Matrix::new(special);
        let (ak, sk, tk) = (m.access_key.clone(), m.secret_key.clone(), m.token.clone());
        let (eak, esk, etk) = (
            percent_encode(&ak),
            percent_encode(&sk),
            percent_encode(&tk),
        );
        let target = "127.0.0.1:1";

        // Connection strings, credentials raw: parsed whole or refused, never printed.
        for (label, input) in [
            (
                "raw userinfo",
                format!("http://{ak}:{sk}@{target}/bucket-name/prefix"),
            ),
            (
                "raw s3 userinfo",
                format!("s3://{ak}:{sk}@bucket-name/p?endpoint=http://{target}"),
            ),
            (
                "raw query",
                format!(
                    "s3://bucket-name/p?endpoint=http://{target}&access_key_id={ak}\
                     &secret_access_key={sk}&session_token={tk}"
                ),
            ),
            (
                "raw endpoint",
                format!("s3://bucket-name?endpoint=http://{ak}:{sk}@{target}"),
            ),
            (
                "half raw",
                format!("s3://bucket-name?secret_access_key={sk}"),
            ),
            ("no scheme", format!("{ak}:{sk}@{target}/bucket-name")),
            (
                "unknown scheme",
                format!("gopher://{ak}:{sk}@{target}/bucket-name"),
            ),
            (
                "bad bucket",
                format!("http://{ak}:{sk}@{target}/Bad_Bucket"),
            ),
        ] {
            let label = format!("{label} {special}");
            if let Some(config) = m.through(&label, &input).await {
                // Accepted raw: then it must have understood the credentials exactly, except
                // for a `:` in a raw access key id, which ends it (RFC 3986: the first `:`
                // of the user information separates the user from the password).
                let colon_in_key = special.contains(':') && !label.starts_with("raw query");
                if let Backend::S3(s3) = &config.backend {
                    if s3.credentials.is_some() && !colon_in_key {
                        m.assert_intact(&label, &config, label.starts_with("raw query"));
                    }
                }
            }
        }

        // Connection strings, credentials percent-encoded: always parsed, exactly.
        for (label, input, with_token) in [
            (
                "userinfo",
                format!("http://{eak}:{esk}@{target}/bucket-name/p"),
                false,
            ),
            (
                "s3 userinfo",
                format!("s3://{eak}:{esk}@bucket-name/p?endpoint=http://{target}"),
                false,
            ),
            (
                "query",
                format!(
                    "s3://bucket-name/p?endpoint=http://{target}&access_key_id={eak}\
                     &secret_access_key={esk}&session_token={etk}"
                ),
                true,
            ),
        ] {
            let label = format!("{label} {special}");
            let config = m.through(&label, &input).await.expect(&label);
            m.assert_intact(&label, &config, with_token);
        }

        // Credentials in an endpoint, however written and set: refused, never printed.
        for endpoint in [
            format!("http://{ak}:{sk}@{target}"),
            format!("http://{eak}:{esk}@{target}"),
        ] {
            let encoded = percent_encode(&endpoint);
            let input = format!("s3://bucket-name?endpoint={encoded}");
            assert!(m.through("encoded endpoint", &input).await.is_none());
            let config = S3Config::new("bucket-name").with_endpoint(endpoint);
            m.print(format!("{config:?} {config:#?}"));
            tracing::info!(?config, "with_endpoint");
            let store_config = StoreConfig::s3(config.clone());
            m.print(format!("{store_config} {store_config:?}"));
            let err = store_config.build().unwrap_err();
            assert!(
                matches!(err, s3_client::ConnectionError::CredentialsInEndpoint),
                "{err}"
            );
            m.print(format!("{err} {err:?}"));
            #[cfg(feature = "aws-sdk")]
            {
                let err = s3_client::BucketAdmin::new(
                    &config.with_credentials(Credentials::new("a", "b")),
                )
                .unwrap_err();
                m.print(format!("{err} {err:?}"));
            }
        }

        // Credentials given as values.
        let config = S3Config::new("bucket-name")
            .with_endpoint(format!("http://{target}"))
            .with_credentials(Credentials::new(&ak, &sk).with_session_token(&tk));
        m.print(format!("{config:?} {:?}", config.credentials));
        m.build_and_fail("values", &StoreConfig::s3(config)).await;

        // Signed requests to a real server with the secret key holding the character: the
        // round trip works (the secret arrived whole, `+` included) and nothing prints it.
        let server = S3TestServer::start_with_credentials(Credentials::new("plain-key-id", &sk))
            .await
            .unwrap();
        let client = S3Client::from_url(&server.connection_string()).unwrap();
        client.put(&Path::from("signed"), "body").await.unwrap();
        let body = client.get(&Path::from("signed")).await.unwrap();
        assert_eq!(&body[..], b"body", "{special}");
        let err = client.get(&Path::from("absent")).await.unwrap_err();
        m.print(format!(
            "{client:?} {:?} {err} {err:?} {server:?}",
            client.store()
        ));

        printed.append(&mut m.printed);
    }

    let all = format!("{}\n{}", printed.join("\n"), capture.text());
    assert!(
        all.contains("refused") && all.contains("put failed") && all.contains("parsed"),
        "the capture works"
    );
    assert_no_secret(&all, &WORDS);
}
