//! SVG charts of a bottleneck run: goodput per flow, the controller's rate and/or window per
//! flow, and the bottleneck queue, against time, one panel each, stacked.
//!
//! Contract: [`svg`] draws every flow of the trace (one colour per flow, the same in every
//! panel) and returns the SVG text; panels for rate or window appear only when some controller
//! reported one, and show a flow only while it is active. Goodput is averaged over 100 µs (or
//! the sample interval, if longer) so that packet granularity does not hide the trend; rate
//! and window series are thinned to at most [`MAX_POINTS`] points. Nothing here touches the
//! file system.

use plotters::prelude::*;
use weir_congestion::testing::{FlowSample, Trace};

/// Width and height of the chart, in pixels.
const SIZE: (u32, u32) = (1200, 1000);

/// Most points drawn per rate or window series (keeps the SVG small for long runs).
const MAX_POINTS: usize = 2000;

/// One panel: a title, a y-axis label and one (x, y) series per flow.
struct Panel {
    title: &'static str,
    y_label: &'static str,
    series: Vec<Vec<(f64, f64)>>,
}

/// The chart for `trace`, titled `title`, as SVG text.
pub(crate) fn svg(trace: &Trace, title: &str) -> Result<String, String> {
    let panels = panels(trace);
    let x_max = trace.end().as_ps() as f64 / 1e9;
    let mut out = String::new();
    {
        let root = SVGBackend::with_string(&mut out, SIZE).into_drawing_area();
        root.fill(&WHITE).map_err(|e| e.to_string())?;
        let root = root
            .titled(title, ("sans-serif", 22))
            .map_err(|e| e.to_string())?;
        let areas = root.split_evenly((panels.len(), 1));
        for (panel, area) in panels.iter().zip(&areas) {
            draw(panel, area, x_max.max(1e-3))?;
        }
        root.present().map_err(|e| e.to_string())?;
    }
    Ok(out)
}

fn draw(
    panel: &Panel,
    area: &DrawingArea<SVGBackend<'_>, plotters::coord::Shift>,
    x_max: f64,
) -> Result<(), String> {
    let y_max = panel
        .series
        .iter()
        .flatten()
        .map(|&(_, y)| y)
        .filter(|y| y.is_finite())
        .fold(0.0f64, f64::max);
    let y_max = if y_max > 0.0 { y_max * 1.1 } else { 1.0 };
    let mut chart = ChartBuilder::on(area)
        .caption(panel.title, ("sans-serif", 16))
        .margin(8)
        .x_label_area_size(30)
        .y_label_area_size(60)
        .build_cartesian_2d(0f64..x_max, 0f64..y_max)
        .map_err(|e| e.to_string())?;
    chart
        .configure_mesh()
        .x_desc("time (ms)")
        .y_desc(panel.y_label)
        .draw()
        .map_err(|e| e.to_string())?;
    let legend = panel.series.len() > 1 && panel.series.len() <= 20;
    for (i, points) in panel.series.iter().enumerate() {
        if points.is_empty() {
            continue;
        }
        let colour = Palette99::pick(i).to_rgba();
        let s = chart
            .draw_series(LineSeries::new(points.iter().copied(), colour))
            .map_err(|e| e.to_string())?;
        if legend {
            s.label(format!("f{i}"))
                .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 16, y)], colour));
        }
    }
    if legend {
        chart
            .configure_series_labels()
            .background_style(WHITE.mix(0.8))
            .border_style(BLACK)
            .position(SeriesLabelPosition::UpperRight)
            .draw()
            .map_err(|e| e.to_string())?;
    }
    Ok(())
}

fn panels(trace: &Trace) -> Vec<Panel> {
    let n = trace.flow_count();
    let ms = |t: weir_base::Instant| t.as_ps() as f64 / 1e9;
    // Goodput averaged over blocks of about 100 µs.
    let iv = trace.interval.as_ps().max(1);
    let block = usize::try_from((100_000_000 / iv).max(1)).unwrap_or(1);
    let span = trace.interval.as_secs_f64() * block as f64;
    let mut goodput = vec![Vec::new(); n];
    for chunk in trace.samples.chunks(block) {
        let Some(last) = chunk.last() else { continue };
        let secs = span * chunk.len() as f64 / block as f64;
        for (i, g) in goodput.iter_mut().enumerate() {
            let bytes: u64 = chunk
                .iter()
                .filter_map(|s| s.flows.get(i))
                .map(|f| f.acked_bytes)
                .sum();
            let active = chunk
                .iter()
                .any(|s| s.flows.get(i).is_some_and(|f| f.active));
            if active || bytes > 0 {
                g.push((ms(last.t), bytes as f64 * 8.0 / secs / 1e9));
            }
        }
    }
    let mut out = vec![Panel {
        title: "goodput per flow (100 us average)",
        y_label: "Gbit/s",
        series: goodput,
    }];
    let stride = trace.samples.len().div_ceil(MAX_POINTS).max(1);
    let per_flow = |f: &dyn Fn(&FlowSample) -> Option<f64>| {
        (0..n)
            .map(|i| {
                trace
                    .samples
                    .iter()
                    .step_by(stride)
                    .filter_map(|s| {
                        let fs = s.flows.get(i).filter(|fs| fs.active)?;
                        Some((ms(s.t), f(fs)?))
                    })
                    .collect::<Vec<_>>()
            })
            .collect::<Vec<_>>()
    };
    let rates = per_flow(&|f| f.rate.map(|r| r.bps_f64() / 1e9));
    if rates.iter().any(|s| !s.is_empty()) {
        out.push(Panel {
            title: "controller pacing rate per flow",
            y_label: "Gbit/s",
            series: rates,
        });
    }
    let windows = per_flow(&|f| f.window.map(|w| w as f64 / 1000.0));
    if windows.iter().any(|s| !s.is_empty()) {
        out.push(Panel {
            title: "controller window per flow",
            y_label: "KB",
            series: windows,
        });
    }
    out.push(Panel {
        title: "bottleneck queue (largest per sample)",
        y_label: "KB",
        series: vec![
            trace
                .samples
                .iter()
                .map(|s| (ms(s.t), s.queue_max as f64 / 1000.0))
                .collect(),
        ],
    });
    out
}
