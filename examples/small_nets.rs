//! The documents' two small networks, trained on generated data (seeded, so every run prints
//! the same numbers):
//!
//! (a) a 10-20-2 binary classifier (ReLU hidden layer, two logits, softmax cross-entropy)
//!     trained with plain SGD, learning rate 0.1, for 100 full-batch iterations on 100
//!     samples of 10 features, labelled by a random linear rule `y = [w . x > 0]`;
//! (b) a 2-10-2 ReLU network whose two sigmoid outputs are trained against one-hot targets
//!     with binary cross-entropy and Adam (learning rate 0.001), on two Gaussian clouds in 2-D.
//!
//! Each prints its loss every 10 iterations and its final accuracy on the training samples
//! and on fresh samples drawn from the same rule.

mod common;

use glassbox::metrics::{accuracy, argmax_rows};
use glassbox::nn::{Activation, Module, Sequential};
use glassbox::optim::{Adam, Optimizer, Sgd};
use glassbox::rng::Rng;
use glassbox::Tensor;

/// Generated samples: features `[n, dim]` (row-major) and a class (0 or 1) per sample.
struct Samples {
    x: Vec<f32>,
    labels: Vec<usize>,
    dim: usize,
}

impl Samples {
    fn len(&self) -> usize {
        self.labels.len()
    }

    fn features(&self) -> Tensor {
        Tensor::from_vec(self.x.clone(), &[self.len(), self.dim])
    }

    /// One-hot targets `[n, 2]`, for the binary cross-entropy of two sigmoid outputs.
    fn one_hot(&self) -> Tensor {
        let values = self.labels.iter().flat_map(|&l| if l == 0 { [1.0, 0.0] } else { [0.0, 1.0] }).collect();
        Tensor::from_vec(values, &[self.len(), 2])
    }
}

/// `n` standard-normal points in `dim` dimensions, labelled 1 where `rule . x > 0`.
fn linear_rule_samples(n: usize, rule: &[f64], rng: &mut Rng) -> Samples {
    let dim = rule.len();
    let mut x = Vec::with_capacity(n * dim);
    let mut labels = Vec::with_capacity(n);
    for _ in 0..n {
        let point: Vec<f64> = (0..dim).map(|_| rng.normal()).collect();
        let side: f64 = point.iter().zip(rule).map(|(a, b)| a * b).sum();
        labels.push(usize::from(side > 0.0));
        x.extend(point.iter().map(|&v| v as f32));
    }
    Samples { x, labels, dim }
}

/// `n` points in 2-D, half around (-1, -1) (class 0) and half around (1, 1) (class 1), each
/// coordinate with standard deviation 0.8, so the clouds overlap a little.
fn two_clouds(n: usize, rng: &mut Rng) -> Samples {
    let mut x = Vec::with_capacity(n * 2);
    let mut labels = Vec::with_capacity(n);
    for i in 0..n {
        let class = i % 2;
        let center = if class == 0 { -1.0 } else { 1.0 };
        x.push((center + 0.8 * rng.normal()) as f32);
        x.push((center + 0.8 * rng.normal()) as f32);
        labels.push(class);
    }
    Samples { x, labels, dim: 2 }
}

/// Fraction of samples whose larger output is their class.
fn accuracy_of(model: &Sequential, samples: &Samples) -> f64 {
    let outputs = glassbox::no_grad(|| model.forward(&samples.features()));
    accuracy(&samples.labels, &argmax_rows(&outputs.to_vec(), 2))
}

/// (a): 10-20-2, softmax cross-entropy, SGD lr 0.1, 100 full-batch iterations.
fn sgd_classifier(rng: &mut Rng) {
    println!("(a) 10-20-2 ReLU classifier, softmax cross-entropy, SGD lr 0.1, 100 iterations");
    let rule: Vec<f64> = (0..10).map(|_| rng.normal()).collect();
    let train = linear_rule_samples(100, &rule, rng);
    let fresh = linear_rule_samples(1000, &rule, rng);
    let class_1 = train.labels.iter().filter(|&&l| l == 1).count();
    println!("    100 samples, 10 features, labels from a random linear rule ({class_1} of class 1)");
    let model = Sequential::mlp(&[10, 20, 2], Activation::Relu, 0.0, rng);
    let mut optimizer = Sgd::new(model.parameters(), 0.1);
    let x = train.features();
    println!("    iteration  loss");
    for iteration in 1..=100 {
        let loss = model.forward(&x).cross_entropy(&train.labels);
        optimizer.zero_grad();
        loss.backward();
        optimizer.step();
        if iteration == 1 || iteration % 10 == 0 {
            println!("    {iteration:>9}  {:.4}", loss.item());
        }
    }
    let final_loss = glassbox::no_grad(|| model.forward(&x).cross_entropy(&train.labels).item());
    println!("    final loss {final_loss:.4}");
    println!(
        "    accuracy: {:.3} on the 100 training samples, {:.3} on 1000 fresh samples",
        accuracy_of(&model, &train),
        accuracy_of(&model, &fresh)
    );
}

/// (b): 2-10-2 ReLU, two sigmoid outputs, binary cross-entropy against one-hot targets, Adam.
fn adam_bce_network(rng: &mut Rng, iterations: usize) {
    println!(
        "\n(b) 2-10-2 ReLU network, sigmoid outputs, binary cross-entropy, Adam lr 0.001, {iterations} iterations"
    );
    let train = two_clouds(200, rng);
    let fresh = two_clouds(1000, rng);
    println!("    200 samples: two Gaussian clouds around (-1, -1) and (1, 1), std 0.8");
    let model = Sequential::mlp(&[2, 10, 2], Activation::Relu, 0.0, rng);
    let mut optimizer = Adam::new(model.parameters(), 0.001);
    let (x, targets) = (train.features(), train.one_hot());
    println!("    iteration  loss");
    for iteration in 1..=iterations {
        // The sigmoid is folded into the loss (binary_cross_entropy_with_logits): the same
        // value as binary_cross_entropy(sigmoid(z)), without its overflow for large |z|.
        let loss = model.forward(&x).binary_cross_entropy_with_logits(&targets);
        optimizer.zero_grad();
        loss.backward();
        optimizer.step();
        if iteration == 1 || iteration % 10 == 0 {
            println!("    {iteration:>9}  {:.4}", loss.item());
        }
    }
    let final_loss = glassbox::no_grad(|| model.forward(&x).binary_cross_entropy_with_logits(&targets).item());
    println!("    final loss {final_loss:.4}");
    println!(
        "    accuracy: {:.3} on the 200 training samples, {:.3} on 1000 fresh samples",
        accuracy_of(&model, &train),
        accuracy_of(&model, &fresh)
    );
}

fn main() {
    let mut flags = common::Flags::from_env();
    let seed: u64 = flags.get("seed", 0, "seed for the data and the initial weights");
    let iterations: usize = flags.get("adam-iterations", 300, "iterations of network (b)");
    let threads: Option<usize> = flags.optional("threads", "worker threads (default: RAYON_NUM_THREADS or all cores)");
    flags.finish("glassbox small nets: the documents' 10-20-2 SGD classifier and 2-10-2 Adam / BCE network");
    common::init_threads(threads);
    let mut rng = Rng::new(seed);
    sgd_classifier(&mut rng);
    adam_bce_network(&mut rng, iterations);
}
