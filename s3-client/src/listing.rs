//! Listings through the pool: one task drives the store's listing and forwards each entry.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};

use futures::future::BoxFuture;
use futures::stream::{BoxStream, StreamExt};
use object_store::path::Path;
use object_store::{ObjectMeta, ObjectStore};
use pool_core::TaskError;
use tokio::sync::mpsc;

use crate::dispatch::{attempt, Dispatcher};
use crate::options::CallOptions;
use crate::task_stream::{task_stream, TaskOutcome};

/// Entries buffered between the listing task and the consumer (about one S3 page).
const CHANNEL_CAPACITY: usize = 1000;

/// Streams `prefix`'s objects (those after `offset`, when given) through the dispatcher.
///
/// The listing is one pool task: it holds one slot while it runs (pages are fetched one
/// after another, so that is one request in flight) and has no timeout unless the call sets
/// one, because the consumer sets its pace. A failed listing is retried from the start,
/// skipping the entries already sent (so it works for stores that list in no order); for
/// that it remembers every path it has yielded, so its memory grows with the listing.
pub(crate) fn pooled_list<S: ObjectStore + ?Sized>(
    store: Arc<S>,
    dispatcher: Dispatcher,
    prefix: Option<Path>,
    offset: Option<Path>,
    options: CallOptions,
) -> BoxStream<'static, Result<ObjectMeta, TaskError<object_store::Error>>> {
    let options = match options.task.timeout_value() {
        Some(_) => options,
        None => options.no_timeout(),
    };
    let key = prefix.as_ref().map(|p| p.to_string()).unwrap_or_default();
    let (sender, receiver) = mpsc::channel(CHANNEL_CAPACITY);
    let sent = Arc::new(Mutex::new(HashSet::<Path>::new()));
    let list_attempt = move || {
        let store = Arc::clone(&store);
        let (prefix, offset) = (prefix.clone(), offset.clone());
        let sender = sender.clone();
        let sent = Arc::clone(&sent);
        async move {
            // The store's own `list_with_offset` (S3 sends it as start-after).
            let mut entries = match &offset {
                Some(offset) => store.list_with_offset(prefix.as_ref(), offset),
                None => store.list(prefix.as_ref()),
            };
            while let Some(entry) = entries.next().await {
                let entry = entry?;
                let fresh = sent
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .insert(entry.location.clone());
                if fresh && sender.send(entry).await.is_err() {
                    // The consumer dropped the stream: stop listing, quietly.
                    return Ok(());
                }
            }
            Ok(())
        }
    };
    let finished: BoxFuture<'static, TaskOutcome> = Box::pin(async move {
        dispatcher
            .run("list", &key, &options, attempt(list_attempt))
            .await
    });
    task_stream(receiver, finished)
}
