//! Where a limit's Redis is, and the connections to it: one server (plain or TLS) or a Redis
//! Cluster (routed by key; every key of one limit shares one hash tag, so one slot).

use std::fmt;
use std::time::Duration;

use futures::future::BoxFuture;
use futures::FutureExt;
use redis::aio::{ConnectionLike, ConnectionManager, ConnectionManagerConfig, PubSub};
use redis::cluster::ClusterClientBuilder;
use redis::cluster_async::ClusterConnection;
use redis::{Cmd, Pipeline, RedisFuture, TlsCertificates, Value};

use crate::error::PermitError;
use crate::redact::RedisUrl;

/// Where a limit's Redis is: one server or a cluster, with optional TLS settings.
///
/// Built from a URL (`"redis://host:6379"`, `"rediss://user:pass@host:6380/0"`, …) or with
/// [`cluster`](Self::cluster) from a list of node URLs. `rediss://` connects with rustls and
/// verifies the server's certificate against the system's roots, or only against
/// [`ca_certificate`](Self::ca_certificate) when one is given; verification cannot be turned
/// off. Passwords and keys never appear in `Debug`, `Display`, errors or logs.
///
/// ```
/// use pool_redis::RedisEndpoint;
/// let one = RedisEndpoint::from("rediss://:secret@cache.internal:6380");
/// assert_eq!(one.to_string(), "rediss://:***@cache.internal:6380");
/// let cluster = RedisEndpoint::cluster(["redis://10.0.0.1:7000", "redis://10.0.0.2:7000"]);
/// assert!(cluster.is_cluster());
/// ```
#[derive(Clone)]
pub struct RedisEndpoint {
    nodes: Vec<RedisUrl>,
    cluster: bool,
    ca: Option<Vec<u8>>,
    client_identity: Option<ClientIdentity>,
}

/// A client certificate and its private key (PEM), for servers that ask for one.
#[derive(Clone)]
struct ClientIdentity {
    certificate: Vec<u8>,
    key: Vec<u8>,
}

impl RedisEndpoint {
    /// One Redis server (or a managed service's primary endpoint).
    pub fn new(url: impl Into<RedisUrl>) -> Self {
        Self {
            nodes: vec![url.into()],
            cluster: false,
            ca: None,
            client_identity: None,
        }
    }

    /// A Redis Cluster, discovered from any of these nodes (all with the same credentials and
    /// scheme). Commands are routed by key; a failover is followed (the driver refreshes its
    /// slot map when a node moves or fails).
    pub fn cluster<U: Into<RedisUrl>>(nodes: impl IntoIterator<Item = U>) -> Self {
        Self {
            nodes: nodes.into_iter().map(Into::into).collect(),
            cluster: true,
            ca: None,
            client_identity: None,
        }
    }

    /// Trusts only this certificate authority (PEM, one or more certificates) for `rediss://`
    /// servers, instead of the system's roots: for a private CA or a self-signed server.
    pub fn ca_certificate(mut self, pem: impl Into<Vec<u8>>) -> Self {
        self.ca = Some(pem.into());
        self
    }

    /// Presents this client certificate and private key (both PEM) to `rediss://` servers
    /// that require one (`tls-auth-clients yes`). The key never shows in `Debug`.
    pub fn client_certificate(
        mut self,
        certificate_pem: impl Into<Vec<u8>>,
        key_pem: impl Into<Vec<u8>>,
    ) -> Self {
        self.client_identity = Some(ClientIdentity {
            certificate: certificate_pem.into(),
            key: key_pem.into(),
        });
        self
    }

    /// Whether this is a Redis Cluster.
    pub fn is_cluster(&self) -> bool {
        self.cluster
    }

    /// The first node's URL (masked when shown): errors and logs name it.
    pub(crate) fn url(&self) -> RedisUrl {
        self.nodes
            .first()
            .cloned()
            .unwrap_or_else(|| RedisUrl::new("redis://<no nodes>"))
    }

    /// `text` with the secrets of every node's URL masked.
    pub(crate) fn scrub(&self, text: &str) -> String {
        self.nodes
            .iter()
            .fold(text.to_owned(), |text, url| url.scrub(&text))
    }

    fn uses_tls(&self) -> bool {
        self.nodes.iter().any(RedisUrl::is_tls)
    }

    fn certificates(&self) -> TlsCertificates {
        TlsCertificates {
            client_tls: self
                .client_identity
                .as_ref()
                .map(|identity| redis::ClientTlsConfig {
                    client_cert: identity.certificate.clone(),
                    client_key: identity.key.clone(),
                }),
            root_cert: self.ca.clone(),
        }
    }

    pub(crate) fn invalid(&self, error: &redis::RedisError) -> PermitError {
        PermitError::InvalidUrl {
            url: self.to_string(),
            message: format!(
                "{} (percent-encode `/ ? # @ :` and other reserved characters in a password)",
                self.scrub(&error.to_string())
            ),
        }
    }

    pub(crate) fn unavailable(&self, error: &redis::RedisError) -> PermitError {
        PermitError::Unavailable {
            url: self.to_string(),
            message: self.scrub(&error.to_string()),
        }
    }

    /// A driver client per node (for pub/sub), TLS settings applied.
    fn node_clients(&self) -> Result<Vec<redis::Client>, PermitError> {
        if self.nodes.is_empty() {
            return Err(PermitError::InvalidSetting(
                "a cluster needs at least one node URL".into(),
            ));
        }
        self.nodes
            .iter()
            .map(|url| {
                let client = if url.is_tls() {
                    ensure_crypto_provider();
                    redis::Client::build_with_tls(url.expose(), self.certificates())
                } else {
                    redis::Client::open(url.expose())
                };
                client.map_err(|e| self.invalid(&e))
            })
            .collect()
    }

