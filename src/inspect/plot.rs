//! A small SVG line plotter with no dependencies: axes with "nice" ticks (steps of 1, 2 or 5
//! times a power of ten), grid lines, axis labels, a legend, several series per chart, a
//! linear or logarithmic y axis, and several charts stacked in one picture.
//!
//! ```
//! use glassbox::inspect::plot::{to_svg, Chart};
//! let chart = Chart::new("loss")
//!     .x_label("step")
//!     .series("train", vec![(0.0, 2.3), (100.0, 0.5), (200.0, 0.3)]);
//! let svg = to_svg(&[chart], 640, 320);
//! assert!(svg.starts_with("<svg") && svg.contains("<polyline"));
//! ```

use std::fmt::Write as _;

/// Colours of successive series (Tableau 10, readable on white and for most colour vision).
const PALETTE: [&str; 8] = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f"];
/// Series with at most this many points also get a dot on each point (sparse ones, like a
/// per-epoch test loss, would otherwise be hard to see).
const MARKER_MAX_POINTS: usize = 40;
/// Space around the plotting area for title and legend (above), tick labels and axis labels,
/// in pixels. The legend sits in its own row under the title, so it never hides a line.
const MARGIN_LEFT: f64 = 78.0;
const MARGIN_RIGHT: f64 = 24.0;
const MARGIN_TOP: f64 = 58.0;
const MARGIN_BOTTOM: f64 = 52.0;

/// One named line.
#[derive(Clone, Debug)]
pub struct Series {
    /// Legend text.
    pub name: String,
    /// `(x, y)` points in drawing order; non-finite values (and values `<= 0` on a log axis)
    /// are skipped, breaking the line there.
    pub points: Vec<(f64, f64)>,
}

/// One set of axes with any number of series.
#[derive(Clone, Debug, Default)]
pub struct Chart {
    /// Printed above the chart.
    pub title: String,
    /// Under the x axis.
    pub x_label: String,
    /// Beside the y axis.
    pub y_label: String,
    /// Logarithmic y axis (for losses spanning decades).
    pub log_y: bool,
    /// The lines.
    pub series: Vec<Series>,
}

impl Chart {
    /// An empty chart titled `title`.
    pub fn new(title: impl Into<String>) -> Chart {
        Chart { title: title.into(), ..Chart::default() }
    }

    /// Sets the x axis label.
    pub fn x_label(mut self, label: impl Into<String>) -> Chart {
        self.x_label = label.into();
        self
    }

    /// Sets the y axis label.
    pub fn y_label(mut self, label: impl Into<String>) -> Chart {
        self.y_label = label.into();
        self
    }

    /// Makes the y axis logarithmic.
    pub fn log_y(mut self, on: bool) -> Chart {
        self.log_y = on;
        self
    }

    /// Adds a series.
    pub fn series(mut self, name: impl Into<String>, points: Vec<(f64, f64)>) -> Chart {
        self.series.push(Series { name: name.into(), points });
        self
    }
}

/// A map from data values to pixels along one axis.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Scale {
    /// Data value at the start of the axis.
    pub lo: f64,
    /// Data value at the end of the axis.
    pub hi: f64,
    /// Pixel of `lo`.
    pub from: f64,
    /// Pixel of `hi` (smaller than `from` for a y axis, which grows upwards).
    pub to: f64,
    /// Logarithmic (`lo`, `hi` > 0).
    pub log: bool,
}

impl Scale {
    /// The pixel of data value `v`.
    pub fn map(&self, v: f64) -> f64 {
        let t = if self.log {
            (v.log10() - self.lo.log10()) / (self.hi.log10() - self.lo.log10())
        } else {
            (v - self.lo) / (self.hi - self.lo)
        };
        self.from + t * (self.to - self.from)
    }
}

/// The step between about `target` ticks covering `span`: 1, 2 or 5 times a power of ten.
pub fn nice_step(span: f64, target: usize) -> f64 {
    let raw = span / target.max(1) as f64;
    let magnitude = 10f64.powi(raw.log10().floor() as i32);
    let fraction = raw / magnitude;
    let nice = if fraction <= 1.0 {
        1.0
    } else if fraction <= 2.0 {
        2.0
    } else if fraction <= 5.0 {
        5.0
    } else {
        10.0
    };
    nice * magnitude
}

/// Ticks for a linear axis over data `[lo, hi]`: the axis is widened to whole steps, and the
/// result is `(axis_lo, axis_hi, ticks)`. A zero-width range is widened around its value.
pub fn linear_ticks(lo: f64, hi: f64, target: usize) -> (f64, f64, Vec<f64>) {
    let (lo, hi) = if hi > lo {
        (lo, hi)
    } else {
        let pad = if lo == 0.0 { 1.0 } else { lo.abs() * 0.1 };
        (lo - pad, hi + pad)
    };
    let step = nice_step(hi - lo, target);
    let (first, last) = ((lo / step).floor() as i64, (hi / step).ceil() as i64);
    // Multiplying (not adding) keeps 0.1 * 3 from drifting to 0.30000000000000004 twice over.
    let ticks: Vec<f64> = (first..=last).map(|i| i as f64 * step).collect();
    (first as f64 * step, last as f64 * step, ticks)
}

