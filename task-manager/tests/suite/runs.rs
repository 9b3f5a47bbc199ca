//! Runs on tokio under paused time: order, bounded pulling, indices, early ends, callbacks.

use std::future::IntoFuture;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::{stream, StreamExt};
use pool_core::{Permanent, TaskError, Transient};
use task_manager::{StopReason, TaskManager};
use tokio::time::sleep;

fn manager(concurrency: usize, lookahead: usize) -> TaskManager {
    TaskManager::builder()
        .concurrency(concurrency)
        .lookahead(lookahead)
        .retries(0)
        .build()
        .expect("valid settings")
}

/// Seeded random durations, one per item, so every run of a test is the same.
fn random_durations(seed: u64, items: usize, max_ms: u64) -> Arc<Vec<Duration>> {
    let mut rng = fastrand::Rng::with_seed(seed);
    Arc::new(
        (0..items)
            .map(|_| Duration::from_millis(rng.u64(1..=max_ms)))
            .collect(),
    )
}

/// Counts how often each index was reported, from any callback.
#[derive(Clone)]
struct CallCounts(Arc<Mutex<Vec<u32>>>);

impl CallCounts {
    fn new(items: usize) -> Self {
        Self(Arc::new(Mutex::new(vec![0; items])))
    }
    fn hit(&self, index: usize) {
        self.0.lock().unwrap()[index] += 1;
    }
    fn counts(&self) -> Vec<u32> {
        self.0.lock().unwrap().clone()
    }
}

#[tokio::test(start_paused = true)]
async fn process_corresponding_keeps_input_order_under_random_durations() {
    let manager = manager(8, 4);
    let durations = random_durations(7, 200, 50);
    let completion_order = Arc::new(Mutex::new(Vec::new()));
    let order = Arc::clone(&completion_order);
    let results = manager
        .process_corresponding(0..200usize, move |i| {
            let durations = Arc::clone(&durations);
            async move {
                sleep(durations[i]).await;
                Ok::<_, Permanent<String>>(i * 3)
            }
        })
        .on_item_complete(move |index, _| order.lock().unwrap().push(index))
        .await;

    let values: Vec<usize> = results.into_iter().map(|r| r.unwrap()).collect();
    assert_eq!(values, (0..200).map(|i| i * 3).collect::<Vec<_>>());
    // The items really did finish out of order, so the ordering above is the run's work.
    let completion_order = completion_order.lock().unwrap();
    assert_eq!(completion_order.len(), 200);
    assert!(completion_order.windows(2).any(|w| w[0] > w[1]));
}

#[tokio::test(start_paused = true)]
async fn process_iterable_over_an_endless_iterator_pulls_at_most_the_window_ahead() {
    let (concurrency, lookahead) = (8, 4);
    let manager = manager(concurrency, lookahead);
    let pulled = Arc::new(AtomicUsize::new(0));
    let counter = Arc::clone(&pulled);
    let endless = (0u64..).inspect(move |_| {
        counter.fetch_add(1, Ordering::SeqCst);
    });
    let durations = random_durations(11, 64, 20);
    let mut results = manager.process_iterable(endless, move |n| {
        let delay = durations[n as usize % durations.len()];
        async move {
            sleep(delay).await;
            Ok::<_, Permanent<String>>(n)
        }
    });

    let mut most_ahead = 0;
    for consumed in 1..=500usize {
        let item = results.next().await.expect("endless input");
        assert_eq!(item.result.unwrap(), item.index as u64);
        most_ahead = most_ahead.max(pulled.load(Ordering::SeqCst) - consumed);
        // A slow consumer: the producer must wait for it, not run ahead.
        sleep(Duration::from_millis(3)).await;
    }
    assert!(
        most_ahead <= concurrency + lookahead,
        "pulled {most_ahead} items ahead of the consumer, window is {}",
        concurrency + lookahead
    );
    // The window is used, not just respected: a freed slot never waits for the consumer.
    assert!(most_ahead >= concurrency, "only {most_ahead} ahead");
    assert_eq!(results.pulled(), pulled.load(Ordering::SeqCst));
}

