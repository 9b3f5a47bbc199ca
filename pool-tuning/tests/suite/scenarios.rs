//! The simulator's scenarios: outcomes inside their ranges, capacity honest, runs repeatable.
//!
//! The test suite runs the *quick* scenarios (`tests/scenarios`, 20–30 simulated seconds at
//! a few hundred operations per second: the same five families of backend behaviour as the
//! shipped ones, small enough for a debug build). The shipped scenarios (`scenarios/`, a
//! minute at thousands of operations per second) are checked the same way, on three seeds,
//! by `cargo xtask tune` in a release build.

use std::path::PathBuf;

use pool_tuning::sim::{
    load_scenarios, on_every_core, scenario_dir, simulate, simulate_seeded, Metric, Scenario,
    SimReport, TunerSpec,
};

/// Seeds the knee tuner's ranges must hold on: the scenario's own and the next two. (The
/// other tuners' ranges are checked on the scenario's own seed here, and on three seeds by
/// `cargo xtask tune`.)
const SEEDS: u64 = 3;

fn quick() -> Vec<Scenario> {
    let dir = PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/scenarios"));
    let scenarios = load_scenarios(dir).expect("quick scenarios load");
    assert!(scenarios.len() >= 20, "expected the quick scenarios");
    scenarios
}

fn find(scenarios: &[Scenario], name: &str) -> Scenario {
    scenarios
        .iter()
        .find(|s| s.name == name)
        .unwrap_or_else(|| panic!("{name} exists"))
        .clone()
}

#[test]
fn every_shipped_scenario_loads_and_expects_something_of_every_compared_tuner() {
    let shipped = load_scenarios(scenario_dir()).expect("shipped scenarios load");
    assert!(shipped.len() >= 20, "{} shipped scenarios", shipped.len());
    for class in ["shipped", "background", "late", "drop", "above", "tails"] {
        assert!(
            shipped.iter().filter(|s| s.class == class).count() >= 3,
            "fewer than 3 scenarios of class {class}"
        );
    }
    for scenario in &shipped {
        let tuners = scenario.expected_tuners();
        for tuner in TunerSpec::COMPARED {
            assert!(
                tuners.contains(&tuner),
                "{} has no range for {tuner}",
                scenario.name
            );
        }
    }
}

#[test]
fn quick_scenarios_meet_their_ranges() {
    let jobs: Vec<(Scenario, TunerSpec, u64)> = quick()
        .into_iter()
        .flat_map(|scenario| {
            let tuners = scenario.expected_tuners();
            tuners
                .into_iter()
                .flat_map(move |tuner| {
                    let scenario = scenario.clone();
                    let seeds = if tuner == TunerSpec::Knee { SEEDS } else { 1 };
                    (0..seeds).map(move |i| (scenario.clone(), tuner, scenario.seed + i))
                })
                .collect::<Vec<_>>()
        })
        .collect();
    let failures: Vec<String> = on_every_core(&jobs, |(scenario, tuner, seed)| {
        let report = simulate_seeded(scenario, tuner, *seed).expect("scenario runs");
        scenario
            .check(tuner, &report)
            .into_iter()
            .map(|violation| format!("{} (seed {seed}): {violation}", scenario.name))
            .collect::<Vec<_>>()
    })
    .into_iter()
    .flatten()
    .collect();
    assert!(
        failures.is_empty(),
        "out of range:\n{}",
        failures.join("\n")
    );
}

