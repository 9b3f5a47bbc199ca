//! The knee tuner's settings.

use std::time::Duration;

use crate::bounds::Bounds;
use crate::error::{check_count_at_most, check_positive_duration, check_range, ConfigError};

/// Settings of [`KneeTuner`](super::KneeTuner). Build with [`KneeConfig::builder`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct KneeConfig {
    pub(super) bounds: Bounds,
    pub(super) latency_tolerance: f64,
    pub(super) gentlest_cut: f64,
    pub(super) deepest_cut: f64,
    pub(super) hold_windows: u32,
    pub(super) min_samples: usize,
    pub(super) min_window: Duration,
    pub(super) memory_target: Option<f64>,
    pub(super) rate_window: Duration,
    pub(super) baseline_refresh: Duration,
    pub(super) max_background_overload: f64,
}

impl Default for KneeConfig {
    fn default() -> Self {
        KneeConfigBuilder::default()
            .build()
            .expect("the defaults are valid")
    }
}

impl KneeConfig {
    /// Starts from the defaults (see each setter of [`KneeConfigBuilder`]).
    pub fn builder() -> KneeConfigBuilder {
        KneeConfigBuilder::default()
    }

    /// The limit's range.
    pub fn bounds(&self) -> Bounds {
        self.bounds
    }
}

/// Builder of [`KneeConfig`]; [`build`](KneeConfigBuilder::build) checks every value.
#[derive(Debug, Clone, Copy)]
pub struct KneeConfigBuilder {
    min: usize,
    max: usize,
    latency_tolerance: f64,
    gentlest_cut: f64,
    deepest_cut: f64,
    hold_windows: u32,
    min_samples: usize,
    min_window: Duration,
    memory_target: Option<f64>,
    rate_window: Duration,
    baseline_refresh: Duration,
    max_background_overload: f64,
}

impl Default for KneeConfigBuilder {
    fn default() -> Self {
        Self {
            min: 1,
            max: 1_000,
            latency_tolerance: 0.15,
            gentlest_cut: 0.9,
            deepest_cut: 0.5,
            hold_windows: 8,
            min_samples: 16,
            min_window: Duration::from_millis(5),
            memory_target: Some(0.9),
            rate_window: Duration::from_millis(250),
            baseline_refresh: Duration::from_secs(30),
            max_background_overload: 0.05,
        }
    }
}

impl KneeConfigBuilder {
    /// Lowest limit. Default 1; must be at least 1.
    pub fn min(mut self, min: usize) -> Self {
        self.min = min;
        self
    }

    /// Highest limit. Default 1,000; must be at least `min` and at most [`Bounds::LARGEST`].
    pub fn max(mut self, max: usize) -> Self {
        self.max = max;
        self
    }

    /// How far the RTT may rise above its no-load baseline before it counts as queueing:
    /// 0.15 means 15 %. Default 0.15; must be in (0, 10]. Lower finds the knee more exactly
    /// but reacts to noise.
    pub fn latency_tolerance(mut self, tolerance: f64) -> Self {
        self.latency_tolerance = tolerance;
        self
    }

    /// The smallest cut for throttling, timeouts and memory pressure, as the factor the limit
    /// is multiplied by (0.9 = −10 %). Default 0.9; must be in (0, 1) and at least
    /// `deepest_cut`. (RTT growth may cut less: it has finer evidence.)
    pub fn gentlest_cut(mut self, factor: f64) -> Self {
        self.gentlest_cut = factor;
        self
    }

    /// The largest single cut (0.5 = at most halve). Default 0.5; must be in (0, 1).
    pub fn deepest_cut(mut self, factor: f64) -> Self {
        self.deepest_cut = factor;
        self
    }

    /// Clean windows to stay at the last safe level before probing above it. Default 8
    /// (about 16 round trips). Higher: fewer overshoots, slower to notice added capacity.
    pub fn hold_windows(mut self, windows: u32) -> Self {
        self.hold_windows = windows;
        self
    }

    /// Successful attempts a window needs before it decides. Default 16; 1 to
    /// [`Bounds::MOST_SAMPLES`]. More
    /// means less noise per decision and slower decisions at low concurrency.
    pub fn min_samples(mut self, samples: usize) -> Self {
        self.min_samples = samples;
        self
    }

    /// Shortest window, whatever the RTT. Default 5 ms; must be positive.
    pub fn min_window(mut self, window: Duration) -> Self {
        self.min_window = window;
        self
    }

    /// Memory share above which the limit is cut like under throttling, or `None` to ignore
    /// memory. Default `Some(0.9)`: only near exhaustion, since other processes' memory is
    /// not this pool's to fix. Must be in (0, 1].
    pub fn memory_target(mut self, target: Option<f64>) -> Self {
        self.memory_target = target;
        self
    }

    /// How far back answers count when judging whether the attempts in flight are being
    /// answered (Little's law: the rate answers come at times how long they take), and how
    /// long outcomes are kept. Default 250 ms, never less than four round trips nor twice the
    /// slowest recent outcome; must be positive. Measured over time, not over a number of
    /// windows, so what the backend did before a change is forgotten within it. (The
    /// concurrency a cut aims at is read over the last two round trips only.)
    pub fn rate_window(mut self, window: Duration) -> Self {
        self.rate_window = window;
        self
    }

