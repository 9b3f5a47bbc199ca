//! Retry arithmetic: backoff with jitter, the pressure rule, the retry decision, and the
//! retry budget. Pure: the caller passes the random source and the facts about the pool
//! (its saturation, whether it is stopping); only the budget's bucket is shared state.

use std::ops::RangeInclusive;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use crate::task::ErrorClass;

/// How the backoff delay is randomised, so that many tasks failing together do not retry
/// together.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum Jitter {
    /// No jitter: exactly `retry_delay · factor^(attempt-1)`, capped.
    None,
    /// Uniform in `[0, exponential delay]` ("full jitter"). The default: it spreads a burst of
    /// failures the most.
    #[default]
    Full,
    /// Uniform in `[exponential delay / 2, exponential delay]`: keeps at least half the wait.
    Equal,
    /// "Decorrelated jitter": uniform in `[retry_delay, previous delay · 3]`, capped.
    Decorrelated,
}

/// What the pressure rule says about one retry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum PressureDecision {
    /// Retry after the backoff delay.
    Retry(Duration),
    /// The pool is busy: retry, but after a short clamped delay so the retry does not add
    /// latency to a queue that is already long.
    Clamped(Duration),
    /// The pool is saturated: do not retry; the error is returned at once.
    Skip,
}

/// Backoff, jitter and pressure settings: what [`PoolBuilder`](crate::PoolBuilder)'s retry
/// settings make (`RetryPolicy::default()` is the builder's default). Public so that the
/// schedule a configuration gives can be computed ([`delay_range`](Self::delay_range)).
#[derive(Debug, Clone, Copy, PartialEq)]
#[non_exhaustive]
pub struct RetryPolicy {
    /// Delay before the first retry (default 1 s).
    pub base_delay: Duration,
    /// Growth per attempt (default 2.0).
    pub factor: f64,
    /// No delay exceeds this (default 30 s).
    pub max_delay: Duration,
    /// Randomisation (default [`Jitter::Full`]).
    pub jitter: Jitter,
    /// Saturation at or above which delays are clamped (default 4).
    pub clamp_threshold: f64,
    /// Saturation at or above which retries are skipped (default 10).
    pub skip_threshold: f64,
    /// The clamped delay (default 100 ms).
    pub clamp_delay: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            base_delay: Duration::from_secs(1),
            factor: 2.0,
            max_delay: Duration::from_secs(30),
            jitter: Jitter::Full,
            clamp_threshold: 4.0,
            skip_threshold: 10.0,
            clamp_delay: Duration::from_millis(100),
        }
    }
}

impl RetryPolicy {
    /// The un-jittered delay after failed attempt number `attempt` (1-based):
    /// `base · factor^(attempt-1)`, capped at `max_delay`.
    pub fn exponential(&self, attempt: u32) -> Duration {
        let exponent = attempt.saturating_sub(1).min(1_000) as i32;
        let secs = self.base_delay.as_secs_f64() * self.factor.powi(exponent);
        if !secs.is_finite() || secs >= self.max_delay.as_secs_f64() {
            self.max_delay
        } else {
            Duration::from_secs_f64(secs)
        }
    }

    /// The range the jittered delay after failed attempt `attempt` is drawn from, uniformly;
    /// `previous` is the last delay used for this task (for decorrelated jitter; `None` on the
    /// first retry). One point (`low == high`) without jitter.
    ///
    /// ```
    /// use std::time::Duration;
    /// use pool_core::{Jitter, RetryPolicy};
    /// let policy = RetryPolicy::default(); // 1 s, doubling, full jitter
    /// assert_eq!(policy.delay_range(3, None), Duration::ZERO..=Duration::from_secs(4));
    /// ```
    pub fn delay_range(
        &self,
        attempt: u32,
        previous: Option<Duration>,
    ) -> RangeInclusive<Duration> {
        let exponential = self.exponential(attempt);
        let (low, high) = match self.jitter {
            Jitter::None => (exponential, exponential),
            Jitter::Full => (Duration::ZERO, exponential),
            Jitter::Equal => (exponential / 2, exponential),
            Jitter::Decorrelated => {
                let previous = previous.unwrap_or(self.base_delay);
                let high = previous.saturating_mul(3).min(self.max_delay);
                (self.base_delay.min(high), high)
            }
        };
        low.min(high)..=high
    }

    /// A jittered delay after failed attempt `attempt`, drawn from
    /// [`delay_range`](Self::delay_range) with the thread's random source. (A pool draws from
    /// its own source, seeded by [`PoolBuilder::seed`](crate::PoolBuilder::seed).)
    pub fn delay(&self, attempt: u32, previous: Option<Duration>) -> Duration {
        let mut rng = fastrand::Rng::new();
        self.draw_delay(attempt, previous, &mut rng)
    }

