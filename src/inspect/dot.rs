//! The autograd graph of a tensor as a Graphviz DOT picture.
//!
//! Ops are ellipses labelled with their name and output shape; leaves are boxes (filled when
//! they require a gradient: parameters, named when a name is known; dashed when they are
//! constants such as a batch of data). Edges run the way the forward pass did, from input to
//! op. Given a [`BackwardTrace`] of a pass over the same graph, each edge is labelled with the
//! norm of the gradient that flowed back along it, and each leaf with the norm of the gradient
//! it received.
//!
//! ```
//! use glassbox::{inspect, Tensor};
//! let w = Tensor::ones(&[3, 2]).requires_grad_();
//! let loss = Tensor::ones(&[4, 3]).matmul(&w).relu().sum_all();
//! let dot = inspect::to_dot(&loss);
//! assert!(dot.starts_with("digraph autograd {"));
//! assert_eq!(dot.matches(" -> ").count(), 4); // data and w -> matmul -> relu -> sum
//! ```

use std::collections::HashMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;

use super::format_sig;
use crate::autograd::trace::BackwardTrace;
use crate::tensor::TensorId;
use crate::Tensor;

/// What to add to the picture beyond ops and shapes.
#[derive(Clone, Copy, Default)]
pub struct DotOptions<'a> {
    /// Names for leaves, e.g. a model's `named_parameters()`; leaves not listed are called
    /// `param` (requires a gradient) or `const`.
    pub names: &'a [(String, Tensor)],
    /// A trace of a backward pass over this graph, for the gradient norms on edges and leaves.
    pub trace: Option<&'a BackwardTrace>,
}

/// The graph that produced `root`, as DOT text (no names, no gradient norms).
pub fn to_dot(root: &Tensor) -> String {
    to_dot_with(root, &DotOptions::default())
}

/// Escapes `text` for a double-quoted DOT string.
fn escape(text: &str) -> String {
    text.replace('\\', "\\\\").replace('"', "\\\"")
}

/// The graph that produced `root`, as DOT text, with the extras in `options`.
pub fn to_dot_with(root: &Tensor, options: &DotOptions<'_>) -> String {
    // Number every tensor reachable through op inputs, depth first from the root, so the DOT
    // node names are short and stable for a given graph.
    let mut index: HashMap<TensorId, usize> = HashMap::new();
    let mut nodes: Vec<Tensor> = Vec::new();
    let mut stack = vec![root.clone()];
    while let Some(t) = stack.pop() {
        if index.contains_key(&t.id()) {
            continue;
        }
        index.insert(t.id(), nodes.len());
        if let Some(op) = t.op() {
            // Reversed so the first input is numbered first.
            stack.extend(op.inputs().into_iter().rev().cloned());
        }
        nodes.push(t);
    }

    let names: HashMap<TensorId, &str> = options.names.iter().map(|(n, t)| (t.id(), n.as_str())).collect();
    let mut out = String::from("digraph autograd {\n");
    out.push_str("  rankdir=TB;\n");
    out.push_str("  node [fontname=\"Helvetica\", fontsize=11];\n");
    out.push_str("  edge [fontname=\"Helvetica\", fontsize=9, color=\"#555555\"];\n");
    for (i, t) in nodes.iter().enumerate() {
        let shape = format!("{:?}", t.shape());
        let traced = options.trace.and_then(|tr| tr.node(t.id()));
        let (label, style) = match t.op() {
            Some(op) => {
                let mut style = "shape=ellipse".to_string();
                if i == 0 {
                    style.push_str(", peripheries=2");
                }
                (format!("{}\\n{}", op.kind().name(), shape), style)
            }
            None => {
                let name = names.get(&t.id()).copied().unwrap_or(if t.requires_grad() { "param" } else { "const" });
                let mut label = format!("{}\\n{}", escape(name), shape);
                if let Some(node) = traced {
                    let _ = write!(label, "\\n|grad| {}", format_sig(node.grad_norm));
                }
                let style = if t.requires_grad() {
                    "shape=box, style=filled, fillcolor=\"#dbe9f6\""
                } else {
                    "shape=box, style=dashed, color=\"#888888\""
                };
                (label, style.to_string())
            }
        };
        let _ = writeln!(out, "  n{i} [label=\"{label}\", {style}];");
    }
    for (i, t) in nodes.iter().enumerate() {
        let Some(op) = t.op() else { continue };
        let traced = options.trace.and_then(|tr| tr.node(t.id()));
        for (pos, input) in op.inputs().into_iter().enumerate() {
            let from = index[&input.id()];
            let norm = traced.and_then(|n| n.inputs.get(pos)).and_then(|x| x.grad_norm);
            match norm {
                Some(g) => {
                    let _ = writeln!(out, "  n{from} -> n{i} [label=\" {}\"];", format_sig(g));
                }
                None => {
                    let _ = writeln!(out, "  n{from} -> n{i};");
                }
            }
        }
    }
    if options.trace.is_some() {
        out.push_str("  label=\"edge labels: L2 norm of the gradient that flowed back along the edge\";\n");
        out.push_str("  fontname=\"Helvetica\"; fontsize=10;\n");
    }
    out.push_str("}\n");
    out
}