    /// How long the no-load RTT may go unconfirmed (no window's round trip consistent with
    /// it) before a probe at low depth (a quarter of the limit, halving while the round trip
    /// keeps falling) measures it again, like BBR's ProbeRTT. It is also measured again
    /// whenever the round trip falls clearly below it, and when cutting the limit does not
    /// shorten the round trip (the backend slowed). Default 30 s; must be positive.
    pub fn baseline_refresh(mut self, every: Duration) -> Self {
        self.baseline_refresh = every;
        self
    }

    /// The largest share of attempts throttled or timed out that the tuner may treat as
    /// background (answered so whatever the load: S3's trickle of 503s, a neighbour's
    /// quota). Default 0.05; 0 makes every throttle count. Must be in [0, 0.5].
    ///
    /// The background share is estimated from attempts at limits below any level found
    /// overloaded, aged by time; a limit's attempts are overloaded when they hold more
    /// throttles and timeouts than the estimate explains, by a test whose threshold grows with
    /// the number of attempts (a false alarm one time in a thousand).
    pub fn max_background_overload(mut self, share: f64) -> Self {
        self.max_background_overload = share;
        self
    }

    /// Checks the values.
    pub fn build(self) -> Result<KneeConfig, ConfigError> {
        let bounds = Bounds::new(self.min, self.max)?;
        let latency_tolerance = check_range(
            "latency_tolerance",
            self.latency_tolerance,
            0.0,
            10.0,
            true,
            "(0, 10]",
        )?;
        let deepest_cut = check_range("deepest_cut", self.deepest_cut, 0.0, 1.0, true, "(0, 1)")
            .and_then(|f| open_below_one("deepest_cut", f, "(0, 1)"))?;
        let gentlest_cut = check_range(
            "gentlest_cut",
            self.gentlest_cut,
            deepest_cut,
            1.0,
            false,
            "[deepest_cut, 1)",
        )
        .and_then(|f| open_below_one("gentlest_cut", f, "[deepest_cut, 1)"))?;
        let memory_target = match self.memory_target {
            Some(target) => Some(check_range(
                "memory_target",
                target,
                0.0,
                1.0,
                true,
                "(0, 1]",
            )?),
            None => None,
        };
        let max_background_overload = check_range(
            "max_background_overload",
            self.max_background_overload,
            0.0,
            0.5,
            false,
            "[0, 0.5]",
        )?;
        check_positive_duration("min_window", self.min_window)?;
        check_positive_duration("baseline_refresh", self.baseline_refresh)?;
        check_positive_duration("rate_window", self.rate_window)?;
        check_count_at_most("min_samples", self.min_samples, Bounds::MOST_SAMPLES)?;
        Ok(KneeConfig {
            bounds,
            latency_tolerance,
            gentlest_cut,
            deepest_cut,
            hold_windows: self.hold_windows,
            min_samples: self.min_samples,
            min_window: self.min_window,
            memory_target,
            rate_window: self.rate_window,
            baseline_refresh: self.baseline_refresh,
            max_background_overload,
        })
    }
}

fn open_below_one(
    field: &'static str,
    value: f64,
    range: &'static str,
) -> Result<f64, ConfigError> {
    if value < 1.0 {
        Ok(value)
    } else {
        Err(ConfigError::InvalidNumber {
            field,
            range,
            value,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn bad_settings_are_typed_errors() {
        assert_eq!(
            KneeConfig::builder().min(10).max(5).build(),
            Err(ConfigError::MinAboveMax { min: 10, max: 5 })
        );
        assert_eq!(
            KneeConfig::builder().min(0).build(),
            Err(ConfigError::ZeroMin)
        );
        for tolerance in [f64::NAN, -0.1, 0.0, f64::INFINITY] {
            assert!(matches!(
                KneeConfig::builder().latency_tolerance(tolerance).build(),
                Err(ConfigError::InvalidNumber {
                    field: "latency_tolerance",
                    ..
                })
            ));
        }
        assert!(matches!(
            KneeConfig::builder().gentlest_cut(1.0).build(),
            Err(ConfigError::InvalidNumber {
                field: "gentlest_cut",
                ..
            })
        ));
        assert!(matches!(
            KneeConfig::builder()
                .gentlest_cut(0.4)
                .deepest_cut(0.5)
                .build(),
            Err(ConfigError::InvalidNumber {
                field: "gentlest_cut",
                ..
            })
        ));
        assert!(matches!(
            KneeConfig::builder().memory_target(Some(1.5)).build(),
            Err(ConfigError::InvalidNumber {
                field: "memory_target",
                ..
            })
        ));
        assert_eq!(
            KneeConfig::builder().min_window(Duration::ZERO).build(),
            Err(ConfigError::ZeroDuration {
                field: "min_window"
            })
        );
    }
}
