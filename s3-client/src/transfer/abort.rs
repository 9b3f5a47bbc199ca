//! Multipart uploads that cannot be left behind: an upload that fails, or whose call is
//! dropped half-way, is aborted once its parts in flight have stopped.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use object_store::multipart::MultipartStore;
use object_store::path::Path;
use object_store::{MultipartId, MultipartUpload};
use pool_core::CancellationToken;
use tokio::sync::Notify;

use crate::dispatch::{attempt, Dispatcher};
use crate::options::CallOptions;

/// Counts the part attempts running now, so that an abort can wait until none is.
#[derive(Debug, Clone, Default)]
pub(crate) struct Running(Arc<RunningState>);

#[derive(Debug, Default)]
struct RunningState {
    count: AtomicUsize,
    idle: Notify,
}

/// One running attempt; dropping it (the attempt ended or was dropped) counts it out.
#[derive(Debug)]
pub(crate) struct RunningAttempt(Arc<RunningState>);

impl Running {
    pub(crate) fn enter(&self) -> RunningAttempt {
        self.0.count.fetch_add(1, Ordering::SeqCst);
        RunningAttempt(Arc::clone(&self.0))
    }

    /// Resolves once no attempt is running.
    pub(crate) async fn idle(&self) {
        loop {
            let notified = self.0.idle.notified();
            let mut notified = std::pin::pin!(notified);
            notified.as_mut().enable();
            if self.0.count.load(Ordering::SeqCst) == 0 {
                return;
            }
            notified.await;
        }
    }
}

impl Drop for RunningAttempt {
    fn drop(&mut self) {
        if self.0.count.fetch_sub(1, Ordering::SeqCst) == 1 {
            self.0.idle.notify_waiters();
        }
    }
}

/// A multipart upload created through a `MultipartStore`, until it is completed or
/// aborted. Its parts run under [`part_options`](Self::part_options), whose cancellation
/// token it holds, and count themselves in [`running`](Self::running).
///
/// Dropped before [`completed`](Self::completed) or [`abort`](Self::abort) (the call was
/// dropped mid-upload), it cancels the parts and sends the abort in the background: a
/// tokio task on the current runtime awaits it (a failure is logged), or, outside a tokio
/// runtime, a detached task of the client's pool runs it. The abort waits until no part
/// attempt is running, so that no part lands after it.
pub(crate) struct PendingUpload {
    store: Arc<dyn MultipartStore>,
    path: Path,
    id: MultipartId,
    dispatcher: Dispatcher,
    call: CallOptions,
    parts: CancellationToken,
    running: Running,
    armed: bool,
}

impl PendingUpload {
    pub(crate) fn new(
        store: Arc<dyn MultipartStore>,
        path: Path,
        id: MultipartId,
        dispatcher: Dispatcher,
        call: &CallOptions,
    ) -> Self {
        // Parts are cancelled with the call, and also on their own when the upload ends.
        let parts = match call.task.cancellation_value() {
            Some(token) => token.child_token(),
            None => CancellationToken::new(),
        };
        PendingUpload {
            store,
            path,
            id,
            dispatcher,
            call: call.clone(),
            parts,
            running: Running::default(),
            armed: true,
        }
    }

    pub(crate) fn id(&self) -> &MultipartId {
        &self.id
    }

    /// The options of each part: the call's, cancelled when the upload is abandoned.
    pub(crate) fn part_options(&self) -> CallOptions {
        self.call.clone().cancellation(self.parts.clone())
    }

    pub(crate) fn running(&self) -> &Running {
        &self.running
    }

    /// The upload was completed: nothing to abort.
    pub(crate) fn completed(mut self) {
        self.armed = false;
    }

