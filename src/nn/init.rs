//! Weight initializers. Each picks a scale from the layer's fan-in (inputs per output) and
//! fan-out so that activations and gradients keep roughly unit variance from layer to layer.

use crate::rng::Rng;
use crate::{DType, Tensor};

/// How to draw a weight tensor.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Init {
    /// He et al. (2015) for ReLU nets: normal with std `sqrt(2 / fan_in)` (a ReLU halves the
    /// variance, the factor 2 restores it).
    KaimingNormal,
    /// He et al., uniform form: `U(-b, b)`, `b = sqrt(6 / fan_in)` (same variance).
    KaimingUniform,
    /// Glorot and Bengio (2010) for tanh/sigmoid nets: normal with std
    /// `sqrt(2 / (fan_in + fan_out))`, balancing forward and backward variance.
    XavierNormal,
    /// Glorot, uniform form: `U(-b, b)`, `b = sqrt(6 / (fan_in + fan_out))`.
    XavierUniform,
    /// LeCun: normal with std `1 / sqrt(fan_in)`.
    LecunNormal,
    /// PyTorch's `nn.Linear` default: `U(-b, b)` with `b = 1 / sqrt(fan_in)`.
    TorchDefault,
    /// Normal with a fixed standard deviation (GPT-2 uses 0.02).
    Normal {
        /// standard deviation
        std: f64,
    },
    /// All zeros (biases).
    Zeros,
}

impl Init {
    /// A tensor of `shape` drawn with this scheme.
    pub fn tensor(self, shape: &[usize], fan_in: usize, fan_out: usize, dtype: DType, rng: &mut Rng) -> Tensor {
        let (fi, fo) = (fan_in.max(1) as f64, fan_out.max(1) as f64);
        let normal = |std: f64, rng: &mut Rng| Tensor::randn_dtype(shape, DType::F64, rng).mul_scalar(std);
        let uniform =
            |bound: f64, rng: &mut Rng| Tensor::rand_dtype(shape, DType::F64, rng).affine(2.0 * bound, -bound);
        let t = match self {
            Init::KaimingNormal => normal((2.0 / fi).sqrt(), rng),
            Init::KaimingUniform => uniform((6.0 / fi).sqrt(), rng),
            Init::XavierNormal => normal((2.0 / (fi + fo)).sqrt(), rng),
            Init::XavierUniform => uniform((6.0 / (fi + fo)).sqrt(), rng),
            Init::LecunNormal => normal(1.0 / fi.sqrt(), rng),
            Init::TorchDefault => uniform(1.0 / fi.sqrt(), rng),
            Init::Normal { std } => normal(std, rng),
            Init::Zeros => Tensor::full_dtype(shape, 0.0, DType::F64),
        };
        t.to_dtype(dtype).detach()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn std_of(t: &Tensor) -> f64 {
        let v = t.to_vec_f64();
        let mean = v.iter().sum::<f64>() / v.len() as f64;
        (v.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / v.len() as f64).sqrt()
    }

    #[test]
    fn initializers_have_their_textbook_standard_deviations() {
        let mut rng = Rng::new(3);
        let (fan_in, fan_out) = (400, 100);
        let shape = [fan_out, fan_in];
        let cases = [
            (Init::KaimingNormal, (2.0 / 400.0f64).sqrt()),
            (Init::KaimingUniform, (2.0 / 400.0f64).sqrt()),
            (Init::XavierNormal, (2.0 / 500.0f64).sqrt()),
            (Init::XavierUniform, (2.0 / 500.0f64).sqrt()),
            (Init::LecunNormal, (1.0 / 400.0f64).sqrt()),
            (Init::TorchDefault, (1.0 / 3.0 / 400.0f64).sqrt()),
        ];
        for (init, expected) in cases {
            let s = std_of(&init.tensor(&shape, fan_in, fan_out, DType::F32, &mut rng));
            assert!((s / expected - 1.0).abs() < 0.03, "{init:?}: std {s}, expected {expected}");
        }
    }
}
