//! moto's S3 server (PyPI `moto[server]`) for one test: a stricter second S3 implementation
//! than s3s-fs (If-Unmodified-Since, conditional writes, 404 for "directories"), on a free
//! loopback port, one bucket, killed on drop.
//!
//! `cargo xtask test` installs moto into a virtualenv under the target directory and names
//! its `moto_server` in `S3POOL_MOTO_SERVER`; without it these tests look in
//! `target/moto-venv/bin`, then on PATH, and fail (never skip) with what to do when moto is
//! nowhere.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use object_store::aws::{AmazonS3, AmazonS3Builder, S3CopyIfNotExists};
use object_store::{ObjectStore, RetryConfig};
use s3_client::{Credentials, S3Config, StoreConfig};

/// The variable `cargo xtask test` sets to the `moto_server` it provisioned.
pub const MOTO_ENV: &str = "S3POOL_MOTO_SERVER";

const BUCKET: &str = "s3pool-moto";
const REGION: &str = "us-east-1";
/// moto accepts any credentials; these are signed with like real ones.
const ACCESS_KEY: &str = "moto-access-key";
const SECRET_KEY: &str = "moto-secret-key";

/// A running moto S3 server on 127.0.0.1 with one empty bucket.
#[derive(Debug)]
pub struct MotoServer {
    port: u16,
    child: Child,
}

impl MotoServer {
    /// Starts moto, waits until it answers, and creates the bucket.
    pub fn start() -> Self {
        let binary = find_moto_server();
        let port = free_port();
        let child = Command::new(&binary)
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("could not start {}: {e}", binary.display()));
        let server = MotoServer { port, child };
        server.wait_ready();
        let status = server.raw_request("PUT", &format!("/{BUCKET}"));
        assert_eq!(status, 200, "moto did not create the bucket");
        server
    }

    /// `http://127.0.0.1:<port>`.
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// An `AmazonS3Builder` for this server (path-style, plain HTTP, no object_store retries,
    /// copy-if-not-exists as a conditional multipart copy).
    pub fn builder(&self) -> AmazonS3Builder {
        AmazonS3Builder::new()
            .with_endpoint(self.endpoint())
            .with_bucket_name(BUCKET)
            .with_region(REGION)
            .with_access_key_id(ACCESS_KEY)
            .with_secret_access_key(SECRET_KEY)
            .with_allow_http(true)
            .with_copy_if_not_exists(S3CopyIfNotExists::Multipart)
            .with_retry(RetryConfig {
                max_retries: 0,
                ..Default::default()
            })
    }

    /// The concrete store.
    pub fn s3(&self) -> AmazonS3 {
        self.builder().build().expect("an AmazonS3 for moto")
    }

    /// The store as s3-client builds it from its own configuration.
    pub fn store(&self) -> Arc<dyn ObjectStore> {
        StoreConfig::s3(self.s3_config())
            .build()
            .expect("an S3 store for moto")
    }

    /// s3-client's settings for this server.
    pub fn s3_config(&self) -> S3Config {
        S3Config::new(BUCKET)
            .with_endpoint(self.endpoint())
            .with_region(REGION)
            .with_credentials(Credentials::new(ACCESS_KEY, SECRET_KEY))
    }

    /// Multipart uploads of the bucket not completed nor aborted, as moto lists them.
    pub fn pending_uploads(&self) -> usize {
        let body = self.raw_get(&format!("/{BUCKET}?uploads"));
        body.matches("<Upload>").count()
    }

    fn wait_ready(&self) {
        let deadline = Instant::now() + Duration::from_secs(60);
        while Instant::now() < deadline {
            if TcpStream::connect(("127.0.0.1", self.port)).is_ok() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!(
            "moto_server on port {} did not listen within 60 s",
            self.port
        );
    }

    /// One unsigned HTTP/1.1 request (moto's server mode does not check signatures);
    /// returns the status code.
    fn raw_request(&self, method: &str, target: &str) -> u16 {
        let response = self.exchange(method, target);
        response
            .split_whitespace()
            .nth(1)
            .and_then(|code| code.parse().ok())
            .unwrap_or_else(|| panic!("moto: unreadable response {response:?}"))
    }

    fn raw_get(&self, target: &str) -> String {
        self.exchange("GET", target)
    }

    fn exchange(&self, method: &str, target: &str) -> String {
        let mut stream = TcpStream::connect(("127.0.0.1", self.port)).expect("connect to moto");
        stream
            .set_read_timeout(Some(Duration::from_secs(30)))
            .expect("a read timeout");
        write!(
            stream,
            "{method} {target} HTTP/1.1\r\nHost: 127.0.0.1:{}\r\nContent-Length: 0\r\n\
             Connection: close\r\n\r\n",
            self.port
        )
        .expect("write to moto");
        let mut response = String::new();
        let _ = stream.read_to_string(&mut response);
        response
    }
}

impl Drop for MotoServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `moto_server` from `S3POOL_MOTO_SERVER`, the workspace's `target/moto-venv` or PATH, or
/// a panic that says how to get it.
///
/// The workspace's virtualenv comes before PATH: `cargo xtask test` installs it with the extras
/// the checksum tests need (CRC64NVME needs `awscrt`), which a `moto_server` found on PATH may
/// lack, so a plain `cargo test` after one `cargo xtask test` runs against the same moto.
fn find_moto_server() -> PathBuf {
    if let Some(binary) = std::env::var_os(MOTO_ENV) {
        return PathBuf::from(binary);
    }
    let workspace_venv =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/moto-venv/bin/moto_server");
    let on_path = std::env::var_os("PATH")
        .map(|path| std::env::split_paths(&path).collect::<Vec<_>>())
        .unwrap_or_default()
        .into_iter()
        .map(|dir| dir.join("moto_server"));
    std::iter::once(workspace_venv)
        .chain(on_path)
        .find(|candidate| candidate.is_file())
        .unwrap_or_else(|| {
            panic!(
                "moto_server not found ({MOTO_ENV} unset, not on PATH, not in \
                 target/moto-venv). These tests start their own moto S3 server: run the suite \
                 with `cargo xtask test` (it installs moto[server] into target/moto-venv), or \
                 `pip install 'moto[server]'` yourself"
            )
        })
}

/// A loopback port nobody listens on right now.
fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind a loopback port");
    listener.local_addr().expect("local address").port()
}
