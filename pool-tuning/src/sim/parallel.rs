//! Simulations are independent and CPU-bound: run many at once, one per core.

/// Runs `run` over every job on as many threads as there are cores (each thread takes the
/// next job not yet taken) and returns the results in the jobs' order.
///
/// # Panics
/// If a job panics, its panic is raised again here once the other threads have finished.
pub fn on_every_core<J: Sync, R: Send>(jobs: &[J], run: impl Fn(&J) -> R + Sync) -> Vec<R> {
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let next = std::sync::atomic::AtomicUsize::new(0);
    let mut results: Vec<Option<R>> = (0..jobs.len()).map(|_| None).collect();
    std::thread::scope(|scope| {
        let workers: Vec<_> = (0..threads.min(jobs.len()))
            .map(|_| {
                scope.spawn(|| {
                    let mut done = Vec::new();
                    loop {
                        let index = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        let Some(job) = jobs.get(index) else {
                            return done;
                        };
                        done.push((index, run(job)));
                    }
                })
            })
            .collect();
        for worker in workers {
            match worker.join() {
                Ok(done) => {
                    for (index, result) in done {
                        results[index] = Some(result);
                    }
                }
                Err(panic) => std::panic::resume_unwind(panic),
            }
        }
    });
    results
        .into_iter()
        .map(|result| result.expect("every job ran: the threads took every index"))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::on_every_core;

    #[test]
    fn results_come_back_in_the_jobs_order() {
        let jobs: Vec<u64> = (0..100).collect();
        assert_eq!(
            on_every_core(&jobs, |n| n * n),
            jobs.iter().map(|n| n * n).collect::<Vec<_>>()
        );
        assert!(on_every_core(&[] as &[u64], |n| *n).is_empty());
    }
}
