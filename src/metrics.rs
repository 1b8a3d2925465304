//! Classification metrics on plain slices: arg-max predictions, accuracy, and a confusion matrix
//! with per-class precision, recall and F1.
//!
//! Ratios whose denominator is zero (the precision of a class never predicted, the recall of a
//! class absent from the data, anything on an empty matrix) are defined as 0, as scikit-learn
//! does by default. A metric that silently became NaN would poison every average it entered;
//! 0 is the honest score for "never right about this class".
//!
//! ```
//! use glassbox::metrics::{argmax_rows, ConfusionMatrix};
//! // Scores for three samples over two classes, one row per sample.
//! let scores = [0.9, 0.1, 0.2, 0.8, 0.6, 0.4];
//! let predicted = argmax_rows(&scores, 2);
//! assert_eq!(predicted, [0, 1, 0]);
//! let matrix = ConfusionMatrix::from_predictions(&[0, 1, 1], &predicted, 2);
//! assert_eq!(matrix.accuracy(), 2.0 / 3.0);
//! assert_eq!(matrix.precision(0), 0.5);
//! assert_eq!(matrix.recall(1), 0.5);
//! ```

use std::fmt;

/// The index of the largest value in each row of a row-major `rows x cols` matrix: the
/// predicted class for each sample, given one row of scores (logits or probabilities) per sample.
///
/// Ties go to the lowest index. A NaN counts as larger than any number, as in NumPy, so a row
/// with a NaN predicts its first NaN: a diverged model then shows up as a constant prediction
/// instead of quietly voting for whatever finite score happened to remain.
///
/// Panics if `cols` is 0 or `values.len()` is not a multiple of `cols`.
///
/// ```
/// use glassbox::metrics::argmax_rows;
/// assert_eq!(argmax_rows(&[1.0, 3.0, 2.0, 5.0, 5.0, 0.0], 3), [1, 0]);
/// ```
pub fn argmax_rows(values: &[f32], cols: usize) -> Vec<usize> {
    assert!(cols > 0, "argmax_rows: cols must be at least 1, got 0");
    let leftover = values.len() % cols;
    assert!(
        leftover == 0,
        "argmax_rows: {} values do not split into rows of {cols} columns ({leftover} left over)",
        values.len()
    );
    values.chunks_exact(cols).map(argmax).collect()
}

fn argmax(row: &[f32]) -> usize {
    let mut best = 0;
    for (j, &value) in row.iter().enumerate().skip(1) {
        if row[best].is_nan() {
            break;
        }
        if value.is_nan() || value > row[best] {
            best = j;
        }
    }
    best
}

/// The fraction of positions where `predicted` equals `truth`; 0 for empty slices.
///
/// Panics if the slices differ in length.
///
/// ```
/// use glassbox::metrics::accuracy;
/// assert_eq!(accuracy(&[1, 2, 3, 4], &[1, 2, 0, 4]), 0.75);
/// ```
pub fn accuracy(truth: &[usize], predicted: &[usize]) -> f64 {
    check_same_length("accuracy", truth, predicted);
    let correct = truth.iter().zip(predicted).filter(|(t, p)| t == p).count();
    ratio(correct, truth.len())
}

/// A `k x k` table of counts: entry (`t`, `p`) is how many samples of true class `t` were
/// predicted as class `p`. Rows are true labels, columns predictions.
///
/// Displays as an aligned table with a `true\pred` corner; [`per_class_report`] gives the
/// per-class scores.
///
/// ```
/// use glassbox::metrics::ConfusionMatrix;
/// let mut matrix = ConfusionMatrix::new(2);
/// matrix.add(0, 0);
/// matrix.add(1, 0);
/// matrix.add(1, 1);
/// assert_eq!(matrix.count(1, 0), 1);
/// assert_eq!(matrix.total(), 3);
/// assert_eq!(matrix.f1(1), 2.0 / 3.0);
/// assert_eq!(matrix.to_string(), "true\\pred  0  1\n        0  1  0\n        1  1  1\n");
/// ```
///
/// [`per_class_report`]: ConfusionMatrix::per_class_report
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConfusionMatrix {
    classes: usize,
    /// Row-major `classes x classes` counts.
    counts: Vec<usize>,
}

