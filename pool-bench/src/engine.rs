//! The three engines of the matrix, each running a case's operations once.
//!
//! An operation builds and serialises its payload, PUTs it under its own key and DELETEs
//! it, so the store never accumulates data and peak memory measures the work in flight.
//!
//! In the pooled engines one operation is one pool task: the payload is built only when
//! the pool starts the task, and the PUT and DELETE inside it go straight to the store
//! (`bypass_pool`) because the task already holds the pool slot — a nested pool call
//! could wait for a slot its own caller holds. A failed PUT or DELETE retries the whole
//! operation, which is idempotent (same key, same bytes).

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::future::join_all;
use futures::TryStreamExt;
use object_store::path::Path;
use object_store::ObjectStore;
use pool_core::{ErrorClass, Pool, PoolBuilder, TaskError, TaskHandle, TaskOptions};
use s3_client::{ClientError, S3Client};

use crate::case::{Case, Engine};
use crate::error::BenchError;
use crate::payload::build_payload;

/// Pools (and clients) of the separate-pools engine, at most; fewer when C is smaller.
pub const SEPARATE_POOLS: usize = 4;

/// Splits a total concurrency limit across separate pools so that the limits add up to
/// exactly `total`: `min(pools, total)` pools, the remainder spread one by one over the
/// first pools.
///
/// ```
/// assert_eq!(pool_bench::split_concurrency(10, 4), vec![3, 3, 2, 2]);
/// assert_eq!(pool_bench::split_concurrency(200, 4), vec![50; 4]);
/// assert_eq!(pool_bench::split_concurrency(2, 4), vec![1, 1]);
/// ```
pub fn split_concurrency(total: usize, pools: usize) -> Vec<usize> {
    let pools = pools.min(total).max(1);
    (0..pools)
        .map(|pool| total / pools + usize::from(pool < total % pools))
        .collect()
}

/// One run of a case.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CaseRun {
    /// Wall-clock time from the first operation created to the last one finished.
    pub elapsed: Duration,
    /// Operations the pools retried (0 for join-all, which does not retry).
    pub retries: u64,
}

/// Runs every operation of `case` once against `store`. Clients and pools are built before
/// the clock starts. `run` keeps the keys of repetitions apart.
///
/// Fails if any operation failed (after the pools' retries) or an object was left behind.
pub async fn run_case(
    case: &Case,
    store: Arc<dyn ObjectStore>,
    run: usize,
) -> Result<CaseRun, BenchError> {
    case.validate()?;
    let prefix = format!("pool-bench/{}/{run}", case.engine);
    let results = match case.engine {
        Engine::JoinAll => {
            let client = S3Client::builder_arc(Arc::clone(&store))
                .without_pool()
                .build()
                .map_err(setup_error)?;
            let start = Instant::now();
            let operations = (0..case.operations).map(|index| {
                put_then_delete(client.clone(), &prefix, index, case.payload_positions)
            });
            let results = join_all(operations).await;
            let outcomes = results
                .into_iter()
                .map(|r| r.map_err(|e| e.to_string()))
                .collect();
            (start.elapsed(), outcomes, 0)
        }
        Engine::SharedPool => {
            let pool = bulk_pool(case.concurrency)?;
            let client = S3Client::builder_arc(Arc::clone(&store))
                .shared_pool(pool)
                .build()
                .map_err(setup_error)?;
            run_pooled(&[client], case, &prefix).await
        }
        Engine::SeparatePools => {
            let clients = split_concurrency(case.concurrency, SEPARATE_POOLS)
                .into_iter()
                .map(|share| {
                    S3Client::builder_arc(Arc::clone(&store))
                        .concurrency(share)
                        .configure_pool(bulk_settings)
                        .build()
                        .map_err(setup_error)
                })
                .collect::<Result<Vec<_>, _>>()?;
            run_pooled(&clients, case, &prefix).await
        }
    };
    let (elapsed, outcomes, retries): (Duration, Vec<Result<(), String>>, u64) = results;
    check_outcomes(&outcomes)?;
    let leftovers = count_objects(store.as_ref(), &Path::from(prefix)).await?;
    if leftovers > 0 {
        return Err(BenchError::Leftovers(leftovers));
    }
    Ok(CaseRun { elapsed, retries })
}

