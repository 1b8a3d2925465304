//! Instruments for seeing inside the engine while it learns.
//!
//! | file | what |
//! |---|---|
//! | `explain.rs` | the backward explainer's table: [`BackwardTrace`] (recorded by the engine, see [`crate::autograd::trace`]) printed node by node |
//! | `dot.rs` | the autograd graph as Graphviz DOT ([`to_dot`], [`to_dot_with`]), rendered to SVG by [`render_svg`] |
//! | `health.rs` | per-parameter training health: gradient norms, update-to-weight ratios, dead ReLUs, gate saturation, missing gradients |
//! | `plot.rs` | a dependency-free SVG line plotter ([`Chart`], [`plot::to_svg`]) |
//! | `curves.rs` | [`MetricsLog`]: per-step metrics written as CSV and as an SVG plot |
//! | `table.rs` | [`TextTable`], the aligned text tables every report here prints |
//!
//! These read tensors through the public API; the only hooks inside the engine are the trace
//! recorder in `autograd/engine.rs` and the kernel log in `backend/mod.rs`, both one flag test
//! when off.

pub mod curves;
pub mod dot;
pub mod explain;
pub mod health;
pub mod plot;
mod table;

pub use crate::autograd::trace::{capture_traces, BackwardTrace, InputTrace, NodeTrace};
pub use curves::MetricsLog;
pub use dot::{render_svg, to_dot, to_dot_with, DotOptions, RenderError};
pub use health::{dead_units, gate_saturation, DeadUnits, HealthReport, ParamHealth, WeightSnapshot};
pub use plot::{Chart, Series};
pub use table::{Align, TextTable};

use std::time::Duration;

/// A norm or ratio for a report: 4 significant digits, scientific outside `[0.01, 10^4)`.
pub fn format_sig(v: f64) -> String {
    if v == 0.0 || !v.is_finite() {
        return format!("{v}");
    }
    let a = v.abs();
    if (0.01..1e4).contains(&a) {
        let decimals = (3 - a.log10().floor() as i32).max(0) as usize;
        format!("{v:.decimals$}")
    } else {
        format!("{v:.3e}")
    }
}

/// Bytes as B, KiB, MiB or GiB.
pub fn format_bytes(bytes: usize) -> String {
    const UNITS: [&str; 4] = ["B", "KiB", "MiB", "GiB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

/// A duration as microseconds, milliseconds or seconds, whichever reads best.
pub fn format_duration(d: Duration) -> String {
    let us = d.as_secs_f64() * 1e6;
    if us < 1000.0 {
        format!("{us:.1} us")
    } else if us < 1e6 {
        format!("{:.2} ms", us / 1e3)
    } else {
        format!("{:.2} s", us / 1e6)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_format_for_reading() {
        assert_eq!(format_sig(0.0), "0");
        assert_eq!(format_sig(1.0), "1.000");
        assert_eq!(format_sig(0.19123), "0.1912");
        assert_eq!(format_sig(123.456), "123.5");
        assert_eq!(format_sig(-2.5e-5), "-2.500e-5");
        assert_eq!(format_sig(12346.0), "1.235e4");
        assert_eq!(format_bytes(512), "512 B");
        assert_eq!(format_bytes(5 * 1024 + 512), "5.5 KiB");
        assert_eq!(format_bytes(3 << 20), "3.0 MiB");
        assert_eq!(format_duration(Duration::from_micros(12)), "12.0 us");
        assert_eq!(format_duration(Duration::from_micros(2500)), "2.50 ms");
        assert_eq!(format_duration(Duration::from_millis(1500)), "1.50 s");
    }
}