impl ConfusionMatrix {
    /// An empty matrix for `classes` classes.
    ///
    /// Panics if `classes` is 0.
    pub fn new(classes: usize) -> ConfusionMatrix {
        assert!(classes > 0, "ConfusionMatrix::new: need at least 1 class, got 0");
        let cells = classes
            .checked_mul(classes)
            .unwrap_or_else(|| panic!("ConfusionMatrix::new: {classes} x {classes} cells overflow usize"));
        ConfusionMatrix { classes, counts: vec![0; cells] }
    }

    /// A matrix counting each `(truth[i], predicted[i])` pair.
    ///
    /// Panics if the slices differ in length or a class is not below `classes`.
    pub fn from_predictions(truth: &[usize], predicted: &[usize], classes: usize) -> Self {
        check_same_length("ConfusionMatrix::from_predictions", truth, predicted);
        let mut matrix = ConfusionMatrix::new(classes);
        for (&t, &p) in truth.iter().zip(predicted) {
            matrix.add(t, p);
        }
        matrix
    }

    /// The number of classes, `k`.
    pub fn num_classes(&self) -> usize {
        self.classes
    }

    /// Counts one sample of true class `truth` predicted as `predicted`.
    ///
    /// Panics if either class is not below [`num_classes`](ConfusionMatrix::num_classes).
    pub fn add(&mut self, truth: usize, predicted: usize) {
        self.check_class("add", truth);
        self.check_class("add", predicted);
        self.counts[truth * self.classes + predicted] += 1;
    }

    /// How many samples of true class `truth` were predicted as `predicted`.
    ///
    /// Panics if either class is out of range.
    pub fn count(&self, truth: usize, predicted: usize) -> usize {
        self.check_class("count", truth);
        self.check_class("count", predicted);
        self.counts[truth * self.classes + predicted]
    }

    /// All samples counted.
    pub fn total(&self) -> usize {
        self.counts.iter().sum()
    }

    /// Samples whose true class is `class` (the row sum), called "support" in reports.
    ///
    /// Panics if `class` is out of range.
    pub fn support(&self, class: usize) -> usize {
        self.check_class("support", class);
        self.counts[class * self.classes..(class + 1) * self.classes].iter().sum()
    }

    /// Samples predicted as `class` (the column sum).
    ///
    /// Panics if `class` is out of range.
    pub fn predicted_count(&self, class: usize) -> usize {
        self.check_class("predicted_count", class);
        (0..self.classes).map(|t| self.counts[t * self.classes + class]).sum()
    }

    /// The fraction of samples on the diagonal; 0 when the matrix is empty.
    pub fn accuracy(&self) -> f64 {
        let correct = (0..self.classes).map(|c| self.counts[c * self.classes + c]).sum();
        ratio(correct, self.total())
    }

    /// Of the samples predicted as `class`, the fraction truly of `class`; 0 if none were
    /// predicted as `class` (0/0 is defined as 0).
    ///
    /// Panics if `class` is out of range.
    pub fn precision(&self, class: usize) -> f64 {
        ratio(self.count(class, class), self.predicted_count(class))
    }

    /// Of the samples truly of `class`, the fraction predicted as `class`; 0 if there are none
    /// (0/0 is defined as 0).
    ///
    /// Panics if `class` is out of range.
    pub fn recall(&self, class: usize) -> f64 {
        ratio(self.count(class, class), self.support(class))
    }

    /// The harmonic mean of precision and recall for `class`; 0 when both are 0.
    ///
    /// Computed from counts as `2 TP / (2 TP + FP + FN)`, which equals `2 P R / (P + R)` but
    /// is one exact division instead of several rounded ones.
    ///
    /// Panics if `class` is out of range.
    pub fn f1(&self, class: usize) -> f64 {
        // 2 TP + FP + FN is the row sum plus the column sum.
        let denominator = self.support(class) + self.predicted_count(class);
        ratio(2 * self.count(class, class), denominator)
    }

    /// The unweighted mean of per-class precision, every class counting equally.
    pub fn macro_precision(&self) -> f64 {
        self.mean_over_classes(|c| self.precision(c))
    }

    /// The unweighted mean of per-class recall.
    pub fn macro_recall(&self) -> f64 {
        self.mean_over_classes(|c| self.recall(c))
    }

    /// The unweighted mean of per-class F1, as scikit-learn's `f1_score(average="macro")`.
    ///
    /// This is not the F1 of [`macro_precision`](ConfusionMatrix::macro_precision) and
    /// [`macro_recall`](ConfusionMatrix::macro_recall), which would hide a class that is bad at
    /// both behind others that are good at one.
    pub fn macro_f1(&self) -> f64 {
        self.mean_over_classes(|c| self.f1(c))
    }

