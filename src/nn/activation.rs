//! Activation functions as modules, for use inside [`Sequential`](super::Sequential).

use super::Module;
use crate::Tensor;

/// The activation functions glassbox has, by name.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Activation {
    /// max(x, 0)
    Relu,
    /// 1 / (1 + e^-x)
    Sigmoid,
    /// tanh x
    Tanh,
    /// GELU (tanh form)
    Gelu,
}

impl Activation {
    /// Applies the function.
    pub fn apply(self, x: &Tensor) -> Tensor {
        match self {
            Activation::Relu => x.relu(),
            Activation::Sigmoid => x.sigmoid(),
            Activation::Tanh => x.tanh(),
            Activation::Gelu => x.gelu(),
        }
    }

    /// The activation as a boxed module.
    pub fn module(self) -> Box<dyn Module> {
        match self {
            Activation::Relu => Box::new(Relu),
            Activation::Sigmoid => Box::new(Sigmoid),
            Activation::Tanh => Box::new(Tanh),
            Activation::Gelu => Box::new(Gelu),
        }
    }
}

macro_rules! activation_module {
    ($name:ident, $variant:ident, $doc:literal) => {
        #[doc = $doc]
        #[derive(Clone, Copy, Debug, Default)]
        pub struct $name;

        impl Module for $name {
            fn forward(&self, x: &Tensor) -> Tensor {
                Activation::$variant.apply(x)
            }
            fn describe(&self) -> String {
                stringify!($name).to_string()
            }
        }
    };
}

activation_module!(Relu, Relu, "ReLU as a layer.");
activation_module!(Sigmoid, Sigmoid, "Sigmoid as a layer.");
activation_module!(Tanh, Tanh, "Tanh as a layer.");
activation_module!(Gelu, Gelu, "GELU (tanh form) as a layer.");
