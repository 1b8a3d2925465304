//! The instrument flags every training example shares: `--explain`, `--graph PATH`,
//! `--health N`, `--log-dir DIR`, `--log-every N`. An example reads them with
//! [`Instruments::from_flags`], calls [`Instruments::backward`] instead of `loss.backward()`,
//! and asks [`Instruments::health_due`] when to take a `glassbox::inspect::HealthReport`.

use std::path::{Path, PathBuf};

use glassbox::inspect::{self, BackwardTrace, DotOptions, MetricsLog};
use glassbox::Tensor;

use super::Flags;

/// What the user asked to see.
pub struct Instruments {
    /// Print the backward explainer's trace of the first step.
    pub explain: bool,
    /// Write the first step's autograd graph here (`.dot`, and `.svg` when Graphviz is present).
    pub graph: Option<PathBuf>,
    /// Print a health table every this many steps.
    pub health_every: Option<usize>,
    /// Where `metrics.csv` and `metrics.svg` go.
    pub log_dir: PathBuf,
    /// Training steps averaged into each logged train point.
    pub log_every: usize,
}

impl Instruments {
    /// Registers and reads the instrument flags (`default_log_dir` e.g. `runs/mnist`).
    pub fn from_flags(flags: &mut Flags, default_log_dir: &str) -> Instruments {
        let explain = flags.switch("explain", "print the backward pass of the first step, node by node");
        let graph = flags.optional(
            "graph",
            "write the first step's autograd graph to PATH (.dot, and .svg when Graphviz is installed)",
        );
        let health_every =
            flags.optional("health", "print per-layer gradient norms, update ratios, dead ReLUs every N steps");
        let log_dir = flags.get("log-dir", PathBuf::from(default_log_dir), "folder for metrics.csv and metrics.svg");
        let log_every = flags.get("log-every", 20, "training steps averaged into each logged train point");
        if health_every == Some(0) || log_every == 0 {
            eprintln!("error: --health and --log-every must be positive");
            std::process::exit(2);
        }
        Instruments { explain, graph, health_every, log_dir, log_every }
    }

    /// `loss.backward()`, and on step 0 also the trace and the graph picture if asked for.
    /// `names` gives the labels of the leaves in the picture (parameters, the input batch);
    /// it is only called when a picture is drawn.
    pub fn backward(&self, step: usize, loss: &Tensor, names: impl FnOnce() -> Vec<(String, Tensor)>) {
        if step != 0 || (!self.explain && self.graph.is_none()) {
            loss.backward();
            return;
        }
        let trace = loss.backward_explained();
        if self.explain {
            println!("\n{trace}");
        }
        if let Some(path) = &self.graph {
            write_graph(loss, &names(), &trace, path);
        }
    }

    /// True on the steps where a health report was asked for.
    pub fn health_due(&self, step: usize) -> bool {
        self.health_every.is_some_and(|n| step.is_multiple_of(n))
    }
}

/// Writes the DOT picture of `loss`'s graph with gradient norms from `trace`, and its SVG when
/// Graphviz is installed; says what was written, or why no SVG was made.
pub fn write_graph(loss: &Tensor, names: &[(String, Tensor)], trace: &BackwardTrace, path: &Path) {
    let dot = inspect::to_dot_with(loss, &DotOptions { names, trace: Some(trace) });
    match inspect::render_svg(&dot, path) {
        Ok(svg) => println!("graph of the first step: {} and {}", path.with_extension("dot").display(), svg.display()),
        Err(e) => eprintln!("warning: {e}"),
    }
}

/// Rewrites `metrics.csv` and `metrics.svg` in `dir`: a loss chart (log scale) of `losses` and,
/// when given, an accuracy chart of `accuracies`, titled after the model.
pub fn write_metrics(log: &MetricsLog, dir: &Path, model: &str, losses: &[&str], accuracies: &[&str]) {
    let mut charts = vec![log.chart(&format!("{model}: loss"), "cross-entropy (log scale)", losses, true)];
    if !accuracies.is_empty() {
        charts.push(log.chart(&format!("{model}: accuracy"), "fraction correct", accuracies, false));
    }
    if let Err(e) = log.write(dir, &charts) {
        eprintln!("warning: could not write metrics to {}: {e}", dir.display());
    }
}
