//! A tower [`Layer`] and [`Service`] that run requests
//! through a [`Pool`], so s3pool's priority queue, concurrency limit, admission policies and
//! observers sit inside a tower / axum / tonic stack.
//!
//! Each request becomes one pool task with the options a closure reads from the request
//! (priority, metadata, timeout). The task waits for the inner service to be ready and calls
//! it once: the pool's retries are off for these tasks, because `call` consumes the request
//! (use tower's `retry` layer around this one if requests can be cloned).
//!
//! ## `poll_ready`
//! [`PoolService`] is always ready: the pool's queue is the buffer, and requests wait there
//! in priority order rather than in `poll_ready`. The inner service's own `poll_ready` is
//! awaited inside the task, after it has a pool slot. To shed load instead of queueing
//! without bound, set [`PoolLayer::max_queued`]: a request that finds that many tasks queued
//! fails at once with [`TaskError::Rejected`].

use std::fmt;
use std::future::{poll_fn, Future};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use ::tower::{Layer, Service};

use crate::admission::{Rejection, RejectionKind};
use crate::error::TaskError;
use crate::handle::TaskHandle;
use crate::pool::Pool;
use crate::task::{ErrorClass, TaskOptions};

/// Reads a request's task options (priority, metadata, timeout).
pub trait RequestOptions<Req> {
    /// The options of the task that serves `request`.
    fn options(&self, request: &Req) -> TaskOptions;
}

impl<Req, F: Fn(&Req) -> TaskOptions> RequestOptions<Req> for F {
    fn options(&self, request: &Req) -> TaskOptions {
        self(request)
    }
}

/// Every request gets [`TaskOptions::new`]: priority 0, the pool's timeout.
#[derive(Debug, Clone, Copy, Default)]
pub struct DefaultOptions;

impl<Req> RequestOptions<Req> for DefaultOptions {
    fn options(&self, _request: &Req) -> TaskOptions {
        TaskOptions::new()
    }
}

/// Options with the priority a closure reads from the request.
#[derive(Clone, Copy)]
pub struct ByPriority<F>(F);

impl<F> fmt::Debug for ByPriority<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ByPriority(..)")
    }
}

impl<Req, F: Fn(&Req) -> i32> RequestOptions<Req> for ByPriority<F> {
    fn options(&self, request: &Req) -> TaskOptions {
        TaskOptions::new().priority((self.0)(request))
    }
}

/// Classifies the inner service's errors for the pool's events (what a circuit breaker or an
/// adaptive rate limit learns from).
pub trait ClassifyError<E> {
    /// The class of `error`.
    fn classify(&self, error: &E) -> ErrorClass;
}

impl<E, F: Fn(&E) -> ErrorClass> ClassifyError<E> for F {
    fn classify(&self, error: &E) -> ErrorClass {
        self(error)
    }
}

/// Every error of the inner service is [`ErrorClass::Retryable`] (a sign of trouble).
#[derive(Debug, Clone, Copy, Default)]
pub struct AllRetryable;

impl<E> ClassifyError<E> for AllRetryable {
    fn classify(&self, _error: &E) -> ErrorClass {
        ErrorClass::Retryable
    }
}

/// Wraps services in a [`PoolService`] that runs each request as a task of `pool`.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// use pool_core::tower::PoolLayer;
/// use pool_core::Pool;
/// use tower::{Service, ServiceBuilder};
///
/// let pool = Pool::builder().concurrency(4).build().unwrap();
/// let mut service = ServiceBuilder::new()
///     .layer(PoolLayer::new(pool).priority(|request: &u32| *request as i32))
///     .service_fn(|request: u32| async move { Ok::<_, std::io::Error>(request * 2) });
/// assert_eq!(service.call(21).await.unwrap(), 42);
/// # }
/// ```
pub struct PoolLayer<O = DefaultOptions, C = AllRetryable> {
    pool: Pool,
    options: Arc<O>,
    classify: Arc<C>,
    max_queued: Option<usize>,
}

impl<O, C> Clone for PoolLayer<O, C> {
    fn clone(&self) -> Self {
        Self {
            pool: self.pool.clone(),
            options: Arc::clone(&self.options),
            classify: Arc::clone(&self.classify),
            max_queued: self.max_queued,
        }
    }
}

impl<O, C> fmt::Debug for PoolLayer<O, C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PoolLayer")
            .field("pool", &self.pool)
            .field("max_queued", &self.max_queued)
            .finish_non_exhaustive()
    }
}

impl PoolLayer {
    /// Requests run as tasks of `pool`, with default options; inner errors are retryable.
    pub fn new(pool: Pool) -> Self {
        Self {
            pool,
            options: Arc::new(DefaultOptions),
            classify: Arc::new(AllRetryable),
            max_queued: None,
        }
    }
}

impl<O, C> PoolLayer<O, C> {
    /// Reads each request's task options (priority, metadata, timeout, cancellation) with
    /// `options`. Retries are always 0 (see the [module docs](self)).
    pub fn options<Req, F>(self, options: F) -> PoolLayer<F, C>
    where
        F: Fn(&Req) -> TaskOptions,
    {
        PoolLayer {
            pool: self.pool,
            options: Arc::new(options),
            classify: self.classify,
            max_queued: self.max_queued,
        }
    }

