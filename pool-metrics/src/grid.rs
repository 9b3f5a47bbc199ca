//! Time cut into numbered, equal slices from a fixed origin: the one piece of clock arithmetic
//! every window shares. Pure: it never reads a clock.

use std::time::{Duration, Instant};

/// Slice `k` covers `[origin + k·width, origin + (k+1)·width)`.
#[derive(Debug, Clone, Copy)]
pub(crate) struct TimeGrid {
    origin: Instant,
    /// u64 (584 years) rather than u128: a 128-bit division per event is measurably slower.
    width_nanos: u64,
}

impl TimeGrid {
    /// `window` cut into `slices` equal parts (the config checks each is at least 1 µs).
    #[cfg(test)]
    pub(crate) fn split(origin: Instant, window: Duration, slices: usize) -> Self {
        Self::with_width(origin, slice_width(window, slices))
    }

    /// Slices of [`slice_width`] nanoseconds from `origin` (the width is worked out once:
    /// a 128-bit division per event is measurable).
    pub(crate) fn with_width(origin: Instant, width_nanos: u64) -> Self {
        Self {
            origin,
            width_nanos: width_nanos.max(1),
        }
    }

    /// The slice holding `at`; instants before the origin fall in slice 0.
    pub(crate) fn index(&self, at: Instant) -> u64 {
        self.index_of_offset(offset_nanos(self.origin, at))
    }

    /// The slice holding the instant `offset` nanoseconds after the origin (for callers that
    /// place one instant on several grids of the same origin).
    pub(crate) fn index_of_offset(&self, offset: u64) -> u64 {
        offset / self.width_nanos
    }

    /// Where slice `index` starts.
    pub(crate) fn start_of(&self, index: u64) -> Instant {
        let offset = Duration::from_nanos(self.width_nanos.saturating_mul(index));
        self.origin.checked_add(offset).unwrap_or(self.origin)
    }
}

/// Where a finishing time falls: its rolling-window bucket and its history slice.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Place {
    pub(crate) bucket: u64,
    pub(crate) slice: u64,
}

/// A stretch of time `[start, end)`, in nanoseconds after the grids' origin, that lies in one
/// rolling-window bucket and one history slice (two grids of one origin), and that ends before
/// the next memory sample is due: a finishing time inside it is placed with two comparisons,
/// without any division. A shard keeps the span of its latest task; nearly every task falls
/// in it (a bucket lasts half a second by default).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Span {
    start: u64,
    end: u64,
    place: Place,
}

impl Span {
    /// The place of every instant in this span.
    pub(crate) fn place(&self) -> Place {
        self.place
    }

    /// The place of the moment `offset` ns after the origin, if it falls in this span.
    #[inline]
    pub(crate) fn place_of(&self, offset: u64) -> Option<Place> {
        (self.start <= offset && offset < self.end).then_some(self.place)
    }

    /// The span around the moment `offset` ns after the origin, on grids whose slices are
    /// `bucket_nanos` and `slice_nanos` wide (at least 1), ending no later than `until` ns
    /// after the origin (the next memory sample; an `until` not after `offset` makes a span
    /// that no later task falls in). Returns it with `offset`'s place.
    pub(crate) fn around(
        offset: u64,
        bucket_nanos: u64,
        slice_nanos: u64,
        until: u64,
    ) -> (Span, Place) {
        let place = Place {
            bucket: offset / bucket_nanos,
            slice: offset / slice_nanos,
        };
        // index · width ≤ offset: no overflow.
        let (bucket_start, slice_start) = (place.bucket * bucket_nanos, place.slice * slice_nanos);
        let start = bucket_start.max(slice_start);
        let end = bucket_start
            .saturating_add(bucket_nanos)
            .min(slice_start.saturating_add(slice_nanos))
            .min(until.max(offset));
        (Span { start, end, place }, place)
    }
}

/// The width of one of `slices` equal parts of `window`, in nanoseconds (at least 1).
pub(crate) fn slice_width(window: Duration, slices: usize) -> u64 {
    let width = window.as_nanos() / (slices.max(1) as u128);
    u64::try_from(width).unwrap_or(u64::MAX).max(1)
}

/// Nanoseconds from `origin` to `at` (0 if `at` is earlier).
pub(crate) fn offset_nanos(origin: Instant, at: Instant) -> u64 {
    u64::try_from(at.saturating_duration_since(origin).as_nanos()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn index_and_start_agree() {
        let origin = Instant::now();
        let grid = TimeGrid::split(origin, Duration::from_secs(5), 10);
        assert_eq!(grid.index(origin), 0);
        assert_eq!(grid.index(origin + Duration::from_millis(499)), 0);
        assert_eq!(grid.index(origin + Duration::from_millis(500)), 1);
        assert_eq!(grid.index(origin + Duration::from_millis(2_750)), 5);
        assert_eq!(grid.start_of(5), origin + Duration::from_millis(2_500));
    }

    #[test]
    fn a_span_places_as_the_grids_do() {
        let origin = Instant::now();
        let ms = |n: u64| n * 1_000_000;
        let cases = [(500, 5_000), (3, 7), (1, 1), (5_000, 500)];
        for (bucket_ms, slice_ms) in cases {
            let (buckets, slices) = (
                TimeGrid::with_width(origin, ms(bucket_ms)),
                TimeGrid::with_width(origin, ms(slice_ms)),
            );
            for offset in [
                0,
                1,
                ms(2),
                ms(499),
                ms(500),
                ms(4_999) + 7,
                ms(5_000),
                ms(7_321),
            ] {
                for until in [u64::MAX, offset + 3, offset, 0] {
                    let (span, place) = Span::around(offset, ms(bucket_ms), ms(slice_ms), until);
                    let expected = |nanos: u64| Place {
                        bucket: buckets.index_of_offset(nanos),
                        slice: slices.index_of_offset(nanos),
                    };
                    assert_eq!(place, expected(offset));
                    // Wherever the span answers, it answers what the grids say, and never
                    // past `until`.
                    for probe in [0, offset.saturating_sub(1), offset, offset + 1, offset + 2]
                        .into_iter()
                        .chain([ms(500), ms(1_000), ms(5_000), ms(10_000)])
                    {
                        if let Some(found) = span.place_of(probe) {
                            assert_eq!(found, expected(probe), "offset {offset}, probe {probe}");
                            assert!(probe < until.max(offset), "probe {probe} past {until}");
                        }
                    }
                    if until > offset {
                        assert_eq!(span.place_of(offset), Some(place), "offset {offset}");
                    }
                }
            }
        }
    }

    #[test]
    fn before_origin_is_slice_zero() {
        let origin = Instant::now() + Duration::from_secs(5);
        let grid = TimeGrid::split(origin, Duration::from_secs(10), 20);
        assert_eq!(grid.index(origin - Duration::from_secs(1)), 0);
    }
}