    /// A delay drawn uniformly from [`delay_range`](Self::delay_range) with `rng`.
    pub(crate) fn draw_delay(
        &self,
        attempt: u32,
        previous: Option<Duration>,
        rng: &mut fastrand::Rng,
    ) -> Duration {
        let range = self.delay_range(attempt, previous);
        let (low, high) = (*range.start(), *range.end());
        if high <= low {
            return high;
        }
        let span = (high - low).as_nanos().min(u128::from(u64::MAX)) as u64;
        low + Duration::from_nanos(rng.u64(0..=span))
    }

    /// Applies the pressure rule to a delay: `saturation = (queued + active) / max(1, limit)`.
    pub(crate) fn under_pressure(&self, delay: Duration, saturation: f64) -> PressureDecision {
        if saturation >= self.skip_threshold {
            PressureDecision::Skip
        } else if saturation >= self.clamp_threshold {
            PressureDecision::Clamped(delay.min(self.clamp_delay))
        } else {
            PressureDecision::Retry(delay)
        }
    }
}

/// What the engine knows of a failed (or timed-out) attempt when it decides whether to retry.
#[derive(Debug, Clone, Copy)]
pub(crate) struct FailedAttempt {
    /// How it failed (a timeout counts as [`ErrorClass::Retryable`]).
    pub(crate) class: ErrorClass,
    /// Attempts the task has made, this one included.
    pub(crate) attempts: u32,
    /// Retries the task may make in all.
    pub(crate) retries: u32,
    /// The backoff before its previous retry (what decorrelated jitter grows from).
    pub(crate) previous_backoff: Option<Duration>,
    /// The pool's [`saturation`] now.
    pub(crate) saturation: f64,
    /// The task's cancellation token has fired.
    pub(crate) cancelled: bool,
    /// The pool is stopping.
    pub(crate) stopping: bool,
}

/// Whether a failed attempt is retried.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum RetryDecision {
    /// Retry after `delay` (the pressure rule applied to `backoff`).
    After { delay: Duration, backoff: Duration },
    /// No retry.
    GiveUp(GiveUp),
}

/// Why a failed attempt is not retried.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum GiveUp {
    /// Its error is not retryable.
    Fatal,
    /// The task has used its retries.
    OutOfRetries,
    /// The pool is stopping: a retry would never run.
    Stopping,
    /// The task's token fired: it ends `Cancelled`, not with its failure.
    Cancelled,
    /// The pool is saturated past the pressure rule's skip threshold.
    Saturated,
}

impl RetryPolicy {
    /// Whether `failed` is retried, and after how long. The reasons to give up are checked in
    /// the order of [`GiveUp`]'s variants (so a fatal error ends the task with its error even
    /// if its token fired meanwhile); only a retry draws from `rng`.
    pub(crate) fn decide(&self, failed: &FailedAttempt, rng: &mut fastrand::Rng) -> RetryDecision {
        let give_up = if !failed.class.is_retryable() {
            Some(GiveUp::Fatal)
        } else if failed.attempts > failed.retries {
            Some(GiveUp::OutOfRetries)
        } else if failed.stopping {
            Some(GiveUp::Stopping)
        } else if failed.cancelled {
            Some(GiveUp::Cancelled)
        } else {
            None
        };
        if let Some(reason) = give_up {
            return RetryDecision::GiveUp(reason);
        }
        let backoff = self.draw_delay(failed.attempts, failed.previous_backoff, rng);
        match self.under_pressure(backoff, failed.saturation) {
            PressureDecision::Skip => RetryDecision::GiveUp(GiveUp::Saturated),
            PressureDecision::Retry(delay) | PressureDecision::Clamped(delay) => {
                RetryDecision::After { delay, backoff }
            }
        }
    }
}

/// Saturation of a pool: `(queued + active) / max(1, concurrency)`.
pub(crate) fn saturation(queued: usize, active: usize, concurrency: usize) -> f64 {
    (queued + active) as f64 / concurrency.max(1) as f64
}

/// Token-bucket settings that keep a failing backend from turning into a retry storm:
/// each retry costs tokens, each success refills a little. When a retry cannot pay, the task
/// fails with [`TaskError::RetryBudgetExhausted`](crate::TaskError::RetryBudgetExhausted).
///
/// Defaults follow the AWS SDKs' standard retry quota: capacity 500, a retry costs 5 (a retry
/// after a timeout 10), a success refills 1 — a burst of up to 100 retries, then at most one
/// retry per five successes.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RetryBudget {
    /// Tokens when full (default 500).
    pub capacity: f64,
    /// Cost of a retry (default 5).
    pub retry_cost: f64,
    /// Cost of a retry after a timeout (default 10).
    pub timeout_retry_cost: f64,
    /// Tokens a success gives back (default 1).
    pub success_refill: f64,
}

