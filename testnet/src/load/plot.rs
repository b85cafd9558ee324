//! The SVG of a load run: tx/s (sent, committed) above, latency (p50, p99) below, over the
//! seconds since the first send. SVG only: plotters is built without bitmap or font backends,
//! so text is laid out with its built-in estimate and drawn by the viewer's fonts.

use std::path::Path;

use plotters::prelude::*;

use super::LoadError;
use super::report::Second;

const WIDTH_PX: u32 = 1_000;
const HEIGHT_PX: u32 = 720;

type Panel<'a> = DrawingArea<SVGBackend<'a>, plotters::coord::Shift>;
/// A named line: its legend, colour and (second, value) points.
type Line<'a> = (&'a str, RGBColor, Vec<(f64, f64)>);

pub fn write_svg(timeline: &[Second], path: &Path) -> Result<(), LoadError> {
    let plot = LoadError::Plot;
    let root = SVGBackend::new(path, (WIDTH_PX, HEIGHT_PX)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| plot(e.to_string()))?;
    let (top, bottom) = root.split_vertically(HEIGHT_PX / 2);
    let x_max = timeline.last().map_or(1.0, |s| (s.t + 1) as f64);
    let rate = |f: fn(&Second) -> f64| -> Vec<(f64, f64)> {
        timeline.iter().map(|s| (s.t as f64, f(s))).collect()
    };
    let latency = |f: fn(&Second) -> f64| -> Vec<(f64, f64)> {
        timeline
            .iter()
            .filter(|s| !f(s).is_nan())
            .map(|s| (s.t as f64, f(s)))
            .collect()
    };
    draw_panel(
        &top,
        "tx/s",
        x_max,
        &[
            ("sent", BLUE, rate(|s| s.sent as f64)),
            ("committed", GREEN, rate(|s| s.committed as f64)),
        ],
    )
    .map_err(plot)?;
    draw_panel(
        &bottom,
        "latency ms",
        x_max,
        &[
            ("p50", MAGENTA, latency(|s| s.p50_ms)),
            ("p99", RED, latency(|s| s.p99_ms)),
        ],
    )
    .map_err(plot)?;
    root.present().map_err(|e| plot(e.to_string()))
}

fn draw_panel(
    area: &Panel<'_>,
    y_label: &str,
    x_max: f64,
    series: &[Line<'_>],
) -> Result<(), String> {
    let y_max = series
        .iter()
        .flat_map(|(_, _, points)| points.iter().map(|p| p.1))
        .fold(0.0f64, f64::max)
        .max(1.0)
        * 1.1;
    let mut chart = ChartBuilder::on(area)
        .caption(y_label, ("sans-serif", 18))
        .margin(12)
        .x_label_area_size(32)
        .y_label_area_size(64)
        .build_cartesian_2d(0.0..x_max, 0.0..y_max)
        .map_err(|e| e.to_string())?;
    chart
        .configure_mesh()
        .x_desc("seconds since the first send")
        .y_desc(y_label)
        .draw()
        .map_err(|e| e.to_string())?;
    for (name, color, points) in series {
        let color = *color;
        chart
            .draw_series(LineSeries::new(
                points.iter().copied(),
                color.stroke_width(2),
            ))
            .map_err(|e| e.to_string())?
            .label(*name)
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(2))
            });
    }
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .draw()
        .map_err(|e| e.to_string())
}
