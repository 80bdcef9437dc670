//! Small SVG charts of the sampled history (`history.rs`), drawn with plotters' SVG backend
//! and served as images, so a page embeds them with `<img>` and no script.

use plotters::prelude::*;

use super::history::{rates, Sample};

/// What a chart shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Metric {
    /// Messages per second.
    Rate,
    /// Depth and, for channels, in flight and deferred.
    Depth,
}

impl Metric {
    pub fn parse(s: &str) -> Option<Metric> {
        match s {
            "rate" => Some(Metric::Rate),
            "depth" => Some(Metric::Depth),
            _ => None,
        }
    }
}

const WIDTH: u32 = 420;
const HEIGHT: u32 = 140;

/// The chart of `samples` (oldest first) ending at `now` (unix seconds) as an SVG document.
pub fn render(metric: Metric, samples: &[Sample], now: i64) -> String {
    let lines: Vec<Line> = match metric {
        Metric::Rate => vec![("msgs/s", RGBColor(31, 119, 180), rates(samples))],
        Metric::Depth => {
            let pick =
                |f: fn(&Sample) -> i64| samples.iter().map(|s| (s.at, f(s) as f64)).collect::<Vec<_>>();
            vec![
                ("depth", RGBColor(31, 119, 180), pick(|s| s.depth)),
                ("in flight", RGBColor(255, 127, 14), pick(|s| s.in_flight)),
                ("deferred", RGBColor(44, 160, 44), pick(|s| s.deferred)),
            ]
        }
    };
    let mut svg = String::new();
    // Drawing into a String cannot fail for I/O reasons; a failure would only leave the
    // chart blank, which the page survives.
    let _ = draw(&mut svg, &lines, now);
    svg
}

/// A named, coloured series of (unix seconds, value).
type Line<'a> = (&'a str, RGBColor, Vec<(i64, f64)>);
type Lines<'a> = [Line<'a>];

fn draw<'s>(svg: &'s mut String, lines: &Lines, now: i64) -> Result<(), Box<dyn std::error::Error + 's>> {
    let root = SVGBackend::with_string(svg, (WIDTH, HEIGHT)).into_drawing_area();
    root.fill(&WHITE)?;
    let start = now - super::history::WINDOW.as_secs() as i64;
    let top = lines
        .iter()
        .flat_map(|(_, _, pts)| pts.iter().map(|p| p.1))
        .fold(0.0f64, f64::max)
        .max(1.0)
        * 1.1;
    let mut chart = ChartBuilder::on(&root)
        .margin(6)
        .x_label_area_size(18)
        .y_label_area_size(44)
        .build_cartesian_2d(start..now, 0f64..top)?;
    chart
        .configure_mesh()
        .x_labels(5)
        .y_labels(4)
        .x_label_formatter(&|t| format!("-{}m", (now - t) / 60))
        .y_label_formatter(&|v| short_number(*v))
        .light_line_style(RGBColor(240, 240, 240))
        .label_style(("sans-serif", 10))
        .draw()?;
    for (name, color, points) in lines {
        let color = *color;
        chart
            .draw_series(LineSeries::new(points.iter().copied(), color.stroke_width(2)))?
            .label(*name)
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 12, y)], color.stroke_width(2)));
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperLeft)
        .background_style(WHITE.mix(0.8))
        .label_font(("sans-serif", 10))
        .draw()?;
    root.present()?;
    Ok(())
}

/// 950, 1.2k, 3.4M.
fn short_number(v: f64) -> String {
    if v >= 1e6 {
        format!("{:.1}M", v / 1e6)
    } else if v >= 1e3 {
        format!("{:.1}k", v / 1e3)
    } else if v.fract() == 0.0 {
        format!("{v:.0}")
    } else {
        format!("{v:.1}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn charts_are_svg_with_their_lines() {
        let s = |at, depth, message_count| Sample {
            at,
            depth,
            message_count,
            ..Sample::default()
        };
        let samples = [s(100, 5, 0), s(105, 7, 50), s(110, 2, 100)];
        let svg = render(Metric::Rate, &samples, 110);
        assert!(svg.starts_with("<svg"), "{svg}");
        assert!(svg.contains("msgs/s"));
        assert!(svg.contains("<polyline") || svg.contains("<path"));
        let svg = render(Metric::Depth, &samples, 110);
        assert!(svg.contains("in flight"));
        assert_eq!(short_number(1500.0), "1.5k");
        // No samples yet still draws the axes.
        assert!(render(Metric::Rate, &[], 110).starts_with("<svg"));
    }
}
