//! SVG charts of a [`MatrixReport`]: throughput and peak memory per engine across the
//! matrix, one panel per operation count.

use std::error::Error;
use std::path::{Path, PathBuf};

use plotters::prelude::*;

use crate::case::Engine;
use crate::error::BenchError;
use crate::report::{CaseResult, MatrixReport};

/// Which figure of a case a chart plots.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Metric {
    /// Median operations per second.
    Throughput,
    /// Peak RSS of the case's process, MiB.
    PeakMemory,
}

impl Metric {
    fn value(self, case: &CaseResult) -> Option<f64> {
        match self {
            Metric::Throughput => Some(case.ops_per_sec_median),
            Metric::PeakMemory => case.peak_rss_mb,
        }
    }

    fn title(self) -> &'static str {
        match self {
            Metric::Throughput => "Throughput, median ops/s (higher is better)",
            Metric::PeakMemory => "Peak RSS of each case's process, MB (lower is better)",
        }
    }

    fn axis_label(self, value: f64) -> String {
        match self {
            Metric::Throughput if value >= 1e6 => format!("{:.1}M", value / 1e6),
            Metric::Throughput if value >= 1e3 => format!("{:.0}k", value / 1e3),
            _ => format!("{value:.0}"),
        }
    }

    fn file_name(self) -> &'static str {
        match self {
            Metric::Throughput => "throughput.svg",
            Metric::PeakMemory => "peak_memory.svg",
        }
    }
}

/// Writes `throughput.svg` and `peak_memory.svg` into `dir`; returns their paths.
pub fn write_charts(report: &MatrixReport, dir: &Path) -> Result<Vec<PathBuf>, BenchError> {
    [Metric::Throughput, Metric::PeakMemory]
        .into_iter()
        .map(|metric| {
            let path = dir.join(metric.file_name());
            draw(report, metric, &path).map_err(|error| BenchError::Chart {
                path: path.display().to_string(),
                reason: error.to_string(),
            })?;
            Ok(path)
        })
        .collect()
}

fn engine_color(engine: Engine) -> RGBColor {
    match engine {
        Engine::JoinAll => RGBColor(214, 39, 40),
        Engine::SharedPool => RGBColor(31, 119, 180),
        Engine::SeparatePools => RGBColor(44, 160, 44),
    }
}

/// The x axis of every panel: each payload size of the report, then each concurrency
/// level within it.
#[derive(Debug, Clone, PartialEq)]
struct Workloads {
    payloads: Vec<usize>,
    concurrency: Vec<usize>,
}

impl Workloads {
    fn of(cases: &[CaseResult]) -> Self {
        let distinct = |value: fn(&CaseResult) -> usize| {
            let mut values: Vec<usize> = cases.iter().map(value).collect();
            values.sort_unstable();
            values.dedup();
            values
        };
        Workloads {
            payloads: distinct(|case| case.payload_positions),
            concurrency: distinct(|case| case.concurrency),
        }
    }

    fn slots(&self) -> usize {
        self.payloads.len() * self.concurrency.len()
    }

    fn position(&self, case: &CaseResult) -> Option<usize> {
        let payload = self
            .payloads
            .iter()
            .position(|&p| p == case.payload_positions)?;
        let concurrency = self
            .concurrency
            .iter()
            .position(|&c| c == case.concurrency)?;
        Some(payload * self.concurrency.len() + concurrency)
    }

    fn label(&self, position: f64) -> String {
        let index = position.round();
        if (position - index).abs() > 0.01 || index < 0.0 || self.concurrency.is_empty() {
            return String::new();
        }
        let index = index as usize;
        match (
            self.payloads.get(index / self.concurrency.len()),
            self.concurrency.get(index % self.concurrency.len()),
        ) {
            (Some(positions), Some(concurrency)) => {
                format!("{}·C{concurrency}", short_count(*positions))
            }
            _ => String::new(),
        }
    }
}

fn draw(report: &MatrixReport, metric: Metric, path: &Path) -> Result<(), Box<dyn Error>> {
    let mut operation_counts: Vec<usize> = report.cases.iter().map(|c| c.operations).collect();
    operation_counts.sort_unstable();
    operation_counts.dedup();
    let y_max = report
        .cases
        .iter()
        .filter_map(|case| metric.value(case))
        .fold(0.0, f64::max)
        * 1.35;
    let y_max = if y_max > 0.0 { y_max } else { 1.0 };
    let workloads = Workloads::of(&report.cases);
    let slots = workloads.slots().max(1) as f64;

    let root = SVGBackend::new(path, (560 * operation_counts.len().max(1) as u32, 420))
        .into_drawing_area();
    root.fill(&WHITE)?;
    let root = root.titled(
        &format!(
            "{} — backend {}; x: payload (k positions) · concurrency",
            metric.title(),
            report.backend
        ),
        ("sans-serif", 18),
    )?;
    let panels = root.split_evenly((1, operation_counts.len().max(1)));
    for (panel, &operations) in panels.iter().zip(&operation_counts) {
        let mut chart = ChartBuilder::on(panel)
            .caption(format!("{operations} operations"), ("sans-serif", 14))
            .margin(8)
            .x_label_area_size(28)
            .y_label_area_size(56)
            .build_cartesian_2d(-0.5..slots - 0.5, 0.0..y_max)?;
        chart
            .configure_mesh()
            .disable_x_mesh()
            .light_line_style(WHITE)
            .x_labels(slots as usize)
            .x_label_formatter(&|x| workloads.label(*x))
            .x_label_style(("sans-serif", 10))
            .y_label_formatter(&|y| metric.axis_label(*y))
            .draw()?;
        for engine in Engine::ALL {
            let mut points: Vec<(f64, f64)> = report
                .cases
                .iter()
                .filter(|case| case.engine == engine && case.operations == operations)
                .filter_map(|case| Some((workloads.position(case)? as f64, metric.value(case)?)))
                .collect();
            if points.is_empty() {
                continue;
            }
            points.sort_by(|a, b| a.0.total_cmp(&b.0));
            let color = engine_color(engine);
            chart
                .draw_series(LineSeries::new(points.clone(), color.stroke_width(2)))?
                .label(engine.name())
                .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 18, y)], color));
            chart.draw_series(
                points
                    .into_iter()
                    .map(|point| Circle::new(point, 3, color.filled())),
            )?;
        }
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::UpperRight)
            .background_style(WHITE.mix(0.6))
            .border_style(BLACK)
            .draw()?;
    }
    root.present()?;
    Ok(())
}

/// `5000` → `5k`, `64` → `64`: axis labels short enough to stand upright.
fn short_count(count: usize) -> String {
    if count >= 1000 && count.is_multiple_of(1000) {
        format!("{}k", count / 1000)
    } else {
        count.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_name_payload_and_concurrency() {
        let workloads = Workloads {
            payloads: vec![1_000, 2_000, 5_000],
            concurrency: vec![10, 50, 100, 200],
        };
        assert_eq!(workloads.slots(), 12);
        assert_eq!(workloads.label(0.0), "1k·C10");
        assert_eq!(workloads.label(7.0), "2k·C200");
        assert_eq!(workloads.label(11.0), "5k·C200");
        assert_eq!(short_count(1_500), "1500");
        assert_eq!(workloads.label(12.0), "");
        assert_eq!(workloads.label(0.5), "");
    }
}
