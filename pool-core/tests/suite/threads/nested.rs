//! Nested work on real threads: tasks that enqueue into their own pool and await the result
//! while every slot is held by such tasks. A parent lends its slot to one child at a time,
//! so this never deadlocks — and never lets a parent's fan-out, work spawned onto the
//! runtime or work for another pool past the limit.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use futures_util::future::join_all;
use pool_core::{Pool, TaskOptions, Transient};

use super::{runtime, within};

type Outcome = Result<usize, Transient<&'static str>>;

/// A task of `depth` levels: each level enqueues the next into `pool` and awaits it.
// Not an `async fn`: the compiler cannot prove a recursive async fn's future `Send`.
#[allow(clippy::manual_async_fn)]
fn nested(
    pool: Pool,
    depth: usize,
    running: Arc<AtomicUsize>,
    most: Arc<AtomicUsize>,
) -> impl std::future::Future<Output = Outcome> + Send {
    async move {
        let now = running.fetch_add(1, Ordering::SeqCst) + 1;
        most.fetch_max(now, Ordering::SeqCst);
        tokio::time::sleep(Duration::from_micros(200)).await;
        let result = if depth == 0 {
            Ok(0)
        } else {
            let (inner_pool, r, m) = (pool.clone(), running.clone(), most.clone());
            let inner = pool.enqueue(
                move || nested(inner_pool.clone(), depth - 1, r.clone(), m.clone()),
                TaskOptions::default(),
            );
            match inner.await {
                Ok(levels) => Ok(levels + 1),
                Err(_) => Err(Transient("the nested task failed")),
            }
        };
        running.fetch_sub(1, Ordering::SeqCst);
        result
    }
}

#[test]
fn tasks_awaiting_nested_work_in_their_own_pool_never_deadlock() {
    runtime(4).block_on(async {
        let pool = Pool::builder().concurrency(4).build().unwrap();
        let (running, most) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
        // 40 outer tasks on 4 slots, each awaiting a chain of 3 nested tasks: every slot is
        // taken by a parent whose child must run for it to finish.
        let handles: Vec<_> = (0..40)
            .map(|_| {
                let (p, r, m) = (pool.clone(), running.clone(), most.clone());
                pool.enqueue(
                    move || nested(p.clone(), 3, r.clone(), m.clone()),
                    TaskOptions::default(),
                )
            })
            .collect();
        for handle in handles {
            let levels = within("a task awaiting nested work", handle).await.unwrap();
            assert_eq!(levels, 3);
        }
        within("drain", pool.drain()).await;
        let stats = pool.stats();
        assert!(stats.in_balance(), "{stats:?}");
        assert_eq!(stats.enqueued, 160);
        assert_eq!(stats.succeeded, 160, "{stats:?}");
        // A chain holds one slot: at most 4 chains at once, each of at most 4 levels.
        assert!(
            most.load(Ordering::SeqCst) <= 16,
            "{}",
            most.load(Ordering::SeqCst)
        );
    });
}

#[test]
fn work_enqueued_from_outside_a_task_still_waits_for_a_slot() {
    runtime(2).block_on(async {
        let pool = Pool::builder().concurrency(1).build().unwrap();
        pool.pause();
        let handles: Vec<_> = (0..3)
            .map(|i| {
                pool.enqueue(
                    move || async move { Ok::<_, Transient<&str>>(i) },
                    TaskOptions::default(),
                )
            })
            .collect();
        assert_eq!(pool.stats().queued, 3);
        pool.resume();
        for handle in handles {
            within("a plain task", handle).await.unwrap();
        }
    });
}

/// Counts the tasks running at once and keeps the most.
#[derive(Debug, Default)]
struct Gauge {
    running: AtomicUsize,
    most: AtomicUsize,
}

impl Gauge {
    fn enter(&self) {
        let now = self.running.fetch_add(1, Ordering::SeqCst) + 1;
        self.most.fetch_max(now, Ordering::SeqCst);
    }

    fn leave(&self) {
        self.running.fetch_sub(1, Ordering::SeqCst);
    }

    fn most(&self) -> usize {
        self.most.load(Ordering::SeqCst)
    }
}

type ChildFuture = std::pin::Pin<
    Box<dyn std::future::Future<Output = Result<(), Transient<&'static str>>> + Send>,
>;

/// A child: counted while it runs a little.
fn child(gauge: &Arc<Gauge>) -> impl FnMut() -> ChildFuture + Send + 'static {
    let gauge = Arc::clone(gauge);
    move || {
        let gauge = Arc::clone(&gauge);
        Box::pin(async move {
            gauge.enter();
            tokio::time::sleep(Duration::from_micros(300)).await;
            gauge.leave();
            Ok(())
        })
    }
}

