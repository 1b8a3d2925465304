//! Classification metrics against a small case worked out by hand.

use glassbox::metrics::{accuracy, argmax_rows, ConfusionMatrix};

/// Ten samples over three classes; class 2 is never predicted.
///
/// ```text
/// true\pred  0  1  2     support
///         0  2  1  0        3
///         1  1  3  0        4
///         2  1  2  0        3
/// predicted  4  6  0       10
/// ```
const TRUTH: [usize; 10] = [0, 0, 0, 1, 1, 1, 1, 2, 2, 2];
const PREDICTED: [usize; 10] = [0, 0, 1, 1, 1, 0, 1, 0, 1, 1];

fn hand_case() -> ConfusionMatrix {
    ConfusionMatrix::from_predictions(&TRUTH, &PREDICTED, 3)
}

#[test]
fn counts_match_the_hand_computed_table() {
    let m = hand_case();
    let expected = [[2, 1, 0], [1, 3, 0], [1, 2, 0]];
    for (t, row) in expected.iter().enumerate() {
        for (p, &count) in row.iter().enumerate() {
            assert_eq!(m.count(t, p), count, "cell ({t}, {p})");
        }
    }
    assert_eq!(m.num_classes(), 3);
    assert_eq!(m.total(), 10);
    assert_eq!([m.support(0), m.support(1), m.support(2)], [3, 4, 3]);
    assert_eq!([m.predicted_count(0), m.predicted_count(1), m.predicted_count(2)], [4, 6, 0]);
}

#[test]
fn every_score_matches_the_hand_computation() {
    let m = hand_case();
    // Diagonal 2 + 3 + 0 = 5 of 10.
    assert_eq!(m.accuracy(), 0.5);
    assert_eq!(accuracy(&TRUTH, &PREDICTED), 0.5);

    // Precision: diagonal over column sums; class 2 is never predicted, so 0/0, defined as 0.
    assert_eq!(m.precision(0), 2.0 / 4.0);
    assert_eq!(m.precision(1), 3.0 / 6.0);
    assert_eq!(m.precision(2), 0.0);

    // Recall: diagonal over row sums.
    assert_eq!(m.recall(0), 2.0 / 3.0);
    assert_eq!(m.recall(1), 3.0 / 4.0);
    assert_eq!(m.recall(2), 0.0 / 3.0);

    // F1 = 2PR / (P + R): class 0: 2 * 1/2 * 2/3 / (7/6) = 4/7; class 1: 0.75 / 1.25 = 3/5.
    assert_eq!(m.f1(0), 4.0 / 7.0);
    assert_eq!(m.f1(1), 3.0 / 5.0);
    assert_eq!(m.f1(2), 0.0);

    // Macro averages: (1/2 + 1/2 + 0) / 3, (2/3 + 3/4 + 0) / 3 = 17/36, (4/7 + 3/5 + 0) / 3 =
    // 41/105. Macro F1 is the mean of the F1s, not the F1 of the macro precision and recall
    // (which would be 34/87 here).
    let close = |a: f64, b: f64| (a - b).abs() < 1e-15;
    assert!(close(m.macro_precision(), 1.0 / 3.0), "{}", m.macro_precision());
    assert!(close(m.macro_recall(), 17.0 / 36.0), "{}", m.macro_recall());
    assert!(close(m.macro_f1(), 41.0 / 105.0), "{}", m.macro_f1());
}

#[test]
fn the_table_and_report_are_aligned() {
    let m = hand_case();
    assert_eq!(
        m.to_string(),
        "true\\pred  0  1  2\n\
         \x20       0  2  1  0\n\
         \x20       1  1  3  0\n\
         \x20       2  1  2  0\n"
    );
    assert_eq!(
        m.per_class_report(),
        "    class  precision     recall         f1    support\n\
         \x20       0     0.5000     0.6667     0.5714          3\n\
         \x20       1     0.5000     0.7500     0.6000          4\n\
         \x20       2     0.0000     0.0000     0.0000          3\n\
         \n\
         macro avg     0.3333     0.4722     0.3905         10\n\
         \x20accuracy                           0.5000         10\n"
    );
}

#[test]
fn wide_counts_and_many_classes_stay_aligned() {
    let mut m = ConfusionMatrix::new(12);
    for _ in 0..1234 {
        m.add(11, 3);
    }
    m.add(0, 0);
    let text = m.to_string();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 13);
    assert!(lines.iter().all(|l| l.len() == lines[0].len()), "{text}");
    assert!(lines[0].starts_with("true\\pred     0     1"), "{text}");
    assert!(lines[12].contains(" 1234 "), "{text}");
}

#[test]
fn an_empty_matrix_scores_zero_rather_than_nan() {
    let m = ConfusionMatrix::new(2);
    assert_eq!(m.accuracy(), 0.0);
    assert_eq!(m.precision(1), 0.0);
    assert_eq!(m.recall(1), 0.0);
    assert_eq!(m.f1(1), 0.0);
    assert_eq!(m.macro_f1(), 0.0);
    assert_eq!(accuracy(&[], &[]), 0.0);
}

#[test]
fn argmax_rows_picks_one_class_per_row() {
    let scores = [
        0.1, 0.7, 0.2, // row 0 -> 1
        3.0, -1.0, 2.9, // row 1 -> 0
        -5.0, -4.0, -3.0, // row 2 -> 2
        1.0, 1.0, 0.0, // tie -> first
    ];
    assert_eq!(argmax_rows(&scores, 3), [1, 0, 2, 0]);
    assert_eq!(argmax_rows(&[], 3), Vec::<usize>::new());
    assert_eq!(argmax_rows(&[0.5, f32::NAN, 9.0], 3), [1]);
}

#[test]
#[should_panic(expected = "argmax_rows: 7 values do not split into rows of 3 columns (1 left over)")]
fn argmax_rows_rejects_a_ragged_matrix() {
    argmax_rows(&[0.0; 7], 3);
}

#[test]
#[should_panic(expected = "argmax_rows: cols must be at least 1, got 0")]
fn argmax_rows_rejects_zero_columns() {
    argmax_rows(&[], 0);
}

#[test]
#[should_panic(expected = "ConfusionMatrix::add: class 3 is out of range for 3 classes")]
fn out_of_range_classes_panic() {
    hand_case().add(0, 3);
}

#[test]
#[should_panic(expected = "ConfusionMatrix::from_predictions: 2 true labels but 1 predictions")]
fn mismatched_lengths_panic() {
    ConfusionMatrix::from_predictions(&[0, 1], &[0], 2);
}
