//! Backpropagation by hand and by the engine: the documents' two worked examples, narrated.
//!
//! (a) One sigmoid layer: `W = [[0.1, 0.2], [0.3, 0.4]]`, `b = [0.1, 0.2]`, `x = [1, 2]`,
//!     target `y = [1, 0]`, binary cross-entropy, one gradient step.
//! (b) A 3-input network with two sigmoid hidden layers (2 units each) and one sigmoid output,
//!     on `x = [1, 2, 3]` with target 1; small fixed weights, printed below.
//!
//! Every value (forward, each layer's delta, each gradient, the update) is computed twice: by
//! the textbook formulas in plain f64 arithmetic (`by_hand`), and by glassbox's autograd
//! (`by_engine`). The program prints both, their largest difference, and exits with status 1
//! if any pair differs by more than 1e-12.
//!
//! `cargo run --release --example backprop -- --lr 0.1`

mod common;

use glassbox::optim::{Optimizer, Sgd};
use glassbox::Tensor;

/// Agreement demanded between the two computations: both are f64, and the engine's formulas
/// round differently (e.g. BCE's gradient is divided and re-multiplied by a(1 - a)), so they
/// may differ in the last bits, never by more than a few 1e-16 on numbers of size ~1.
const AGREEMENT: f64 = 1e-12;

/// One dense layer `z = W a + b`, `W` row-major `[rows, cols]`.
#[derive(Clone)]
struct Layer {
    w: Vec<f64>,
    rows: usize,
    cols: usize,
    b: Vec<f64>,
}

/// Everything one training step computes, layer by layer.
struct Trace {
    /// Pre-activations `z_l`.
    z: Vec<Vec<f64>>,
    /// Activations `a_l = sigmoid(z_l)`.
    a: Vec<Vec<f64>>,
    /// Binary cross-entropy summed over the outputs.
    loss: f64,
    /// Deltas `dL/dz_l`.
    delta: Vec<Vec<f64>>,
    /// Weight gradients `dL/dW_l`.
    dw: Vec<Vec<f64>>,
    /// Bias gradients `dL/db_l`.
    db: Vec<Vec<f64>>,
    /// Weights after the step.
    new_w: Vec<Vec<f64>>,
    /// Biases after the step.
    new_b: Vec<Vec<f64>>,
    /// The loss with the updated weights.
    loss_after: f64,
}

fn sigmoid(v: f64) -> f64 {
    1.0 / (1.0 + (-v).exp())
}

/// `-sum(y ln a + (1 - y) ln(1 - a))`: the per-example binary cross-entropy of the textbooks.
fn bce_sum(a: &[f64], y: &[f64]) -> f64 {
    -a.iter().zip(y).map(|(&a, &y)| y * a.ln() + (1.0 - y) * (1.0 - a).ln()).sum::<f64>()
}

/// Forward pass by hand: `z_l = W_l a_(l-1) + b_l`, `a_l = sigmoid(z_l)`, with `a_(-1) = x`.
fn forward_by_hand(layers: &[Layer], x: &[f64]) -> (Vec<Vec<f64>>, Vec<Vec<f64>>) {
    let (mut zs, mut activations) = (Vec::new(), Vec::new());
    let mut input = x.to_vec();
    for layer in layers {
        let z: Vec<f64> = (0..layer.rows)
            .map(|i| (0..layer.cols).map(|j| layer.w[i * layer.cols + j] * input[j]).sum::<f64>() + layer.b[i])
            .collect();
        input = z.iter().map(|&v| sigmoid(v)).collect();
        zs.push(z);
        activations.push(input.clone());
    }
    (zs, activations)
}