#[test]
fn a_parents_fan_out_runs_one_child_at_a_time_on_its_slot() {
    runtime(4).block_on(async {
        let pool = Pool::builder().concurrency(2).build().unwrap();
        let children = Arc::new(Gauge::default());
        // Two parents hold both slots, each awaiting 30 children at once: only their loans
        // are free, one child each.
        let parents: Vec<_> = (0..2)
            .map(|_| {
                let (pool, children) = (pool.clone(), Arc::clone(&children));
                pool.clone().enqueue(
                    move || {
                        let (pool, children) = (pool.clone(), Arc::clone(&children));
                        async move {
                            let handles: Vec<_> = (0..30)
                                .map(|_| pool.enqueue(child(&children), TaskOptions::default()))
                                .collect();
                            let done = join_all(handles).await;
                            assert!(done.iter().all(Result::is_ok));
                            Ok::<_, Transient<&str>>(done.len())
                        }
                    },
                    TaskOptions::default(),
                )
            })
            .collect();
        for parent in parents {
            assert_eq!(within("a parent", parent).await.unwrap(), 30);
        }
        within("drain", pool.drain()).await;
        let stats = pool.stats();
        assert!(stats.in_balance(), "{stats:?}");
        assert_eq!(stats.succeeded, 62, "{stats:?}");
        assert!(
            children.most() <= 2,
            "{} children ran at once",
            children.most()
        );
    });
}

#[test]
fn children_a_parent_leaves_behind_keep_to_its_slot() {
    runtime(4).block_on(async {
        let pool = Pool::builder().concurrency(1).build().unwrap();
        let children = Arc::new(Gauge::default());
        let (p, c) = (pool.clone(), Arc::clone(&children));
        // The parent enqueues 10 children and ends without awaiting them.
        let parent = pool.enqueue(
            move || {
                let (pool, children) = (p.clone(), Arc::clone(&c));
                async move {
                    let handles: Vec<_> = (0..10)
                        .map(|_| pool.enqueue(child(&children), TaskOptions::default()))
                        .collect();
                    Ok::<_, Transient<&str>>(handles)
                }
            },
            TaskOptions::default(),
        );
        let handles = within("the parent", parent).await.unwrap();
        for handle in handles {
            within("a child", handle).await.unwrap();
        }
        within("drain", pool.drain()).await;
        assert!(pool.stats().in_balance());
        // The one on the loan kept the parent's slot; the others queued for it.
        assert_eq!(children.most(), 1);
    });
}

#[test]
fn work_spawned_onto_the_runtime_or_for_another_pool_is_no_child() {
    runtime(4).block_on(async {
        let pool = Pool::builder().concurrency(1).build().unwrap();
        let other = Pool::builder().concurrency(1).build().unwrap();
        other.pause();
        let (p, o) = (pool.clone(), other.clone());
        let parent = pool.enqueue(
            move || {
                let (pool, other) = (p.clone(), o.clone());
                async move {
                    // Enqueued from a task spawned onto the runtime: not under the mark. (The
                    // spawned task hands the handle back, not awaited.)
                    #[allow(clippy::async_yields_async)]
                    let spawned = tokio::spawn({
                        let pool = pool.clone();
                        async move {
                            pool.enqueue(
                                || async { Ok::<_, Transient<&str>>("spawned") },
                                TaskOptions::default(),
                            )
                        }
                    });
                    let spawned = spawned.await.unwrap();
                    // Into another pool, from under the mark: that pool's own rules apply.
                    let elsewhere = other.enqueue(
                        || async { Ok::<_, Transient<&str>>("elsewhere") },
                        TaskOptions::default(),
                    );
                    let (queued_here, queued_there) = (pool.stats().queued, other.stats().queued);
                    Ok::<_, Transient<&str>>((spawned, elsewhere, queued_here, queued_there))
                }
            },
            TaskOptions::default(),
        );
        let (spawned, elsewhere, queued_here, queued_there) =
            within("the parent", parent).await.unwrap();
        assert_eq!(queued_here, 1, "the spawned enqueue waited for a slot");
        assert_eq!(queued_there, 1, "the other pool's pause held its task");
        assert_eq!(within("the spawned one", spawned).await.unwrap(), "spawned");
        other.resume();
        assert_eq!(
            within("the other pool's", elsewhere).await.unwrap(),
            "elsewhere"
        );
    });
}