/// Ticks for a logarithmic axis over positive data `[lo, hi]`. The axis spans the data plus
/// 5% of its (log) width on each side; ticks sit at 1, 2 and 5 times powers of ten inside it,
/// thinned to powers of ten alone over many decades, or filled in with 3, 4, 6... when fewer
/// than three fall inside a narrow range.
pub fn log_ticks(lo: f64, hi: f64) -> (f64, f64, Vec<f64>) {
    let (mut l, mut h) = (lo.log10(), hi.log10());
    if h - l < 1e-9 {
        (l, h) = (l - 0.5, h + 0.5);
    }
    let pad = 0.05 * (h - l);
    let (axis_lo, axis_hi) = (10f64.powf(l - pad), 10f64.powf(h + pad));
    let within = |mantissas: &[f64]| -> Vec<f64> {
        let mut ticks = Vec::new();
        for e in (l - pad).floor() as i32..=(h + pad).ceil() as i32 {
            for &m in mantissas {
                let t = m * 10f64.powi(e);
                if t >= axis_lo && t <= axis_hi {
                    ticks.push(t);
                }
            }
        }
        ticks
    };
    let mut ticks = within(&[1.0, 2.0, 5.0]);
    if ticks.len() > 10 {
        ticks = within(&[1.0]);
    } else if ticks.len() < 3 {
        ticks = within(&[1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0]);
    }
    (axis_lo, axis_hi, ticks)
}

/// A tick label: as few digits as the tick spacing needs.
fn tick_label(v: f64, step: f64) -> String {
    if v == 0.0 {
        return "0".to_string();
    }
    let a = v.abs();
    if !(1e-4..1e6).contains(&a) {
        return format!("{v:e}");
    }
    let decimals = (-step.log10().floor()).max(0.0) as usize;
    format!("{v:.decimals$}")
}

/// A log-axis tick label: plain digits for 0.001 .. 100000, else `2e-5`.
fn log_tick_label(v: f64) -> String {
    if (1e-3..1e5).contains(&v) {
        // Rounding first drops the float noise of `2 * 10^-2`, which is 0.020000000000000004.
        let decimals = (-(v * 1.000_001).log10().floor()).max(0.0) as usize;
        format!("{v:.decimals$}")
    } else {
        format!("{v:e}")
    }
}

