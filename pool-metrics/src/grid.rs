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

/// The slice of a grid that the last instant placed fell in, so that the next one in the same
/// slice (nearly every one: a slice lasts from half a second to seconds) is placed with two
/// comparisons instead of a division.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct GridCursor {
    /// Offsets `[start, end)` make up slice `index` (empty until the first placement).
    start: u64,
    end: u64,
    index: u64,
}

impl GridCursor {
    /// The slice of width `width_nanos` (at least 1) holding the instant `offset` nanoseconds
    /// after the origin: [`TimeGrid::index_of_offset`] on the grid of that width.
    #[inline]
    pub(crate) fn index_of_offset(&mut self, offset: u64, width_nanos: u64) -> u64 {
        if offset < self.start || offset >= self.end {
            let index = offset / width_nanos;
            // index · width ≤ offset: no overflow.
            self.start = index * width_nanos;
            self.end = self.start.saturating_add(width_nanos);
            self.index = index;
        }
        self.index
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
    fn the_cursor_places_as_the_grid_does() {
        let origin = Instant::now();
        for width in [1, 3, 500_000_000, u64::MAX / 2, u64::MAX] {
            let grid = TimeGrid::with_width(origin, width);
            let mut cursor = GridCursor::default();
            // Forwards, backwards (a straggler), repeated, and both ends of the range.
            for offset in [
                0,
                5,
                4,
                499_999_999,
                500_000_000,
                7,
                u64::MAX - 1,
                u64::MAX,
                0,
                2,
            ] {
                assert_eq!(
                    cursor.index_of_offset(offset, width),
                    grid.index_of_offset(offset),
                    "offset {offset}, width {width}"
                );
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
