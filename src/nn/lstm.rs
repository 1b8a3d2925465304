//! Long short-term memory (Hochreiter and Schmidhuber, 1997), batch-first, one layer, with
//! PyTorch's parameter names and layout so weights load from `nn.LSTM(batch_first=True)`.
//!
//! At each step `t`, from the input `x_t[B, in]` and the previous state `(h, c)`:
//!
//! ```text
//! gates = x_t W_ih^T + b_ih + h W_hh^T + b_hh        [B, 4H], in the order i, f, g, o
//! i = sigmoid(gates[:, 0H..1H])   input gate: how much of the candidate to write
//! f = sigmoid(gates[:, 1H..2H])   forget gate: how much of the old cell to keep
//! g = tanh(gates[:, 2H..3H])      candidate cell values
//! o = sigmoid(gates[:, 3H..4H])   output gate: how much of the cell to show
//! c' = f * c + i * g
//! h' = o * tanh(c')
//! ```
//!
//! The layer is a composite of recorded tensor ops (matmul, add, narrow, sigmoid, tanh, mul),
//! so autograd derives backpropagation through time by itself. The input half of every step's
//! gates, `x_t W_ih^T + b_ih + b_hh`, does not depend on the recurrence, so it is computed for
//! all steps in one large matmul before the loop; only `h W_hh^T` runs step by step.

use super::{Init, Module};
use crate::rng::Rng;
use crate::{DType, Tensor};

/// A one-layer LSTM over batch-first sequences `[B, T, input_size]`.
pub struct Lstm {
    /// `weight_ih_l0`: `[4 hidden, input_size]`, gate blocks in the order i, f, g, o.
    pub weight_ih: Tensor,
    /// `weight_hh_l0`: `[4 hidden, hidden]`, same gate order.
    pub weight_hh: Tensor,
    /// `bias_ih_l0`: `[4 hidden]`.
    pub bias_ih: Tensor,
    /// `bias_hh_l0`: `[4 hidden]` (PyTorch keeps two biases; only their sum matters).
    pub bias_hh: Tensor,
}

/// What [`Lstm::forward_with_state`] returns.
pub struct LstmOutput {
    /// The hidden state after every step, `[B, T, hidden]` (PyTorch's `output`).
    pub outputs: Tensor,
    /// The last hidden state `[B, hidden]` (PyTorch's `h_n[0]`).
    pub h: Tensor,
    /// The last cell state `[B, hidden]` (PyTorch's `c_n[0]`).
    pub c: Tensor,
}

impl Lstm {
    /// A layer with PyTorch's initialization: every weight and bias `U(-k, k)`, `k = 1/sqrt(hidden)`.
    ///
    /// ```
    /// use glassbox::{nn::{Lstm, Module}, rng::Rng, Tensor};
    /// let lstm = Lstm::new(28, 16, &mut Rng::new(0));
    /// let out = lstm.forward_with_state(&Tensor::ones(&[4, 7, 28]), None);
    /// assert_eq!(out.outputs.shape(), &[4, 7, 16]);
    /// assert_eq!(out.h.shape(), &[4, 16]);
    /// ```
    pub fn new(input_size: usize, hidden_size: usize, rng: &mut Rng) -> Lstm {
        let gates = 4 * hidden_size;
        // PyTorch draws every LSTM parameter with bound 1/sqrt(hidden), whatever its fan-in.
        let mut draw =
            |shape: &[usize]| Init::TorchDefault.tensor(shape, hidden_size, gates, DType::F32, rng).requires_grad_();
        let weight_ih = draw(&[gates, input_size]);
        let weight_hh = draw(&[gates, hidden_size]);
        let bias_ih = draw(&[gates]);
        let bias_hh = draw(&[gates]);
        Lstm { weight_ih, weight_hh, bias_ih, bias_hh }
    }

