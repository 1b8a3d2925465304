//! A readable `Display` for tensors, in the spirit of NumPy's and PyTorch's printing: nested
//! brackets, aligned columns, and long dimensions elided with `...`.

use std::fmt::{self, Display, Write};

use super::Tensor;

/// Dimensions longer than this print only their first and last `EDGE_ITEMS` entries.
const SUMMARIZE_ABOVE: usize = 12;
const EDGE_ITEMS: usize = 3;

impl Display for Tensor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let values = self.to_vec_f64();
        let shape = self.shape().to_vec();
        let cells: Vec<String> = values.iter().map(|v| format_value(*v)).collect();
        let width = cells.iter().map(|c| c.len()).max().unwrap_or(1);
        let mut out = String::from("tensor(");
        write_block(&mut out, &cells, &shape, 0, 0, width, "tensor(".len());
        write!(out, ", shape={:?}, dtype={}", shape, self.dtype())?;
        if self.requires_grad() {
            out.push_str(", requires_grad");
        }
        out.push(')');
        f.write_str(&out)
    }
}

fn format_value(v: f64) -> String {
    if v.is_nan() || v.is_infinite() {
        format!("{v}")
    } else if v != 0.0 && (v.abs() >= 1e5 || v.abs() < 1e-4) {
        format!("{v:.4e}")
    } else {
        format!("{v:.4}")
    }
}

/// Writes the sub-array of `shape[depth..]` starting at flat index `start`.
fn write_block(
    out: &mut String,
    cells: &[String],
    shape: &[usize],
    depth: usize,
    start: usize,
    width: usize,
    indent: usize,
) {
    if depth == shape.len() {
        let _ = write!(out, "{:>width$}", cells[start]);
        return;
    }
    let len = shape[depth];
    let stride: usize = shape[depth + 1..].iter().product();
    let shown: Vec<Option<usize>> = if len > SUMMARIZE_ABOVE {
        (0..EDGE_ITEMS).map(Some).chain([None]).chain((len - EDGE_ITEMS..len).map(Some)).collect()
    } else {
        (0..len).map(Some).collect()
    };
    out.push('[');
    let innermost = depth + 1 == shape.len();
    for (n, item) in shown.iter().enumerate() {
        if n > 0 {
            if innermost {
                out.push_str(", ");
            } else {
                out.push(',');
                out.push_str(&"\n".repeat(shape.len() - depth - 1));
                out.push_str(&" ".repeat(indent + depth + 1));
            }
        }
        match item {
            Some(i) => write_block(out, cells, shape, depth + 1, start + i * stride, width, indent),
            None => out.push_str("..."),
        }
    }
    out.push(']');
}

#[cfg(test)]
mod tests {
    use crate::Tensor;

    #[test]
    fn display_shows_nested_rows_and_shape() {
        let t = Tensor::from_vec(vec![1.0, 2.5, -3.0, 4.0], &[2, 2]);
        let s = t.to_string();
        assert_eq!(s, "tensor([[ 1.0000,  2.5000],\n        [-3.0000,  4.0000]], shape=[2, 2], dtype=f32)");
    }

    #[test]
    fn display_elides_long_dims() {
        let s = Tensor::arange(100).to_string();
        assert!(s.contains("..."), "{s}");
        assert!(s.contains("99.0000"), "{s}");
    }

    #[test]
    fn display_of_scalar() {
        assert_eq!(Tensor::scalar(0.5).to_string(), "tensor(0.5000, shape=[], dtype=f32)");
    }
}