/// The textbook step in plain arithmetic:
/// - output delta `delta_L = a_L - y` (binary cross-entropy on a sigmoid output);
/// - hidden deltas `delta_l = (W_(l+1)^T delta_(l+1)) * a_l (1 - a_l)`;
/// - gradients `dW_l = delta_l a_(l-1)^T`, `db_l = delta_l`;
/// - update `W_l -= lr dW_l`, `b_l -= lr db_l`.
fn by_hand(layers: &[Layer], x: &[f64], y: &[f64], lr: f64) -> Trace {
    let (z, a) = forward_by_hand(layers, x);
    let loss = bce_sum(a.last().expect("at least one layer"), y);
    let depth = layers.len();
    let mut delta = vec![Vec::new(); depth];
    delta[depth - 1] = a[depth - 1].iter().zip(y).map(|(a, y)| a - y).collect();
    for l in (0..depth - 1).rev() {
        let next = &layers[l + 1];
        delta[l] = (0..next.cols)
            .map(|j| {
                let back: f64 = (0..next.rows).map(|i| next.w[i * next.cols + j] * delta[l + 1][i]).sum();
                back * a[l][j] * (1.0 - a[l][j])
            })
            .collect();
    }
    let (mut dw, mut db, mut new_w, mut new_b) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let mut updated = layers.to_vec();
    for (l, layer) in layers.iter().enumerate() {
        let input = if l == 0 { x } else { &a[l - 1] };
        let grad_w: Vec<f64> =
            (0..layer.rows * layer.cols).map(|k| delta[l][k / layer.cols] * input[k % layer.cols]).collect();
        updated[l].w = layer.w.iter().zip(&grad_w).map(|(w, g)| w - lr * g).collect();
        updated[l].b = layer.b.iter().zip(&delta[l]).map(|(b, g)| b - lr * g).collect();
        dw.push(grad_w);
        db.push(delta[l].clone());
        new_w.push(updated[l].w.clone());
        new_b.push(updated[l].b.clone());
    }
    let loss_after = bce_sum(forward_by_hand(&updated, x).1.last().expect("at least one layer"), y);
    Trace { z, a, loss, delta, dw, db, new_w, new_b, loss_after }
}

/// Weight and bias leaves (`[rows, cols]` and `[rows, 1]`, f64) for `layers`.
fn leaves(layers: &[Layer]) -> Vec<(Tensor, Tensor)> {
    layers
        .iter()
        .map(|l| {
            (
                Tensor::from_vec_f64(l.w.clone(), &[l.rows, l.cols]).requires_grad_(),
                Tensor::from_vec_f64(l.b.clone(), &[l.rows, 1]).requires_grad_(),
            )
        })
        .collect()
}

/// The textbook loss from the engine: its `binary_cross_entropy` is the mean over outputs
/// (PyTorch's default), so the sum is the mean times the number of outputs.
fn engine_loss(output: &Tensor, y: &[f64]) -> Tensor {
    let target = Tensor::from_vec_f64(y.to_vec(), &[y.len(), 1]);
    output.binary_cross_entropy(&target).mul_scalar(y.len() as f64)
}

/// The same step by autograd. The engine keeps gradients only for leaves, so to see each
/// layer's delta `dL/dz_l` the graph is cut after every `z_l`: `z_cut = z.detach()` becomes a
/// leaf that the next layer starts from. `loss.backward()` fills `dL/dz_cut` of the last
/// layer; then `z_l.backward_with_grad(delta_l)` carries it through layer `l`, filling `W_l`
/// and `b_l`'s gradients and the previous cut's delta. (The chain rule: a backward pass
/// through a chain is the chain of the links' backward passes.)
fn by_engine(layers: &[Layer], x: &[f64], y: &[f64], lr: f64) -> Trace {
    let params = leaves(layers);
    let mut input = Tensor::from_vec_f64(x.to_vec(), &[x.len(), 1]);
    let (mut zs, mut cuts, mut activations) = (Vec::new(), Vec::new(), Vec::new());
    for (w, b) in &params {
        let z = w.matmul(&input).add(b);
        let z_cut = z.detach().requires_grad_();
        input = z_cut.sigmoid();
        activations.push(input.to_vec_f64());
        zs.push(z);
        cuts.push(z_cut);
    }
    let loss = engine_loss(&input, y);
    loss.backward();
    let mut delta = vec![Vec::new(); layers.len()];
    for l in (0..layers.len()).rev() {
        let d = cuts[l].grad().expect("the loss depends on every layer");
        zs[l].backward_with_grad(&d);
        delta[l] = d.to_vec_f64();
    }
    let dw = params.iter().map(|(w, _)| w.grad().expect("weight gradient").to_vec_f64()).collect();
    let db = params.iter().map(|(_, b)| b.grad().expect("bias gradient").to_vec_f64()).collect();
    let all: Vec<Tensor> = params.iter().flat_map(|(w, b)| [w.clone(), b.clone()]).collect();
    Sgd::new(all, lr).step();
    let new_w = params.iter().map(|(w, _)| w.to_vec_f64()).collect();
    let new_b = params.iter().map(|(_, b)| b.to_vec_f64()).collect();
    let loss_after = glassbox::no_grad(|| {
        let output = params
            .iter()
            .fold(Tensor::from_vec_f64(x.to_vec(), &[x.len(), 1]), |a, (w, b)| w.matmul(&a).add(b).sigmoid());
        engine_loss(&output, y).item_f64()
    });
    Trace {
        z: cuts.iter().map(|z| z.to_vec_f64()).collect(),
        a: activations,
        loss: loss.item_f64(),
        delta,
        dw,
        db,
        new_w,
        new_b,
        loss_after,
    }
}

