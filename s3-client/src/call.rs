//! [`Call`]: one client operation with its per-call options, run when awaited.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use futures::future::{BoxFuture, FusedFuture};
use pool_core::{CancellationToken, MakeAttempt, Metadata};

use crate::dispatch::{Dispatcher, Submitted};
use crate::error::{ClientError, Operation};
use crate::options::CallOptions;

type Start<T> = Box<dyn FnOnce(CallOptions) -> BoxFuture<'static, Result<T, ClientError>> + Send>;

/// An [`S3Client`](crate::S3Client) operation, not started yet: set per-call options, then
/// `.await` it.
///
/// A `Call` is a [`Future`]: the operation starts when it is first polled, with the options
/// set by then, so it can be awaited, `tokio::spawn`ed, joined (`join_all`) or run by a
/// stream combinator (`buffer_unordered`). Dropping it before it resolves cancels the call.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// use object_store::{memory::InMemory, path::Path};
/// use s3_client::S3Client;
/// let client = S3Client::builder(InMemory::new()).build().unwrap();
/// let path = Path::from("reports/q3.csv");
/// client.put(&path, "a,b\n1,2\n").priority(5).retries(1).await.unwrap();
/// let body = client.get(&path).bypass_pool().await.unwrap();
/// assert_eq!(&body[..], b"a,b\n1,2\n");
///
/// // Many at once: calls are futures.
/// let puts = (0..10).map(|i| client.put(&Path::from(format!("n/{i}")), "x").priority(i));
/// for result in futures::future::join_all(puts).await {
///     result.unwrap();
/// }
/// let running = tokio::spawn(client.get(&Path::from("n/3")));
/// assert_eq!(&running.await.unwrap().unwrap()[..], b"x");
/// # }
/// ```
#[must_use = "a call does nothing until awaited"]
pub struct Call<T> {
    options: CallOptions,
    state: State<T>,
}

enum State<T> {
    /// Not polled yet.
    Ready(Start<T>),
    /// A single store call, not polled yet: its pieces kept in place of a boxed closure.
    Plain(PlainCall<T>),
    /// A single store call on its way (a pool task, or its one direct attempt), polled in
    /// place: no future of its own.
    Submitted {
        submitted: Submitted<T>,
        operation: Operation,
        key: String,
    },
    Running(BoxFuture<'static, Result<T, ClientError>>),
    Done,
}

/// Queues a single store call's attempt with the call's options (the attempt's own type
/// inside, so the pool stores it and its futures unboxed).
type Submit<T> = Box<dyn FnOnce(&Dispatcher, &str, &CallOptions) -> Submitted<T> + Send>;

/// What a single store call needs to start: one allocation (the attempt, in `submit`).
struct PlainCall<T> {
    dispatcher: Dispatcher,
    operation: Operation,
    key: String,
    submit: Submit<T>,
}

impl<T: Send + 'static> Call<T> {
    /// `operation` on `key`: `attempt` run by `dispatcher` with the call's options, its
    /// error named after the operation and the key.
    pub(crate) fn plain<A>(
        dispatcher: Dispatcher,
        operation: Operation,
        key: String,
        attempt: A,
    ) -> Self
    where
        A: MakeAttempt<Ok = T, Error = object_store::Error>,
    {
        Call {
            options: CallOptions::default(),
            state: State::Plain(PlainCall {
                dispatcher,
                operation,
                key,
                submit: Box::new(move |dispatcher, key, options| {
                    dispatcher.run(operation.as_str(), key, options, attempt)
                }),
            }),
        }
    }
}

impl<T> Call<T> {
    pub(crate) fn new(
        start: impl FnOnce(CallOptions) -> BoxFuture<'static, Result<T, ClientError>> + Send + 'static,
    ) -> Self {
        Call {
            options: CallOptions::default(),
            state: State::Ready(Box::new(start)),
        }
    }

    /// Replaces every per-call option at once.
    pub fn options(mut self, options: CallOptions) -> Self {
        self.options = options;
        self
    }

    /// Higher runs first. Default 0.
    pub fn priority(mut self, priority: i32) -> Self {
        self.options = self.options.priority(priority);
        self
    }

