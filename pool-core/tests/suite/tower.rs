//! The tower adapter inside a `ServiceBuilder` stack, on tokio's paused clock.
#![cfg(feature = "tower")]

use std::sync::{Arc, Mutex};
use std::time::Duration;

use pool_core::tower::PoolLayer;
use pool_core::{ErrorClass, Metadata, Pool, RejectionKind, TaskError, TaskOptions};
use tower::{service_fn, Service, ServiceBuilder, ServiceExt};

#[derive(Debug, Clone)]
struct Request {
    name: &'static str,
    priority: i32,
}

fn request(name: &'static str, priority: i32) -> Request {
    Request { name, priority }
}

#[tokio::test(start_paused = true)]
async fn requests_run_through_the_pool_in_priority_order() {
    let pool = Pool::builder().concurrency(1).build().unwrap();
    let served = Arc::new(Mutex::new(Vec::new()));
    let log = served.clone();
    let mut service = ServiceBuilder::new()
        .layer(PoolLayer::new(pool.clone()).priority(|r: &Request| r.priority))
        .map_response(|name: &'static str| name.to_uppercase())
        .service(service_fn(move |r: Request| {
            let log = log.clone();
            async move {
                tokio::time::sleep(Duration::from_millis(10)).await;
                log.lock().unwrap().push(r.name);
                Ok::<_, std::io::Error>(r.name)
            }
        }));
    pool.pause();
    let mut responses = Vec::new();
    for (name, priority) in [("low", 0), ("high", 9), ("mid", 5)] {
        let ready = service.ready().await.expect("always ready");
        responses.push(ready.call(request(name, priority)));
    }
    assert_eq!(pool.stats().queued, 3, "calls queue in the pool");
    pool.resume();
    let mut answers = Vec::new();
    for response in responses {
        answers.push(response.await.expect("served"));
    }
    assert_eq!(
        answers,
        ["LOW", "HIGH", "MID"],
        "each caller gets its own answer"
    );
    assert_eq!(*served.lock().unwrap(), ["high", "mid", "low"]);
}

#[tokio::test(start_paused = true)]
async fn inner_errors_come_back_after_one_attempt() {
    let pool = Pool::builder().retries(3).build().unwrap();
    let attempts = Arc::new(Mutex::new(0));
    let count = attempts.clone();
    let service = ServiceBuilder::new()
        .layer(PoolLayer::new(pool).classify(|_: &std::io::Error| ErrorClass::Retryable))
        .service(service_fn(move |_: Request| {
            *count.lock().unwrap() += 1;
            async { Err::<(), _>(std::io::Error::other("backend down")) }
        }));
    match service.oneshot(request("x", 0)).await {
        Err(TaskError::Failed { error, attempts: 1 }) => {
            assert_eq!(error.to_string(), "backend down")
        }
        other => panic!("expected one failed attempt, got {other:?}"),
    }
    assert_eq!(
        *attempts.lock().unwrap(),
        1,
        "the request was consumed once"
    );
}

#[tokio::test(start_paused = true)]
async fn a_full_queue_sheds_load_at_once() {
    let pool = Pool::builder().build().unwrap();
    let mut service = ServiceBuilder::new()
        .layer(PoolLayer::new(pool.clone()).max_queued(2))
        .service(service_fn(|r: Request| async move {
            Ok::<_, std::io::Error>(r.name)
        }));
    pool.pause();
    let first = service.call(request("a", 0));
    let second = service.call(request("b", 0));
    match service.call(request("c", 0)).await {
        Err(TaskError::Rejected(rejection)) => {
            assert_eq!(rejection.kind, RejectionKind::Other("queue full".into()));
        }
        other => panic!("expected a queue-full rejection, got {other:?}"),
    }
    pool.resume();
    assert_eq!(first.await.unwrap(), "a");
    assert_eq!(second.await.unwrap(), "b");
}

#[tokio::test(start_paused = true)]
async fn request_options_carry_metadata_and_timeouts() {
    let pool = Pool::builder().build().unwrap();
    let service = ServiceBuilder::new()
        .layer(PoolLayer::new(pool).options(|r: &Request| {
            TaskOptions::new()
                .metadata(Metadata::new().with("op", r.name))
                .timeout(Duration::from_millis(50))
        }))
        .service(service_fn(|_: Request| async {
            tokio::time::sleep(Duration::from_secs(1)).await;
            Ok::<_, std::io::Error>(())
        }));
    let result = service.oneshot(request("slow", 0)).await;
    assert!(
        matches!(result, Err(TaskError::TimedOut { attempts: 1, .. })),
        "{result:?}"
    );
}

#[cfg(feature = "circuit-breaker")]
#[tokio::test(start_paused = true)]
async fn a_circuit_breaker_on_the_pool_guards_the_service() {
    use pool_core::policy::{CircuitBreaker, CircuitBreakerConfig, CircuitState};
    use pool_core::{Executor, TokioExecutor};

    let executor: Arc<dyn Executor> = Arc::new(TokioExecutor::current());
    let breaker = CircuitBreaker::new(
        CircuitBreakerConfig::new().minimum_calls(5),
        executor.clone(),
    )
    .unwrap();
    let pool = Pool::builder()
        .executor_arc(executor)
        .admission(breaker.clone())
        .build()
        .unwrap();
    let mut service = ServiceBuilder::new()
        .layer(PoolLayer::new(pool))
        .service(service_fn(|_: Request| async {
            Err::<(), _>(std::io::Error::other("503"))
        }));
    for _ in 0..5 {
        let ready = service.ready().await.unwrap();
        assert!(matches!(
            ready.call(request("x", 0)).await,
            Err(TaskError::Failed { .. })
        ));
    }
    assert_eq!(breaker.state(), CircuitState::Open);
    let ready = service.ready().await.unwrap();
    match ready.call(request("x", 0)).await {
        Err(TaskError::Rejected(rejection)) => {
            assert_eq!(rejection.kind, RejectionKind::CircuitOpen)
        }
        other => panic!("expected CircuitOpen, got {other:?}"),
    }
}