/// The weight gradients from one uninterrupted backward pass (no cuts), to show the cuts
/// change nothing.
fn engine_gradients_uncut(layers: &[Layer], x: &[f64], y: &[f64]) -> Vec<f64> {
    let params = leaves(layers);
    let output =
        params.iter().fold(Tensor::from_vec_f64(x.to_vec(), &[x.len(), 1]), |a, (w, b)| w.matmul(&a).add(b).sigmoid());
    engine_loss(&output, y).backward();
    params.iter().flat_map(|(w, b)| [w.grad(), b.grad()]).flat_map(|g| g.expect("gradient").to_vec_f64()).collect()
}

/// Prints the backward explainer's trace of one uninterrupted backward pass: the engine's own
/// account of the same chain rule, node by node, with each local derivative.
fn explain_uncut(layers: &[Layer], x: &[f64], y: &[f64]) {
    let params = leaves(layers);
    let output =
        params.iter().fold(Tensor::from_vec_f64(x.to_vec(), &[x.len(), 1]), |a, (w, b)| w.matmul(&a).add(b).sigmoid());
    println!("\n    the engine's trace of this backward pass:\n{}", engine_loss(&output, y).backward_explained());
}

/// Prints values; the tracker remembers the largest hand-vs-engine difference.
struct Narrator {
    max_diff: f64,
}

fn fmt(values: &[f64]) -> String {
    let parts: Vec<String> = values.iter().map(|v| format!("{v:.6}")).collect();
    format!("[{}]", parts.join(", "))
}

/// A number as short as it can be at 6 decimals: `2`, `0.1`, `0.524979`.
fn short(v: f64) -> String {
    let s = format!("{v:.6}");
    let s = s.trim_end_matches('0').trim_end_matches('.');
    if s == "-0" {
        "0".to_string()
    } else {
        s.to_string()
    }
}

fn fmt_matrix(values: &[f64], cols: usize) -> String {
    let rows: Vec<String> = values.chunks(cols).map(fmt).collect();
    format!("[{}]", rows.join(", "))
}

impl Narrator {
    /// One quantity: the hand value, the engine's, and their difference.
    fn show(&mut self, name: &str, hand: &[f64], engine: &[f64], cols: Option<usize>) {
        self.compare(name, hand, "  engine", engine, cols);
    }

    /// Two computations of one quantity, printed one above the other with their difference.
    fn compare(&mut self, name: &str, first: &[f64], second_name: &str, second: &[f64], cols: Option<usize>) {
        assert_eq!(first.len(), second.len(), "{name}: the two computations disagree on the size");
        let diff = first.iter().zip(second).map(|(h, e)| (h - e).abs()).fold(0.0, f64::max);
        self.max_diff = self.max_diff.max(diff);
        let show = |v: &[f64]| cols.map_or_else(|| fmt(v), |c| fmt_matrix(v, c));
        println!("    {name:<38} {}", show(first));
        println!("    {second_name:<38} {}   |diff| {diff:.1e}", show(second));
    }

