//! Loss curves: metrics logged per step, written as CSV (for any tool) and as an SVG plot
//! (to look at right away).
//!
//! ```
//! use glassbox::inspect::MetricsLog;
//! let mut log = MetricsLog::new(&["train_loss", "test_accuracy"]);
//! log.record(10, &[("train_loss", 0.9)]);
//! log.record(20, &[("train_loss", 0.5)]);
//! log.record(20, &[("test_accuracy", 0.91)]); // same step: same row
//! assert_eq!(log.to_csv(), "step,train_loss,test_accuracy\n10,0.9,\n20,0.5,0.91\n");
//! ```

use std::path::{Path, PathBuf};

use super::plot::{self, Chart};

/// Width of the SVG the log draws, in pixels.
const SVG_WIDTH: u32 = 900;
/// Height of each chart in it.
const SVG_CHART_HEIGHT: u32 = 340;

/// A table of metrics by step: fixed columns, one row per step that recorded anything, empty
/// cells where a metric was not measured at that step (a test loss measured once an epoch).
pub struct MetricsLog {
    columns: Vec<String>,
    rows: Vec<(usize, Vec<Option<f64>>)>,
}

impl MetricsLog {
    /// A log with these metric columns (the `step` column comes first on its own).
    pub fn new(columns: &[&str]) -> MetricsLog {
        MetricsLog { columns: columns.iter().map(|c| c.to_string()).collect(), rows: Vec::new() }
    }

    /// Records `values` at `step`. Steps should not decrease; a step equal to the last one
    /// fills in the same row. Panics naming the columns if a metric is not one of them.
    pub fn record(&mut self, step: usize, values: &[(&str, f64)]) {
        if self.rows.last().map(|(s, _)| *s) != Some(step) {
            self.rows.push((step, vec![None; self.columns.len()]));
        }
        let row = &mut self.rows.last_mut().expect("a row for this step was just ensured").1;
        for (name, value) in values {
            let Some(col) = self.columns.iter().position(|c| c == name) else {
                panic!("MetricsLog::record: no column {name:?}; the log has {:?}", self.columns)
            };
            row[col] = Some(*value);
        }
    }

    /// The `(step, value)` points of one column, skipping steps where it was not measured.
    pub fn points(&self, column: &str) -> Vec<(f64, f64)> {
        let Some(col) = self.columns.iter().position(|c| c == column) else {
            panic!("MetricsLog::points: no column {column:?}; the log has {:?}", self.columns)
        };
        self.rows.iter().filter_map(|(step, row)| row[col].map(|v| (*step as f64, v))).collect()
    }

    /// The log as CSV: a header `step,<columns>`, then one line per row; values printed with
    /// Rust's shortest round-trip form, unmeasured cells empty.
    pub fn to_csv(&self) -> String {
        let mut out = format!("step,{}\n", self.columns.join(","));
        for (step, row) in &self.rows {
            let cells: Vec<String> = row.iter().map(|v| v.map(|v| v.to_string()).unwrap_or_default()).collect();
            out.push_str(&format!("{step},{}\n", cells.join(",")));
        }
        out
    }

    /// A chart of some columns against the step.
    pub fn chart(&self, title: &str, y_label: &str, columns: &[&str], log_y: bool) -> Chart {
        columns.iter().fold(Chart::new(title).x_label("step").y_label(y_label).log_y(log_y), |chart, c| {
            chart.series(*c, self.points(c))
        })
    }

    /// Writes `metrics.csv` and `metrics.svg` (the `charts` stacked) into `dir`, creating it
    /// if needed; returns the two paths. Called again, it rewrites both, so a run can save
    /// after every epoch and leave readable files if it is stopped.
    pub fn write(&self, dir: &Path, charts: &[Chart]) -> std::io::Result<(PathBuf, PathBuf)> {
        std::fs::create_dir_all(dir)?;
        let (csv, svg) = (dir.join("metrics.csv"), dir.join("metrics.svg"));
        std::fs::write(&csv, self.to_csv())?;
        std::fs::write(&svg, plot::to_svg(charts, SVG_WIDTH, SVG_CHART_HEIGHT))?;
        Ok((csv, svg))
    }
}