    /// Aborts the upload now (its parts have all ended). Best effort: a failed abort is
    /// logged (a bucket lifecycle rule is the backstop).
    pub(crate) async fn abort(mut self) {
        self.armed = false;
        self.parts.cancel();
        self.running.idle().await;
        let (operation, key, options) = self.abort_call();
        let aborted = self
            .dispatcher
            .run(operation, &key, &options, self.abort_attempt())
            .await;
        if let Err(error) = aborted {
            tracing::warn!(path = %self.path, %error, "aborting a failed upload failed");
        }
    }

    /// The abort's operation, key and options: at least three retries, whatever the call
    /// allowed its parts, and not cancelled with it.
    fn abort_call(&self) -> (&'static str, String, CallOptions) {
        let retries = self.call.task.retries_value().unwrap_or(3).max(3);
        let mut options = self.call.clone().retries(retries);
        options.task = options.task.no_cancellation();
        ("abort_multipart", self.path.to_string(), options)
    }

    /// One abort request, after the parts still running have stopped.
    fn abort_attempt(&self) -> crate::dispatch::Attempt<()> {
        let (store, path, id) = (Arc::clone(&self.store), self.path.clone(), self.id.clone());
        let running = self.running.clone();
        attempt(move || {
            let (store, path, id, running) = (
                Arc::clone(&store),
                path.clone(),
                id.clone(),
                running.clone(),
            );
            async move {
                running.idle().await;
                store.abort_multipart(&path, &id).await
            }
        })
    }
}

impl Drop for PendingUpload {
    fn drop(&mut self) {
        if !self.armed {
            return;
        }
        self.parts.cancel();
        tracing::debug!(path = %self.path, "upload dropped mid-way: aborting it");
        let (operation, key, options) = self.abort_call();
        let run = self.abort_attempt();
        let dispatcher = self.dispatcher.clone();
        let path = self.path.clone();
        match tokio::runtime::Handle::try_current() {
            Ok(runtime) => {
                runtime.spawn(async move {
                    if let Err(error) = dispatcher.run(operation, &key, &options, run).await {
                        tracing::warn!(%path, %error, "aborting a dropped upload failed");
                    }
                });
            }
            Err(_) => dispatcher.run_detached(operation, &key, &options, run),
        }
    }
}

/// object_store's own `MultipartUpload`, aborted in the background if it is dropped before
/// it completed or was aborted (a pool attempt that timed out, a call that was dropped).
pub(crate) struct AbortOnDrop {
    upload: Option<Box<dyn MultipartUpload>>,
    path: Path,
}

impl AbortOnDrop {
    pub(crate) fn new(upload: Box<dyn MultipartUpload>, path: Path) -> Self {
        AbortOnDrop {
            upload: Some(upload),
            path,
        }
    }

    pub(crate) fn upload(&mut self) -> &mut Box<dyn MultipartUpload> {
        self.upload
            .as_mut()
            .expect("the upload is only taken when it ends")
    }

    /// The upload ended (completed or aborted): nothing to do when dropped.
    pub(crate) fn ended(mut self) {
        self.upload = None;
    }
}

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        let Some(mut upload) = self.upload.take() else {
            return;
        };
        let path = self.path.clone();
        match tokio::runtime::Handle::try_current() {
            Ok(runtime) => {
                runtime.spawn(async move {
                    if let Err(error) = upload.abort().await {
                        tracing::warn!(%path, %error, "aborting a dropped upload failed");
                    }
                });
            }
            Err(_) => {
                tracing::warn!(%path, "a multipart upload was dropped outside a tokio runtime and is left behind")
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn idle_waits_for_every_running_attempt() {
        let running = Running::default();
        running.idle().await;
        let (first, second) = (running.enter(), running.enter());
        let waiter = tokio::spawn({
            let running = running.clone();
            async move { running.idle().await }
        });
        drop(first);
        tokio::task::yield_now().await;
        assert!(!waiter.is_finished());
        drop(second);
        tokio::time::timeout(std::time::Duration::from_secs(30), waiter)
            .await
            .expect("idle once none runs")
            .unwrap();
    }
}