    /// Narrates one example: the forward pass with its arithmetic, the deltas, gradients and
    /// update, each by hand and by the engine.
    fn narrate(&mut self, layers: &[Layer], x: &[f64], y: &[f64], lr: f64) {
        let hand = by_hand(layers, x, y, lr);
        let engine = by_engine(layers, x, y, lr);
        let depth = layers.len();
        let name = |l: usize| if depth == 1 { String::new() } else { format!("{}", l + 1) };
        let input_name = |l: usize| if l == 0 { "x".to_string() } else { format!("a{}", name(l - 1)) };
        if depth == 1 {
            println!("  forward: z = W x + b, a = sigmoid(z)");
        } else {
            println!("  forward: z_l = W_l a_(l-1) + b_l, a_l = sigmoid(z_l), with a_0 = x");
        }
        for (l, layer) in layers.iter().enumerate() {
            let input = if l == 0 { x.to_vec() } else { hand.a[l - 1].clone() };
            // Each z written out as its sum of products, signs folded in: "0.1*1 - 0.2*2 + 0.1".
            for (i, row) in layer.w.chunks(layer.cols).enumerate() {
                let mut sum = String::new();
                for (j, (&w, &v)) in row.iter().zip(&input).enumerate() {
                    let (magnitude, v) = (short(w.abs()), short(v));
                    sum += &match (j, w < 0.0) {
                        (0, false) => format!("{magnitude}*{v}"),
                        (0, true) => format!("-{magnitude}*{v}"),
                        (_, false) => format!(" + {magnitude}*{v}"),
                        (_, true) => format!(" - {magnitude}*{v}"),
                    };
                }
                let b = layer.b[i];
                let sign = if b < 0.0 { "-" } else { "+" };
                println!("    z{}[{i}] = {sum} {sign} {} = {}", name(l), short(b.abs()), short(hand.z[l][i]));
            }
            let z_name = format!("z{0} = W{0} {1} + b{0}", name(l), input_name(l));
            self.show(&z_name, &hand.z[l], &engine.z[l], None);
            self.show(&format!("a{0} = sigmoid(z{0})", name(l)), &hand.a[l], &engine.a[l], None);
        }
        self.show("loss = -sum(y ln a + (1-y) ln(1-a))", &[hand.loss], &[engine.loss], None);

        println!("  backward:");
        let last = depth - 1;
        self.show(&format!("delta{} = a{} - y", name(last), name(last)), &hand.delta[last], &engine.delta[last], None);
        for l in (0..last).rev() {
            self.show(
                &format!("delta{} = (W{}^T delta{}) * a{}(1-a{})", name(l), name(l + 1), name(l + 1), name(l), name(l)),
                &hand.delta[l],
                &engine.delta[l],
                None,
            );
            // What the documents' formula (no sigmoid-derivative factor) would give instead.
            let next = &layers[l + 1];
            let without: Vec<f64> = (0..next.cols)
                .map(|j| (0..next.rows).map(|i| next.w[i * next.cols + j] * hand.delta[l + 1][i]).sum())
                .collect();
            println!("    {:<38} {}   (the documents' formula: wrong)", "  without a(1-a) it would be", fmt(&without));
        }
        for (l, layer) in layers.iter().enumerate() {
            self.show(
                &format!("dL/dW{0} = delta{0} {1}^T", name(l), input_name(l)),
                &hand.dw[l],
                &engine.dw[l],
                Some(layer.cols),
            );
            self.show(&format!("dL/db{} = delta{}", name(l), name(l)), &hand.db[l], &engine.db[l], None);
        }
        println!("  update with learning rate {lr}: W <- W - {lr} dL/dW, b <- b - {lr} dL/db");
        for (l, layer) in layers.iter().enumerate() {
            self.show(&format!("W{} after the step", name(l)), &hand.new_w[l], &engine.new_w[l], Some(layer.cols));
            self.show(&format!("b{} after the step", name(l)), &hand.new_b[l], &engine.new_b[l], None);
        }
        self.show("loss after the step", &[hand.loss_after], &[engine.loss_after], None);
        let uncut = engine_gradients_uncut(layers, x, y);
        let cut: Vec<f64> = engine.dw.iter().zip(&engine.db).flat_map(|(w, b)| w.iter().chain(b)).copied().collect();
        self.compare("all gradients: backward layer by layer", &cut, "  in one backward pass", &uncut, None);
    }
}

