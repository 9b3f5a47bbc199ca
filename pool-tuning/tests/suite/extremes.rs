//! Every count, factor and duration a tuner's builder accepts, at its extremes: `build()`
//! refuses it with a typed `ConfigError` naming the setting, or the tuner takes a stream of
//! samples (with extreme in-flight counts and memory readings, latencies from zero to an
//! hour) and ticks far into the future without a panic, its limit always within its bounds.

use std::time::{Duration, Instant};

use pool_tuning::{
    AttemptOutcome, Bounds, ConfigError, FixedTuner, KneeConfig, KneeConfigBuilder, KneeTuner,
    RuleConfig, RuleConfigBuilder, RuleTuner, Sample, Tuner,
};

const DURATIONS: [Duration; 4] = [
    Duration::ZERO,
    Duration::from_nanos(1),
    Duration::from_secs(1),
    Duration::MAX,
];
const COUNTS: [usize; 3] = [0, 1, usize::MAX];
const FACTORS: [f64; 9] = [
    0.0,
    -1.0,
    f64::MIN_POSITIVE,
    0.5,
    1.0,
    10.0,
    f64::MAX,
    f64::INFINITY,
    f64::NAN,
];

/// Feeds `tuner` three phases (clean, overloaded, clean again) of samples with every extreme
/// a sample can carry, ticking as it goes; the limit must stay in `bounds`.
fn drive(tuner: &mut dyn Tuner, (min, max): (usize, usize)) {
    let start = Instant::now();
    let latencies = [
        Duration::ZERO,
        Duration::from_nanos(1),
        Duration::from_millis(20),
        Duration::from_secs(3_600),
    ];
    let mut now = start;
    for step in 0..3_000u64 {
        now += Duration::from_millis(1);
        let outcome = match (step / 1_000, step % 7) {
            (1, 0..=2) => AttemptOutcome::Throttled,
            (1, 3) => AttemptOutcome::TimedOut,
            (_, 4) => AttemptOutcome::Failed,
            _ => AttemptOutcome::Succeeded,
        };
        let latency = latencies[(step % 4) as usize];
        let sample = Sample::new(now, latency, outcome)
            .in_flight([0, 1, usize::MAX][(step % 3) as usize])
            .queued([0, usize::MAX][(step % 2) as usize])
            .memory_fraction([0.0, 0.5, 1.0, f64::NAN, f64::INFINITY, -1.0][(step % 6) as usize]);
        tuner.observe(&sample, now);
        assert!((min..=max).contains(&tuner.limit()));
        if step % 100 == 0 {
            tuner.tick(now);
        }
    }
    // A century later, then back (a clock that jumped).
    for later in [Duration::from_secs(100 * 365 * 24 * 3600), Duration::ZERO] {
        let at = start + later;
        tuner.tick(at);
        tuner.observe(
            &Sample::new(at, Duration::MAX, AttemptOutcome::Succeeded),
            at,
        );
        assert!((min..=max).contains(&tuner.limit()));
    }
}

#[track_caller]
fn check_knee(setting: &str, value: String, builder: KneeConfigBuilder) {
    match builder.build() {
        Err(error) => assert_names(&error, setting, &value),
        Ok(config) => {
            for initial in [0, 1, usize::MAX] {
                let mut tuner = KneeTuner::new(config, initial);
                drive(&mut tuner, (config.bounds().min(), config.bounds().max()));
            }
        }
    }
}

#[track_caller]
fn check_rule(setting: &str, value: String, builder: RuleConfigBuilder) {
    match builder.build() {
        Err(error) => assert_names(&error, setting, &value),
        Ok(config) => {
            for initial in [0, 1, usize::MAX] {
                let mut tuner = RuleTuner::new(config, initial);
                drive(&mut tuner, (config.bounds().min(), config.bounds().max()));
            }
        }
    }
}

#[track_caller]
fn assert_names(error: &ConfigError, setting: &str, value: &str) {
    let text = error.to_string();
    // Bounds errors say "min concurrency" / "max concurrency".
    let named = text.contains(setting)
        || (setting == "min" || setting == "max") && text.contains("concurrency");
    assert!(
        named,
        "{setting} = {value}: the error does not name the setting: {text}"
    );
}

#[test]
fn knee_settings_at_their_extremes() {
    let knee = KneeConfig::builder;
    for n in COUNTS {
        let v = n.to_string();
        check_knee("min", v.clone(), knee().min(n).max(usize::MAX));
        check_knee("max", v.clone(), knee().max(n));
        check_knee("min_samples", v.clone(), knee().min_samples(n));
    }
    for n in [0, 1, u32::MAX] {
        check_knee("hold_windows", n.to_string(), knee().hold_windows(n));
    }
    for d in DURATIONS {
        let v = format!("{d:?}");
        check_knee("min_window", v.clone(), knee().min_window(d));
        check_knee("baseline_refresh", v.clone(), knee().baseline_refresh(d));
        check_knee("rate_window", v.clone(), knee().rate_window(d));
    }
    for f in FACTORS {
        let v = f.to_string();
        check_knee("latency_tolerance", v.clone(), knee().latency_tolerance(f));
        check_knee("gentlest_cut", v.clone(), knee().gentlest_cut(f));
        check_knee(
            "deepest_cut",
            v.clone(),
            knee().deepest_cut(f).gentlest_cut(0.99),
        );
        check_knee("memory_target", v.clone(), knee().memory_target(Some(f)));
        check_knee(
            "max_background_overload",
            v.clone(),
            knee().max_background_overload(f),
        );
    }
    check_knee("memory_target", "None".into(), knee().memory_target(None));
}

#[test]
fn rule_settings_at_their_extremes() {
    let rule = RuleConfig::builder;
    for n in COUNTS {
        let v = n.to_string();
        check_rule("min", v.clone(), rule().min(n).max(usize::MAX));
        check_rule("max", v.clone(), rule().max(n));
        check_rule("sample_window", v.clone(), rule().sample_window(n));
        check_rule("min_samples", v.clone(), rule().min_samples(n));
    }
    for d in DURATIONS {
        let v = format!("{d:?}");
        check_rule("target_latency", v.clone(), rule().target_latency(d));
        check_rule(
            "adjustment_interval",
            v.clone(),
            rule().adjustment_interval(d),
        );
    }
    for f in FACTORS {
        check_rule(
            "target_memory_fraction",
            f.to_string(),
            rule().target_memory_fraction(f),
        );
    }
}

#[test]
fn fixed_limits_and_bounds_at_their_extremes() {
    for n in COUNTS {
        match FixedTuner::new(n) {
            Err(error) => assert_names(&error, "limit", &n.to_string()),
            Ok(mut tuner) => drive(&mut tuner, (n, n)),
        }
        for m in COUNTS {
            if let Ok(bounds) = Bounds::new(n, m) {
                for value in COUNTS {
                    assert!((n..=m).contains(&bounds.clamp(value)));
                }
            }
        }
    }
}
