//! Every shipped scenario, every tuner it names: outcomes must stay inside the scenario's
//! ranges, so a regression in a tuner or the simulator fails here.

use pool_tuning::sim::{load_scenarios, scenario_dir, simulate, Metric, Scenario, TunerSpec};

fn shipped() -> Vec<Scenario> {
    let scenarios = load_scenarios(scenario_dir()).expect("shipped scenarios load");
    assert!(scenarios.len() >= 6, "expected the six shipped scenarios");
    scenarios
}

#[test]
fn every_scenario_meets_its_expected_ranges() {
    let mut failures = Vec::new();
    for scenario in shipped() {
        let tuners = scenario.expected_tuners();
        assert!(!tuners.is_empty(), "{} expects nothing", scenario.name);
        for tuner in tuners {
            let report = simulate(&scenario, &tuner).expect("scenario runs");
            failures.extend(
                scenario
                    .check(&tuner, &report)
                    .into_iter()
                    .map(|violation| format!("{}: {violation}", scenario.name)),
            );
        }
    }
    assert!(
        failures.is_empty(),
        "out of range:\n{}",
        failures.join("\n")
    );
}

/// The goals, checked in code so that loosening a scenario file cannot hide a miss.
#[test]
fn knee_tuner_meets_its_goals_and_beats_rule_and_fixed_ten_on_throughput_scenarios() {
    for scenario in shipped().into_iter().filter(|s| s.throughput) {
        let knee = simulate(&scenario, &TunerSpec::Knee).unwrap();
        let rule = simulate(&scenario, &TunerSpec::Rule).unwrap();
        let fixed = simulate(&scenario, &TunerSpec::Fixed(10)).unwrap();
        let name = &scenario.name;
        assert!(
            knee.utilization >= 0.95,
            "{name}: utilization {}",
            knee.utilization
        );
        assert!(
            knee.throttled_fraction <= 0.005,
            "{name}: throttled {}",
            knee.throttled_fraction
        );
        let converged = knee.converged_after_s.expect("knee converges");
        assert!(converged <= 10.0, "{name}: converged after {converged} s");
        assert!(
            knee.utilization > rule.utilization,
            "{name}: rule did better"
        );
        assert!(
            knee.utilization > fixed.utilization,
            "{name}: fixed:10 did better"
        );
    }
}

/// Throttling that does not depend on load (1 % of requests, whatever the limit) must not
/// drag the knee tuner to its minimum, nor blind it to a real cap that comes later.
#[test]
fn knee_tuner_learns_background_throttling_and_still_follows_a_cap() {
    let find = |name: &str| {
        shipped()
            .into_iter()
            .find(|s| s.name == name)
            .unwrap_or_else(|| panic!("{name} ships"))
    };
    let background = find("background-throttling");
    let knee = simulate(&background, &TunerSpec::Knee).unwrap();
    let fixed = simulate(&background, &TunerSpec::Fixed(10)).unwrap();
    assert!(knee.utilization >= 0.9, "utilization {}", knee.utilization);
    assert!(knee.utilization > fixed.utilization);
    assert!(
        knee.throttled_fraction <= 0.02,
        "throttled {}",
        knee.throttled_fraction
    );

    let then_cap = find("background-then-cap");
    let knee = simulate(&then_cap, &TunerSpec::Knee).unwrap();
    let last = knee.phases.last().expect("two phases");
    assert!(last.utilization >= 0.9, "last phase {}", last.utilization);
    assert!(
        (34..=50).contains(&knee.final_concurrency),
        "final {}",
        knee.final_concurrency
    );
}

#[test]
fn rule_engine_backs_off_under_memory_pressure() {
    let scenario = shipped()
        .into_iter()
        .find(|s| s.name == "memory-pressure")
        .expect("memory-pressure ships");
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

#[test]
fn ranges_can_fail_a_weaker_tuner() {
    // The knee tuner's ranges judged on fixed:10's run must fail: the checks have teeth.
    let scenario = shipped().into_iter().find(|s| s.name == "knee-64").unwrap();
    let fixed = simulate(&scenario, &TunerSpec::Fixed(10)).unwrap();
    let knee_ranges_on_fixed = scenario
        .check(&TunerSpec::Knee, &fixed)
        .into_iter()
        .map(|violation| violation.metric)
        .collect::<Vec<_>>();
    assert!(knee_ranges_on_fixed.contains(&Metric::Utilization));
}

#[test]
fn same_seed_same_run() {
    let scenario = shipped().remove(0);
    let first = simulate(&scenario, &TunerSpec::Knee).unwrap();
    let second = simulate(&scenario, &TunerSpec::Knee).unwrap();
    assert_eq!(first, second);
}
