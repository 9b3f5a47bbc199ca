//! The tokio executor.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use super::{BoxFuture, Executor, ResettableSleep};

/// Runs the pool on a tokio runtime. Under `tokio::time::pause()` its clock is virtual, so
/// tests of timeouts and backoff run instantly.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// use pool_core::{Pool, TokioExecutor};
/// let pool = Pool::builder().executor(TokioExecutor::current()).build().unwrap();
/// # let _ = pool;
/// # }
/// ```
#[derive(Debug, Clone)]
pub struct TokioExecutor {
    handle: tokio::runtime::Handle,
    /// The runtime is multi-threaded: its clock cannot be paused (tokio refuses
    /// `time::pause()` and `start_paused` there), so its time is the system's.
    system_clock: bool,
}

impl TokioExecutor {
    /// The runtime this is called from. `None` outside a tokio runtime.
    pub fn try_current() -> Option<Self> {
        tokio::runtime::Handle::try_current()
            .ok()
            .map(Self::from_handle)
    }

    /// The runtime this is called from.
    ///
    /// # Panics
    /// Outside a tokio runtime; use [`try_current`](Self::try_current) to get an `Option`.
    pub fn current() -> Self {
        Self::from_handle(tokio::runtime::Handle::current())
    }

    /// A given runtime.
    pub fn from_handle(handle: tokio::runtime::Handle) -> Self {
        let system_clock = handle.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread;
        Self {
            handle,
            system_clock,
        }
    }
}

impl Executor for TokioExecutor {
    fn spawn(&self, task: BoxFuture<()>) {
        drop(self.handle.spawn(task));
    }

    fn sleep(&self, duration: Duration) -> BoxFuture<()> {
        let _runtime = self.handle.enter();
        Box::pin(tokio::time::sleep(duration))
    }

    fn sleep_in_task(&self, duration: Duration) -> BoxFuture<()> {
        // Polled by this runtime (spawned through `self.handle`): its context is entered.
        Box::pin(tokio::time::sleep(duration))
    }

    /// tokio's own [`Sleep`](tokio::time::Sleep): reset to a later deadline while it is
    /// registered, it stays in the timer wheel and only its deadline changes.
    fn resettable_sleep(&self, deadline: Instant) -> Option<Pin<Box<dyn ResettableSleep>>> {
        // Polled by this runtime (spawned through `self.handle`): its context is entered.
        Some(Box::pin(tokio::time::sleep_until(deadline.into())))
    }

    /// The system's clock on a multi-threaded runtime, whose timers run on it whatever
    /// runtime the caller is in; otherwise the caller's tokio clock (virtual if paused).
    fn now(&self) -> Instant {
        if self.system_clock {
            Instant::now()
        } else {
            tokio::time::Instant::now().into_std()
        }
    }

    /// Only on a multi-threaded runtime: a current-thread one can be paused at any time
    /// (`tokio::time::pause`), after the pool was built too.
    fn now_is_system_clock(&self) -> bool {
        self.system_clock
    }
}

impl ResettableSleep for tokio::time::Sleep {
    fn reset(self: Pin<&mut Self>, deadline: Instant) {
        tokio::time::Sleep::reset(self, deadline.into());
    }

