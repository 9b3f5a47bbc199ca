//! Whatever the samples say, a tuner's limit stays within `[min, max]`.

use std::time::{Duration, Instant};

use pool_tuning::{AttemptOutcome, KneeConfig, KneeTuner, RuleConfig, RuleTuner, Sample, Tuner};
use proptest::prelude::*;

fn outcome() -> impl Strategy<Value = AttemptOutcome> {
    prop_oneof![
        6 => Just(AttemptOutcome::Succeeded),
        1 => Just(AttemptOutcome::Failed),
        1 => Just(AttemptOutcome::Throttled),
        1 => Just(AttemptOutcome::TimedOut),
    ]
}

/// (gap since the previous sample in µs, latency in µs, outcome, in flight, queued, memory)
fn samples() -> impl Strategy<Value = Vec<(u64, u64, AttemptOutcome, usize, usize, f64)>> {
    prop::collection::vec(
        (
            0u64..50_000,
            0u64..2_000_000,
            outcome(),
            0usize..2_000,
            0usize..100,
            0.0f64..1.0,
        ),
        1..400,
    )
}

fn check_bounds(
    tuner: &mut dyn Tuner,
    min: usize,
    max: usize,
    samples: &[(u64, u64, AttemptOutcome, usize, usize, f64)],
) -> Result<(), TestCaseError> {
    let mut now = Instant::now();
    prop_assert!((min..=max).contains(&tuner.limit()));
    for &(gap, latency, outcome, in_flight, queued, memory) in samples {
        now += Duration::from_micros(gap);
        let sample = Sample::new(now, Duration::from_micros(latency), outcome)
            .in_flight(in_flight)
            .queued(queued)
            .memory_fraction(memory);
        if let Some(adjustment) = tuner.observe(&sample, now) {
            prop_assert_ne!(adjustment.from, adjustment.to);
            prop_assert_eq!(adjustment.to, tuner.limit());
        }
        tuner.tick(now);
        prop_assert!(
            (min..=max).contains(&tuner.limit()),
            "limit {}",
            tuner.limit()
        );
    }
    Ok(())
}

proptest! {
    #[test]
    fn knee_tuner_stays_within_bounds(
        min in 1usize..50,
        span in 0usize..200,
        initial in 0usize..500,
        samples in samples(),
    ) {
        let max = min + span;
        let config = KneeConfig::builder().min(min).max(max).build().unwrap();
        check_bounds(&mut KneeTuner::new(config, initial), min, max, &samples)?;
    }

    #[test]
    fn rule_tuner_stays_within_bounds(
        min in 1usize..50,
        span in 0usize..200,
        initial in 0usize..500,
        samples in samples(),
    ) {
        let max = min + span;
        let config = RuleConfig::builder()
            .min(min)
            .max(max)
            .adjustment_interval(Duration::from_millis(100))
            .build()
            .unwrap();
        check_bounds(&mut RuleTuner::new(config, initial), min, max, &samples)?;
    }
}
