//! # glassbox
//!
//! A from-scratch tensor engine with reverse-mode autograd and hand-written kernels, built to
//! be read. Start at [`Tensor`]; every op's front door is in `ops/`, its gradient formula in
//! [`autograd::backward`], its CPU kernel in `backend/cpu/`. [`inspect`] shows the engine at
//! work: backward traces, graph pictures, training health, loss curves.
//!
//! ```
//! use glassbox::Tensor;
//! let w = Tensor::randn(&[3, 2], 0).requires_grad_();
//! let x = Tensor::ones(&[4, 3]);
//! let loss = x.matmul(&w).relu().mean_all();
//! loss.backward();
//! assert_eq!(w.grad().unwrap().shape(), &[3, 2]);
//! ```

pub mod autograd;
pub mod backend;
pub mod data;
pub mod inspect;
pub mod io;
pub mod metrics;
pub mod nn;
pub mod ops;
pub mod optim;
pub mod rng;
pub mod tensor;
mod threads;

pub use autograd::no_grad;
pub use tensor::{DType, Device, Tensor};
pub use threads::{on_worker, SPIN_VARIABLE};

/// The README's examples, compiled and run as doctests so they stay true.
#[doc = include_str!("../README.md")]
#[cfg(doctest)]
pub struct ReadmeDoctests;
