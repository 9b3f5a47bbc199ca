//! Multipart uploads that cannot be left behind: an upload that fails, or whose call is
//! dropped half-way, is aborted once its parts in flight have been answered.
//!
//! A part is never cut off mid-write to abort sooner: a request cut off by its client may
//! already be whole at the server, which can store it after an abort it handles first (S3
//! says as much: an abort may have to be repeated while parts are in progress). So an
//! abandoned upload sends no new part attempt, lets the requests already sending finish
//! or fail, and only then sends the abort. A part's request runs as a task of its own
//! (on a tokio runtime), so an attempt the pool cuts off at its attempt timeout gives up
//! waiting but leaves its request to be answered — bounded by the HTTP client's own
//! request timeout — and the abort waits for that answer too.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;

use object_store::multipart::MultipartStore;
use object_store::path::Path;
use object_store::{MultipartId, MultipartUpload};
use tokio::sync::Notify;

use crate::dispatch::{attempt, Dispatcher};
use crate::options::CallOptions;

/// Counts the part attempts running now, so that an abort can wait until none is, and
/// stops new ones once the upload is abandoned.
#[derive(Debug, Clone, Default)]
pub(crate) struct Running(Arc<RunningState>);

#[derive(Debug, Default)]
struct RunningState {
    count: AtomicUsize,
    idle: Notify,
    abandoned: AtomicBool,
}

/// One running attempt; dropping it (the attempt ended or was dropped) counts it out.
#[derive(Debug)]
pub(crate) struct RunningAttempt(Arc<RunningState>);

impl Running {
    /// An attempt starts sending; `None` if the upload was abandoned (it must not send).
    ///
    /// Counted in before the flag is read, and [`abandon`](Self::abandon) sets the flag
    /// before [`idle`](Self::idle) reads the count: so either the attempt sees the flag or
    /// the abort waits for it (both sequentially consistent).
    pub(crate) fn enter(&self) -> Option<RunningAttempt> {
        self.0.count.fetch_add(1, Ordering::SeqCst);
        let attempt = RunningAttempt(Arc::clone(&self.0));
        (!self.0.abandoned.load(Ordering::SeqCst)).then_some(attempt)
    }

    /// No attempt may start sending from now on.
    pub(crate) fn abandon(&self) {
        self.0.abandoned.store(true, Ordering::SeqCst);
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
/// aborted. Its parts run under [`part_options`](Self::part_options) (never cancelled
/// mid-attempt) and each attempt enters [`running`](Self::running) before it sends.
///
/// Dropped before [`completed`](Self::completed) or [`abort`](Self::abort) (the call was
/// dropped mid-upload), it abandons the upload — parts not yet sending never send, and
/// their retries end at once — and sends the abort in the background once the attempts
/// already sending have been answered: a tokio task on the current runtime waits and
/// aborts (a failure is logged), or, outside a tokio runtime, a detached task of the
/// client's pool does.
pub(crate) struct PendingUpload {
    store: Arc<dyn MultipartStore>,
    path: Path,
    id: MultipartId,
    dispatcher: Dispatcher,
    call: CallOptions,
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
        PendingUpload {
            store,
            path,
            id,
            dispatcher,
            call: call.clone(),
            running: Running::default(),
            armed: true,
        }
    }

    pub(crate) fn id(&self) -> &MultipartId {
        &self.id
    }

    /// The options of each part: the call's, without its cancellation token (a cancelled
    /// call abandons the upload instead, which lets a part already sending finish).
    pub(crate) fn part_options(&self) -> CallOptions {
        let mut options = self.call.clone();
        options.task = options.task.no_cancellation();
        options
    }

    pub(crate) fn running(&self) -> &Running {
        &self.running
    }

    /// The upload was completed: nothing to abort.
    pub(crate) fn completed(mut self) {
        self.armed = false;
    }

    /// Abandons the upload and aborts it once no part attempt is sending. Best effort: a
    /// failed abort is logged (a bucket lifecycle rule is the backstop).
    pub(crate) async fn abort(mut self) {
        self.armed = false;
        self.running.abandon();
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

    /// One abort request, after the part attempts still sending have ended.
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
        self.running.abandon();
        tracing::debug!(path = %self.path, "upload dropped mid-way: aborting it");
        let (operation, key, options) = self.abort_call();
        let run = self.abort_attempt();
        let dispatcher = self.dispatcher.clone();
        let (path, running) = (self.path.clone(), self.running.clone());
        match tokio::runtime::Handle::try_current() {
            Ok(runtime) => {
                runtime.spawn(async move {
                    // Waited for here, not in a pool attempt whose timeout could end it.
                    running.idle().await;
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
/// it completed or was aborted (a pool attempt that timed out, a call that was dropped) —
/// after the part it was sending, if any, has been answered.
pub(crate) struct AbortOnDrop {
    upload: Option<Box<dyn MultipartUpload>>,
    path: Path,
    /// The part being sent, as a task of its own so that dropping the call does not cut
    /// it off mid-write (on a tokio runtime; elsewhere it is awaited in place).
    sending: Option<tokio::task::JoinHandle<object_store::Result<()>>>,
}

impl AbortOnDrop {
    pub(crate) fn new(upload: Box<dyn MultipartUpload>, path: Path) -> Self {
        AbortOnDrop {
            upload: Some(upload),
            path,
            sending: None,
        }
    }

    /// Sends one part and waits for its answer. Dropped meanwhile, the part still gets its
    /// answer, and the abort waits for it.
    pub(crate) async fn send_part(
        &mut self,
        part: object_store::PutPayload,
    ) -> object_store::Result<()> {
        let sending = self.upload().put_part(part);
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return sending.await;
        };
        let handle = self.sending.insert(runtime.spawn(sending));
        let sent = match handle.await {
            Ok(sent) => sent,
            Err(error) => Err(object_store::Error::JoinError { source: error }),
        };
        self.sending = None;
        sent
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
        let (path, sending) = (self.path.clone(), self.sending.take());
        match tokio::runtime::Handle::try_current() {
            Ok(runtime) => {
                runtime.spawn(async move {
                    if let Some(sending) = sending {
                        // Its outcome does not matter; that it has one does.
                        let _ = sending.await;
                    }
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
        let (first, second) = (running.enter().unwrap(), running.enter().unwrap());
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

    #[tokio::test]
    async fn an_abandoned_upload_starts_no_attempt_but_waits_for_the_running_one() {
        let running = Running::default();
        let sending = running.enter().expect("not abandoned yet");
        running.abandon();
        assert!(
            running.enter().is_none(),
            "no attempt starts once abandoned"
        );
        let waiter = tokio::spawn({
            let running = running.clone();
            async move { running.idle().await }
        });
        tokio::task::yield_now().await;
        assert!(!waiter.is_finished(), "the running attempt is waited for");
        drop(sending);
        tokio::time::timeout(std::time::Duration::from_secs(30), waiter)
            .await
            .expect("idle once the running attempt ended")
            .unwrap();
    }
}
