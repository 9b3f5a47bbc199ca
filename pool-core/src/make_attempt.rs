//! What a task is to the pool: something that makes attempts.

use std::future::Future;

/// Something that makes attempts: the pool calls [`make_attempt`](Self::make_attempt) once
/// per attempt (the first, and each retry) and awaits the future it returns.
///
/// Every `FnMut() -> Fut` closure whose `Fut` resolves to a `Result` is one, so callers pass
/// closures and never name this trait; it exists so that the pool, its batches, its
/// single-flight table and the crates above say "a task" with one bound instead of four
/// (closure, future, value, error — each `Send + 'static`). As with futures'
/// `TryFuture`, the value and the error are associated types: a handle is
/// `TaskHandle<A::Ok, A::Error>`.
///
/// Implement it for a type of your own when an attempt needs more than a closure expresses
/// (a request whose body is rebuilt for each retry, say), as tower's `Service` is
/// implemented by hand where `service_fn` is not enough:
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// use std::future::{ready, Ready};
/// use pool_core::{MakeAttempt, Pool, TaskOptions, Transient};
///
/// /// Fails its first `failures` attempts, then succeeds with the attempt's number.
/// struct Flaky {
///     attempt: u32,
///     failures: u32,
/// }
///
/// impl MakeAttempt for Flaky {
///     type Ok = u32;
///     type Error = Transient<&'static str>;
///     type Attempt = Ready<Result<u32, Self::Error>>;
///
///     fn make_attempt(&mut self) -> Self::Attempt {
///         self.attempt += 1;
///         ready(if self.attempt > self.failures { Ok(self.attempt) } else { Err(Transient("not yet")) })
///     }
/// }
///
/// let pool = Pool::builder().retries(2).retry_delay(std::time::Duration::ZERO).build().unwrap();
/// let third = pool.enqueue(Flaky { attempt: 0, failures: 2 }, TaskOptions::new());
/// // A closure is a `MakeAttempt` too.
/// let first = pool.enqueue(|| async { Ok::<_, Transient<&str>>(1) }, TaskOptions::new());
/// assert_eq!(third.await.unwrap(), 3);
/// assert_eq!(first.await.unwrap(), 1);
/// # }
/// ```
pub trait MakeAttempt: Send + 'static {
    /// What a successful attempt gives.
    type Ok: Send + 'static;
    /// What a failed attempt gives; its class (retryable, throttled, fatal) comes from
    /// [`Retryable`](crate::Retryable) or the classifier the task was queued with.
    type Error: Send + 'static;
    /// One attempt.
    type Attempt: Future<Output = Result<Self::Ok, Self::Error>> + Send + 'static;

    /// Starts one attempt.
    fn make_attempt(&mut self) -> Self::Attempt;
}

impl<F, Fut, T, E> MakeAttempt for F
where
    F: FnMut() -> Fut + Send + 'static,
    Fut: Future<Output = Result<T, E>> + Send + 'static,
    T: Send + 'static,
    E: Send + 'static,
{
    type Ok = T;
    type Error = E;
    type Attempt = Fut;

    fn make_attempt(&mut self) -> Fut {
        self()
    }
}