/// Why a graph picture could not be rendered.
#[derive(Debug)]
pub enum RenderError {
    /// The `.dot` file could not be written.
    Io {
        /// the file
        path: PathBuf,
        /// what went wrong
        error: std::io::Error,
    },
    /// Graphviz's `dot` program is not installed (the `.dot` file was written).
    DotNotInstalled {
        /// the DOT file that was written
        dot_file: PathBuf,
        /// the SVG that `dot` would have written
        svg_file: PathBuf,
    },
    /// `dot` ran and failed.
    DotFailed {
        /// the DOT file it was given
        dot_file: PathBuf,
        /// its exit status and error output
        message: String,
    },
}

impl std::fmt::Display for RenderError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RenderError::Io { path, error } => write!(f, "cannot write {}: {error}", path.display()),
            RenderError::DotNotInstalled { dot_file, svg_file } => write!(
                f,
                "the graph is in {dot}, but Graphviz's `dot` is not installed, so no SVG was made. \
                 Install it (Debian/Ubuntu: `apt-get install graphviz`; macOS: `brew install graphviz`), \
                 then run `dot -Tsvg {dot} -o {svg}`",
                dot = dot_file.display(),
                svg = svg_file.display()
            ),
            RenderError::DotFailed { dot_file, message } => {
                write!(f, "`dot -Tsvg {}` failed: {message}", dot_file.display())
            }
        }
    }
}

impl std::error::Error for RenderError {}

/// Writes `dot` to `path` with the extension `.dot`, then runs Graphviz (`dot -Tsvg`) to write
/// the picture next to it with the extension `.svg`, and returns the SVG's path. When `dot` is
/// not installed the error says how to install it and where the `.dot` file is.
pub fn render_svg(dot: &str, path: &Path) -> Result<PathBuf, RenderError> {
    render_svg_using("dot", dot, path)
}

/// [`render_svg`] with the Graphviz program named (tests use a missing one).
fn render_svg_using(program: &str, dot: &str, path: &Path) -> Result<PathBuf, RenderError> {
    let dot_file = path.with_extension("dot");
    let svg_file = path.with_extension("svg");
    if let Some(dir) = dot_file.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(|error| RenderError::Io { path: dir.to_path_buf(), error })?;
    }
    std::fs::write(&dot_file, dot).map_err(|error| RenderError::Io { path: dot_file.clone(), error })?;
    let result = Command::new(program).arg("-Tsvg").arg(&dot_file).arg("-o").arg(&svg_file).output();
    match result {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Err(RenderError::DotNotInstalled { dot_file, svg_file }),
        Err(e) => Err(RenderError::DotFailed { dot_file, message: e.to_string() }),
        Ok(out) if !out.status.success() => Err(RenderError::DotFailed {
            dot_file,
            message: format!("{}: {}", out.status, String::from_utf8_lossy(&out.stderr).trim()),
        }),
        Ok(_) => Ok(svg_file),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_graphviz_is_reported_with_install_hint_and_dot_file_kept() {
        let dir = std::env::temp_dir().join(format!("glassbox-dot-test-{}", std::process::id()));
        let dot = "digraph autograd {\n  n0;\n}\n";
        let err = render_svg_using("glassbox-no-such-graphviz", dot, &dir.join("graph.svg")).unwrap_err();
        let message = err.to_string();
        assert!(matches!(err, RenderError::DotNotInstalled { .. }), "{message}");
        assert!(message.contains("apt-get install graphviz"), "{message}");
        assert!(message.contains("graph.dot"), "{message}");
        assert_eq!(std::fs::read_to_string(dir.join("graph.dot")).unwrap(), dot);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
