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

/// Round trips that grow at a limit of 1 leave nothing to cut to: the knee tuner stays at 1
/// (its cut was once a `clamp` whose bounds crossed there, and panicked).
#[test]
fn knee_tuner_at_a_limit_of_one_survives_growing_round_trips() {
    for max in [1, 2] {
        let config = KneeConfig::builder().min(1).max(max).build().unwrap();
        let mut tuner = KneeTuner::new(config, 1);
        let mut now = Instant::now();
        // A clean baseline at 1 ms, then every round trip 20 ms with work waiting.
        for step in 0..6_000u64 {
            now += Duration::from_millis(1);
            let (latency_ms, queued) = if step < 2_000 { (1, 0) } else { (20, 50) };
            let sample = Sample::new(
                now,
                Duration::from_millis(latency_ms),
                AttemptOutcome::Succeeded,
            )
            .in_flight(1)
            .queued(queued);
            tuner.observe(&sample, now);
            tuner.tick(now);
            assert!(
                (1..=max).contains(&tuner.limit()),
                "limit {}",
                tuner.limit()
            );
        }
    }
}
