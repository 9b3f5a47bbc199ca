//! Additive-increase / multiplicative-decrease of a rate: back off hard when the backend says
//! "slow down", creep back up while it does not.

use std::time::{Duration, Instant};

use crate::error::ConfigError;

/// How an adaptive rate limit reacts to throttling. Every setter documents its default.
///
/// On a throttled attempt the rate is multiplied by
/// [`decrease_factor`](Self::decrease_factor) (at most once per
/// [`decrease_cooldown`](Self::decrease_cooldown), so one burst of 503s counts once, and never
/// below [`min_fraction`](Self::min_fraction) of the configured rate). Every
/// [`increase_interval`](Self::increase_interval) without a decrease, it grows by
/// [`increase_fraction`](Self::increase_fraction) of the configured rate, up to that rate.
///
/// With the defaults, a limit of 3,500/s drops to 1,750/s on a 503 SlowDown and is back to
/// 3,500/s ten seconds after the last one.
#[derive(Debug, Clone, Copy, PartialEq)]
#[must_use = "settings do nothing until given to a limiter"]
pub struct Aimd {
    decrease_factor: f64,
    decrease_cooldown: Duration,
    increase_fraction: f64,
    increase_interval: Duration,
    min_fraction: f64,
}

impl Default for Aimd {
    fn default() -> Self {
        Self {
            decrease_factor: 0.5,
            decrease_cooldown: Duration::from_secs(1),
            increase_fraction: 0.05,
            increase_interval: Duration::from_secs(1),
            min_fraction: 0.05,
        }
    }
}

impl Aimd {
    /// Every default: halve on throttling (at most once a second), add 5 % of the configured
    /// rate each second, never below 5 % of it.
    pub fn new() -> Self {
        Self::default()
    }

    /// Factor the rate is multiplied by on throttling. Default 0.5. In (0, 1).
    pub fn decrease_factor(mut self, factor: f64) -> Self {
        self.decrease_factor = factor;
        self
    }

    /// Shortest time between two decreases. Default 1 s. Zero: every throttled attempt
    /// decreases; `Duration::MAX`: only the first one does.
    pub fn decrease_cooldown(mut self, cooldown: Duration) -> Self {
        self.decrease_cooldown = cooldown;
        self
    }

    /// Share of the configured rate added per interval while recovering. Default 0.05.
    /// In (0, 1].
    pub fn increase_fraction(mut self, fraction: f64) -> Self {
        self.increase_fraction = fraction;
        self
    }

    /// How often the rate grows while recovering. Default 1 s. Not zero.
    pub fn increase_interval(mut self, interval: Duration) -> Self {
        self.increase_interval = interval;
        self
    }

    /// Lowest rate, as a share of the configured rate. Default 0.05. In (0, 1].
    pub fn min_fraction(mut self, fraction: f64) -> Self {
        self.min_fraction = fraction;
        self
    }

    /// The settings as numbers, for a limiter that keeps its rates elsewhere (pool-redis
    /// keeps them in Redis, shared by every process).
    pub fn values(&self) -> AimdValues {
        AimdValues {
            decrease_factor: self.decrease_factor,
            decrease_cooldown: self.decrease_cooldown,
            increase_fraction: self.increase_fraction,
            increase_interval: self.increase_interval,
            min_fraction: self.min_fraction,
        }
    }

    /// Checks every setting (what a limiter's `build` does).
    ///
    /// # Errors
    /// [`ConfigError::InvalidFactor`] for a factor or fraction out of its range,
    /// [`ConfigError::ZeroDuration`] for a zero increase interval; each names the field.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let checks = [
            (
                "aimd.decrease_factor",
                "(0, 1)",
                self.decrease_factor,
                self.decrease_factor < 1.0,
            ),
            (
                "aimd.increase_fraction",
                "(0, 1]",
                self.increase_fraction,
                self.increase_fraction <= 1.0,
            ),
            (
                "aimd.min_fraction",
                "(0, 1]",
                self.min_fraction,
                self.min_fraction <= 1.0,
            ),
        ];
        for (field, range, value, below_top) in checks {
            if !(value.is_finite() && value > 0.0 && below_top) {
                return Err(ConfigError::InvalidFactor {
                    field,
                    range,
                    value,
                });
            }
        }
        if self.increase_interval.is_zero() {
            return Err(ConfigError::ZeroDuration {
                field: "aimd.increase_interval",
            });
        }
        Ok(())
    }
}