/// Listings tried before a failing store fails the case.
const LIST_ATTEMPTS: usize = 5;

/// Objects under `prefix`; a listing that fails midway is tried again (a flaky store must
/// not pass for an empty one, nor fail a case whose operations all succeeded).
async fn count_objects(store: &dyn ObjectStore, prefix: &Path) -> Result<usize, BenchError> {
    let mut last_error = None;
    for _ in 0..LIST_ATTEMPTS {
        let listing: Result<Vec<_>, _> = store.list(Some(prefix)).try_collect().await;
        match listing {
            Ok(objects) => return Ok(objects.len()),
            Err(error) => last_error = Some(error),
        }
    }
    Err(BenchError::Backend(format!(
        "listing {prefix} failed {LIST_ATTEMPTS} times; last: {}",
        last_error.map_or_else(String::new, |error| error.to_string())
    )))
}

/// Pool settings for bulk work: the pressure rule (skip retries when the queue is 10×
/// the limit, as in s3db.js) is off, since every case queues far more than C.
fn bulk_settings(builder: PoolBuilder) -> PoolBuilder {
    builder.no_pressure_rule()
}

fn bulk_pool(concurrency: usize) -> Result<Pool, BenchError> {
    bulk_settings(Pool::builder().concurrency(concurrency))
        .build()
        .map_err(|error| BenchError::Setup(error.to_string()))
}

fn setup_error(error: s3_client::BuildError) -> BenchError {
    BenchError::Setup(error.to_string())
}

/// Which pool each operation goes to: a repeating deal in which pool `i` appears
/// `limits[i]` times, so every pool gets work in proportion to its limit and all finish
/// together (an even split would leave the pools of limit 3 idle while those of limit 2
/// still work).
///
/// ```
/// assert_eq!(pool_bench::deal_by_limit(&[3, 3, 2, 2]), vec![0, 1, 2, 3, 0, 1, 2, 3, 0, 1]);
/// ```
pub fn deal_by_limit(limits: &[usize]) -> Vec<usize> {
    let rounds = limits.iter().copied().max().unwrap_or(0);
    (0..rounds)
        .flat_map(|round| {
            limits
                .iter()
                .enumerate()
                .filter(move |(_, &limit)| round < limit)
                .map(|(pool, _)| pool)
        })
        .collect()
}

/// Enqueues every operation up front, dealt over `clients`' pools in proportion to their
/// limits ([`deal_by_limit`]), then awaits them; returns the time, the outcomes and the
/// pools' retries.
async fn run_pooled(
    clients: &[S3Client],
    case: &Case,
    prefix: &str,
) -> (Duration, Vec<Result<(), String>>, u64) {
    let limits: Vec<usize> = clients
        .iter()
        .map(|client| client.pool().map_or(1, Pool::concurrency))
        .collect();
    let deal = deal_by_limit(&limits);
    let start = Instant::now();
    let handles: Vec<TaskHandle<(), ClientError>> = (0..case.operations)
        .map(|index| {
            let client = clients[deal[index % deal.len()]].clone();
            let pool = client
                .pool()
                .expect("pooled engines build clients with a pool")
                .clone();
            let (prefix, positions) = (prefix.to_owned(), case.payload_positions);
            pool.enqueue_with(
                move || put_then_delete(client.clone(), &prefix, index, positions),
                TaskOptions::new(),
                classify_operation_error,
            )
        })
        .collect();
    let mut outcomes = Vec::with_capacity(handles.len());
    for handle in handles {
        outcomes.push(
            handle
                .await
                .map_err(|error: TaskError<ClientError>| report(&error)),
        );
    }
    let elapsed = start.elapsed();
    // Each pool once: the separate-pools clients have one each, shared-pool has one client.
    let retries = clients
        .iter()
        .filter_map(S3Client::stats)
        .map(|stats| stats.retries)
        .sum();
    (elapsed, outcomes, retries)
}

fn classify_operation_error(error: &ClientError) -> ErrorClass {
    error.error_class()
}

