//! A small, fully deterministic training run, shared by the checkpoint, crash and determinism
//! tests: an MLP classifying a fixed synthetic data set, batches drawn from the run's own
//! seeded generator (so resuming needs the generator's state, not just the weights).

use std::path::Path;

use glassbox::io::{load_checkpoint, save_checkpoint, IoError, TrainState};
use glassbox::nn::{Activation, Module, Sequential};
use glassbox::optim::{Adam, AdamW, Optimizer, RmsProp, Sgd};
use glassbox::rng::Rng;
use glassbox::{DType, Tensor};

/// A classification data set: `examples` rows of `features` normal values, labelled by the
/// arg-max of a fixed random linear map (so there is something to learn).
pub struct Task {
    pub x: Vec<f32>,
    pub y: Vec<usize>,
    pub features: usize,
    pub classes: usize,
}

impl Task {
    pub fn new(examples: usize, features: usize, classes: usize, seed: u64) -> Task {
        let mut rng = Rng::new(seed);
        let x: Vec<f32> = (0..examples * features).map(|_| rng.normal() as f32).collect();
        let w: Vec<f32> = (0..features * classes).map(|_| rng.normal() as f32).collect();
        let y = x
            .chunks(features)
            .map(|row| {
                let score = |c: usize| row.iter().enumerate().map(|(i, v)| v * w[i * classes + c]).sum::<f32>();
                (0..classes).max_by(|&a, &b| score(a).total_cmp(&score(b))).expect("classes > 0")
            })
            .collect();
        Task { x, y, features, classes }
    }

    pub fn len(&self) -> usize {
        self.y.len()
    }
}

/// Which optimizer a run uses.
#[derive(Clone, Copy, Debug)]
pub enum OptKind {
    Adam,
    AdamW,
    SgdMomentum,
    RmsProp,
}

impl OptKind {
    pub const ALL: [OptKind; 4] = [OptKind::Adam, OptKind::AdamW, OptKind::SgdMomentum, OptKind::RmsProp];

    fn build(self, params: Vec<Tensor>) -> Box<dyn Optimizer> {
        match self {
            OptKind::Adam => Box::new(Adam::new(params, 1e-2).weight_decay(1e-4)),
            OptKind::AdamW => Box::new(AdamW::new(params, 1e-2)),
            OptKind::SgdMomentum => Box::new(Sgd::new(params, 5e-2).momentum(0.9).weight_decay(1e-4)),
            OptKind::RmsProp => Box::new(RmsProp::new(params, 1e-3)),
        }
    }
}

/// A model, its optimizer and the generator that draws its batches.
pub struct Run {
    pub model: Sequential,
    pub optimizer: Box<dyn Optimizer>,
    pub rng: Rng,
    pub step: u64,
    pub batch: usize,
}

impl Run {
    /// A fresh run: `sizes` for the MLP (input first), initialized from `seed`.
    pub fn new(sizes: &[usize], kind: OptKind, batch: usize, seed: u64) -> Run {
        let mut rng = Rng::new(seed);
        let model = Sequential::mlp(sizes, Activation::Relu, 0.0, &mut rng);
        let optimizer = kind.build(model.parameters());
        Run { model, optimizer, rng, step: 0, batch }
    }

    /// One training step on a batch drawn from the run's generator; returns the loss.
    pub fn step(&mut self, task: &Task) -> f32 {
        let indices: Vec<usize> = (0..self.batch).map(|_| self.rng.below(task.len())).collect();
        let mut x = Vec::with_capacity(self.batch * task.features);
        for &i in &indices {
            x.extend_from_slice(&task.x[i * task.features..(i + 1) * task.features]);
        }
        let labels: Vec<usize> = indices.iter().map(|&i| task.y[i]).collect();
        let x = Tensor::from_vec(x, &[self.batch, task.features]);
        let loss = self.model.forward(&x).cross_entropy(&labels);
        self.optimizer.zero_grad();
        loss.backward();
        // A schedule, so the learning rate in the state matters too.
        let lr = self.optimizer.learning_rate();
        self.optimizer.set_learning_rate(lr * 0.999);
        self.optimizer.step();
        self.step += 1;
        loss.item()
    }

    /// Every parameter's elements as raw bits, in order: equal bits mean equal models.
    pub fn weight_bits(&self) -> Vec<u64> {
        self.model
            .parameters()
            .iter()
            .flat_map(|p| match p.dtype() {
                DType::F32 => p.to_vec().into_iter().map(|v| u64::from(v.to_bits())).collect::<Vec<_>>(),
                DType::F64 => p.to_vec_f64().into_iter().map(f64::to_bits).collect(),
            })
            .collect()
    }

    /// Saves the run as a training checkpoint.
    pub fn save(&self, path: &Path) -> Result<(), IoError> {
        let state = TrainState { step: self.step, epoch: 0, rng: self.rng.clone() };
        save_checkpoint(path, &self.model, self.optimizer.as_ref(), &state)
    }

    /// Restores a checkpoint into this run (built with the same sizes and optimizer kind).
    pub fn load(&mut self, path: &Path) -> Result<(), IoError> {
        let state = load_checkpoint(path, &self.model, self.optimizer.as_mut())?;
        self.step = state.step;
        self.rng = state.rng;
        Ok(())
    }
}