fn main() {
    let mut flags = common::Flags::from_env();
    let lr: f64 = flags.get("lr", 0.1, "learning rate of the gradient step");
    let explain = flags.switch("explain", "also print the engine's own trace of each example's backward pass");
    flags.finish("glassbox backprop: the documents' two worked examples, by hand and by autograd");
    let mut narrator = Narrator { max_diff: 0.0 };

    println!("(a) one sigmoid layer, binary cross-entropy, one gradient step (learning rate {lr})");
    println!("    W = [[0.1, 0.2], [0.3, 0.4]], b = [0.1, 0.2], x = [1, 2], y = [1, 0]");
    let single = [Layer { w: vec![0.1, 0.2, 0.3, 0.4], rows: 2, cols: 2, b: vec![0.1, 0.2] }];
    narrator.narrate(&single, &[1.0, 2.0], &[1.0, 0.0], lr);
    if explain {
        explain_uncut(&single, &[1.0, 2.0], &[1.0, 0.0]);
    }

    println!("\n(b) 3 inputs -> 2 sigmoid -> 2 sigmoid -> 1 sigmoid output, binary cross-entropy, target 1");
    let deep = [
        Layer { w: vec![0.1, -0.2, 0.1, 0.05, 0.1, -0.15], rows: 2, cols: 3, b: vec![0.1, 0.0] },
        Layer { w: vec![0.3, -0.2, 0.4, 0.1], rows: 2, cols: 2, b: vec![0.0, -0.1] },
        Layer { w: vec![0.5, -0.4], rows: 1, cols: 2, b: vec![0.1] },
    ];
    println!("    W1 = [[0.1, -0.2, 0.1], [0.05, 0.1, -0.15]], b1 = [0.1, 0.0]");
    println!("    W2 = [[0.3, -0.2], [0.4, 0.1]], b2 = [0.0, -0.1]");
    println!("    W3 = [[0.5, -0.4]], b3 = [0.1], x = [1, 2, 3], y = 1");
    narrator.narrate(&deep, &[1.0, 2.0, 3.0], &[1.0], lr);
    if explain {
        explain_uncut(&deep, &[1.0, 2.0, 3.0], &[1.0]);
    }

    println!(
        "\nWhy the output delta is a - y: with L = -(y ln a + (1-y) ln(1-a)) and a = sigmoid(z),\n\
         dL/da = (a - y) / (a (1 - a)) and da/dz = a (1 - a): the two factors cancel, so\n\
         delta = dL/dz = a - y. (With squared error the a (1 - a) factor would remain.)\n\
         Hidden layers have no such cancellation: delta_l = (W_(l+1)^T delta_(l+1)) * a_l (1 - a_l)."
    );
    println!(
        "\nWhere these values differ from the documents' printed walk-through:\n\
         - (a) the documents print W x + b = [0.3, 0.8]. It is [0.6, 1.3]:\n\
         \x20 0.1*1 + 0.2*2 + 0.1 = 0.6 and 0.3*1 + 0.4*2 + 0.2 = 1.3. Every later number there\n\
         \x20 (activations, loss, delta, gradients, update) inherits that arithmetic slip; the\n\
         \x20 values above are the corrected ones, and the engine agrees with them.\n\
         - (b) the documents' hidden-layer deltas are W^T delta without the sigmoid-derivative\n\
         \x20 factor a (1 - a) (the lines marked 'wrong' above). The chain rule through a = sigmoid(z)\n\
         \x20 requires it; since a (1 - a) <= 1/4, leaving it out overstates the hidden deltas, and\n\
         \x20 every hidden weight gradient, at least fourfold."
    );
    println!("\nlargest difference between hand and engine: {:.1e} (allowed {AGREEMENT:.0e})", narrator.max_diff);
    if narrator.max_diff > AGREEMENT {
        eprintln!("error: the engine and the textbook formulas disagree");
        std::process::exit(1);
    }
}
