//! Plain-text tables with aligned columns, for terminal reports.

use std::fmt;

/// How a column's cells line up.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Align {
    /// Text columns.
    Left,
    /// Number columns, so digits line up.
    Right,
}

enum Row {
    Cells(Vec<String>),
    /// A free line printed under the previous row, indented, ignored when sizing columns.
    Note(String),
}

/// A table printed with each column as wide as its widest cell, two spaces apart.
///
/// ```
/// use glassbox::inspect::{Align, TextTable};
/// let mut t = TextTable::new(&[("op", Align::Left), ("time", Align::Right)]);
/// t.row(vec!["matmul".into(), "1.5 ms".into()]);
/// t.note("dA = g B^T, dB = A^T g");
/// assert_eq!(t.to_string(), "op        time\nmatmul  1.5 ms\n    dA = g B^T, dB = A^T g\n");
/// ```
pub struct TextTable {
    headers: Vec<String>,
    align: Vec<Align>,
    rows: Vec<Row>,
}

impl TextTable {
    /// A table with these column headers and alignments.
    pub fn new(columns: &[(&str, Align)]) -> TextTable {
        TextTable {
            headers: columns.iter().map(|(h, _)| h.to_string()).collect(),
            align: columns.iter().map(|(_, a)| *a).collect(),
            rows: Vec::new(),
        }
    }

    /// Appends a row; panics unless it has one cell per column.
    pub fn row(&mut self, cells: Vec<String>) {
        assert_eq!(
            cells.len(),
            self.headers.len(),
            "TextTable::row: {} cells for {} columns ({:?})",
            cells.len(),
            self.headers.len(),
            self.headers
        );
        self.rows.push(Row::Cells(cells));
    }

    /// Appends a free line (indented by 4), printed under the last row.
    pub fn note(&mut self, line: impl Into<String>) {
        self.rows.push(Row::Note(line.into()));
    }

    /// Number of cell rows (notes not counted).
    pub fn len(&self) -> usize {
        self.rows.iter().filter(|r| matches!(r, Row::Cells(_))).count()
    }

    /// True when no cell row was added.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl fmt::Display for TextTable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut widths: Vec<usize> = self.headers.iter().map(|h| h.chars().count()).collect();
        for row in &self.rows {
            if let Row::Cells(cells) = row {
                for (w, c) in widths.iter_mut().zip(cells) {
                    *w = (*w).max(c.chars().count());
                }
            }
        }
        let line = |f: &mut fmt::Formatter<'_>, cells: &[String]| -> fmt::Result {
            let mut out = String::new();
            for (i, (cell, &w)) in cells.iter().zip(&widths).enumerate() {
                if i > 0 {
                    out.push_str("  ");
                }
                let pad = " ".repeat(w - cell.chars().count());
                match self.align[i] {
                    Align::Left => {
                        out.push_str(cell);
                        out.push_str(&pad);
                    }
                    Align::Right => {
                        out.push_str(&pad);
                        out.push_str(cell);
                    }
                }
            }
            writeln!(f, "{}", out.trim_end())
        };
        line(f, &self.headers)?;
        for row in &self.rows {
            match row {
                Row::Cells(cells) => line(f, cells)?,
                Row::Note(text) => writeln!(f, "    {text}")?,
            }
        }
        Ok(())
    }
}
