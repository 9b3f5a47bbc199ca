//! A worker process: one pool sharing a global limit, configured through the environment.
//!
//! The tests start workers by running their own test binary with `--exact processes::worker_process
//! --ignored`; the entry test does nothing unless `POOL_REDIS_WORKER` is set.

use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use pool_core::{Pool, TaskOptions, Transient};
use pool_redis::RedisPermits;

const ENV: &str = "POOL_REDIS_WORKER";

/// What one worker does.
#[derive(Debug, Clone)]
pub struct WorkerConfig {
    pub url: String,
    pub name: String,
    pub limit: u64,
    pub lease_ttl_ms: u64,
    pub concurrency: usize,
    pub tasks: usize,
    pub task_ms: u64,
    /// Tasks hold their permit for a minute (for the kill test).
    pub hold: bool,
}

/// What a worker printed when it finished.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WorkerReport {
    pub ok: u64,
    pub failed: u64,
    /// Highest value of the shared running counter this worker's tasks saw.
    pub max_running: u64,
}

impl WorkerConfig {
    fn encode(&self) -> String {
        format!(
            "{} {} {} {} {} {} {} {}",
            self.url,
            self.name,
            self.limit,
            self.lease_ttl_ms,
            self.concurrency,
            self.tasks,
            self.task_ms,
            self.hold
        )
    }

    /// The configuration of this process, if it is a worker.
    pub fn from_env() -> Option<Self> {
        let text = std::env::var(ENV).ok()?;
        let f: Vec<&str> = text.split(' ').collect();
        Some(Self {
            url: f[0].to_owned(),
            name: f[1].to_owned(),
            limit: f[2].parse().ok()?,
            lease_ttl_ms: f[3].parse().ok()?,
            concurrency: f[4].parse().ok()?,
            tasks: f[5].parse().ok()?,
            task_ms: f[6].parse().ok()?,
            hold: f[7].parse().ok()?,
        })
    }

    /// Starts a worker process (this test binary, running only `worker_process`).
    pub fn spawn(&self) -> Worker {
        let child = Command::new(std::env::current_exe().expect("test binary path"))
            .args([
                "--exact",
                "processes::worker_process",
                "--ignored",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(ENV, self.encode())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start a worker process");
        Worker(Some(child))
    }

    /// The key of the counter of running tasks, incremented by each task while it runs.
    pub fn running_key(&self) -> String {
        format!("s3pool-test:{{{}}}:running", self.name)
    }
}

/// Runs the worker and prints its `REPORT` line.
pub async fn run_worker(config: WorkerConfig) {
    let permits = RedisPermits::builder(config.url.as_str(), &config.name, config.limit)
        .lease_ttl(Duration::from_millis(config.lease_ttl_ms))
        .io_timeout(Duration::from_millis(config.lease_ttl_ms / 4))
        .connect()
        .await
        .expect("connect the worker's permits");
    let pool = Pool::builder()
        .concurrency(config.concurrency)
        .retries(0)
        .no_pressure_rule()
        .admission(permits.clone())
        .build()
        .expect("pool");
    let counter = super::plain_connection(&config.url).await;
    let key = config.running_key();
    let max_running = Arc::new(AtomicU64::new(0));
    let task_time = if config.hold {
        Duration::from_secs(60)
    } else {
        Duration::from_millis(config.task_ms)
    };
    let handles: Vec<_> = (0..config.tasks)
        .map(|_| {
            let (counter, key, max_running) =
                (counter.clone(), key.clone(), Arc::clone(&max_running));
            pool.enqueue(
                move || {
                    let (mut counter, key, max_running) =
                        (counter.clone(), key.clone(), Arc::clone(&max_running));
                    async move {
                        let running: u64 = redis::cmd("INCR")
                            .arg(&key)
                            .query_async(&mut counter)
                            .await
                            .map_err(Transient)?;
                        max_running.fetch_max(running, Ordering::Relaxed);
                        tokio::time::sleep(task_time).await;
                        let _: i64 = redis::cmd("DECR")
                            .arg(&key)
                            .query_async(&mut counter)
                            .await
                            .map_err(Transient)?;
                        Ok::<_, Transient<redis::RedisError>>(())
                    }
                },
                TaskOptions::new(),
            )
        })
        .collect();
    let (mut ok, mut failed) = (0, 0);
    for handle in handles {
        match handle.await {
            Ok(()) => ok += 1,
            Err(_) => failed += 1,
        }
    }
    permits.flush().await;
    println!(
        "REPORT ok={ok} failed={failed} max_running={}",
        max_running.load(Ordering::Relaxed)
    );
}

/// A worker process; killed if dropped before it reported (e.g. when a test fails).
#[derive(Debug)]
pub struct Worker(Option<Child>);

impl Worker {
    /// Whether it has exited.
    pub fn exited(&mut self) -> bool {
        self.0
            .as_mut()
            .is_none_or(|child| matches!(child.try_wait(), Ok(Some(_))))
    }

    /// Kills it (SIGKILL) and reaps it.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.0.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Waits for it and parses its report.
    pub fn report(mut self) -> WorkerReport {
        report_of(self.0.take().expect("a worker reports once"))
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        self.kill();
    }
}

fn report_of(child: Child) -> WorkerReport {
    let output = child.wait_with_output().expect("wait for the worker");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "worker failed: {stdout}");
    let line = stdout
        .lines()
        .find_map(|line| line.split_once("REPORT ").map(|(_, report)| report))
        .unwrap_or_else(|| panic!("no REPORT line in worker output: {stdout}"));
    let field = |name: &str| -> u64 {
        line.split(' ')
            .find_map(|pair| pair.strip_prefix(name)?.strip_prefix('='))
            .and_then(|value| value.parse().ok())
            .unwrap_or_else(|| panic!("no {name} in {line}"))
    };
    WorkerReport {
        ok: field("ok"),
        failed: field("failed"),
        max_running: field("max_running"),
    }
}