    fn poll_elapsed(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        self.poll(cx)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;

    use super::*;
    use crate::{Pool, TaskError, TaskOptions, Transient};

    /// Counts which of the two sleeps the pool asks for.
    #[derive(Debug)]
    struct Counting {
        tokio: TokioExecutor,
        sleeps: AtomicUsize,
        in_task: AtomicUsize,
        /// Resettable sleeps made; `None`: it has none (the default), as an executor that
        /// does not override `resettable_sleep`.
        resettable: Option<AtomicUsize>,
    }

    impl Counting {
        fn new(tokio: TokioExecutor, resettable: bool) -> Self {
            Counting {
                tokio,
                sleeps: AtomicUsize::new(0),
                in_task: AtomicUsize::new(0),
                resettable: resettable.then(|| AtomicUsize::new(0)),
            }
        }
    }

    impl Executor for Counting {
        fn spawn(&self, task: BoxFuture<()>) {
            self.tokio.spawn(task);
        }

        fn sleep(&self, duration: Duration) -> BoxFuture<()> {
            self.sleeps.fetch_add(1, Ordering::SeqCst);
            self.tokio.sleep(duration)
        }

        fn sleep_in_task(&self, duration: Duration) -> BoxFuture<()> {
            self.in_task.fetch_add(1, Ordering::SeqCst);
            self.tokio.sleep_in_task(duration)
        }

        fn resettable_sleep(&self, deadline: Instant) -> Option<Pin<Box<dyn ResettableSleep>>> {
            self.resettable.as_ref()?.fetch_add(1, Ordering::SeqCst);
            self.tokio.resettable_sleep(deadline)
        }

        fn now(&self) -> Instant {
            self.tokio.now()
        }
    }

    /// A pool of one runner, no retries and a 30 s timeout, on a counting executor that has a
    /// resettable sleep.
    fn one_runner_with_a_resettable_sleep() -> (Arc<Counting>, Pool) {
        let executor = Arc::new(Counting::new(TokioExecutor::current(), true));
        let pool = Pool::builder()
            .executor_arc(Arc::clone(&executor) as Arc<dyn Executor>)
            .concurrency(1)
            .retries(0)
            .timeout(Duration::from_secs(30))
            .build()
            .unwrap();
        (executor, pool)
    }

    /// An attempt's timeout is a sleep made by the runner, in the runtime's context, though
    /// the task was enqueued from a thread outside any runtime: it fires.
    #[test]
    fn an_attempts_timeout_is_made_in_the_runners_task_and_fires() {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let executor = Arc::new(Counting::new(
            TokioExecutor::from_handle(runtime.handle().clone()),
            false,
        ));
        let pool = Pool::builder()
            .executor_arc(Arc::clone(&executor) as Arc<dyn Executor>)
            .retries(0)
            .build()
            .unwrap();
        // Enqueued here, outside the runtime: only the runner is inside it.
        let handle = pool.enqueue(
            std::future::pending::<Result<(), Transient<&str>>>,
            TaskOptions::new().timeout(Duration::from_millis(20)),
        );
        let result = runtime.block_on(async {
            tokio::time::timeout(Duration::from_secs(60), handle)
                .await
                .expect("the attempt's timeout fires")
        });
        assert!(
            matches!(result, Err(TaskError::TimedOut { .. })),
            "{result:?}"
        );
        assert_eq!(executor.in_task.load(Ordering::SeqCst), 1);
        assert_eq!(executor.sleeps.load(Ordering::SeqCst), 0);
    }

    /// A runner with work keeps one sleep for all its attempts' timeouts, moved to each
    /// attempt's end: twelve tasks run one after another by one runner, each waiting, make
    /// one sleep (one per attempt before: fails with a sleep per attempt, 12 `in_task`).
    /// Moved earlier (20 ms after 30 s) it fires at the earlier moment — virtual time ends
    /// under a second, 30 s if the move were lost — and moved later it fires at the end of
    /// the pool's 30 s timeout.
    #[tokio::test(start_paused = true)]
    async fn a_runner_keeps_one_sleep_for_its_attempts_timeouts() {
        let (executor, pool) = one_runner_with_a_resettable_sleep();
        pool.pause();
        let waits_once = || async {
            tokio::task::yield_now().await;
            Ok::<_, Transient<&str>>(())
        };
        let quick: Vec<_> = (0..10)
            .map(|_| pool.enqueue(waits_once, TaskOptions::new()))
            .collect();
        let short = pool.enqueue(
            std::future::pending::<Result<(), Transient<&str>>>,
            TaskOptions::new().timeout(Duration::from_millis(20)),
        );
        let long = pool.enqueue(
            std::future::pending::<Result<(), Transient<&str>>>,
            TaskOptions::new(),
        );
        let started = tokio::time::Instant::now();
        pool.resume();
        for handle in quick {
            handle.await.unwrap();
        }
        let short = short.await;
        assert!(
            matches!(short, Err(TaskError::TimedOut { timeout, .. }) if timeout == Duration::from_millis(20)),
            "{short:?}"
        );
        assert!(
            started.elapsed() < Duration::from_secs(1),
            "the 20 ms timeout fired after {:?}",
            started.elapsed()
        );
        let long = long.await;
        assert!(
            matches!(long, Err(TaskError::TimedOut { timeout, .. }) if timeout == Duration::from_secs(30)),
            "{long:?}"
        );
        let resettable = executor.resettable.as_ref().unwrap().load(Ordering::SeqCst);
        let in_task = executor.in_task.load(Ordering::SeqCst);
        assert_eq!(
            (resettable, in_task),
            (1, 0),
            "one sleep for twelve attempts"
        );
    }

    /// A kept sleep still set for an earlier attempt's cut is moved to a later attempt's cut
    /// only if it fires while that attempt waits; it then does not end it. The first task
    /// waits 10 s (cut at 30 s), the second 25 s from 10 s (cut at 40 s): it outlives the
    /// first's cut and succeeds. Fails if a sleep that fires for an earlier cut ends the
    /// attempt (the second times out at 30 s).
    #[tokio::test(start_paused = true)]
    async fn an_earlier_attempts_cut_does_not_cut_a_later_one() {
        let (executor, pool) = one_runner_with_a_resettable_sleep();
        let sleeps = |seconds| {
            move || async move {
                tokio::time::sleep(Duration::from_secs(seconds)).await;
                Ok::<_, Transient<&str>>(())
            }
        };
        pool.pause();
        let first = pool.enqueue(sleeps(10), TaskOptions::new());
        let second = pool.enqueue(sleeps(25), TaskOptions::new());
        let started = tokio::time::Instant::now();
        pool.resume();
        first.await.unwrap();
        let second = second.await;
        assert!(second.is_ok(), "{second:?}");
        let elapsed = started.elapsed();
        assert!(
            elapsed >= Duration::from_secs(35) && elapsed < Duration::from_secs(36),
            "{elapsed:?}"
        );
        let resettable = executor.resettable.as_ref().unwrap().load(Ordering::SeqCst);
        assert_eq!(resettable, 1, "one sleep for both attempts");
    }

    /// An attempt that nothing cuts (no timeout, no deadline) drops the sleep its runner kept
    /// for an earlier attempt's timeout: set 30 s ahead, it would wake the runner then for
    /// nothing (the attempt polled a third time) and a paused clock would jump to it. Fails
    /// with the kept sleep left set: 3 polls.
    #[tokio::test(start_paused = true)]
    async fn an_attempt_nothing_cuts_drops_the_runners_kept_sleep() {
        let (executor, pool) = one_runner_with_a_resettable_sleep();
        let waits_once = || async {
            tokio::task::yield_now().await;
            Ok::<_, Transient<&str>>(())
        };
        // Both queued before the runner starts: it runs them one after the other, keeping
        // its sleep between them (a runner that runs dry drops it).
        pool.pause();
        let first = pool.enqueue(waits_once, TaskOptions::new());
        let (send, receive) = tokio::sync::oneshot::channel::<()>();
        let receive = std::sync::Mutex::new(Some(receive));
        let polls = Arc::new(AtomicUsize::new(0));
        let counted = Arc::clone(&polls);
        let waits_for_the_message = move || {
            let mut receive = receive.lock().unwrap().take().expect("one attempt");
            let polls = Arc::clone(&counted);
            std::future::poll_fn(move |cx| {
                polls.fetch_add(1, Ordering::SeqCst);
                std::pin::Pin::new(&mut receive)
                    .poll(cx)
                    .map(|_| Ok::<_, Transient<&str>>(()))
            })
        };
        let handle = pool.enqueue(waits_for_the_message, TaskOptions::new().no_timeout());
        pool.resume();
        first.await.unwrap();
        tokio::time::sleep(Duration::from_secs(60)).await;
        send.send(()).unwrap();
        handle.await.unwrap();
        assert_eq!(polls.load(Ordering::SeqCst), 2, "woken for nothing");
        assert_eq!(
            executor.resettable.as_ref().unwrap().load(Ordering::SeqCst),
            1
        );
    }
}
