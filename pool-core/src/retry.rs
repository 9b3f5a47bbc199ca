//! Retry arithmetic: backoff with jitter, the pressure rule, the retry decision, and the
//! retry budget's settings. Pure: the caller passes the random source and the facts about the
//! pool (its saturation, whether it is stopping); the budget's live bucket is the engine's.

use std::ops::RangeInclusive;
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
    /// The pool is saturated past the skip threshold: retry after the whole backoff (not
    /// clamped); the retry then queues behind the work that arrived meanwhile. The default:
    /// a long queue delays a retry, it never drops one.
    Saturated(Duration),
    /// The pool is saturated and [`RetryPolicy::skip_when_saturated`] is on: do not retry;
    /// the task ends with [`TaskError::RetrySkipped`](crate::TaskError::RetrySkipped).
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
    /// Saturation at or above which a retry waits its whole backoff (default 10) — or is
    /// skipped, if [`skip_when_saturated`](Self::skip_when_saturated) is on.
    pub skip_threshold: f64,
    /// Skip retries at or above `skip_threshold` (default `false`: they wait their backoff
    /// instead). On, a saturated pool fails a task after its first failed attempt, and the
    /// task's error says so ([`TaskError::RetrySkipped`](crate::TaskError::RetrySkipped)):
    /// for latency-bound work that would rather fail fast than queue a retry.
    pub skip_when_saturated: bool,
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
            skip_when_saturated: false,
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
            if self.skip_when_saturated {
                PressureDecision::Skip
            } else {
                PressureDecision::Saturated(delay)
            }
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
    /// The pool is saturated past the pressure rule's skip threshold, and skipping is on.
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
            PressureDecision::Retry(delay)
            | PressureDecision::Clamped(delay)
            | PressureDecision::Saturated(delay) => RetryDecision::After { delay, backoff },
        }
    }
}

/// Saturation of a pool: `(queued + active) / max(1, concurrency)`.
pub(crate) fn saturation(queued: usize, active: usize, concurrency: usize) -> f64 {
    (queued + active) as f64 / concurrency.max(1) as f64
}

/// Token-bucket settings that keep a failing backend from turning into a retry storm:
/// each retry costs tokens, each success refills a little, and time refills a floor.
///
/// When the bucket cannot pay for a retry, the retry **waits** for a token (holding no
/// slot, after its backoff) rather than failing: the work is slowed, not lost. Waiting retries
/// are paid in the order they came, by successes as they refill the bucket, or by the floor.
/// The wait ends early if the task is cancelled or the pool stopped. With
/// [`fail_fast`](Self::fail_fast) on, a retry the bucket cannot pay fails at once with
/// [`TaskError::RetryBudgetExhausted`](crate::TaskError::RetryBudgetExhausted).
///
/// Defaults follow the AWS SDKs' standard retry quota: capacity 500, a retry costs 5 (a retry
/// after a timeout 10), a success refills 1 — a burst of up to 100 retries, then one retry
/// per five successes. Like tower's `TpsBudget`, a floor lets some retries through when
/// nothing succeeds: `min_per_sec` retries per second per slot of the pool's current limit.
///
/// # The arithmetic, by example
/// A pool with limit 10 and the default budget meets an outage: every attempt fails.
/// - The first 100 retries are paid from the 500 tokens at once.
/// - Then the floor pays `1 × 10 = 10` retries per second (50 tokens/s): the 101st retry
///   runs about 0.1 s after the bucket emptied, the 150th about 5 s after.
/// - When the backend recovers, every success gives 1 token back: the 1,000 successes after
///   recovery pay 200 waiting retries, on top of the floor.
///
/// A waiting retry holds no slot: fresh work keeps the slots busy meanwhile, and its
/// successes are what pays for the retries.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// use pool_core::{Pool, RetryBudget};
/// let pool = Pool::builder()
///     .concurrency(10)
///     .retry_budget(RetryBudget {
///         capacity: 100.0,   // a burst of 20 retries
///         min_per_sec: 0.5,  // then at least 5 retries/s at limit 10
///         ..RetryBudget::default()
///     })
///     .build()
///     .unwrap();
/// assert_eq!(pool.retry_budget_tokens(), Some(100.0));
/// # }
/// ```
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RetryBudget {
    /// Tokens when full (default 500).
    pub capacity: f64,
    /// Cost of a retry (default 5). A cost above the capacity takes a full bucket.
    pub retry_cost: f64,
    /// Cost of a retry after a timeout (default 10).
    pub timeout_retry_cost: f64,
    /// Tokens a success gives back (default 1).
    pub success_refill: f64,
    /// The floor: retries per second, per slot of the pool's current concurrency limit, that
    /// time pays for whatever succeeds (default 1; `0` leaves only successes to refill).
    /// Scaled with the limit so that a bigger pool keeps a proportionate trickle of retries.
    pub min_per_sec: f64,
    /// Fail a retry the bucket cannot pay, with `RetryBudgetExhausted`, instead of waiting
    /// for a token (default `false`).
    pub fail_fast: bool,
}

impl Default for RetryBudget {
    fn default() -> Self {
        Self {
            capacity: 500.0,
            retry_cost: 5.0,
            timeout_retry_cost: 10.0,
            success_refill: 1.0,
            min_per_sec: 1.0,
            fail_fast: false,
        }
    }
}

impl RetryBudget {
    /// What one retry costs (after a timeout, or after an error).
    pub(crate) fn cost(&self, after_timeout: bool) -> f64 {
        if after_timeout {
            self.timeout_retry_cost
        } else {
            self.retry_cost
        }
    }

    /// Tokens per second the floor pays at concurrency limit `limit`.
    pub(crate) fn floor_per_sec(&self, limit: usize) -> f64 {
        self.min_per_sec * limit.max(1) as f64 * self.retry_cost
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
        assert_eq!(p.under_pressure(d, 10.0), PressureDecision::Saturated(d));
        let skipping = RetryPolicy {
            skip_when_saturated: true,
            ..p
        };
        assert_eq!(skipping.under_pressure(d, 10.0), PressureDecision::Skip);
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
        let p = RetryPolicy {
            skip_when_saturated: true,
            ..policy(Jitter::None)
        };
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
}
