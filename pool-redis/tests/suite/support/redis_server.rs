//! A private `redis-server` for one test: free loopback port, no persistence, stopped on drop.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The PEM files a TLS server uses.
#[derive(Debug, Clone, Copy)]
pub struct TlsFiles<'a> {
    pub certificate: &'a Path,
    pub key: &'a Path,
    pub ca: &'a Path,
}

/// A running `redis-server` on 127.0.0.1, killed when dropped.
#[derive(Debug)]
pub struct RedisServer {
    binary: PathBuf,
    port: u16,
    password: Option<String>,
    /// Arguments besides port, bind and persistence (TLS, cluster mode).
    extra: Vec<String>,
    tls: bool,
    child: Option<Child>,
}

impl RedisServer {
    /// Starts a server without a password.
    pub fn start() -> Self {
        Self::launch(None, Vec::new(), false)
    }

    /// Starts a server that requires `password` (`requirepass`).
    #[allow(dead_code)]
    pub fn start_with_password(password: &str) -> Self {
        Self::launch(Some(password.to_owned()), Vec::new(), false)
    }

    /// Starts a server that speaks only TLS (`tls-port`, plain port off) with `files`'
    /// server certificate; with `client_certificates`, it requires a client certificate
    /// signed by the CA.
    pub fn start_tls(
        files: TlsFiles<'_>,
        client_certificates: bool,
        password: Option<&str>,
    ) -> Self {
        let file = |path: &Path| path.display().to_string();
        let extra = vec![
            "--tls-cert-file".into(),
            file(files.certificate),
            "--tls-key-file".into(),
            file(files.key),
            "--tls-ca-cert-file".into(),
            file(files.ca),
            "--tls-auth-clients".into(),
            if client_certificates { "yes" } else { "no" }.into(),
        ];
        Self::launch(password.map(str::to_owned), extra, true)
    }

    /// Starts a cluster node (not yet part of a cluster) keeping its node file in `dir`.
    pub fn start_cluster_node(dir: &Path, node_timeout_ms: u64) -> Self {
        let port = free_port();
        let extra = vec![
            "--cluster-enabled".into(),
            "yes".into(),
            "--cluster-config-file".into(),
            format!("nodes-{port}.conf"),
            "--cluster-node-timeout".into(),
            node_timeout_ms.to_string(),
            // The bus port defaults to port + 10000, which may be taken or out of range.
            "--cluster-port".into(),
            free_port().to_string(),
            // Replicas sync at once (not after the default 5 s wait for more replicas), and
            // a replica takes over however old its data is: the tests want a prompt failover.
            "--repl-diskless-sync-delay".into(),
            "0".into(),
            "--cluster-replica-validity-factor".into(),
            "0".into(),
            "--dir".into(),
            dir.display().to_string(),
        ];
        let mut server = Self {
            binary: find_redis_server(),
            port,
            password: None,
            extra,
            tls: false,
            child: None,
        };
        server.restart();
        server
    }

    fn launch(password: Option<String>, extra: Vec<String>, tls: bool) -> Self {
        let mut server = Self {
            binary: find_redis_server(),
            port: free_port(),
            password,
            extra,
            tls,
            child: None,
        };
        server.restart();
        server
    }

    /// `redis://127.0.0.1:PORT` (`rediss://` for TLS; with the password, if any).
    pub fn url(&self) -> String {
        let scheme = if self.tls { "rediss" } else { "redis" };
        match &self.password {
            Some(password) => format!("{scheme}://:{password}@127.0.0.1:{}", self.port),
            None => format!("{scheme}://127.0.0.1:{}", self.port),
        }
    }

    /// The loopback port it listens on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Whether the process is still running.
    pub fn is_running(&self) -> bool {
        self.child.is_some()
    }

    /// Kills the server (its data is gone: no persistence).
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts it again on the same port, empty, and waits until it answers.
    pub fn restart(&mut self) {
        self.stop();
        let port = self.port.to_string();
        let mut command = Command::new(&self.binary);
        if self.tls {
            command.args(["--port", "0", "--tls-port", &port]);
        } else {
            command.args(["--port", &port]);
        }
        command.args(&self.extra);
        command.args(["--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]);
        if let Some(password) = &self.password {
            command.args(["--requirepass", password]);
        }
        let child = command
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("could not start {}: {e}", self.binary.display()));
        self.child = Some(child);
        self.wait_ready();
    }

    fn wait_ready(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if self.ping() {
                return;
            }
            if let Some(Ok(Some(status))) = self.child.as_mut().map(Child::try_wait) {
                panic!(
                    "redis-server on port {} exited at start ({status}); arguments: {:?} \
                     (TLS needs a redis-server built with TLS, as Debian's is)",
                    self.port, self.extra
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!(
            "redis-server on port {} did not answer within 10 s",
            self.port
        );
    }

    /// True if the server answers PING (any reply, including NOAUTH, counts as alive); a TLS
    /// server counts as alive once it accepts connections.
    fn ping(&self) -> bool {
        let Ok(mut stream) = TcpStream::connect(("127.0.0.1", self.port)) else {
            return false;
        };
        if self.tls {
            return true;
        }
        let _ = stream.set_read_timeout(Some(Duration::from_millis(500)));
        if stream.write_all(b"PING\r\n").is_err() {
            return false;
        }
        let mut reply = [0u8; 64];
        matches!(stream.read(&mut reply), Ok(n) if n > 0)
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.stop();
    }
}

/// `redis-server` from PATH, or a panic that says how to get it.
fn find_redis_server() -> PathBuf {
    find_program("redis-server")
}

/// `program` (`redis-server`, `redis-cli`) from PATH, or a panic that says how to get it.
pub fn find_program(program: &str) -> PathBuf {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .map(|dir| dir.join(program))
        .find(|candidate| candidate.is_file())
        .unwrap_or_else(|| {
            panic!(
                "{program} not found on PATH. These tests start their own Redis: run the \
                 suite with `cargo xtask test` (it installs Debian's redis-server when it may), \
                 or install it yourself (e.g. `apt-get install redis-server`)"
            )
        })
}

/// A loopback port nobody listens on right now.
pub fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind a loopback port");
    listener.local_addr().expect("local address").port()
}