#[tokio::test(start_paused = true)]
async fn errors_carry_the_index_of_their_item() {
    let manager = manager(5, 2);
    let report = manager
        .process(0..50usize, |i| async move {
            sleep(Duration::from_millis((50 - i) as u64)).await;
            if i % 7 == 3 {
                Err(Permanent(i))
            } else {
                Ok(i)
            }
        })
        .await;

    let failed: Vec<usize> = (0..50).filter(|i| i % 7 == 3).collect();
    let indices: Vec<usize> = report.errors.iter().map(|e| e.index).collect();
    assert_eq!(indices, failed);
    for error in &report.errors {
        assert_eq!(error.error.task_error().map(|e| e.0), Some(error.index));
    }
    assert_eq!(report.results.len(), 50);
    for (i, value) in report.results.iter().enumerate() {
        assert_eq!(*value, (i % 7 != 3).then_some(i));
    }
}

#[tokio::test(start_paused = true)]
async fn retried_items_get_a_fresh_copy_of_their_input() {
    let manager = TaskManager::builder()
        .concurrency(4)
        .retries(2)
        .retry_delay(Duration::from_millis(5))
        .build()
        .unwrap();
    let attempts = Arc::new(AtomicUsize::new(0));
    let counter = Arc::clone(&attempts);
    let results = manager
        .process_corresponding((0..10).map(|i| format!("key-{i}")), move |key: String| {
            let first_try = counter.fetch_add(1, Ordering::SeqCst) < 10;
            async move {
                if first_try {
                    Err(Transient(key))
                } else {
                    Ok(key.len())
                }
            }
        })
        .await;
    assert!(results.iter().all(|r| r.is_ok()), "{results:?}");
    assert_eq!(attempts.load(Ordering::SeqCst), 20);
}

#[tokio::test(start_paused = true)]
async fn stop_mid_run_resolves_every_item_exactly_once() {
    let manager = manager(4, 2);
    let finished = Arc::new(AtomicUsize::new(0));
    let started = Arc::new(AtomicUsize::new(0));
    let calls = CallCounts::new(100);
    let (on_ok, on_err) = (calls.clone(), calls.clone());
    let (finished_in, started_in) = (Arc::clone(&finished), Arc::clone(&started));
    let run = manager
        .process(0..100usize, move |i| {
            let (finished, started) = (Arc::clone(&finished_in), Arc::clone(&started_in));
            async move {
                started.fetch_add(1, Ordering::SeqCst);
                sleep(Duration::from_millis(10)).await;
                finished.fetch_add(1, Ordering::SeqCst);
                Ok::<_, Permanent<String>>(i)
            }
        })
        .on_item_complete(move |i, _| on_ok.hit(i))
        .on_item_error(move |i, _| on_err.hit(i));
    let stopper = manager.clone();
    let started_at_stop = Arc::clone(&started);
    let stop = tokio::spawn(async move {
        sleep(Duration::from_millis(25)).await;
        stopper.stop().await;
        started_at_stop.load(Ordering::SeqCst)
    });
    let report = run.await;
    let started_when_stopped = stop.await.unwrap();

    assert_eq!(report.results.len(), 100);
    let succeeded = report.results.iter().flatten().count();
    assert_eq!(succeeded + report.errors.len(), 100);
    assert!(report
        .errors
        .iter()
        .all(|e| matches!(e.error, TaskError::Stopped)));
    // Running tasks were let finish; nothing started after the stop.
    assert_eq!(succeeded, finished.load(Ordering::SeqCst));
    assert_eq!(started.load(Ordering::SeqCst), started_when_stopped);
    assert!(
        succeeded > 0 && succeeded < 100,
        "stopped mid-run: {succeeded}"
    );
    assert_eq!(calls.counts(), vec![1; 100]);
    let stats = manager.stats();
    assert!(stats.pool.in_balance());
    assert_eq!(stats.items_succeeded + stats.items_stopped, 100);
    assert_eq!((stats.items_failed, stats.items_cancelled), (0, 0));
    // The pool names the same outcomes with the same words (items never handed to the pool
    // are stopped items, not stopped tasks).
    assert_eq!(stats.pool.succeeded, stats.items_succeeded);
    assert!(stats.pool.stopped_tasks <= stats.items_stopped);
    assert_eq!(stats.active_runs, 0);
}