impl Default for RetryBudget {
    fn default() -> Self {
        Self {
            capacity: 500.0,
            retry_cost: 5.0,
            timeout_retry_cost: 10.0,
            success_refill: 1.0,
        }
    }
}

/// Tokens are kept in thousandths so the bucket is one atomic integer.
const MILLI: f64 = 1_000.0;

/// The live bucket. Lock-free: successes (the hot path) do one load when the bucket is full.
#[derive(Debug)]
pub(crate) struct BudgetBucket {
    settings: RetryBudget,
    milli_tokens: AtomicU64,
    capacity_milli: u64,
}

impl BudgetBucket {
    pub(crate) fn new(settings: RetryBudget) -> Self {
        let capacity_milli = (settings.capacity * MILLI) as u64;
        Self {
            settings,
            milli_tokens: AtomicU64::new(capacity_milli),
            capacity_milli,
        }
    }

    /// Takes the cost of one retry; false if the bucket cannot pay it.
    pub(crate) fn try_withdraw(&self, after_timeout: bool) -> bool {
        let cost = if after_timeout {
            self.settings.timeout_retry_cost
        } else {
            self.settings.retry_cost
        };
        let cost = (cost * MILLI) as u64;
        self.milli_tokens
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |tokens| {
                tokens.checked_sub(cost)
            })
            .is_ok()
    }

    pub(crate) fn refill(&self) {
        if self.milli_tokens.load(Ordering::Relaxed) >= self.capacity_milli {
            return;
        }
        let refill = (self.settings.success_refill * MILLI) as u64;
        let capacity = self.capacity_milli;
        let _ = self
            .milli_tokens
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |tokens| {
                Some(tokens.saturating_add(refill).min(capacity))
            });
    }

    pub(crate) fn tokens(&self) -> f64 {
        self.milli_tokens.load(Ordering::Relaxed) as f64 / MILLI
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(jitter: Jitter) -> RetryPolicy {
        RetryPolicy {
            jitter,
            ..RetryPolicy::default()
        }
    }

    #[test]
    fn exponential_doubles_from_the_base_and_caps() {
        let p = policy(Jitter::None);
        let mut rng = fastrand::Rng::with_seed(1);
        let delays: Vec<_> = (1..=3).map(|a| p.draw_delay(a, None, &mut rng)).collect();
        assert_eq!(
            delays,
            vec![
                Duration::from_secs(1),
                Duration::from_secs(2),
                Duration::from_secs(4)
            ]
        );
        assert_eq!(p.exponential(6), Duration::from_secs(30)); // 32 s capped
        assert_eq!(p.exponential(u32::MAX), Duration::from_secs(30));
    }

    #[test]
    fn jitter_stays_within_its_bounds() {
        let mut rng = fastrand::Rng::with_seed(42);
        for attempt in 1..=8 {
            let exp = policy(Jitter::None).exponential(attempt);
            for _ in 0..500 {
                let full = policy(Jitter::Full).draw_delay(attempt, None, &mut rng);
                assert!(full <= exp);
                let equal = policy(Jitter::Equal).draw_delay(attempt, None, &mut rng);
                assert!(equal >= exp / 2 && equal <= exp);
                let prev = Duration::from_millis(1_500);
                let decorrelated =
                    policy(Jitter::Decorrelated).draw_delay(attempt, Some(prev), &mut rng);
                assert!(decorrelated >= Duration::from_secs(1));
                assert!(decorrelated <= Duration::from_millis(4_500));
            }
        }
    }

    #[test]
    fn full_jitter_actually_spreads() {
        let mut rng = fastrand::Rng::with_seed(3);
        let p = policy(Jitter::Full);
        let samples: Vec<_> = (0..1_000)
            .map(|_| p.draw_delay(3, None, &mut rng))
            .collect();
        let low = samples
            .iter()
            .filter(|d| **d < Duration::from_secs(2))
            .count();
        // Uniform on [0, 4 s]: about half below 2 s.
        assert!(
            (400..=600).contains(&low),
            "{low} of 1000 below the midpoint"
        );
    }

    #[test]
    fn pressure_clamps_then_skips() {
        let p = RetryPolicy::default();
        let d = Duration::from_secs(4);
        assert_eq!(p.under_pressure(d, 3.99), PressureDecision::Retry(d));
        assert_eq!(
            p.under_pressure(d, 4.0),
            PressureDecision::Clamped(Duration::from_millis(100))
        );
        assert_eq!(
            p.under_pressure(Duration::from_millis(10), 5.0),
            PressureDecision::Clamped(Duration::from_millis(10))
        );
        assert_eq!(p.under_pressure(d, 10.0), PressureDecision::Skip);
        assert_eq!(saturation(30, 10, 10), 4.0);
        assert_eq!(saturation(5, 0, 0), 5.0);
    }

    fn failed(class: ErrorClass, attempts: u32) -> FailedAttempt {
        FailedAttempt {
            class,
            attempts,
            retries: 2,
            previous_backoff: None,
            saturation: 0.0,
            cancelled: false,
            stopping: false,
        }
    }

    #[test]
    fn a_retryable_failure_within_its_retries_is_retried_after_its_backoff() {
        let p = policy(Jitter::None);
        let mut rng = fastrand::Rng::with_seed(1);
        for (attempts, secs) in [(1, 1), (2, 2)] {
            let backoff = Duration::from_secs(secs);
            assert_eq!(
                p.decide(&failed(ErrorClass::Retryable, attempts), &mut rng),
                RetryDecision::After {
                    delay: backoff,
                    backoff
                }
            );
        }
        // Throttled is retryable too; a timeout is decided as retryable by the engine.
        assert!(matches!(
            p.decide(&failed(ErrorClass::Throttled, 1), &mut rng),
            RetryDecision::After { .. }
        ));
    }

    #[test]
    fn each_reason_to_give_up_in_its_order() {
        let p = policy(Jitter::None);
        let mut rng = fastrand::Rng::with_seed(1);
        let mut decide = |failed: FailedAttempt| p.decide(&failed, &mut rng);
        let give_up = RetryDecision::GiveUp;
        let everything = FailedAttempt {
            cancelled: true,
            stopping: true,
            saturation: 100.0,
            ..failed(ErrorClass::Fatal, 3)
        };
        assert_eq!(decide(everything), give_up(GiveUp::Fatal));
        let everything = FailedAttempt {
            class: ErrorClass::Retryable,
            ..everything
        };
        assert_eq!(decide(everything), give_up(GiveUp::OutOfRetries));
        let everything = FailedAttempt {
            attempts: 2,
            ..everything
        };
        assert_eq!(decide(everything), give_up(GiveUp::Stopping));
        let everything = FailedAttempt {
            stopping: false,
            ..everything
        };
        assert_eq!(decide(everything), give_up(GiveUp::Cancelled));
        let everything = FailedAttempt {
            cancelled: false,
            ..everything
        };
        assert_eq!(decide(everything), give_up(GiveUp::Saturated));
    }

    #[test]
    fn pressure_clamps_the_delay_but_keeps_the_backoff_for_the_next_retry() {
        let p = policy(Jitter::None);
        let mut rng = fastrand::Rng::with_seed(1);
        let busy = FailedAttempt {
            saturation: 5.0,
            ..failed(ErrorClass::Retryable, 2)
        };
        assert_eq!(
            p.decide(&busy, &mut rng),
            RetryDecision::After {
                delay: Duration::from_millis(100),
                backoff: Duration::from_secs(2)
            }
        );
    }

    #[test]
    fn decorrelated_jitter_grows_from_the_previous_backoff() {
        let p = policy(Jitter::Decorrelated);
        let mut rng = fastrand::Rng::with_seed(9);
        let previous = Duration::from_secs(2);
        for _ in 0..200 {
            let after = FailedAttempt {
                previous_backoff: Some(previous),
                ..failed(ErrorClass::Retryable, 2)
            };
            let RetryDecision::After { backoff, delay } = p.decide(&after, &mut rng) else {
                panic!("a retry");
            };
            assert_eq!(backoff, delay);
            assert!(backoff >= Duration::from_secs(1) && backoff <= Duration::from_secs(6));
        }
    }

    #[test]
    fn budget_pays_for_a_hundred_retries_then_refuses_until_refilled() {
        let bucket = BudgetBucket::new(RetryBudget::default());
        let paid = (0..1_000)
            .take_while(|_| bucket.try_withdraw(false))
            .count();
        assert_eq!(paid, 100);
        assert!(!bucket.try_withdraw(false));
        for _ in 0..5 {
            bucket.refill();
        }
        assert!(bucket.try_withdraw(false));
        assert!(!bucket.try_withdraw(false));
        for _ in 0..10_000 {
            bucket.refill();
        }
        assert_eq!(bucket.tokens(), 500.0);
    }

    #[test]
    fn timeouts_cost_more() {
        let bucket = BudgetBucket::new(RetryBudget {
            capacity: 15.0,
            ..RetryBudget::default()
        });
        assert!(bucket.try_withdraw(true));
        assert!(bucket.try_withdraw(false));
        assert!(!bucket.try_withdraw(false));
    }
}
