//! A LeNet-style convolutional network on MNIST:
//!
//! ```text
//! [N, 1, 28, 28] -> Conv2d(1 -> C1, 5x5, padding 2) -> ReLU -> MaxPool 2x2   [N, C1, 14, 14]
//!                -> Conv2d(C1 -> C2, 5x5)           -> ReLU -> MaxPool 2x2   [N, C2, 5, 5]
//!                -> Flatten -> Linear(25 C2 -> F) -> ReLU -> Linear(F -> 10)  logits
//! ```
//!
//! trained with softmax cross-entropy and Adam (cosine-decayed). `cargo run --release --example
//! cnn -- --help` lists the flags; the last line printed is `test accuracy: 0.XXXX`.

mod common;

use glassbox::nn::{Conv2d, Flatten, Linear, MaxPool2d, Module, Relu, Sequential};
use glassbox::rng::Rng;

/// Channels of the first and second convolution, and width of the hidden dense layer.
const C1: usize = 6;
const C2: usize = 16;
const F: usize = 120;

fn main() {
    let run = common::MnistRun::from_flags(
        "cnn",
        "glassbox CNN: a LeNet-style network on MNIST, trained with Adam",
        6,
        64,
        2e-3,
    );
    // The training loop runs on a worker thread (see `glassbox::on_worker`): driven from
    // `main`, every parallel op would pay two thread switches.
    glassbox::on_worker(move || {
        let mnist = run.load();
        let mut rng = Rng::new(run.seed);
        let mut model = Sequential::new()
            .push(Conv2d::new(1, C1, [5, 5], &mut rng).padding([2, 2]))
            .push(Relu)
            .push(MaxPool2d::new([2, 2]))
            .push(Conv2d::new(C1, C2, [5, 5], &mut rng))
            .push(Relu)
            .push(MaxPool2d::new([2, 2]))
            .push(Flatten)
            .push(Linear::new(C2 * 5 * 5, F, &mut rng))
            .push(Relu)
            .push(Linear::new(F, 10, &mut rng));
        println!("model: {}", model.describe());
        let count: usize = model.parameters().iter().map(|p| p.numel()).sum();
        println!("{count} parameters");
        run.train_classifier(&mut model, &[1, mnist.train.rows, mnist.train.cols], &mnist, None);
    });
}