/// Escapes text for SVG.
fn xml(text: &str) -> String {
    text.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

/// Draws `charts` stacked top to bottom, each `width` x `chart_height` pixels, as one SVG.
pub fn to_svg(charts: &[Chart], width: u32, chart_height: u32) -> String {
    let (w, h) = (width as f64, chart_height as f64);
    let total = h * charts.len().max(1) as f64;
    let mut svg = String::new();
    let _ = writeln!(
        svg,
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{width}\" height=\"{total}\" viewBox=\"0 0 {width} {total}\" \
         font-family=\"Helvetica, Arial, sans-serif\">"
    );
    let _ = writeln!(svg, "<rect width=\"100%\" height=\"100%\" fill=\"white\"/>");
    for (i, chart) in charts.iter().enumerate() {
        draw_chart(&mut svg, chart, i as f64 * h, w, h);
    }
    svg.push_str("</svg>\n");
    svg
}

fn draw_chart(svg: &mut String, chart: &Chart, top: f64, w: f64, h: f64) {
    let usable = |y: f64| y.is_finite() && (!chart.log_y || y > 0.0);
    let points = || chart.series.iter().flat_map(|s| s.points.iter()).filter(|(x, y)| x.is_finite() && usable(*y));
    let (mut x_min, mut x_max, mut y_min, mut y_max) =
        (f64::INFINITY, f64::NEG_INFINITY, f64::INFINITY, f64::NEG_INFINITY);
    for &(x, y) in points() {
        (x_min, x_max, y_min, y_max) = (x_min.min(x), x_max.max(x), y_min.min(y), y_max.max(y));
    }
    let empty = !x_min.is_finite();
    if empty {
        (x_min, x_max, y_min, y_max) = (0.0, 1.0, if chart.log_y { 0.1 } else { 0.0 }, 1.0);
    }
    let (left, right) = (MARGIN_LEFT, w - MARGIN_RIGHT);
    let (plot_top, bottom) = (top + MARGIN_TOP, top + h - MARGIN_BOTTOM);
    let (x_lo, x_hi, x_ticks) = linear_ticks(x_min, x_max, 8);
    let (y_lo, y_hi, y_ticks) = if chart.log_y { log_ticks(y_min, y_max) } else { linear_ticks(y_min, y_max, 6) };
    let xs = Scale { lo: x_lo, hi: x_hi, from: left, to: right, log: false };
    let ys = Scale { lo: y_lo, hi: y_hi, from: bottom, to: plot_top, log: chart.log_y };
    let x_step = x_ticks.get(1).map(|t| t - x_ticks[0]).unwrap_or(1.0);
    let y_step = y_ticks.get(1).map(|t| t - y_ticks[0]).unwrap_or(1.0);

    let _ = writeln!(svg, "<g class=\"chart\">");
    let _ = writeln!(
        svg,
        "<text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"middle\" font-size=\"15\" font-weight=\"bold\">{}</text>",
        (left + right) / 2.0,
        top + 24.0,
        xml(&chart.title)
    );
    // Grid and tick labels.
    for &t in &x_ticks {
        let x = xs.map(t);
        let _ = writeln!(
            svg,
            "<line x1=\"{x:.1}\" y1=\"{plot_top:.1}\" x2=\"{x:.1}\" y2=\"{bottom:.1}\" stroke=\"#e5e5e5\"/>\
             <text x=\"{x:.1}\" y=\"{:.1}\" text-anchor=\"middle\" font-size=\"12\" fill=\"#333\">{}</text>",
            bottom + 17.0,
            tick_label(t, x_step)
        );
    }
    for &t in &y_ticks {
        let y = ys.map(t);
        let label = if chart.log_y { log_tick_label(t) } else { tick_label(t, y_step) };
        let _ = writeln!(
            svg,
            "<line x1=\"{left:.1}\" y1=\"{y:.1}\" x2=\"{right:.1}\" y2=\"{y:.1}\" stroke=\"#e5e5e5\"/>\
             <text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"end\" font-size=\"12\" fill=\"#333\">{label}</text>",
            left - 7.0,
            y + 4.0
        );
    }
    // Axes.
    let _ = writeln!(
        svg,
        "<path d=\"M{left:.1},{plot_top:.1} V{bottom:.1} H{right:.1}\" fill=\"none\" stroke=\"#333\" stroke-width=\"1.2\"/>"
    );
    let _ = writeln!(
        svg,
        "<text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"middle\" font-size=\"13\">{}</text>",
        (left + right) / 2.0,
        bottom + 40.0,
        xml(&chart.x_label)
    );
    let (yl_x, yl_y) = (18.0, (plot_top + bottom) / 2.0);
    let _ = writeln!(
        svg,
        "<text x=\"{yl_x:.1}\" y=\"{yl_y:.1}\" text-anchor=\"middle\" font-size=\"13\" \
         transform=\"rotate(-90 {yl_x:.1} {yl_y:.1})\">{}</text>",
        xml(&chart.y_label)
    );
    if empty {
        let _ = writeln!(
            svg,
            "<text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"middle\" font-size=\"13\" fill=\"#888\">no data</text>",
            (left + right) / 2.0,
            (plot_top + bottom) / 2.0
        );
    }
    // Lines: one polyline per unbroken run of usable points.
    for (i, s) in chart.series.iter().enumerate() {
        let color = PALETTE[i % PALETTE.len()];
        let mut runs: Vec<Vec<(f64, f64)>> = vec![Vec::new()];
        for &(x, y) in &s.points {
            if x.is_finite() && usable(y) {
                runs.last_mut().expect("starts with one run").push((xs.map(x), ys.map(y)));
            } else if !runs.last().expect("starts with one run").is_empty() {
                runs.push(Vec::new());
            }
        }
        for run in runs.iter().filter(|r| !r.is_empty()) {
            let coords: Vec<String> = run.iter().map(|(x, y)| format!("{x:.1},{y:.1}")).collect();
            let _ = writeln!(
                svg,
                "<polyline points=\"{}\" fill=\"none\" stroke=\"{color}\" stroke-width=\"1.8\" stroke-linejoin=\"round\"/>",
                coords.join(" ")
            );
        }
        let count: usize = runs.iter().map(Vec::len).sum();
        if count <= MARKER_MAX_POINTS {
            for (x, y) in runs.iter().flatten() {
                let _ = writeln!(svg, "<circle cx=\"{x:.1}\" cy=\"{y:.1}\" r=\"3\" fill=\"{color}\"/>");
            }
        }
    }
    // Legend: one row under the title, entries left to right, centred.
    let entry_width = |s: &Series| 36.0 + 7.0 * s.name.chars().count() as f64 + 18.0;
    let legend_width: f64 = chart.series.iter().map(entry_width).sum();
    let mut x = ((left + right) / 2.0 - legend_width / 2.0).max(left);
    let y = top + 44.0;
    for (i, s) in chart.series.iter().enumerate() {
        let color = PALETTE[i % PALETTE.len()];
        let _ = writeln!(
            svg,
            "<line x1=\"{x:.1}\" y1=\"{y:.1}\" x2=\"{:.1}\" y2=\"{y:.1}\" stroke=\"{color}\" stroke-width=\"2.5\"/>\
             <text x=\"{:.1}\" y=\"{:.1}\" font-size=\"12\">{}</text>",
            x + 26.0,
            x + 32.0,
            y + 4.0,
            xml(&s.name)
        );
        x += entry_width(s);
    }
    let _ = writeln!(svg, "</g>");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nice_steps_are_one_two_or_five_times_a_power_of_ten() {
        assert_eq!(nice_step(10.0, 5), 2.0);
        assert_eq!(nice_step(3752.0, 8), 500.0);
        assert_eq!(nice_step(0.07, 6), 0.02);
        assert_eq!(nice_step(1.0, 10), 0.1);
    }
}