    /// A layer over given tensors (loaded weights, or gradient-check inputs), in PyTorch's
    /// shapes: `[4H, in]`, `[4H, H]`, `[4H]`, `[4H]`. Panics naming the shapes otherwise.
    pub fn from_weights(weight_ih: Tensor, weight_hh: Tensor, bias_ih: Tensor, bias_hh: Tensor) -> Lstm {
        assert!(
            weight_hh.rank() == 2 && weight_hh.shape()[0] == 4 * weight_hh.shape()[1],
            "Lstm: weight_hh has shape {:?}, expected [4 hidden, hidden]",
            weight_hh.shape()
        );
        let gates = weight_hh.shape()[0];
        assert!(
            weight_ih.rank() == 2 && weight_ih.shape()[0] == gates,
            "Lstm: weight_ih has shape {:?}, expected [{gates}, input_size] to match weight_hh {:?}",
            weight_ih.shape(),
            weight_hh.shape()
        );
        for (name, b) in [("bias_ih", &bias_ih), ("bias_hh", &bias_hh)] {
            assert!(b.shape() == [gates], "Lstm: {name} has shape {:?}, expected [{gates}]", b.shape());
        }
        Lstm { weight_ih, weight_hh, bias_ih, bias_hh }
    }

    /// Features per step the layer reads.
    pub fn input_size(&self) -> usize {
        self.weight_ih.shape()[1]
    }

    /// Size of the hidden and cell states.
    pub fn hidden_size(&self) -> usize {
        self.weight_hh.shape()[1]
    }

    /// Runs the sequence `x[B, T, input_size]` from `state` (`(h0, c0)`, each `[B, hidden]`;
    /// zeros if `None`) and returns every hidden state and the final state.
    pub fn forward_with_state(&self, x: &Tensor, state: Option<(&Tensor, &Tensor)>) -> LstmOutput {
        let (input_size, hidden) = (self.input_size(), self.hidden_size());
        assert!(
            x.rank() == 3 && x.shape()[2] == input_size,
            "Lstm: input has shape {:?}, expected [batch, steps, {input_size}] (batch first)",
            x.shape()
        );
        let (batch, steps) = (x.shape()[0], x.shape()[1]);
        assert!(steps > 0, "Lstm: input of shape {:?} has no time steps", x.shape());
        let (mut h, mut c) = match state {
            Some((h0, c0)) => {
                for (name, s) in [("h0", h0), ("c0", c0)] {
                    assert!(
                        s.shape() == [batch, hidden],
                        "Lstm: initial {name} has shape {:?}, expected [{batch}, {hidden}]",
                        s.shape()
                    );
                }
                (h0.clone(), c0.clone())
            }
            None => (
                Tensor::full_dtype(&[batch, hidden], 0.0, x.dtype()),
                Tensor::full_dtype(&[batch, hidden], 0.0, x.dtype()),
            ),
        };

        // The input half of every step's gates, all steps in one GEMM: [B T, in] x [in, 4H].
        let bias = self.bias_ih.add(&self.bias_hh);
        let x_gates = x.reshape(&[batch * steps, input_size]).matmul(&self.weight_ih.t()).add(&bias).reshape(&[
            batch,
            steps,
            4 * hidden,
        ]);
        let w_hh_t = self.weight_hh.t();

        let mut hs = Vec::with_capacity(steps);
        for t in 0..steps {
            let gates = x_gates.narrow(1, t, 1).squeeze(1).add(&h.matmul(&w_hh_t));
            let i = gates.narrow(1, 0, hidden).sigmoid();
            let f = gates.narrow(1, hidden, hidden).sigmoid();
            let g = gates.narrow(1, 2 * hidden, hidden).tanh();
            let o = gates.narrow(1, 3 * hidden, hidden).sigmoid();
            c = f.mul(&c).add(&i.mul(&g));
            h = o.mul(&c.tanh());
            hs.push(h.clone());
        }
        LstmOutput { outputs: Tensor::stack(&hs, 1), h, c }
    }
}

impl Module for Lstm {
    /// Every hidden state `[B, T, hidden]`, starting from zeros.
    fn forward(&self, x: &Tensor) -> Tensor {
        self.forward_with_state(x, None).outputs
    }

    fn named_parameters(&self) -> Vec<(String, Tensor)> {
        vec![
            ("weight_ih_l0".to_string(), self.weight_ih.clone()),
            ("weight_hh_l0".to_string(), self.weight_hh.clone()),
            ("bias_ih_l0".to_string(), self.bias_ih.clone()),
            ("bias_hh_l0".to_string(), self.bias_hh.clone()),
        ]
    }

    fn describe(&self) -> String {
        format!("Lstm({} -> {}, batch first)", self.input_size(), self.hidden_size())
    }
}
