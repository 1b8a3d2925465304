//! Dropout as a layer.

use std::sync::Mutex;

use super::Module;
use crate::rng::Rng;
use crate::Tensor;

/// Zeroes each element with probability `p` while training (scaling survivors by
/// `1 / (1 - p)`); the identity in evaluation. Masks come from the layer's own seeded
/// generator, so a run is reproducible.
pub struct Dropout {
    p: f64,
    training: bool,
    rng: Mutex<Rng>,
}

impl Dropout {
    /// A dropout layer with drop probability `p`, in training mode.
    pub fn new(p: f64, seed: u64) -> Dropout {
        assert!((0.0..=1.0).contains(&p), "Dropout: probability {p} is outside [0, 1]");
        Dropout { p, training: true, rng: Mutex::new(Rng::new(seed)) }
    }
}

impl Module for Dropout {
    fn forward(&self, x: &Tensor) -> Tensor {
        let mut rng = self.rng.lock().expect("dropout rng lock poisoned");
        x.dropout(self.p, self.training, &mut rng)
    }

    fn set_training(&mut self, training: bool) {
        self.training = training;
    }

    fn describe(&self) -> String {
        format!("Dropout(p={})", self.p)
    }
}
