//! Time-sliced history of finished tasks: counts and latency histograms per slice, so that
//! `aggregate(since)` and the percentiles cover recent traffic only.
//!
//! Like tower's rotating histogram, but with `n` slices instead of two: a query merges the
//! slices it overlaps, and a slice older than the history is dropped whole.

use std::collections::VecDeque;
use std::ops::RangeInclusive;

use crate::latency::{HistogramTemplate, Latencies, LatencyBuckets};
use crate::record::StoredTask;
use crate::tally::Tally;

/// Everything that finished during slice `index` of the history's [`TimeGrid`](crate::grid::TimeGrid).
#[derive(Debug, Clone)]
pub(crate) struct Slice {
    pub(crate) index: u64,
    pub(crate) tally: Tally,
    pub(crate) latencies: Latencies,
}

impl Slice {
    pub(crate) fn new(index: u64, template: &HistogramTemplate) -> Self {
        Self {
            index,
            tally: Tally::default(),
            latencies: Latencies::new(template),
        }
    }

    /// Shards record into an [`OpenSlice`]; tests build slices directly.
    #[cfg(test)]
    pub(crate) fn record(&mut self, task: &StoredTask) {
        self.tally.add_task(task);
        self.latencies.record(task);
    }

    pub(crate) fn merge(&mut self, other: &Slice) {
        self.tally.merge(&other.tally);
        self.latencies.merge(&other.latencies);
    }
}

/// The slice a shard is filling: its latencies in [`LatencyBuckets`], folded into a
/// [`Slice`]'s HDR histograms when it closes or is read (recording stays cheap).
#[derive(Debug)]
pub(crate) struct OpenSlice {
    pub(crate) index: u64,
    tally: Tally,
    latencies: LatencyBuckets,
}

impl OpenSlice {
    pub(crate) fn new(index: u64, template: &HistogramTemplate) -> Self {
        Self {
            index,
            tally: Tally::default(),
            latencies: LatencyBuckets::new(template),
        }
    }

    #[inline]
    pub(crate) fn record(&mut self, task: &StoredTask) {
        self.tally.add_task(task);
        self.latencies.record(task);
    }

    /// Counts of the tasks it holds.
    pub(crate) fn tally(&self) -> &Tally {
        &self.tally
    }

    /// Adds what it holds to `into`.
    pub(crate) fn fold_into(&self, into: &mut Slice) {
        into.tally.merge(&self.tally);
        self.latencies.fold_into(&mut into.latencies);
    }

    /// Hands over what it holds as a [`Slice`] and starts slice `index`, empty (its buffers
    /// kept).
    pub(crate) fn close_and_open(&mut self, index: u64, template: &HistogramTemplate) -> Slice {
        let mut closed = Slice::new(self.index, template);
        self.fold_into(&mut closed);
        self.index = index;
        self.tally = Tally::default();
        self.latencies.clear();
        closed
    }
}

/// Slices that shards have finished with, in ascending index order, at most `keep` of them
/// counting back from the newest.
#[derive(Debug)]
pub(crate) struct History {
    keep: u64,
    slices: VecDeque<Slice>,
}

impl History {
    pub(crate) fn new(keep: usize) -> Self {
        Self {
            keep: keep as u64,
            // Slices come as time passes: nothing is reserved from `keep`.
            slices: VecDeque::new(),
        }
    }

    /// Adds a shard's slice, merging it with the one of the same index if there is one.
    pub(crate) fn absorb(&mut self, slice: Slice) {
        match self.slices.binary_search_by_key(&slice.index, |s| s.index) {
            Ok(at) => self.slices[at].merge(&slice),
            Err(at) => self.slices.insert(at, slice),
        }
        let newest = self.slices.back().map_or(0, |s| s.index);
        while self
            .slices
            .front()
            .is_some_and(|oldest| oldest.index.saturating_add(self.keep) <= newest)
        {
            self.slices.pop_front();
        }
    }

    /// Merges every kept slice whose index is in `range` into `into`; returns the lowest index
    /// merged.
    pub(crate) fn merge_into(&self, range: &RangeInclusive<u64>, into: &mut Slice) -> Option<u64> {
        let mut lowest = None;
        for slice in self.slices.iter().filter(|s| range.contains(&s.index)) {
            into.merge(slice);
            lowest = Some(lowest.map_or(slice.index, |low: u64| low.min(slice.index)));
        }
        lowest
    }

    #[cfg(test)]
    pub(crate) fn indices(&self) -> Vec<u64> {
        self.slices.iter().map(|s| s.index).collect()
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn slice(index: u64, tasks: u64, template: &HistogramTemplate) -> Slice {
        let mut slice = Slice::new(index, template);
        for _ in 0..tasks {
            slice.record(&StoredTask::example(0, 0, Duration::from_millis(index + 1)));
        }
        slice
    }

    #[test]
    fn keeps_only_the_newest_slices_and_merges_equal_indices() {
        let template = HistogramTemplate::new(3).unwrap();
        let mut history = History::new(3);
        for index in [0, 1, 2, 2, 3, 5] {
            history.absorb(slice(index, 1, &template));
        }
        // keep 3 counting back from 5: slices 3, 4 (absent) and 5.
        assert_eq!(history.indices(), vec![3, 5]);
        history.absorb(slice(4, 2, &template));
        history.absorb(slice(5, 1, &template));
        assert_eq!(history.indices(), vec![3, 4, 5]);

        let mut sum = Slice::new(0, &template);
        assert_eq!(history.merge_into(&(4..=5), &mut sum), Some(4));
        assert_eq!(sum.tally.finished, 4);
        let slowest = sum.latencies.execution.max();
        assert!(
            sum.latencies.execution.equivalent(slowest, 6_000),
            "{slowest}"
        );
    }
}
