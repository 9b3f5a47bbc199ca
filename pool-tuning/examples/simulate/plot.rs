//! `--plot`: one SVG per scenario and seed, the tuner at work over time — limit and attempts
//! in flight beside the best fixed limit, throughput beside capacity, p99 latency beside the
//! best fixed limit's — so a reader sees each decision and what it cost.

use std::error::Error;
use std::path::Path;

use plotters::prelude::*;
use pool_tuning::sim::{Scenario, SeriesPoint};

/// Slices the series are drawn in, in seconds.
pub(crate) const SLICE_S: f64 = 0.5;

const TUNER: RGBColor = RGBColor(31, 119, 180);
const IN_FLIGHT: RGBColor = RGBColor(255, 127, 14);
const BEST: RGBColor = RGBColor(90, 90, 90);

/// Draws `tuned` (the tuner's run) against `best` (the best fixed limit's run of the same
/// scenario and seed) into `path`.
pub(crate) fn draw(
    scenario: &Scenario,
    seed: u64,
    tuner: &str,
    tuned: &[SeriesPoint],
    best: &[SeriesPoint],
    path: &Path,
) -> Result<(), Box<dyn Error>> {
    let root = SVGBackend::new(path, (900, 760)).into_drawing_area();
    root.fill(&WHITE)?;
    let root = root.titled(
        &format!("{} (seed {seed}): {tuner}", scenario.name),
        ("sans-serif", 18),
    )?;
    let panels = root.split_evenly((3, 1));
    let end_s = tuned.last().map_or(1.0, |p| p.at_s + SLICE_S / 2.0);
    panel(
        &panels[0],
        "concurrency",
        end_s,
        &[
            (format!("{tuner} limit"), TUNER, series(tuned, |p| p.limit)),
            (
                "in flight".to_owned(),
                IN_FLIGHT,
                series(tuned, |p| p.in_flight),
            ),
            (
                "best fixed limit".to_owned(),
                BEST,
                series(best, |p| p.limit),
            ),
        ],
    )?;
    panel(
        &panels[1],
        "successes per second",
        end_s,
        &[
            (tuner.to_owned(), TUNER, series(tuned, |p| p.ops_per_s)),
            (
                "capacity".to_owned(),
                BEST,
                series(tuned, |p| p.capacity_ops_per_s),
            ),
            (
                "throttled or timed out by the load".to_owned(),
                RED,
                series(tuned, |p| p.overloads_per_s),
            ),
        ],
    )?;
    panel(
        &panels[2],
        "p99 latency, ms",
        end_s,
        &[
            (tuner.to_owned(), TUNER, series(tuned, |p| p.p99_ms)),
            (
                "best fixed limit".to_owned(),
                BEST,
                series(best, |p| p.p99_ms),
            ),
        ],
    )?;
    root.present()?;
    Ok(())
}

/// One line of a panel: its label, colour and points.
type Line = (String, RGBColor, Vec<(f64, f64)>);

fn series(points: &[SeriesPoint], value: fn(&SeriesPoint) -> f64) -> Vec<(f64, f64)> {
    points.iter().map(|p| (p.at_s, value(p))).collect()
}

fn panel(
    area: &DrawingArea<SVGBackend<'_>, plotters::coord::Shift>,
    title: &str,
    end_s: f64,
    lines: &[Line],
) -> Result<(), Box<dyn Error>> {
    let top = lines
        .iter()
        .flat_map(|(_, _, points)| points.iter().map(|p| p.1))
        .filter(|v| v.is_finite())
        .fold(0.0, f64::max);
    let top = if top > 0.0 { top * 1.1 } else { 1.0 };
    let mut chart = ChartBuilder::on(area)
        .caption(title, ("sans-serif", 14))
        .margin(8)
        .x_label_area_size(24)
        .y_label_area_size(56)
        .build_cartesian_2d(0.0..end_s, 0.0..top)?;
    chart
        .configure_mesh()
        .light_line_style(WHITE)
        .x_desc("simulated seconds")
        .draw()?;
    for (label, color, points) in lines {
        let color = *color;
        chart
            .draw_series(LineSeries::new(points.clone(), color.stroke_width(2)))?
            .label(label.as_str())
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 18, y)], color));
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperRight)
        .background_style(WHITE.mix(0.7))
        .border_style(BLACK)
        .draw()?;
    Ok(())
}