    /// Reads each request's priority with `priority` (higher runs first).
    pub fn priority<Req, F>(self, priority: F) -> PoolLayer<ByPriority<F>, C>
    where
        F: Fn(&Req) -> i32,
    {
        PoolLayer {
            pool: self.pool,
            options: Arc::new(ByPriority(priority)),
            classify: self.classify,
            max_queued: self.max_queued,
        }
    }

    /// Classifies the inner service's errors. Default: all retryable.
    pub fn classify<E, F>(self, classify: F) -> PoolLayer<O, F>
    where
        F: Fn(&E) -> ErrorClass,
    {
        PoolLayer {
            pool: self.pool,
            options: self.options,
            classify: Arc::new(classify),
            max_queued: self.max_queued,
        }
    }

    /// Rejects a request at once when `max_queued` tasks are already queued. Default: no
    /// bound.
    pub fn max_queued(mut self, max_queued: usize) -> Self {
        self.max_queued = Some(max_queued);
        self
    }
}

impl<S, O, C> Layer<S> for PoolLayer<O, C> {
    type Service = PoolService<S, O, C>;

    fn layer(&self, inner: S) -> Self::Service {
        PoolService {
            inner,
            layer: self.clone(),
        }
    }
}

/// Runs each request as a pool task that calls the inner service. See the
/// [module docs](self) for `poll_ready` and retries.
pub struct PoolService<S, O = DefaultOptions, C = AllRetryable> {
    inner: S,
    layer: PoolLayer<O, C>,
}

impl<S: Clone, O, C> Clone for PoolService<S, O, C> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
            layer: self.layer.clone(),
        }
    }
}

impl<S, O, C> fmt::Debug for PoolService<S, O, C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PoolService")
            .field("layer", &self.layer)
            .finish_non_exhaustive()
    }
}

impl<S, O, C, Req> Service<Req> for PoolService<S, O, C>
where
    S: Service<Req> + Clone + Send + 'static,
    S::Future: Send + 'static,
    S::Response: Send + 'static,
    S::Error: Send + 'static,
    Req: Send + 'static,
    O: RequestOptions<Req>,
    C: ClassifyError<S::Error> + Send + Sync + 'static,
{
    type Response = S::Response;
    type Error = TaskError<S::Error>;
    type Future = ResponseFuture<S::Response, S::Error>;

    /// Always ready: requests wait in the pool's queue (see the [module docs](self)).
    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: Req) -> Self::Future {
        let layer = &self.layer;
        if let Some(max_queued) = layer.max_queued {
            let queued = layer.pool.stats().queued;
            if queued >= max_queued {
                let rejection = Rejection::new(
                    RejectionKind::Other("queue full".into()),
                    format!("{queued} requests are queued (max_queued {max_queued})"),
                );
                return ResponseFuture::refused(TaskError::Rejected(rejection));
            }
        }
        // `call` consumes the request, so the task can make one attempt only.
        let options = layer.options.options(&request).retries(0);
        let mut call = Some((self.inner.clone(), request));
        let task = move || {
            let call = call.take();
            async move {
                let (mut service, request) =
                    call.expect("retries are forced to 0, so the pool starts this task once");
                poll_fn(|cx| service.poll_ready(cx)).await?;
                service.call(request).await
            }
        };
        let classify = Arc::clone(&layer.classify);
        let handle = layer
            .pool
            .enqueue_with(task, options, move |error: &S::Error| {
                classify.classify(error)
            });
        ResponseFuture {
            state: ResponseState::Queued(handle),
        }
    }
}

/// The response of a [`PoolService`]: the task's result, or an immediate refusal.
#[must_use = "futures do nothing unless polled"]
pub struct ResponseFuture<T, E> {
    state: ResponseState<T, E>,
}

enum ResponseState<T, E> {
    Queued(TaskHandle<T, E>),
    Refused(Option<Box<TaskError<E>>>),
}

impl<T, E> ResponseFuture<T, E> {
    fn refused(error: TaskError<E>) -> Self {
        Self {
            state: ResponseState::Refused(Some(Box::new(error))),
        }
    }
}

impl<T, E> fmt::Debug for ResponseFuture<T, E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = match &self.state {
            ResponseState::Queued(handle) => format!("queued as {}", handle.id()),
            ResponseState::Refused(_) => "refused".to_owned(),
        };
        f.debug_struct("ResponseFuture")
            .field("state", &state)
            .finish()
    }
}

impl<T, E> Future for ResponseFuture<T, E> {
    type Output = Result<T, TaskError<E>>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match &mut self.get_mut().state {
            ResponseState::Queued(handle) => Pin::new(handle).poll(cx),
            ResponseState::Refused(error) => match error.take() {
                Some(error) => Poll::Ready(Err(*error)),
                // Polled again after completion: stay pending, as a fused future would.
                None => Poll::Pending,
            },
        }
    }
}