#[tokio::test(start_paused = true)]
async fn callbacks_and_progress_fire_exactly_once_per_item() {
    let manager = manager(6, 3);
    let durations = random_durations(3, 120, 30);
    let calls = CallCounts::new(120);
    let (on_ok, on_err) = (calls.clone(), calls.clone());
    let progress = Arc::new(Mutex::new(Vec::new()));
    let seen = Arc::clone(&progress);
    let report = manager
        .process(0..120usize, move |i| {
            let delay = durations[i];
            async move {
                sleep(delay).await;
                if i % 5 == 0 {
                    Err(Permanent("no"))
                } else {
                    Ok(i)
                }
            }
        })
        .on_item_complete(move |i, value| {
            assert_eq!(i, *value);
            on_ok.hit(i);
        })
        .on_item_error(move |i, _| on_err.hit(i))
        .on_progress(move |p| seen.lock().unwrap().push(*p))
        .await;

    assert_eq!(calls.counts(), vec![1; 120]);
    assert_eq!(report.errors.len(), 24);
    let progress = progress.lock().unwrap();
    assert_eq!(progress.len(), 120);
    let done: Vec<u64> = progress.iter().map(|p| p.done).collect();
    assert_eq!(done, (1..=120).collect::<Vec<u64>>());
    let last = progress.last().unwrap();
    assert_eq!(
        (last.succeeded, last.failed, last.cancelled, last.stopped),
        (96, 24, 0, 0)
    );
    assert_eq!(last.total, Some(120));
    assert_eq!(last.in_flight, 0);
    assert!(last.elapsed > Duration::ZERO && last.rate_per_sec() > 0.0);
}

#[tokio::test(start_paused = true)]
async fn progress_rate_is_measured_on_the_pools_clock() {
    // 100 items of 10 ms, 10 at a time: 100 ms of virtual time, 1,000 items per second.
    let manager = manager(10, 4);
    let last = Arc::new(Mutex::new(None));
    let sink = Arc::clone(&last);
    manager
        .process(0..100, |_| async {
            sleep(Duration::from_millis(10)).await;
            Ok::<_, Permanent<String>>(())
        })
        .on_progress(move |p| *sink.lock().unwrap() = Some(*p))
        .await;
    let last = last.lock().unwrap().expect("progress reported");
    assert_eq!(last.elapsed, Duration::from_millis(100));
    assert_eq!(last.rate_per_sec(), 1_000.0);
    assert_eq!(last.fraction(), Some(1.0));
}

#[tokio::test(start_paused = true)]
async fn dropping_the_stream_stops_pulling_and_starts_nothing_more() {
    let manager = manager(4, 4);
    let pulled = Arc::new(AtomicUsize::new(0));
    let started = Arc::new(AtomicUsize::new(0));
    let counter = Arc::clone(&pulled);
    let started_in = Arc::clone(&started);
    let mut results = manager.process_iterable(
        (0u64..).inspect(move |_| {
            counter.fetch_add(1, Ordering::SeqCst);
        }),
        move |n| {
            let started = Arc::clone(&started_in);
            async move {
                started.fetch_add(1, Ordering::SeqCst);
                sleep(Duration::from_millis(10)).await;
                Ok::<_, Permanent<String>>(n)
            }
        },
    );
    for _ in 0..20 {
        results.next().await.unwrap().result.unwrap();
    }
    assert_eq!(manager.stats().active_runs, 1);
    drop(results);
    let (pulled_at_drop, started_at_drop) = (
        pulled.load(Ordering::SeqCst),
        started.load(Ordering::SeqCst),
    );

    sleep(Duration::from_secs(1)).await;
    manager.drain().await;
    assert_eq!(pulled.load(Ordering::SeqCst), pulled_at_drop);
    assert_eq!(started.load(Ordering::SeqCst), started_at_drop);
    let stats = manager.stats();
    // The items in flight at the drop (queued or running) were cancelled, not run.
    assert_eq!(
        stats.pool.cancelled as usize,
        pulled_at_drop - stats.pool.succeeded as usize
    );
    assert!(stats.pool.cancelled > 0);
    assert_eq!(stats.active_runs, 0);
}

