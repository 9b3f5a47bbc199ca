//! `rediss://` against a real `redis-server` that speaks only TLS, with certificates made in
//! the test: the server's certificate is verified (a CA of our own is trusted on request, an
//! unrelated one is refused), and client certificates are presented when the server asks.

use crate::support;

use std::time::Duration;

use pool_core::{Pool, TaskOptions, Transient};
use pool_redis::{PermitError, RedisEndpoint, RedisPermits};
use support::tls::TestCertificates;
use support::RedisServer;

const PASSWORD: &str = "tls-Pa55word";

async fn connect(endpoint: RedisEndpoint, name: &str) -> Result<RedisPermits, PermitError> {
    RedisPermits::builder(endpoint, name, 2)
        .lease_ttl(Duration::from_millis(900))
        .io_timeout(Duration::from_millis(400))
        .connect()
        .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn permits_over_tls_with_a_private_ca() {
    let certificates = TestCertificates::generate();
    let server = RedisServer::start_tls(certificates.server_files(), false, Some(PASSWORD));
    assert!(server.url().starts_with("rediss://"));
    let endpoint = RedisEndpoint::new(server.url()).ca_certificate(certificates.ca_pem.clone());
    let permits = connect(endpoint.clone(), "over-tls")
        .await
        .expect("TLS connect");
    let pool = Pool::builder()
        .concurrency(4)
        .admission(permits.clone())
        .build()
        .expect("pool");
    let handles: Vec<_> = (0..20)
        .map(|i| {
            pool.enqueue(
                move || async move { Ok::<_, Transient<&str>>(i) },
                TaskOptions::new(),
            )
        })
        .collect();
    for handle in handles {
        handle.await.expect("task over TLS");
    }
    permits.set_limit(3).await.expect("set_limit over TLS");
    assert_eq!(permits.limit().await.expect("limit"), 3);
    for shown in [
        format!("{permits:?}"),
        format!("{endpoint:?}"),
        endpoint.to_string(),
    ] {
        assert!(!shown.contains(PASSWORD), "{shown}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_servers_certificate_is_verified() {
    let certificates = TestCertificates::generate();
    let server = RedisServer::start_tls(certificates.server_files(), false, Some(PASSWORD));
    // Trusting only an unrelated CA: refused, with a typed error that names no secret.
    let wrong_ca =
        RedisEndpoint::new(server.url()).ca_certificate(certificates.other_ca_pem.clone());
    let refused = connect(wrong_ca, "unverified")
        .await
        .expect_err("a certificate from an untrusted CA");
    assert!(
        matches!(refused, PermitError::Unavailable { .. }),
        "{refused:?}"
    );
    // The system's roots do not know our private CA either.
    let system_roots = connect(RedisEndpoint::new(server.url()), "unverified")
        .await
        .expect_err("a private CA is not in the system's roots");
    assert!(
        matches!(system_roots, PermitError::Unavailable { .. }),
        "{system_roots:?}"
    );
    for error in [refused, system_roots] {
        let shown = format!("{error} {error:?} {}", error.to_rejection());
        eprintln!("refused: {error}");
        assert!(!shown.contains(PASSWORD), "{shown}");
        assert!(shown.contains("rediss://:***@127.0.0.1"), "{shown}");
    }
    // A plain connection to the TLS port gets nowhere either.
    let plain = server.url().replace("rediss://", "redis://");
    assert!(connect(RedisEndpoint::new(plain), "plain").await.is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_certificate_is_presented_when_the_server_requires_one() {
    let certificates = TestCertificates::generate();
    let server = RedisServer::start_tls(certificates.server_files(), true, None);
    let trusted = RedisEndpoint::new(server.url()).ca_certificate(certificates.ca_pem.clone());
    assert!(
        connect(trusted.clone(), "mutual").await.is_err(),
        "the server requires a client certificate"
    );
    let with_identity = trusted.client_certificate(
        certificates.client_cert_pem.clone(),
        certificates.client_key_pem.clone(),
    );
    let shown = format!("{with_identity:?}");
    assert!(!shown.contains("PRIVATE KEY"), "{shown}");
    let permits = connect(with_identity, "mutual").await.expect("mutual TLS");
    drop(permits.lease().await.expect("lease over mutual TLS"));
}

#[tokio::test]
async fn certificates_for_a_plain_url_are_a_typed_error() {
    let endpoint = RedisEndpoint::new("redis://127.0.0.1:1").ca_certificate("not used");
    assert!(matches!(
        connect(endpoint, "plain").await,
        Err(PermitError::InvalidSetting(_))
    ));
}