    /// Connects: one call connection (reconnecting on its own) and a source of pub/sub
    /// subscriptions. Each call and connection attempt times out after `io_timeout`.
    pub(crate) async fn connect(
        &self,
        io_timeout: Duration,
    ) -> Result<(Connection, Subscriptions), PermitError> {
        let clients = self.node_clients()?;
        if (self.ca.is_some() || self.client_identity.is_some()) && !self.uses_tls() {
            return Err(PermitError::InvalidSetting(
                "TLS certificates were given for a URL without TLS (use rediss://)".into(),
            ));
        }
        let connection = if self.cluster {
            let mut builder = ClusterClientBuilder::new(self.nodes.iter().map(RedisUrl::expose))
                .connection_timeout(io_timeout)
                .response_timeout(io_timeout)
                .retries(2)
                .min_retry_wait(10)
                .max_retry_wait(u64::try_from(io_timeout.as_millis()).unwrap_or(u64::MAX));
            if self.uses_tls() {
                ensure_crypto_provider();
                builder = builder.certs(self.certificates());
            }
            let client = builder.build().map_err(|e| self.invalid(&e))?;
            let connection = client
                .get_async_connection()
                .await
                .map_err(|e| self.unavailable(&e))?;
            Connection::Cluster(connection)
        } else {
            let config = ConnectionManagerConfig::new()
                .set_connection_timeout(Some(io_timeout))
                .set_response_timeout(Some(io_timeout))
                .set_number_of_retries(2)
                .set_min_delay(Duration::from_millis(20))
                .set_max_delay(io_timeout);
            let manager = ConnectionManager::new_with_config(clients[0].clone(), config)
                .await
                .map_err(|e| self.unavailable(&e))?;
            Connection::Single(manager)
        };
        Ok((
            connection,
            Subscriptions {
                clients,
                next: 0,
                endpoint: self.clone(),
            },
        ))
    }
}

/// rustls needs one process-wide crypto provider; the workspace's TLS stack (object_store,
/// aws-sdk) uses aws-lc-rs. Installs it unless the application chose one already.
fn ensure_crypto_provider() {
    if rustls::crypto::CryptoProvider::get_default().is_none() {
        // Losing a race to another installer is fine: one provider is then in place.
        let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    }
}

impl fmt::Display for RedisEndpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if !self.cluster {
            return fmt::Display::fmt(&self.url(), f);
        }
        f.write_str("cluster[")?;
        for (i, node) in self.nodes.iter().enumerate() {
            if i > 0 {
                f.write_str(", ")?;
            }
            fmt::Display::fmt(node, f)?;
        }
        f.write_str("]")
    }
}

impl fmt::Debug for RedisEndpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisEndpoint")
            .field("nodes", &self.nodes)
            .field("cluster", &self.cluster)
            .field("ca_certificate", &self.ca.is_some())
            .field("client_certificate", &self.client_identity.is_some())
            .finish()
    }
}

impl From<RedisUrl> for RedisEndpoint {
    fn from(url: RedisUrl) -> Self {
        Self::new(url)
    }
}

impl From<&str> for RedisEndpoint {
    fn from(url: &str) -> Self {
        Self::new(url)
    }
}

impl From<String> for RedisEndpoint {
    fn from(url: String) -> Self {
        Self::new(url)
    }
}

impl From<&String> for RedisEndpoint {
    fn from(url: &String) -> Self {
        Self::new(url)
    }
}

/// A connection for calls: one server (reconnects on its own) or a cluster (routes by key,
/// follows failovers). Cheap to clone: clones share one connection.
#[derive(Clone)]
pub(crate) enum Connection {
    Single(ConnectionManager),
    Cluster(ClusterConnection),
}

impl fmt::Debug for Connection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Connection::Single(_) => "Connection::Single",
            Connection::Cluster(_) => "Connection::Cluster",
        })
    }
}

impl ConnectionLike for Connection {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            Connection::Single(conn) => conn.req_packed_command(cmd),
            Connection::Cluster(conn) => conn.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match self {
            Connection::Single(conn) => conn.req_packed_commands(pipeline, offset, count),
            Connection::Cluster(conn) => conn.req_packed_commands(pipeline, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Connection::Single(conn) => conn.get_db(),
            Connection::Cluster(conn) => conn.get_db(),
        }
    }
}

/// Opens pub/sub connections. Classic `PUBLISH` reaches every node of a cluster, so any node
/// will do: each new subscription tries the next node, so a failed node is skipped.
pub(crate) struct Subscriptions {
    clients: Vec<redis::Client>,
    next: usize,
    endpoint: RedisEndpoint,
}

impl fmt::Debug for Subscriptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Subscriptions")
            .field("endpoint", &self.endpoint)
            .finish_non_exhaustive()
    }
}

impl Subscriptions {
    /// A subscription to `channels` on the next node, or why not (scrubbed of secrets).
    pub(crate) fn subscribe<'a>(
        &'a mut self,
        channels: &'a [String],
    ) -> BoxFuture<'a, Result<PubSub, String>> {
        let client = self.clients[self.next % self.clients.len()].clone();
        self.next = self.next.wrapping_add(1);
        async move {
            let mut pubsub = client
                .get_async_pubsub()
                .await
                .map_err(|e| self.endpoint.scrub(&e.to_string()))?;
            for channel in channels {
                pubsub
                    .subscribe(channel)
                    .await
                    .map_err(|e| self.endpoint.scrub(&e.to_string()))?;
            }
            Ok(pubsub)
        }
        .boxed()
    }

    /// The endpoint, for log lines.
    pub(crate) fn endpoint(&self) -> &RedisEndpoint {
        &self.endpoint
    }
}