#[tokio::test(start_paused = true)]
async fn fail_fast_cancels_the_rest_and_accounts_for_every_item() {
    let (concurrency, lookahead) = (4, 2);
    let manager = manager(concurrency, lookahead);
    let started = Arc::new(AtomicUsize::new(0));
    let started_in = Arc::clone(&started);
    let calls = CallCounts::new(100);
    let (on_ok, on_err) = (calls.clone(), calls.clone());
    let report = manager
        .process(0..100usize, move |i| {
            started_in.fetch_add(1, Ordering::SeqCst);
            async move {
                if i == 10 {
                    sleep(Duration::from_millis(5)).await;
                    return Err(Permanent("item 10 is broken"));
                }
                sleep(Duration::from_millis(10)).await;
                Ok(i)
            }
        })
        .fail_fast()
        .on_item_complete(move |i, _| on_ok.hit(i))
        .on_item_error(move |i, _| on_err.hit(i))
        .await;

    assert_eq!(calls.counts(), vec![1; 100]);
    let succeeded = report.results.iter().flatten().count();
    assert_eq!(succeeded + report.errors.len(), 100);
    let failed: Vec<usize> = report
        .errors
        .iter()
        .filter(|e| matches!(e.error, TaskError::Failed { .. }))
        .map(|e| e.index)
        .collect();
    assert_eq!(failed, [10]);
    assert!(report
        .errors
        .iter()
        .filter(|e| e.index != 10)
        .all(|e| matches!(e.error, TaskError::Cancelled)));
    // Nothing was pulled past the window around the failure.
    assert!(started.load(Ordering::SeqCst) <= 11 + concurrency + lookahead);
    assert!(succeeded < 100 - 11 - concurrency - lookahead);
}

#[tokio::test(start_paused = true)]
async fn without_fail_fast_every_item_runs_despite_failures() {
    let manager = manager(4, 2);
    let report = manager
        .process(0..40usize, |i| async move {
            sleep(Duration::from_millis(1)).await;
            if i == 3 {
                Err(Permanent("broken"))
            } else {
                Ok(i)
            }
        })
        .await;
    assert_eq!(report.results.iter().flatten().count(), 39);
    assert_eq!(report.errors.len(), 1);
}

#[tokio::test(start_paused = true)]
async fn a_streamed_run_reports_why_it_ended_early() {
    let manager = manager(2, 1);
    let mut results = manager
        .process_iterable(0u32.., |n| async move {
            sleep(Duration::from_millis(1)).await;
            if n == 5 {
                Err(Permanent(n))
            } else {
                Ok(n)
            }
        })
        .fail_fast();
    let mut seen = 0;
    while let Some(item) = results.next().await {
        seen += 1;
        assert!(item.index < 5 + 2 + 1 + 1, "index {}", item.index);
    }
    assert_eq!(
        results.stop_reason(),
        Some(StopReason::FailFast { index: 5 })
    );
    assert_eq!(seen, results.pulled());
}

