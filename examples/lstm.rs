//! The documents' LSTM(128) + Dense(10) classifier on MNIST, each image read row by row: a
//! sequence of 28 steps of 28 pixels. The last hidden state feeds a linear layer whose logits
//! go to softmax cross-entropy (the documents' "softmax Dense layer"; the softmax is folded
//! into the loss for stability). Adam, cosine-decayed.
//!
//! `cargo run --release --example lstm -- --help` lists the flags; the last line printed is
//! `test accuracy: 0.XXXX`.

mod common;

use glassbox::inspect::gate_saturation;
use glassbox::nn::{Linear, Lstm, Module};
use glassbox::rng::Rng;
use glassbox::Tensor;

/// Hidden units of the LSTM, as in the documents.
const HIDDEN: usize = 128;

/// LSTM over the rows, then a linear layer on the last hidden state.
struct RowLstmClassifier {
    lstm: Lstm,
    head: Linear,
}

impl Module for RowLstmClassifier {
    /// `x[B, rows, cols]` to logits `[B, 10]`.
    fn forward(&self, x: &Tensor) -> Tensor {
        let last_hidden = self.lstm.forward_with_state(x, None).h;
        self.head.forward(&last_hidden)
    }

    fn named_parameters(&self) -> Vec<(String, Tensor)> {
        let lstm = self.lstm.named_parameters().into_iter().map(|(n, t)| (format!("lstm.{n}"), t));
        let head = self.head.named_parameters().into_iter().map(|(n, t)| (format!("head.{n}"), t));
        lstm.chain(head).collect()
    }

    fn describe(&self) -> String {
        format!("{} on image rows, then {} on the last hidden state", self.lstm.describe(), self.head.describe())
    }
}

fn main() {
    let run = common::MnistRun::from_flags(
        "lstm",
        "glassbox LSTM: MNIST read row by row (28 steps of 28 pixels) by an LSTM(128) + linear layer",
        3,
        64,
        2e-3,
    );
    // The training loop runs on a worker thread (see `glassbox::on_worker`): driven from
    // `main`, every parallel op would pay two thread switches.
    glassbox::on_worker(move || {
        let mnist = run.load();
        let (rows, cols) = (mnist.train.rows, mnist.train.cols);
        let mut rng = Rng::new(run.seed);
        let mut model =
            RowLstmClassifier { lstm: Lstm::new(cols, HIDDEN, &mut rng), head: Linear::new(HIDDEN, 10, &mut rng) };
        println!("model: {}", model.describe());
        let count: usize = model.parameters().iter().map(|p| p.numel()).sum();
        println!("{count} parameters");
        // With --health, also report how many of the LSTM's sigmoid gates sit saturated (below 0.05
        // or above 0.95), where their gradient nearly vanishes.
        // A second handle on the same weight tensors (clones share storage), so the closure can
        // read the live weights while training holds the model mutably.
        let l = &model.lstm;
        let lstm = Lstm::from_weights(l.weight_ih.clone(), l.weight_hh.clone(), l.bias_ih.clone(), l.bias_hh.clone());
        let gate_report = |x: &Tensor| {
            let gates = lstm.forward_with_state(x, None).gates;
            let mean = gates.iter().map(gate_saturation).sum::<f64>() / gates.len().max(1) as f64;
            format!("LSTM gate saturation on this batch: {:.1}% of input/forget/output gate values", 100.0 * mean)
        };
        run.train_classifier(&mut model, &[rows, cols], &mnist, Some(&gate_report));
    });
}