    /// A table of precision, recall, F1 and support per class, then the macro averages and the
    /// accuracy, in the layout of scikit-learn's `classification_report`.
    ///
    /// ```
    /// use glassbox::metrics::ConfusionMatrix;
    /// let matrix = ConfusionMatrix::from_predictions(&[0, 1, 1], &[0, 1, 0], 2);
    /// let report = matrix.per_class_report();
    /// let lines: Vec<&str> = report.lines().collect();
    /// assert_eq!(lines[0], "    class  precision     recall         f1    support");
    /// assert_eq!(lines[1], "        0     0.5000     1.0000     0.6667          1");
    /// assert_eq!(lines[2], "        1     1.0000     0.5000     0.6667          2");
    /// assert_eq!(lines[4], "macro avg     0.7500     0.7500     0.6667          3");
    /// assert_eq!(lines[5], " accuracy                           0.6667          3");
    /// ```
    pub fn per_class_report(&self) -> String {
        let label_width = "macro avg".len().max(digit_count(self.classes - 1));
        let mut report =
            format!("{:>label_width$}  {:>9}  {:>9}  {:>9}  {:>9}\n", "class", "precision", "recall", "f1", "support");
        for class in 0..self.classes {
            report += &format!(
                "{class:>label_width$}  {:>9.4}  {:>9.4}  {:>9.4}  {:>9}\n",
                self.precision(class),
                self.recall(class),
                self.f1(class),
                self.support(class)
            );
        }
        report += &format!(
            "\n{:>label_width$}  {:>9.4}  {:>9.4}  {:>9.4}  {:>9}\n",
            "macro avg",
            self.macro_precision(),
            self.macro_recall(),
            self.macro_f1(),
            self.total()
        );
        report += &format!(
            "{:>label_width$}  {:>9}  {:>9}  {:>9.4}  {:>9}\n",
            "accuracy",
            "",
            "",
            self.accuracy(),
            self.total()
        );
        report
    }

    fn mean_over_classes(&self, score: impl Fn(usize) -> f64) -> f64 {
        (0..self.classes).map(score).sum::<f64>() / self.classes as f64
    }

    fn check_class(&self, caller: &str, class: usize) {
        assert!(
            class < self.classes,
            "ConfusionMatrix::{caller}: class {class} is out of range for {} classes",
            self.classes
        );
    }
}

impl fmt::Display for ConfusionMatrix {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        const CORNER: &str = "true\\pred";
        let largest_count = self.counts.iter().copied().max().unwrap_or(0);
        let label_width = digit_count(self.classes - 1);
        let cell_width = label_width.max(digit_count(largest_count));
        let first_width = CORNER.len().max(label_width);

        write!(f, "{CORNER:>first_width$}")?;
        for predicted in 0..self.classes {
            write!(f, "  {predicted:>cell_width$}")?;
        }
        writeln!(f)?;
        for truth in 0..self.classes {
            write!(f, "{truth:>first_width$}")?;
            for predicted in 0..self.classes {
                let count = self.counts[truth * self.classes + predicted];
                write!(f, "  {count:>cell_width$}")?;
            }
            writeln!(f)?;
        }
        Ok(())
    }
}

/// `numerator / denominator`, with 0/0 (and anything over 0) defined as 0.
fn ratio(numerator: usize, denominator: usize) -> f64 {
    if denominator == 0 {
        0.0
    } else {
        numerator as f64 / denominator as f64
    }
}

fn digit_count(n: usize) -> usize {
    n.checked_ilog10().map_or(1, |log| log as usize + 1)
}

fn check_same_length(caller: &str, truth: &[usize], predicted: &[usize]) {
    assert!(
        truth.len() == predicted.len(),
        "{caller}: {} true labels but {} predictions",
        truth.len(),
        predicted.len()
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digit_count_handles_zero_and_powers_of_ten() {
        assert_eq!(digit_count(0), 1);
        assert_eq!(digit_count(9), 1);
        assert_eq!(digit_count(10), 2);
        assert_eq!(digit_count(12345), 5);
    }

    #[test]
    fn argmax_prefers_the_first_of_ties_and_the_first_nan() {
        assert_eq!(argmax(&[2.0, 2.0, 1.0]), 0);
        assert_eq!(argmax(&[1.0, f32::NAN, 5.0, f32::NAN]), 1);
        assert_eq!(argmax(&[f32::NAN, 5.0]), 0);
        assert_eq!(argmax(&[f32::NEG_INFINITY, -1.0]), 1);
    }
}
