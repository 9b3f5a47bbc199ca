//! [`MinimalPriorityPool`]: the smallest pool that still has priorities and a handle per
//! task — a `Mutex<BinaryHeap>` of boxed closures, a `Notify`, C worker tasks and a oneshot
//! per task, nothing else. No retries, timeouts, cancellation, aging, pause, stats or
//! events. It is the floor for anything with priorities and handles: a full-featured pool
//! that runs as fast has no overhead left to remove.

use std::cmp::Ordering;
use std::collections::BinaryHeap;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};

use tokio::sync::{oneshot, Notify};
use tokio::task::JoinHandle;

type Job = Box<dyn FnOnce() -> Pin<Box<dyn Future<Output = ()> + Send>> + Send>;

struct Queued {
    priority: i32,
    sequence: u64,
    job: Job,
}

/// Higher priority first; within a priority, first come first served.
impl Ord for Queued {
    fn cmp(&self, other: &Self) -> Ordering {
        self.priority
            .cmp(&other.priority)
            .then_with(|| other.sequence.cmp(&self.sequence))
    }
}

impl PartialOrd for Queued {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl PartialEq for Queued {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}

impl Eq for Queued {}

#[derive(Default)]
struct Queue {
    heap: BinaryHeap<Queued>,
    next_sequence: u64,
}

#[derive(Default)]
struct Shared {
    queue: Mutex<Queue>,
    ready: Notify,
}

/// C worker tasks popping the highest-priority closure off one locked heap.
pub(super) struct MinimalPriorityPool {
    shared: Arc<Shared>,
    workers: Vec<JoinHandle<()>>,
}

impl MinimalPriorityPool {
    /// Spawns `concurrency` workers on the current tokio runtime.
    pub(super) fn new(concurrency: usize) -> Self {
        let shared = Arc::new(Shared::default());
        let workers = (0..concurrency)
            .map(|_| tokio::spawn(worker(Arc::clone(&shared))))
            .collect();
        MinimalPriorityPool { shared, workers }
    }

    /// Queues `work`; the receiver gets its output.
    pub(super) fn submit<W, Fut>(&self, priority: i32, work: W) -> oneshot::Receiver<Fut::Output>
    where
        W: FnOnce() -> Fut + Send + 'static,
        Fut: Future + Send + 'static,
        Fut::Output: Send + 'static,
    {
        let (sender, receiver) = oneshot::channel();
        let job: Job = Box::new(move || {
            Box::pin(async move {
                let _ = sender.send(work().await);
            })
        });
        {
            let mut queue = self.shared.queue.lock().expect("no panics under the lock");
            let sequence = queue.next_sequence;
            queue.next_sequence += 1;
            queue.heap.push(Queued {
                priority,
                sequence,
                job,
            });
        }
        self.shared.ready.notify_one();
        receiver
    }
}

async fn worker(shared: Arc<Shared>) {
    loop {
        let next = shared
            .queue
            .lock()
            .expect("no panics under the lock")
            .heap
            .pop();
        match next {
            Some(queued) => (queued.job)().await,
            // `notify_one` leaves a permit when no worker waits, so a push between the pop
            // above and this wait is not missed.
            None => shared.ready.notified().await,
        }
    }
}

impl Drop for MinimalPriorityPool {
    fn drop(&mut self) {
        for worker in &self.workers {
            worker.abort();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runs_higher_priorities_first_and_fifo_within_one() {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        runtime.block_on(async {
            let pool = MinimalPriorityPool::new(1);
            let order = Arc::new(Mutex::new(Vec::new()));
            // Everything is queued before the one worker first runs (current-thread runtime).
            let receivers: Vec<_> = [(0, 'a'), (5, 'b'), (0, 'c'), (5, 'd'), (9, 'e')]
                .into_iter()
                .map(|(priority, name)| {
                    let order = Arc::clone(&order);
                    pool.submit(priority, move || async move {
                        order.lock().unwrap().push(name);
                        name
                    })
                })
                .collect();
            let mut outputs = Vec::new();
            for receiver in receivers {
                outputs.push(receiver.await.unwrap());
            }
            assert_eq!(outputs, ['a', 'b', 'c', 'd', 'e']);
            assert_eq!(*order.lock().unwrap(), ['e', 'b', 'd', 'a', 'c']);
        });
    }
}
