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
//! so autograd derives backpropagation through time by itself.
//!
//! Why the input projection `x_t W_ih^T` is one small matmul per step rather than one large
//! matmul over all steps before the loop (which would do the same arithmetic in fewer, larger
//! GEMMs): each step would then take its slice of the `[B, T, 4H]` projection with `narrow`,
//! and a narrow's gradient is a full `[B, T, 4H]` tensor, zero outside the slice. Over `T`
//! steps that is `T` full-size zero-filled gradients, summed one by one: `O(T^2)` memory
//! traffic. Measured on the MNIST example's shapes (B = 64, T = 28, in = 28, H = 128) on the
//! shared 2-core machine, a forward + backward step took 109-149 ms that way and 44-55 ms this
//! way. Slicing `x` instead costs nothing when the input needs no gradient, and only
//! `[B, T, in]`-sized zeros when it does.

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
    /// The sigmoid gates (input, forget, output) of every step, `[B, hidden]` each: what
    /// `inspect::gate_saturation` reads to tell whether the gates are stuck open or shut.
    pub gates: Vec<Tensor>,
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
                Tensor::full_on(&[batch, hidden], 0.0, x.dtype(), x.device()),
                Tensor::full_on(&[batch, hidden], 0.0, x.dtype(), x.device()),
            ),
        };

        // The input projection runs step by step on a view of x (see the module docs for why
        // not one GEMM over all steps); both biases are added once per step as their sum.
        let bias = self.bias_ih.add(&self.bias_hh);
        let (w_ih_t, w_hh_t) = (self.weight_ih.t(), self.weight_hh.t());

        let mut hs = Vec::with_capacity(steps);
        let mut sigmoid_gates = Vec::with_capacity(3 * steps);
        for t in 0..steps {
            let x_t = x.narrow(1, t, 1).squeeze(1);
            let gates = x_t.matmul(&w_ih_t).add(&h.matmul(&w_hh_t)).add(&bias);
            let i = gates.narrow(1, 0, hidden).sigmoid();
            let f = gates.narrow(1, hidden, hidden).sigmoid();
            let g = gates.narrow(1, 2 * hidden, hidden).tanh();
            let o = gates.narrow(1, 3 * hidden, hidden).sigmoid();
            c = f.mul(&c).add(&i.mul(&g));
            h = o.mul(&c.tanh());
            hs.push(h.clone());
            sigmoid_gates.extend([i, f, o]);
        }
        LstmOutput { outputs: Tensor::stack(&hs, 1), h, c, gates: sigmoid_gates }
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

#[cfg(test)]
mod tests {
    use super::*;

    fn sigmoid(v: f64) -> f64 {
        1.0 / (1.0 + (-v).exp())
    }

    /// PyTorch's LSTM equations written out as scalar loops over plain vectors: an
    /// independent reference for the tensor version. Returns (outputs[B][T][H], c_T[B][H]).
    fn scalar_lstm(x: &[f64], dims: (usize, usize, usize, usize), w: [&[f64]; 4]) -> (Vec<f64>, Vec<f64>) {
        let (batch, steps, input, hidden) = dims;
        let [w_ih, w_hh, b_ih, b_hh] = w;
        let mut outputs = vec![0.0; batch * steps * hidden];
        let mut last_c = vec![0.0; batch * hidden];
        for b in 0..batch {
            let (mut h, mut c) = (vec![0.0; hidden], vec![0.0; hidden]);
            for t in 0..steps {
                let x_t = &x[(b * steps + t) * input..(b * steps + t + 1) * input];
                let gate = |row: usize| -> f64 {
                    let from_x: f64 = (0..input).map(|k| w_ih[row * input + k] * x_t[k]).sum();
                    let from_h: f64 = (0..hidden).map(|k| w_hh[row * hidden + k] * h[k]).sum();
                    from_x + from_h + b_ih[row] + b_hh[row]
                };
                let (mut h_new, mut c_new) = (vec![0.0; hidden], vec![0.0; hidden]);
                for u in 0..hidden {
                    let i = sigmoid(gate(u));
                    let f = sigmoid(gate(hidden + u));
                    let g = gate(2 * hidden + u).tanh();
                    let o = sigmoid(gate(3 * hidden + u));
                    c_new[u] = f * c[u] + i * g;
                    h_new[u] = o * c_new[u].tanh();
                }
                (h, c) = (h_new, c_new);
                outputs[(b * steps + t) * hidden..(b * steps + t + 1) * hidden].copy_from_slice(&h);
            }
            last_c[b * hidden..(b + 1) * hidden].copy_from_slice(&c);
        }
        (outputs, last_c)
    }