/// An error and its causes, as anyhow's `{:#}` prints them.
fn report(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut next = error.source();
    while let Some(cause) = next {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        next = cause.source();
    }
    text
}

/// One operation: build + serialise the payload, PUT it, DELETE it.
fn put_then_delete(
    client: S3Client,
    prefix: &str,
    index: usize,
    positions: usize,
) -> impl std::future::Future<Output = Result<(), ClientError>> + Send + 'static {
    let key = Path::from(format!("{prefix}/{index}"));
    async move {
        let payload = build_payload(index, positions);
        client.put(&key, payload).bypass_pool().await?;
        client.delete(&key).bypass_pool().await
    }
}

fn check_outcomes(outcomes: &[Result<(), String>]) -> Result<(), BenchError> {
    let mut failures = outcomes.iter().filter_map(|outcome| outcome.as_ref().err());
    match failures.next() {
        None => Ok(()),
        Some(first) => Err(BenchError::OperationsFailed {
            failed: 1 + failures.count(),
            operations: outcomes.len(),
            first: first.clone(),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::StreamExt;
    use object_store::memory::InMemory;
    use s3_client::{ChaosConfig, ChaosStore};

    fn runtime() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap()
    }

    #[test]
    fn split_always_adds_up_to_the_total() {
        for total in 1..=300 {
            let shares = split_concurrency(total, SEPARATE_POOLS);
            assert_eq!(shares.iter().sum::<usize>(), total);
            assert!(shares.iter().all(|&share| share >= 1));
            assert!(shares.len() <= SEPARATE_POOLS);
            let spread = shares.iter().max().unwrap() - shares.iter().min().unwrap();
            assert!(spread <= 1, "{total}: {shares:?}");
        }
    }

    #[test]
    fn every_engine_puts_and_deletes_every_object() {
        let runtime = runtime();
        for engine in Engine::ALL {
            let case = Case {
                engine,
                operations: 50,
                payload_positions: 16,
                concurrency: 6,
            };
            let counting = Arc::new(ChaosStore::new(InMemory::new(), ChaosConfig::new(1)).unwrap());
            let store: Arc<dyn ObjectStore> = counting.clone();
            runtime
                .block_on(run_case(&case, store, 0))
                .unwrap_or_else(|error| panic!("{case}: {error}"));
            // One PUT and one DELETE per operation (the leftover check lists once more).
            assert!(
                counting.stats().calls >= 100,
                "{case}: {:?}",
                counting.stats()
            );
            assert_eq!(runtime.block_on(counting.list(None).count()), 0, "{case}");
        }
    }

    #[test]
    fn store_errors_fail_the_case() {
        let runtime = runtime();
        let case = Case {
            engine: Engine::JoinAll,
            operations: 20,
            payload_positions: 4,
            concurrency: 4,
        };
        let failing =
            ChaosStore::new(InMemory::new(), ChaosConfig::new(7).internal_error(1.0)).unwrap();
        let outcome = runtime.block_on(run_case(&case, Arc::new(failing), 0));
        assert!(
            matches!(
                outcome,
                Err(BenchError::OperationsFailed {
                    failed: 20,
                    operations: 20,
                    ..
                })
            ),
            "{outcome:?}"
        );
    }

    #[test]
    fn work_is_dealt_in_proportion_to_the_limits() {
        for total in 1..=300 {
            let limits = split_concurrency(total, SEPARATE_POOLS);
            let deal = deal_by_limit(&limits);
            assert_eq!(deal.len(), total);
            for (pool, &limit) in limits.iter().enumerate() {
                assert_eq!(deal.iter().filter(|&&p| p == pool).count(), limit);
            }
        }
        assert!(deal_by_limit(&[]).is_empty());
    }

    #[test]
    fn failed_operations_are_reported() {
        let failed = check_outcomes(&[Ok(()), Err("boom".into()), Err("again".into())]);
        assert!(matches!(
            failed,
            Err(BenchError::OperationsFailed { failed: 2, operations: 3, first }) if first == "boom"
        ));
        assert!(check_outcomes(&[Ok(())]).is_ok());
    }
}
