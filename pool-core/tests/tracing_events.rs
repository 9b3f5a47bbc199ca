//! Events reach `tracing`. Alone in its own test binary: tracing caches each callsite's
//! interest process-wide, and a test running beside it without a subscriber could cache
//! "never" for the pool's callsites first.

use std::sync::{Arc, Mutex};

use pool_core::{Pool, SimExecutor, TaskOptions, Transient};

#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for Captured {
    type Writer = Captured;
    fn make_writer(&'a self) -> Self::Writer {
        self.clone()
    }
}

#[test]
fn events_reach_tracing_at_trace_level() {
    let captured = Captured::default();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_writer(captured.clone())
        .with_ansi(false)
        .finish();
    let sim = SimExecutor::new();
    tracing::subscriber::with_default(subscriber, || {
        let pool = Pool::builder().executor(sim.clone()).build().unwrap();
        sim.block_on(async {
            pool.enqueue(|| async { Ok::<_, Transient<&str>>(1) }, TaskOptions::new())
                .await
                .unwrap();
            pool.set_concurrency(3).unwrap();
        });
    });
    let text = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
    for needle in [
        "TaskQueued",
        "TaskStarted",
        "AttemptFinished",
        "TaskFinished",
        "concurrency changed",
    ] {
        assert!(text.contains(needle), "{needle} missing from:\n{text}");
    }
}
