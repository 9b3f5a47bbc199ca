//! The Prometheus exposition: accepted by a parser, and line by line by a strict grammar.

use crate::support;

use std::collections::{BTreeSet, HashMap};

use pool_metrics::PrometheusFormat;
use prometheus_parse::{Scrape, Value};
use support::busy_metrics;

fn render(pool_label: &str) -> (String, pool_metrics::Snapshot) {
    let (metrics, now) = busy_metrics();
    let snapshot = metrics.snapshot_at(now);
    let format = PrometheusFormat::new("s3pool")
        .unwrap()
        .label("pool", pool_label)
        .unwrap();
    (format.render(&snapshot), snapshot)
}

#[test]
fn a_parser_reads_back_every_figure() {
    let (text, snapshot) = render("uploads");
    let scrape = Scrape::parse(text.lines().map(|line| Ok(line.to_owned()))).unwrap();
    let find = |metric: &str, label: Option<(&str, &str)>| {
        scrape
            .samples
            .iter()
            .find(|s| s.metric == metric && label.is_none_or(|(k, v)| s.labels.get(k) == Some(v)))
            .unwrap_or_else(|| panic!("{metric} {label:?} missing in\n{text}"))
    };
    let counter = |metric: &str, label| match find(metric, label).value {
        Value::Counter(v) => v,
        ref other => panic!("{metric} is {other:?}"),
    };
    let gauge = |metric: &str| match find(metric, None).value {
        Value::Gauge(v) => v,
        ref other => panic!("{metric} is {other:?}"),
    };

    let live = &snapshot.live;
    assert_eq!(
        counter(
            "s3pool_tasks_finished_total",
            Some(("outcome", "succeeded"))
        ),
        live.succeeded as f64
    );
    assert_eq!(
        counter(
            "s3pool_tasks_finished_total",
            Some(("outcome", "timed_out"))
        ),
        10.0
    );
    assert_eq!(
        counter("s3pool_tasks_finished_total", Some(("outcome", "panicked"))),
        0.0
    );
    assert_eq!(
        counter("s3pool_task_failures_total", Some(("class", "throttled"))),
        10.0
    );
    assert_eq!(
        counter("s3pool_task_retries_total", None),
        live.retries as f64
    );
    assert_eq!(
        gauge("s3pool_memory_rss_bytes"),
        live.memory.rss_bytes.unwrap() as f64
    );
    assert_eq!(gauge("s3pool_tuner_state"), 24.0);
    let sample = find("s3pool_task_attempts_total", None);
    assert_eq!(sample.labels.get("pool"), Some("uploads"));

    let Value::Summary(quantiles) = &find("s3pool_execution_seconds", None).value else {
        panic!("execution is a summary");
    };
    let p99 = quantiles.iter().find(|q| q.quantile == 0.99).unwrap().count;
    assert_eq!(p99, snapshot.history.execution.p99_us as f64 / 1e6);
}

/// `name{label="value",…} number` with Prometheus's name, label and number grammar.
fn check_sample(line: &str) -> Result<(String, String), String> {
    let name_end = line
        .find(['{', ' '])
        .ok_or_else(|| format!("no value: {line}"))?;
    let name = &line[..name_end];
    let valid_name = name
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_' || c == ':')
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':');
    if !valid_name {
        return Err(format!("bad metric name {name:?}"));
    }
    let mut rest = &line[name_end..];
    let mut labels = String::new();
    if let Some(inner) = rest.strip_prefix('{') {
        let mut chars = inner.char_indices();
        let mut in_value = false;
        let mut escaped = false;
        let mut close = None;
        for (i, c) in chars.by_ref() {
            match (in_value, escaped, c) {
                (true, true, '\\' | '"' | 'n') => escaped = false,
                (true, true, other) => return Err(format!("bad escape \\{other} in {line}")),
                (true, false, '\\') => escaped = true,
                (true, false, '"') => in_value = false,
                (true, false, _) => {}
                (false, _, '"') => in_value = true,
                (false, _, '}') => {
                    close = Some(i);
                    break;
                }
                (false, _, c) if c.is_ascii_alphanumeric() || c == '_' || c == '=' || c == ',' => {}
                (false, _, c) => return Err(format!("unexpected {c:?} in labels of {line}")),
            }
        }
        let close = close.ok_or_else(|| format!("unclosed labels: {line}"))?;
        labels = inner[..close].to_owned();
        rest = &inner[close + 1..];
    }
    let value = rest
        .strip_prefix(' ')
        .ok_or_else(|| format!("no space before value: {line}"))?;
    let numeric = value.parse::<f64>().is_ok() && !value.contains(['i', 'I', 'N']);
    if !(numeric || ["+Inf", "-Inf", "NaN"].contains(&value)) {
        return Err(format!("bad value {value:?} in {line}"));
    }
    Ok((name.to_owned(), labels))
}

#[test]
fn every_line_follows_the_text_format() {
    // A label value that needs escaping (the parser above does not unescape, this check does).
    let (text, _) = render("uploads \"eu\"\\1\nx");
    let mut typed: HashMap<String, String> = HashMap::new();
    let mut series = BTreeSet::new();
    for line in text.lines() {
        if let Some(help) = line.strip_prefix("# HELP ") {
            assert!(
                help.split_once(' ').is_some_and(|(_, doc)| !doc.is_empty()),
                "{line}"
            );
        } else if let Some(declaration) = line.strip_prefix("# TYPE ") {
            let (name, kind) = declaration.split_once(' ').expect("TYPE name kind");
            assert!(
                ["counter", "gauge", "summary", "histogram", "untyped"].contains(&kind),
                "{line}"
            );
            assert!(
                typed.insert(name.to_owned(), kind.to_owned()).is_none(),
                "declared twice: {name}"
            );
        } else {
            let (name, labels) = check_sample(line).unwrap_or_else(|e| panic!("{e}"));
            let family = ["_sum", "_count"]
                .iter()
                .find_map(|suffix| {
                    name.strip_suffix(suffix)
                        .filter(|base| typed.get(*base).is_some_and(|k| k == "summary"))
                })
                .unwrap_or(&name);
            assert!(typed.contains_key(family), "sample before its TYPE: {line}");
            if typed[family] == "counter" {
                assert!(
                    family.ends_with("_total"),
                    "counter without _total: {family}"
                );
            }
            assert!(
                series.insert((name.clone(), labels)),
                "duplicate series: {line}"
            );
        }
    }
    assert!(text.ends_with('\n'));
    assert!(typed.len() >= 15, "families: {typed:?}");
}

#[test]
fn the_grammar_check_rejects_malformed_lines() {
    for bad in [
        "s3pool-x 1",
        "s3pool_x{a=\"1\" 1",
        "s3pool_x{a=\"\\q\"} 1",
        "s3pool_x 1 2 3x",
        "s3pool_x inf",
        "s3pool_x{a b} 1",
    ] {
        assert!(check_sample(bad).is_err(), "accepted {bad:?}");
    }
    assert!(check_sample("s3pool_x{a=\"q \\\"x\\\"\",b=\"\"} -1.5e-3").is_ok());
}
