//! A stream fed by one pool task: the items the task sends, then the task's error if it
//! failed. Listings and bodies whose slot covers the whole stream are built on it.

use futures::future::{self, BoxFuture, Either};
use futures::stream::{self, BoxStream, StreamExt};
use pool_core::TaskError;
use tokio::sync::mpsc;

/// How the task feeding a stream ended.
pub(crate) type TaskOutcome = Result<(), TaskError<object_store::Error>>;

/// Items from `receiver` while `finished` (the feeding task) runs; once it has resolved, the
/// items still buffered, then its error if it failed. Never waits on the channel alone, so
/// the stream ends even if the pool keeps the task's closure (and its sender) alive; polling
/// the stream also drives `finished`, which is what runs the task when it bypasses the pool.
pub(crate) fn task_stream<T: Send + 'static>(
    receiver: mpsc::Receiver<T>,
    finished: BoxFuture<'static, TaskOutcome>,
) -> BoxStream<'static, Result<T, TaskError<object_store::Error>>> {
    let state = State {
        receiver,
        finished: Some(finished),
        error: None,
    };
    stream::unfold(state, next_item).boxed()
}

struct State<T> {
    receiver: mpsc::Receiver<T>,
    /// The task's result; `None` once it has resolved.
    finished: Option<BoxFuture<'static, TaskOutcome>>,
    /// The task's error, yielded after the last item.
    error: Option<TaskError<object_store::Error>>,
}

enum Step<T> {
    Item(T),
    ChannelClosed,
    Finished(TaskOutcome),
}

async fn next_item<T: Send + 'static>(
    mut state: State<T>,
) -> Option<(Result<T, TaskError<object_store::Error>>, State<T>)> {
    loop {
        let Some(finished) = state.finished.as_mut() else {
            return match state.receiver.try_recv() {
                Ok(item) => Some((Ok(item), state)),
                Err(_) => state.error.take().map(|error| (Err(error), state)),
            };
        };
        let step = {
            let received = std::pin::pin!(state.receiver.recv());
            match future::select(received, finished).await {
                Either::Left((Some(item), _)) => Step::Item(item),
                Either::Left((None, _)) => Step::ChannelClosed,
                Either::Right((outcome, _)) => Step::Finished(outcome),
            }
        };
        match step {
            Step::Item(item) => return Some((Ok(item), state)),
            Step::ChannelClosed => {
                let outcome = match state.finished.take() {
                    Some(finished) => finished.await,
                    None => Ok(()),
                };
                state.error = outcome.err();
            }
            Step::Finished(outcome) => {
                state.finished = None;
                state.error = outcome.err();
            }
        }
    }
}