#[tokio::test(start_paused = true)]
async fn destroy_returns_with_no_task_running_and_none_starting_later() {
    struct Running(Arc<AtomicUsize>);
    impl Drop for Running {
        fn drop(&mut self) {
            self.0.fetch_sub(1, Ordering::SeqCst);
        }
    }
    let manager = manager(8, 4);
    let running = Arc::new(AtomicUsize::new(0));
    let started = Arc::new(AtomicUsize::new(0));
    let (running_in, started_in) = (Arc::clone(&running), Arc::clone(&started));
    let results = manager.process_iterable(0u64.., move |n| {
        let (running, started) = (Arc::clone(&running_in), Arc::clone(&started_in));
        async move {
            started.fetch_add(1, Ordering::SeqCst);
            running.fetch_add(1, Ordering::SeqCst);
            let _guard = Running(running);
            sleep(Duration::from_secs(60)).await;
            Ok::<_, Permanent<String>>(n)
        }
    });
    let consumer = tokio::spawn(results.collect::<Vec<_>>());
    sleep(Duration::from_secs(1)).await;
    assert_eq!(running.load(Ordering::SeqCst), 8);

    manager.destroy().await;
    assert_eq!(running.load(Ordering::SeqCst), 0);
    let started_at_destroy = started.load(Ordering::SeqCst);
    let items = consumer.await.unwrap();
    assert!(items
        .iter()
        .all(|item| matches!(item.result, Err(TaskError::Stopped))));
    assert_eq!(items.len(), 8 + 4);
    sleep(Duration::from_secs(120)).await;
    assert_eq!(started.load(Ordering::SeqCst), started_at_destroy);
    assert!(manager.is_stopped());
    assert!(matches!(
        manager
            .enqueue(|| async { Ok::<_, Permanent<String>>(1) })
            .await,
        Err(TaskError::Stopped)
    ));
}

#[tokio::test(start_paused = true)]
async fn pause_holds_runs_at_their_window_until_resume() {
    let manager = manager(3, 2);
    manager.pause();
    let started = Arc::new(AtomicUsize::new(0));
    let started_in = Arc::clone(&started);
    let run = tokio::spawn(
        manager
            .process_corresponding(0..20u32, move |n| {
                started_in.fetch_add(1, Ordering::SeqCst);
                async move { Ok::<_, Permanent<String>>(n) }
            })
            .into_future(),
    );
    sleep(Duration::from_secs(5)).await;
    assert_eq!(started.load(Ordering::SeqCst), 0);
    let stats = manager.stats();
    assert_eq!((stats.pool.queued, stats.items_pulled), (5, 5));
    manager.resume();
    let results = run.await.unwrap();
    assert_eq!(results.len(), 20);
    assert_eq!(started.load(Ordering::SeqCst), 20);
}

#[tokio::test(start_paused = true)]
async fn process_stream_pulls_an_async_input_as_room_frees_up() {
    let manager = manager(4, 0);
    let pages = stream::unfold(0u32, |page| async move {
        (page < 10).then_some(page)?;
        sleep(Duration::from_millis(2)).await; // e.g. fetching the next page of a listing
        Some((page, page + 1))
    });
    let results = manager
        .process_stream(pages, |page| async move {
            sleep(Duration::from_millis(5)).await;
            Ok::<_, Permanent<String>>(page * 100)
        })
        .total(10)
        .collect_results()
        .await;
    assert!(results.errors.is_empty());
    let values: Vec<u32> = results.results.into_iter().map(Option::unwrap).collect();
    assert_eq!(values, (0..10).map(|p| p * 100).collect::<Vec<_>>());
}

#[tokio::test(start_paused = true)]
async fn single_tasks_share_the_pool_and_its_stats() {
    let manager = manager(2, 0);
    let handle = manager.enqueue(|| async { Ok::<_, Permanent<String>>(41 + 1) });
    assert_eq!(handle.await.unwrap(), 42);
    manager.set_concurrency(5).unwrap();
    assert_eq!(manager.concurrency(), 5);
    assert!(manager.set_concurrency(0).is_err());
    let stats = manager.stats();
    assert_eq!((stats.pool.succeeded, stats.items_pulled), (1, 0));
}