    /// Retries after the first attempt. Default: the pool's.
    pub fn retries(mut self, retries: u32) -> Self {
        self.options = self.options.retries(retries);
        self
    }

    /// Per-attempt timeout. Default: the pool's.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.options = self.options.timeout(timeout);
        self
    }

    /// No timeout for this call.
    pub fn no_timeout(mut self) -> Self {
        self.options = self.options.no_timeout();
        self
    }

    /// Labels for events and metrics.
    pub fn metadata(mut self, metadata: Metadata) -> Self {
        self.options = self.options.metadata(metadata);
        self
    }

    /// Cancelling the token resolves the call with `Cancelled`.
    pub fn cancellation(mut self, token: CancellationToken) -> Self {
        self.options = self.options.cancellation(token);
        self
    }

    /// By when the call must have resolved (see [`CallOptions::deadline`]).
    pub fn deadline(mut self, deadline: std::time::Instant) -> Self {
        self.options = self.options.deadline(deadline);
        self
    }

    /// Whose share of the pool the call's requests start from (see
    /// [`CallOptions::tenant`]).
    pub fn tenant(mut self, tenant: impl Into<pool_core::Tenant>) -> Self {
        self.options = self.options.tenant(tenant);
        self
    }

    /// Byte-level progress of a transfer (see [`CallOptions::on_progress`]).
    pub fn on_progress(
        mut self,
        progress: impl Fn(crate::TransferProgress) + Send + Sync + 'static,
    ) -> Self {
        self.options = self.options.on_progress(progress);
        self
    }

    /// The read frees its pool slot when the response starts (see
    /// [`CallOptions::release_slot_at_response`]).
    pub fn release_slot_at_response(mut self) -> Self {
        self.options = self.options.release_slot_at_response();
        self
    }

    /// Calls the store directly, skipping the pool (see [`CallOptions::bypass_pool`]).
    pub fn bypass_pool(mut self) -> Self {
        self.options = self.options.bypass_pool();
        self
    }
}

impl<T> Future for Call<T> {
    type Output = Result<T, ClientError>;

    /// Starts the operation on the first poll, with the options set until then.
    ///
    /// # Panics
    /// Polled again after it resolved (as for any future, a caller's error; a `Call` is
    /// `FusedFuture`, whose `is_terminated` says when).
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.get_mut();
        if let State::Ready(_) | State::Plain(_) = this.state {
            let options = std::mem::take(&mut this.options);
            this.state = match std::mem::replace(&mut this.state, State::Done) {
                State::Ready(start) => State::Running(start(options)),
                State::Plain(PlainCall {
                    dispatcher,
                    operation,
                    key,
                    submit,
                }) => State::Submitted {
                    submitted: submit(&dispatcher, &key, &options),
                    operation,
                    key,
                },
                State::Submitted { .. } | State::Running(_) | State::Done => {
                    unreachable!("matched just above")
                }
            };
        }
        let result = match &mut this.state {
            State::Running(running) => std::task::ready!(running.as_mut().poll(cx)),
            State::Submitted { submitted, .. } => {
                let outcome = std::task::ready!(Pin::new(submitted).poll(cx));
                let State::Submitted { operation, key, .. } =
                    std::mem::replace(&mut this.state, State::Done)
                else {
                    unreachable!("matched just above")
                };
                outcome.map_err(|error| ClientError::new(operation, key, error))
            }
            State::Ready(_) | State::Plain(_) | State::Done => {
                panic!("a Call was polled after it resolved")
            }
        };
        this.state = State::Done;
        Poll::Ready(result)
    }
}

impl<T> FusedFuture for Call<T> {
    fn is_terminated(&self) -> bool {
        matches!(self.state, State::Done)
    }
}

impl<T> fmt::Debug for Call<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = match self.state {
            State::Ready(_) | State::Plain(_) => "not started",
            State::Submitted { .. } | State::Running(_) => "running",
            State::Done => "done",
        };
        f.debug_struct("Call")
            .field("options", &self.options)
            .field("state", &state)
            .finish()
    }
}
