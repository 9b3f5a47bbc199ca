//! A `governor` clock that reads a pool executor's clock, so rate limits run on virtual time
//! in tests exactly as on real time in production.

use std::fmt;
use std::sync::Arc;
use std::time::Instant;

use crate::executor::Executor;

/// [`governor::clock::Clock`] over an [`Executor`]'s [`now`](Executor::now).
///
/// ```
/// use std::sync::Arc;
/// use std::time::Duration;
/// use governor::clock::Clock;
/// use pool_core::policy::ExecutorClock;
/// use pool_core::SimExecutor;
///
/// let sim = SimExecutor::new();
/// let clock = ExecutorClock::new(Arc::new(sim.clone()));
/// let start = clock.now();
/// sim.advance(Duration::from_secs(3));
/// assert_eq!(clock.now() - start, Duration::from_secs(3));
/// ```
#[derive(Clone)]
pub struct ExecutorClock {
    executor: Arc<dyn Executor>,
}

impl ExecutorClock {
    /// A clock reading `executor`.
    pub fn new(executor: Arc<dyn Executor>) -> Self {
        Self { executor }
    }

    /// The executor it reads (and sleeps on).
    pub fn executor(&self) -> &Arc<dyn Executor> {
        &self.executor
    }
}

impl fmt::Debug for ExecutorClock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ExecutorClock")
            .field("executor", &self.executor)
            .finish()
    }
}

impl governor::clock::Clock for ExecutorClock {
    type Instant = Instant;

    fn now(&self) -> Instant {
        self.executor.now()
    }
}