/// The numbers of an [`Aimd`], as [`Aimd::values`] reads them; each means what the setter of
/// the same name documents.
#[derive(Debug, Clone, Copy, PartialEq)]
#[non_exhaustive]
pub struct AimdValues {
    /// Factor the rate is multiplied by on throttling.
    pub decrease_factor: f64,
    /// Shortest time between two decreases.
    pub decrease_cooldown: Duration,
    /// Share of the configured rate added per interval while recovering.
    pub increase_fraction: f64,
    /// How often the rate grows while recovering.
    pub increase_interval: Duration,
    /// Lowest rate, as a share of the configured rate.
    pub min_fraction: f64,
}

/// One adaptive rate: pure arithmetic, every method takes `now`.
#[derive(Debug, Clone)]
pub(crate) struct AimdRate {
    settings: Aimd,
    ceiling: f64,
    current: f64,
    last_decrease: Option<Instant>,
    /// Recovery steps are counted from here.
    step_origin: Instant,
}

impl AimdRate {
    pub(crate) fn new(settings: Aimd, ceiling: f64, now: Instant) -> Self {
        Self {
            settings,
            ceiling,
            current: ceiling,
            last_decrease: None,
            step_origin: now,
        }
    }

    pub(crate) fn current(&self) -> f64 {
        self.current
    }

    pub(crate) fn is_at_ceiling(&self) -> bool {
        self.current >= self.ceiling
    }

    /// A throttled attempt: decreases the rate unless one did within the cool-down.
    /// True if the rate changed.
    pub(crate) fn throttled(&mut self, now: Instant) -> bool {
        if self
            .last_decrease
            .is_some_and(|at| now.saturating_duration_since(at) < self.settings.decrease_cooldown)
        {
            return false;
        }
        self.recover(now);
        let floor = self.ceiling * self.settings.min_fraction;
        let lowered = (self.current * self.settings.decrease_factor).max(floor);
        self.last_decrease = Some(now);
        self.step_origin = now;
        let changed = lowered < self.current;
        self.current = lowered;
        changed
    }

    /// Applies the recovery steps due by `now`. True if the rate changed.
    pub(crate) fn recover(&mut self, now: Instant) -> bool {
        if self.is_at_ceiling() {
            self.step_origin = now;
            return false;
        }
        let interval = self.settings.increase_interval;
        let elapsed = now.saturating_duration_since(self.step_origin);
        let steps = u32::try_from(elapsed.as_nanos() / interval.as_nanos()).unwrap_or(u32::MAX);
        if steps == 0 {
            return false;
        }
        let step = self.ceiling * self.settings.increase_fraction;
        self.current = (self.current + step * f64::from(steps)).min(self.ceiling);
        self.step_origin += interval * steps;
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn throttling_halves_once_per_cooldown_and_recovery_is_additive() {
        let t0 = Instant::now();
        let mut rate = AimdRate::new(Aimd::new(), 1_000.0, t0);
        assert!(rate.throttled(t0));
        assert_eq!(rate.current(), 500.0);
        // The same burst of throttling counts once.
        assert!(!rate.throttled(t0 + Duration::from_millis(500)));
        assert_eq!(rate.current(), 500.0);
        assert!(!rate.recover(t0 + Duration::from_millis(999)));
        assert!(rate.recover(t0 + Duration::from_secs(3)));
        assert_eq!(rate.current(), 650.0);
        assert!(rate.recover(t0 + Duration::from_secs(60)));
        assert_eq!(rate.current(), 1_000.0);
        assert!(rate.is_at_ceiling());
    }

    #[test]
    fn the_rate_never_drops_below_its_floor() {
        let t0 = Instant::now();
        let mut rate = AimdRate::new(Aimd::new().min_fraction(0.2), 100.0, t0);
        for second in 0..10 {
            rate.throttled(t0 + Duration::from_secs(second));
        }
        assert_eq!(rate.current(), 20.0);
    }

    #[test]
    fn more_recovery_steps_than_a_u32_holds_still_recover() {
        let t0 = Instant::now();
        let aimd = Aimd::new().increase_interval(Duration::from_nanos(1));
        let mut rate = AimdRate::new(aimd, 1_000.0, t0);
        rate.throttled(t0);
        // 2^32 steps: a cast to u32 made it 0 steps, and no recovery.
        assert!(rate.recover(t0 + Duration::from_nanos(1 << 32)));
        assert!(rate.is_at_ceiling());
    }

    #[test]
    fn bad_settings_are_typed_errors() {
        for aimd in [
            Aimd::new().decrease_factor(1.0),
            Aimd::new().decrease_factor(0.0),
            Aimd::new().increase_fraction(f64::INFINITY),
            Aimd::new().min_fraction(-1.0),
            Aimd::new().increase_interval(Duration::ZERO),
        ] {
            assert!(aimd.validate().is_err(), "{aimd:?}");
        }
        assert_eq!(Aimd::new().validate(), Ok(()));
    }
}