#[tokio::test(start_paused = true)]
async fn an_empty_input_finishes_at_once() {
    let manager = manager(2, 0);
    let report = manager
        .process(Vec::<u8>::new(), |b| async move {
            Ok::<_, Permanent<String>>(b)
        })
        .await;
    assert!(report.results.is_empty() && report.errors.is_empty());
    let ordered = manager
        .process_corresponding(Vec::<u8>::new(), |b| async move {
            Ok::<_, Permanent<String>>(b)
        })
        .await;
    assert!(ordered.is_empty());
    assert_eq!(manager.stats().active_runs, 0);
}

#[tokio::test(start_paused = true)]
async fn events_reach_the_observers_given_to_the_builder() {
    use pool_core::{Event, Observer, Outcome};

    #[derive(Debug, Clone, Default)]
    struct Outcomes(Arc<Mutex<Vec<Outcome>>>);
    impl Observer for Outcomes {
        fn on_event(&self, event: &Event) {
            if let Event::TaskFinished(record) = event {
                self.0.lock().unwrap().push(record.outcome);
            }
        }
    }

    let outcomes = Outcomes::default();
    let manager = TaskManager::builder()
        .concurrency(3)
        .retries(0)
        .observer(outcomes.clone())
        .build()
        .unwrap();
    manager
        .process(0..30u32, |n| async move {
            sleep(Duration::from_millis(1)).await;
            if n % 10 == 0 {
                Err(Permanent(n))
            } else {
                Ok(n)
            }
        })
        .await;
    let outcomes = outcomes.0.lock().unwrap();
    assert_eq!(outcomes.len(), 30);
    assert_eq!(outcomes.iter().filter(|o| o.is_success()).count(), 27);
}

#[tokio::test(start_paused = true)]
async fn a_custom_classifier_decides_which_errors_are_retried() {
    let manager = TaskManager::builder()
        .concurrency(2)
        .retries(3)
        .retry_delay(Duration::from_millis(1))
        .build()
        .unwrap();
    let attempts = CallCounts::new(2);
    let counter = attempts.clone();
    // Status codes: 503 is worth retrying, 404 is not.
    let results = manager
        .classify_errors(|status: &u16| {
            if *status >= 500 {
                pool_core::ErrorClass::Throttled
            } else {
                pool_core::ErrorClass::Fatal
            }
        })
        .process_corresponding([(0usize, 503u16), (1, 404)], move |(index, status)| {
            counter.hit(index);
            async move { Err::<(), u16>(status) }
        })
        .await;
    assert_eq!(attempts.counts(), [4, 1]);
    assert!(matches!(
        results[0],
        Err(TaskError::Failed { attempts: 4, .. })
    ));
    assert!(matches!(
        results[1],
        Err(TaskError::Failed { attempts: 1, .. })
    ));
}

#[tokio::test(start_paused = true)]
async fn stop_ends_a_run_that_waits_on_its_input() {
    let manager = manager(2, 1);
    let input = stream::iter(0..3u32).chain(stream::pending());
    let mut results =
        manager.process_stream(input, |n| async move { Ok::<_, Permanent<String>>(n) });
    for _ in 0..3 {
        results.next().await.unwrap().result.unwrap();
    }
    let stopper = manager.clone();
    tokio::spawn(async move {
        sleep(Duration::from_secs(10)).await;
        stopper.stop().await;
    });
    assert!(results.next().await.is_none());
    assert_eq!(results.stop_reason(), Some(StopReason::Stopped));
    assert_eq!(manager.stats().active_runs, 0);
}

#[tokio::test(start_paused = true)]
async fn progress_knows_the_total_of_an_exact_size_input() {
    let manager = manager(2, 1);
    let mut listed =
        manager.process_iterable(
            vec![1u8, 2, 3],
            |n| async move { Ok::<_, Permanent<String>>(n) },
        );
    assert_eq!(listed.progress().total, Some(3));
    while listed.next().await.is_some() {}
    assert_eq!(listed.progress().done, 3);

    let filtered = manager.process_iterable((0..10u8).filter(|n| n % 2 == 0), |n| async move {
        Ok::<_, Permanent<String>>(n)
    });
    assert_eq!(filtered.progress().total, None);
    assert_eq!(filtered.total(5).progress().total, Some(5));
}