    #[test]
    fn lstm_matches_the_pytorch_equations_written_as_scalar_loops() {
        let (batch, steps, input, hidden) = (3, 4, 5, 2);
        let mut rng = Rng::new(17);
        let mut draw = |n: usize| -> Vec<f64> { (0..n).map(|_| rng.normal() * 0.7).collect() };
        let (x, w_ih, w_hh, b_ih, b_hh) = (
            draw(batch * steps * input),
            draw(4 * hidden * input),
            draw(4 * hidden * hidden),
            draw(4 * hidden),
            draw(4 * hidden),
        );
        let lstm = Lstm::from_weights(
            Tensor::from_vec_f64(w_ih.clone(), &[4 * hidden, input]),
            Tensor::from_vec_f64(w_hh.clone(), &[4 * hidden, hidden]),
            Tensor::from_vec_f64(b_ih.clone(), &[4 * hidden]),
            Tensor::from_vec_f64(b_hh.clone(), &[4 * hidden]),
        );
        let out = lstm.forward_with_state(&Tensor::from_vec_f64(x.clone(), &[batch, steps, input]), None);
        let (outputs, last_c) = scalar_lstm(&x, (batch, steps, input, hidden), [&w_ih, &w_hh, &b_ih, &b_hh]);
        let close = |a: &[f64], b: &[f64]| a.iter().zip(b).all(|(p, q)| (p - q).abs() < 1e-12);
        assert_eq!(out.outputs.shape(), &[batch, steps, hidden]);
        assert!(close(&out.outputs.to_vec_f64(), &outputs), "outputs differ from the scalar reference");
        assert!(close(&out.c.to_vec_f64(), &last_c), "last cell state differs from the scalar reference");
        // h is the last step of outputs.
        let last_h: Vec<f64> = (0..batch)
            .flat_map(|b| outputs[(b * steps + steps - 1) * hidden..(b * steps + steps) * hidden].to_vec())
            .collect();
        assert!(close(&out.h.to_vec_f64(), &last_h), "last hidden state differs from the scalar reference");
    }

    #[test]
    fn lstm_parameters_have_pytorch_names_and_shapes() {
        let lstm = Lstm::new(28, 16, &mut Rng::new(0));
        let named: Vec<(String, Vec<usize>)> =
            lstm.named_parameters().into_iter().map(|(n, t)| (n, t.shape().to_vec())).collect();
        let expected = [
            ("weight_ih_l0", vec![64, 28]),
            ("weight_hh_l0", vec![64, 16]),
            ("bias_ih_l0", vec![64]),
            ("bias_hh_l0", vec![64]),
        ];
        assert_eq!(named.len(), expected.len());
        for ((name, shape), (want_name, want_shape)) in named.iter().zip(&expected) {
            assert_eq!((name.as_str(), shape), (*want_name, want_shape));
        }
    }

    #[test]
    #[should_panic(expected = "Lstm: input has shape [2, 5], expected [batch, steps, 3] (batch first)")]
    fn lstm_rejects_an_input_without_a_time_dim() {
        Lstm::new(3, 4, &mut Rng::new(0)).forward(&Tensor::zeros(&[2, 5]));
    }
}