/// Capacity is computed, not measured: the best fixed limit must reach it (and no fixed
/// limit may beat it by more than noise), or the utilization of every tuner means nothing.
#[test]
fn the_best_fixed_limit_reaches_the_computed_capacity_and_nothing_beats_it() {
    let scenarios = quick();
    let best: Vec<SimReport> = on_every_core(&scenarios, |scenario| {
        simulate(scenario, &TunerSpec::BestFixed).expect("runs")
    });
    for (scenario, report) in scenarios.iter().zip(&best) {
        if !scenario.throughput {
            continue;
        }
        assert!(
            (0.97..=1.02).contains(&report.utilization),
            "{}: best fixed at {:.3} of capacity",
            scenario.name,
            report.utilization
        );
        assert!(
            report.overload_fraction <= 0.005,
            "{}: best fixed overloads {:.4}",
            scenario.name,
            report.overload_fraction
        );
    }
    let sweep: Vec<(Scenario, usize)> = ["quick-knee", "quick-late-timeouts", "quick-bimodal"]
        .iter()
        .flat_map(|name| {
            let scenario = find(&scenarios, name);
            [12, 20, 28, 36, 48, 64, 96].map(move |limit| (scenario.clone(), limit))
        })
        .collect();
    let swept = on_every_core(&sweep, |(scenario, limit)| {
        simulate(scenario, &TunerSpec::Fixed(*limit)).expect("runs")
    });
    for ((scenario, limit), report) in sweep.iter().zip(swept) {
        assert!(
            report.utilization <= 1.02,
            "{}: fixed:{limit} beat capacity ({:.3})",
            scenario.name,
            report.utilization
        );
    }
}

#[test]
fn ranges_can_fail_a_weaker_tuner() {
    // The knee tuner's ranges judged on fixed:10's run must fail: the checks have teeth.
    let scenario = find(&quick(), "quick-knee");
    let fixed = simulate(&scenario, &TunerSpec::Fixed(10)).unwrap();
    let knee_ranges_on_fixed = scenario
        .check(&TunerSpec::Knee, &fixed)
        .into_iter()
        .map(|violation| violation.metric)
        .collect::<Vec<_>>();
    assert!(knee_ranges_on_fixed.contains(&Metric::Utilization));
}

#[test]
fn same_seed_same_run_other_seed_other_run() {
    let scenario = find(&quick(), "quick-background");
    let first = simulate(&scenario, &TunerSpec::Knee).unwrap();
    let second = simulate(&scenario, &TunerSpec::Knee).unwrap();
    assert_eq!(first, second);
    let other = simulate_seeded(&scenario, &TunerSpec::Knee, scenario.seed + 1).unwrap();
    assert_ne!(first.achieved_ops_per_s, other.achieved_ops_per_s);
}

#[test]
fn rule_engine_backs_off_under_memory_pressure() {
    let scenario = find(&quick(), "quick-memory");
    let report = simulate(&scenario, &TunerSpec::Rule).unwrap();
    let peak = report
        .phases
        .iter()
        .map(|phase| phase.final_concurrency)
        .max()
        .unwrap();
    assert!(
        report.final_concurrency < peak,
        "rule engine ended at {} after a peak of {peak}",
        report.final_concurrency
    );
}

/// The backend throttles with 429 and Retry-After: the client parks those tasks through the
/// pool's admission seam (without a slot) until then, on top of the pool's own backoff.
#[test]
fn retry_after_parks_throttled_tasks() {
    let text = |honour: bool| {
        format!(
            r#"
            name = "retry-after"
            duration_s = 5.0
            [client]
            honour_retry_after = {honour}
            [server]
            base_latency_ms = 20.0
            knee = 64
            background_too_many = 0.05
            retry_after_ms = 2000.0
            "#
        )
    };
    let run = |honour| {
        let scenario = Scenario::from_toml_str(&text(honour)).unwrap();
        simulate(&scenario, &TunerSpec::Fixed(32)).unwrap()
    };
    let (honoured, ignored) = (run(true), run(false));
    assert_eq!(ignored.deferrals, 0);
    // About one in twenty attempts is a 429; nearly all are retried after a deferral (a
    // few run out of retries or of time).
    let throttled = honoured.throttled_fraction * honoured.attempts as f64;
    assert!(
        honoured.deferrals as f64 > 0.8 * throttled,
        "{} deferrals for {throttled} 429s",
        honoured.deferrals
    );
}
