//! SVG charts of a simulation: the FCT slowdown CDF, queue depth over time and per-link
//! utilisation over time.
//!
//! Contract: each function returns SVG text (nothing here touches the file system), draws every
//! series it is given with a legend entry, thins series to at most [`MAX_POINTS`] points, and
//! refuses (with an error, not a panic) when there is nothing to draw.

use plotters::prelude::*;

/// Width and height of a chart, in pixels.
const SIZE: (u32, u32) = (1000, 600);

/// Most points drawn per series.
const MAX_POINTS: usize = 4000;

/// One named line.
#[derive(Clone, Debug)]
pub(crate) struct Series {
    pub(crate) name: String,
    pub(crate) points: Vec<(f64, f64)>,
}

/// Empirical CDF of each sample set (x: value, y: fraction of samples ≤ x), log-scaled x when
/// the values span more than a decade.
pub(crate) fn cdf_svg(
    title: &str,
    x_label: &str,
    sets: &[(String, Vec<f64>)],
) -> Result<String, String> {
    let series: Vec<Series> = sets
        .iter()
        .filter(|(_, v)| !v.is_empty())
        .map(|(name, v)| {
            let mut v: Vec<f64> = v.iter().copied().filter(|x| x.is_finite()).collect();
            v.sort_by(f64::total_cmp);
            let n = v.len() as f64;
            Series {
                name: name.clone(),
                points: v
                    .iter()
                    .enumerate()
                    .map(|(i, &x)| (x, (i + 1) as f64 / n))
                    .collect(),
            }
        })
        .filter(|s| !s.points.is_empty())
        .collect();
    if series.is_empty() {
        return Err("no samples to plot".into());
    }
    let lo = series
        .iter()
        .flat_map(|s| s.points.iter().map(|p| p.0))
        .fold(f64::INFINITY, f64::min);
    let hi = series
        .iter()
        .flat_map(|s| s.points.iter().map(|p| p.0))
        .fold(f64::NEG_INFINITY, f64::max);
    lines_svg(
        title,
        x_label,
        "fraction of flows",
        &series,
        Some((lo, hi)),
        Some((0.0, 1.0)),
    )
}

/// Lines over a shared x axis (e.g. time in µs); the y range starts at zero.
pub(crate) fn lines_svg(
    title: &str,
    x_label: &str,
    y_label: &str,
    series: &[Series],
    x_range: Option<(f64, f64)>,
    y_range: Option<(f64, f64)>,
) -> Result<String, String> {
    let pts = || series.iter().flat_map(|s| s.points.iter().copied());
    if pts().next().is_none() {
        return Err(format!("{title}: no data to plot"));
    }
    let (x0, x1) = x_range.unwrap_or_else(|| {
        (
            pts().map(|p| p.0).fold(f64::INFINITY, f64::min),
            pts().map(|p| p.0).fold(f64::NEG_INFINITY, f64::max),
        )
    });
    let (y0, y1) = y_range.unwrap_or((
        0.0,
        pts()
            .map(|p| p.1)
            .filter(|y| y.is_finite())
            .fold(0.0, f64::max)
            * 1.05,
    ));
    let x1 = if x1 > x0 { x1 } else { x0 + 1.0 };
    let y1 = if y1 > y0 { y1 } else { y0 + 1.0 };
    let mut out = String::new();
    {
        let root = SVGBackend::with_string(&mut out, SIZE).into_drawing_area();
        root.fill(&WHITE).map_err(|e| e.to_string())?;
        let mut chart = ChartBuilder::on(&root)
            .caption(title, ("sans-serif", 20))
            .margin(12)
            .x_label_area_size(40)
            .y_label_area_size(70)
            .build_cartesian_2d(x0..x1, y0..y1)
            .map_err(|e| e.to_string())?;
        chart
            .configure_mesh()
            .x_desc(x_label)
            .y_desc(y_label)
            .draw()
            .map_err(|e| e.to_string())?;
        for (i, s) in series.iter().enumerate() {
            let colour = Palette99::pick(i).to_rgba();
            let step = s.points.len().div_ceil(MAX_POINTS).max(1);
            let thinned = s
                .points
                .iter()
                .copied()
                .enumerate()
                .filter(|(j, _)| j % step == 0 || *j + 1 == s.points.len())
                .map(|(_, p)| p)
                .filter(|p| p.0.is_finite() && p.1.is_finite());
            chart
                .draw_series(LineSeries::new(thinned, colour.stroke_width(2)))
                .map_err(|e| e.to_string())?
                .label(s.name.clone())
                .legend(move |(x, y)| {
                    PathElement::new(vec![(x, y), (x + 18, y)], colour.stroke_width(2))
                });
        }
        chart
            .configure_series_labels()
            .background_style(WHITE.mix(0.8))
            .border_style(BLACK)
            .position(SeriesLabelPosition::LowerRight)
            .draw()
            .map_err(|e| e.to_string())?;
        root.present().map_err(|e| e.to_string())?;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cdf_draws_every_set_and_refuses_nothing() {
        let svg = cdf_svg(
            "FCT slowdown",
            "slowdown",
            &[
                ("small".into(), vec![1.0, 1.5, 2.0]),
                ("large".into(), vec![1.1, 3.0]),
            ],
        )
        .expect("draws");
        assert!(svg.starts_with("<svg"), "{}", &svg[..40.min(svg.len())]);
        assert!(svg.contains("small") && svg.contains("large"));
        assert!(cdf_svg("t", "x", &[("e".into(), vec![])]).is_err());
    }

    #[test]
    fn lines_thin_long_series() {
        let s = Series {
            name: "q".into(),
            points: (0..100_000).map(|i| (i as f64, (i % 7) as f64)).collect(),
        };
        let svg = lines_svg("queue", "time (us)", "bytes", &[s], None, None).expect("draws");
        // One polyline of at most MAX_POINTS + 1 points, not 100 000.
        let coords = svg.matches(',').count();
        assert!(coords < 3 * MAX_POINTS, "{coords}");
    }
}
