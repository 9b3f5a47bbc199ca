//! A private Redis Cluster for one test: masters and replicas on loopback ports, built with
//! `redis-cli --cluster create`, stopped on drop.

use std::process::{Command, Stdio};
use std::time::Duration;

use super::redis_server::{find_program, RedisServer};

/// A running cluster of `masters` × (1 + `replicas`) `redis-server` processes.
#[derive(Debug)]
pub struct RedisCluster {
    nodes: Vec<RedisServer>,
    _dir: tempfile::TempDir,
}

impl RedisCluster {
    /// Starts the nodes, creates the cluster and waits until every slot is served.
    /// `node_timeout_ms` is how long a master may be unreachable before a replica takes over.
    pub async fn start(masters: usize, replicas: usize, node_timeout_ms: u64) -> Self {
        let dir = tempfile::tempdir().expect("temporary directory");
        let nodes: Vec<RedisServer> = (0..masters * (1 + replicas))
            .map(|_| RedisServer::start_cluster_node(dir.path(), node_timeout_ms))
            .collect();
        let mut create = Command::new(find_program("redis-cli"));
        create.arg("--cluster").arg("create");
        for node in &nodes {
            create.arg(format!("127.0.0.1:{}", node.port()));
        }
        let output = create
            .args(["--cluster-replicas", &replicas.to_string(), "--cluster-yes"])
            .stdin(Stdio::null())
            .output()
            .expect("run redis-cli --cluster create");
        assert!(
            output.status.success(),
            "redis-cli --cluster create failed: {}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        let cluster = Self { nodes, _dir: dir };
        cluster
            .wait_until_healthy(masters, Duration::from_secs(30))
            .await;
        cluster
    }

    /// Every node's URL (a client needs only some of them).
    pub fn urls(&self) -> Vec<String> {
        self.nodes.iter().map(RedisServer::url).collect()
    }

    /// The running nodes' URLs.
    pub fn live_urls(&self) -> Vec<String> {
        self.nodes
            .iter()
            .filter(|node| node.is_running())
            .map(RedisServer::url)
            .collect()
    }

    /// Kills the master that serves `key`'s slot; returns its port.
    pub async fn kill_master_of(&mut self, key: &str) -> u16 {
        let port = self.master_port_of(key).await;
        let node = self
            .nodes
            .iter_mut()
            .find(|node| node.port() == port)
            .expect("the master is one of ours");
        node.stop();
        port
    }

    /// The port of the master serving `key`'s slot, as a live node sees it.
    pub async fn master_port_of(&self, key: &str) -> u16 {
        let mut conn = self.any_live_connection().await;
        let slot: u16 = redis::cmd("CLUSTER")
            .arg("KEYSLOT")
            .arg(key)
            .query_async(&mut conn)
            .await
            .expect("CLUSTER KEYSLOT");
        let ranges: Vec<redis::Value> = redis::cmd("CLUSTER")
            .arg("SLOTS")
            .query_async(&mut conn)
            .await
            .expect("CLUSTER SLOTS");
        for range in ranges {
            let redis::Value::Array(fields) = range else {
                continue;
            };
            let number = |value: &redis::Value| match value {
                redis::Value::Int(n) => *n,
                _ => -1,
            };
            let (start, end) = (number(&fields[0]), number(&fields[1]));
            if (start..=end).contains(&i64::from(slot)) {
                if let redis::Value::Array(master) = &fields[2] {
                    return u16::try_from(number(&master[1])).expect("a port");
                }
            }
        }
        panic!("no master serves slot {slot}");
    }

    /// Waits until a node other than `killed` serves `key`'s slot and the cluster is healthy.
    pub async fn wait_for_failover(&self, key: &str, killed: u16, masters: usize, limit: Duration) {
        let deadline = tokio::time::Instant::now() + limit;
        while self.master_port_of(key).await == killed {
            assert!(
                tokio::time::Instant::now() < deadline,
                "no replica took over within {limit:?}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        self.wait_until_healthy(masters, limit).await;
    }

    /// Waits until a live node reports `cluster_state:ok` with `masters` masters serving every
    /// slot, and every live node agrees.
    pub async fn wait_until_healthy(&self, masters: usize, limit: Duration) {
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            if self.is_healthy(masters).await {
                return;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "the cluster did not become healthy within {limit:?}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    async fn is_healthy(&self, masters: usize) -> bool {
        for url in self.live_urls() {
            let Ok(client) = redis::Client::open(url.as_str()) else {
                return false;
            };
            let Ok(mut conn) = client.get_multiplexed_async_connection().await else {
                return false;
            };
            let Ok(info): Result<String, _> = redis::cmd("CLUSTER")
                .arg("INFO")
                .query_async(&mut conn)
                .await
            else {
                return false;
            };
            let field = |name: &str| {
                info.lines()
                    .find_map(|line| line.strip_prefix(name))
                    .map(|value| value.trim().to_owned())
            };
            if field("cluster_state:").as_deref() != Some("ok")
                || field("cluster_slots_ok:").as_deref() != Some("16384")
                || field("cluster_size:") != Some(masters.to_string())
            {
                return false;
            }
            // A replica counts once it has synced with its master (it can take over then).
            let Ok(replication): Result<String, _> = redis::cmd("INFO")
                .arg("replication")
                .query_async(&mut conn)
                .await
            else {
                return false;
            };
            if replication.contains("role:slave") && !replication.contains("master_link_status:up")
            {
                return false;
            }
        }
        true
    }

    async fn any_live_connection(&self) -> redis::aio::MultiplexedConnection {
        for url in self.live_urls() {
            if let Ok(client) = redis::Client::open(url.as_str()) {
                if let Ok(conn) = client.get_multiplexed_async_connection().await {
                    return conn;
                }
            }
        }
        panic!("no live cluster node answers");
    }
}
