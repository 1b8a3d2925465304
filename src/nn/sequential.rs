//! A chain of modules.

use super::{Activation, Dropout, Linear, Module};
use crate::rng::Rng;
use crate::Tensor;

/// Modules applied in order; parameters are named `"{index}.{name}"` as in PyTorch.
#[derive(Default)]
pub struct Sequential {
    layers: Vec<Box<dyn Module>>,
}

impl Sequential {
    /// An empty chain.
    pub fn new() -> Sequential {
        Sequential { layers: Vec::new() }
    }

    /// Appends a layer.
    pub fn push(mut self, layer: impl Module + 'static) -> Sequential {
        self.layers.push(Box::new(layer));
        self
    }

    /// Appends a boxed layer.
    pub fn push_boxed(mut self, layer: Box<dyn Module>) -> Sequential {
        self.layers.push(layer);
        self
    }

    /// The layers, in order.
    pub fn layers(&self) -> &[Box<dyn Module>] {
        &self.layers
    }

    /// A multi-layer perceptron: `Linear` layers of the given `sizes` (input first, output
    /// last) with `activation` (and dropout `p`, if non-zero) between them, none after the
    /// last layer.
    ///
    /// ```
    /// use glassbox::{nn::{Activation, Module, Sequential}, rng::Rng, Tensor};
    /// let mlp = Sequential::mlp(&[4, 8, 3], Activation::Relu, 0.0, &mut Rng::new(0));
    /// assert_eq!(mlp.forward(&Tensor::ones(&[2, 4])).shape(), &[2, 3]);
    /// assert_eq!(mlp.parameters().len(), 4);
    /// ```
    pub fn mlp(sizes: &[usize], activation: Activation, dropout: f64, rng: &mut Rng) -> Sequential {
        assert!(sizes.len() >= 2, "Sequential::mlp: needs at least input and output sizes, got {sizes:?}");
        let mut net = Sequential::new();
        for (i, pair) in sizes.windows(2).enumerate() {
            net = net.push(Linear::new(pair[0], pair[1], rng));
            if i + 2 < sizes.len() {
                net = net.push_boxed(activation.module());
                if dropout > 0.0 {
                    net = net.push(Dropout::new(dropout, rng.next_u64()));
                }
            }
        }
        net
    }
}

impl Module for Sequential {
    fn forward(&self, x: &Tensor) -> Tensor {
        self.layers.iter().fold(x.clone(), |h, layer| layer.forward(&h))
    }

    fn named_parameters(&self) -> Vec<(String, Tensor)> {
        self.layers
            .iter()
            .enumerate()
            .flat_map(|(i, layer)| {
                layer.named_parameters().into_iter().map(move |(name, t)| (format!("{i}.{name}"), t))
            })
            .collect()
    }

    fn set_training(&mut self, training: bool) {
        for layer in &mut self.layers {
            layer.set_training(training);
        }
    }

    fn describe(&self) -> String {
        let inner: Vec<String> = self.layers.iter().map(|l| l.describe()).collect();
        format!("Sequential({})", inner.join(", "))
    }
}
