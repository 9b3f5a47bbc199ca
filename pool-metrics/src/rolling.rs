//! The rolling window of live throughput and success rate: a ring of time buckets.
//! Pure: bucket indices come from a [`TimeGrid`](crate::grid::TimeGrid) and are passed in.

use crate::tally::Tally;

/// Counts of one bucket.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct WindowCounts {
    pub(crate) finished: u64,
    pub(crate) succeeded: u64,
    /// Execution time of those tasks, for the average number in flight (Little's law).
    pub(crate) execution_nanos: u128,
}

impl WindowCounts {
    /// What the window counts of a set of tasks counted in `tally`.
    pub(crate) fn of(tally: &Tally) -> Self {
        Self {
            finished: tally.finished,
            succeeded: tally.succeeded(),
            execution_nanos: tally.execution_nanos,
        }
    }

    /// The counts added since `earlier` (counts only grow).
    pub(crate) fn since(&self, earlier: &WindowCounts) -> Self {
        Self {
            finished: self.finished.saturating_sub(earlier.finished),
            succeeded: self.succeeded.saturating_sub(earlier.succeeded),
            execution_nanos: self.execution_nanos.saturating_sub(earlier.execution_nanos),
        }
    }

    pub(crate) fn merge(&mut self, other: &WindowCounts) {
        self.finished += other.finished;
        self.succeeded += other.succeeded;
        self.execution_nanos += other.execution_nanos;
    }
}

#[derive(Debug, Clone, Copy, Default)]
struct Bucket {
    index: u64,
    counts: WindowCounts,
}

/// The last `n` buckets; bucket `k` lives in slot `k % n`.
#[derive(Debug, Clone)]
pub(crate) struct RollingWindow {
    buckets: Box<[Bucket]>,
}

impl RollingWindow {
    pub(crate) fn new(buckets: usize) -> Self {
        Self {
            buckets: vec![Bucket::default(); buckets.max(1)].into_boxed_slice(),
        }
    }

    fn len(&self) -> u64 {
        self.buckets.len() as u64
    }

    fn slot(&self, index: u64) -> usize {
        (index % self.len()) as usize
    }

    /// Whether counts of bucket `index` would be kept: its slot is free, or holds it or an
    /// older bucket (which it replaces).
    pub(crate) fn accepts(&self, index: u64) -> bool {
        let bucket = &self.buckets[self.slot(index)];
        bucket.index <= index || bucket.counts == WindowCounts::default()
    }

    /// Whether bucket `index` is in the window ending with bucket `newest`.
    pub(crate) fn covers(&self, newest: u64, index: u64) -> bool {
        (newest.saturating_sub(self.len() - 1)..=newest).contains(&index)
    }

    /// Counts tasks that finished in bucket `index` (a straggler older than the whole window,
    /// whose slot a newer bucket holds, has nothing to be counted in).
    pub(crate) fn add(&mut self, index: u64, counts: &WindowCounts) {
        if counts.finished == 0 || !self.accepts(index) {
            return;
        }
        let slot = self.slot(index);
        let bucket = &mut self.buckets[slot];
        if bucket.index != index {
            *bucket = Bucket {
                index,
                counts: WindowCounts::default(),
            };
        }
        bucket.counts.merge(counts);
    }

    /// Counts one task that finished in bucket `index`.
    #[cfg(test)]
    pub(crate) fn record(&mut self, index: u64, succeeded: bool, execution_nanos: u64) {
        let counts = WindowCounts {
            finished: 1,
            succeeded: u64::from(succeeded),
            execution_nanos: u128::from(execution_nanos),
        };
        self.add(index, &counts);
    }

    /// Adds the counts of the window ending with bucket `newest` (the `n` buckets up to and
    /// including it) to `into`.
    pub(crate) fn sum_into(&self, newest: u64, into: &mut WindowCounts) {
        let oldest = newest.saturating_sub(self.len() - 1);
        for bucket in self.buckets.iter() {
            if (oldest..=newest).contains(&bucket.index) {
                into.merge(&bucket.counts);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sum(window: &RollingWindow, newest: u64) -> (u64, u64) {
        let mut counts = WindowCounts::default();
        window.sum_into(newest, &mut counts);
        (counts.finished, counts.succeeded)
    }

    #[test]
    fn buckets_expire_as_the_window_slides() {
        let mut window = RollingWindow::new(4);
        window.record(0, true, 0);
        window.record(1, false, 0);
        window.record(3, true, 0);
        assert_eq!(sum(&window, 3), (3, 2));
        // Bucket 4 reuses bucket 0's slot; bucket 1 is the oldest in the window.
        window.record(4, true, 0);
        assert_eq!(sum(&window, 4), (3, 2));
        assert_eq!(sum(&window, 5), (2, 2));
        assert_eq!(sum(&window, 8), (0, 0));
    }

    #[test]
    fn stragglers_older_than_the_window_are_dropped() {
        let mut window = RollingWindow::new(2);
        window.record(10, true, 0);
        window.record(8, true, 0);
        assert_eq!(sum(&window, 10), (1, 1));
        // An older bucket in an unused slot still counts while it is in the window.
        window.record(9, false, 0);
        assert_eq!(sum(&window, 10), (2, 1));
    }
}
