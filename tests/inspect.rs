//! The instruments of `glassbox::inspect`: backward traces, DOT pictures, training health,
//! metrics files and plot scaling, each on a case small enough to work out by hand.

mod common;

use std::collections::{HashMap, HashSet};

use common::{assert_close, F32_TIGHT};
use glassbox::autograd::backward::formula;
use glassbox::autograd::OpKind;
use glassbox::inspect::health::{dead_units, gate_saturation, HealthReport, WeightSnapshot};
use glassbox::inspect::plot::{linear_ticks, log_ticks, to_svg, Chart, Scale};
use glassbox::inspect::{capture_traces, to_dot, to_dot_with, DotOptions, MetricsLog};
use glassbox::optim::{Optimizer, Sgd};
use glassbox::tensor::TensorId;
use glassbox::Tensor;

/// `loss = sum(2 (x * w))` with x = [1, 2], w = [3, 4]. Backward by hand:
/// sum gets 1 and sends [1, 1]; affine gets [1, 1] and sends [2, 2]; mul gets [2, 2] and sends
/// dx = [2, 2] * w = [6, 8] (norm 10) and dw = [2, 2] * x = [2, 4] (norm sqrt 20).
fn small_graph() -> (Tensor, Tensor, Tensor) {
    let x = Tensor::from_vec(vec![1.0, 2.0], &[2]).requires_grad_();
    let w = Tensor::from_vec(vec![3.0, 4.0], &[2]).requires_grad_();
    let loss = x.mul(&w).mul_scalar(2.0).sum_all();
    (x, w, loss)
}

#[test]
fn trace_lists_every_node_in_backward_order_with_hand_computed_norms() {
    let (x, w, loss) = small_graph();
    let trace = loss.backward_explained();
    let names: Vec<&str> = trace.nodes.iter().map(|n| n.name()).collect();
    assert_eq!(&names[..3], ["sum", "affine", "mul"]);
    assert_eq!(names[3..].iter().filter(|n| **n == "leaf").count(), 2, "{names:?}");

    let norms: Vec<f64> = trace.nodes.iter().map(|n| n.grad_norm).collect();
    let leaf_x = trace.node(x.id()).expect("x is traced").grad_norm;
    let leaf_w = trace.node(w.id()).expect("w is traced").grad_norm;
    assert_close(&norms[..3], &[1.0, 2f64.sqrt(), 8f64.sqrt()], F32_TIGHT, "norms arriving at sum, affine, mul");
    assert_close(&[leaf_x, leaf_w], &[10.0, 20f64.sqrt()], F32_TIGHT, "norms arriving at the leaves");

    let sent = |i: usize| -> Vec<f64> { trace.nodes[i].inputs.iter().map(|x| x.grad_norm.unwrap()).collect() };
    assert_close(&sent(0), &[2f64.sqrt()], F32_TIGHT, "sum sends");
    assert_close(&sent(1), &[8f64.sqrt()], F32_TIGHT, "affine sends");
    assert_close(&sent(2), &[10.0, 20f64.sqrt()], F32_TIGHT, "mul sends to x, w");

    // Held for backward: sum and affine keep one [2] f32 input each, mul keeps x and w.
    let saved: Vec<usize> = trace.nodes.iter().map(|n| n.saved_bytes).collect();
    assert_eq!(saved, [8, 8, 16, 0, 0]);
    assert_eq!(trace.root_shape, Vec::<usize>::new());
    assert!(trace.total_time >= trace.nodes.iter().map(|n| n.time).sum());

    // The kernels are the ones the formulas call: mul's backward is two elementwise products.
    let mul_kernels: Vec<String> = trace.nodes[2].kernels.iter().map(|k| k.to_string()).collect();
    assert_eq!(mul_kernels, ["elementwise::binary[mul]/f32", "elementwise::binary[mul]/f32"]);
    assert!(trace.nodes[1].kernels.iter().any(|k| k.variant == Some("affine")));
    // Tracing leaves the gradients exactly as a plain backward would.
    assert_eq!(x.grad().unwrap().to_vec(), vec![6.0, 8.0]);
    assert_eq!(w.grad().unwrap().to_vec(), vec![2.0, 4.0]);
}

/// Every tensor reachable from `root` through tensors that require a gradient.
fn reachable(root: &Tensor) -> HashSet<TensorId> {
    let mut seen = HashSet::new();
    let mut stack = vec![root.clone()];
    while let Some(t) = stack.pop() {
        if t.requires_grad() && seen.insert(t.id()) {
            if let Some(op) = t.op() {
                stack.extend(op.inputs().into_iter().cloned());
            }
        }
    }
    seen
}

#[test]
fn trace_of_a_diamond_has_each_node_once_and_after_all_its_consumers() {
    let x = Tensor::randn(&[3, 4], 1).requires_grad_();
    let w = Tensor::randn(&[4, 2], 2).requires_grad_();
    let h = x.matmul(&w);
    // h feeds two branches that meet again: its node may only run once both have sent theirs.
    let loss = h.tanh().add(&h.relu().mul(&h)).softmax(1).sum(&[0], false).mean_all();
    let trace = loss.backward_explained();

    let position: HashMap<TensorId, usize> = trace.nodes.iter().enumerate().map(|(i, n)| (n.id, i)).collect();
    assert_eq!(position.len(), trace.nodes.len(), "a node was traced twice");
    assert_eq!(position.keys().copied().collect::<HashSet<_>>(), reachable(&loss), "traced nodes != graph");
    for (i, node) in trace.nodes.iter().enumerate() {
        for input in &node.inputs {
            assert!(position[&input.id] > i, "{} ran before its input's consumer finished", node.name());
        }
    }
}

#[test]
fn capture_collects_each_backward_and_nests() {
    let (_, _, loss) = small_graph();
    let ((inner_count, ()), outer) = capture_traces(|| {
        loss.backward();
        let ((), inner) = capture_traces(|| loss.backward());
        (inner.len(), loss.backward())
    });
    assert_eq!(inner_count, 1);
    assert_eq!(outer.len(), 2, "the inner scope keeps its own trace");
    let ((), none) = capture_traces(|| {});
    assert!(none.is_empty());
}

#[test]
fn every_op_kind_has_a_formula_that_speaks_of_the_upstream_gradient() {
    for &kind in OpKind::ALL {
        let text = formula(kind);
        assert!(text.contains('g') && text.contains('='), "{}: formula {text:?}", kind.name());
    }
}

#[test]
fn trace_prints_one_row_and_the_formula_per_node() {
    let (_, _, loss) = small_graph();
    let text = loss.backward_explained().to_string();
    assert!(text.starts_with("backward of a [] f32 tensor: 5 nodes"), "{text}");
    for needle in ["sum", "affine", "mul", "leaf", "da = g * b, db = g * a", "elementwise::binary[mul]/f32 x2", "32 B"]
    {
        assert!(text.contains(needle), "missing {needle:?} in:\n{text}");
    }
}

#[test]
fn dot_has_one_node_per_tensor_and_one_edge_per_input() {
    let x = Tensor::ones(&[4, 3]);
    let w = Tensor::ones(&[3, 2]).requires_grad_();
    let b = Tensor::zeros(&[2]).requires_grad_();
    let loss = x.matmul(&w).add(&b).relu().sum_all();
    let dot = to_dot(&loss);
    assert!(dot.starts_with("digraph autograd {\n") && dot.ends_with("}\n"), "{dot}");
    assert_eq!(dot.matches('{').count(), dot.matches('}').count(), "unbalanced braces:\n{dot}");
    // Tensors: x, w, b, matmul, add, relu, sum. Edges: x, w -> matmul; matmul, b -> add; -> relu; -> sum.
    let node_lines = dot.lines().filter(|l| l.trim_start().starts_with('n') && l.contains("[label=")).count();
    assert_eq!(node_lines, 7, "{dot}");
    assert_eq!(dot.matches(" -> ").count(), 6, "{dot}");
    assert_eq!(dot.matches("shape=box").count(), 3, "three leaves drawn as boxes:\n{dot}");
    assert!(dot.contains("label=\"matmul\\n[4, 2]\""), "{dot}");
    assert!(dot.contains("const\\n[4, 3]") && dot.contains("style=dashed"), "data is a dashed constant:\n{dot}");
    assert_eq!(dot.matches("peripheries=2").count(), 1, "the root is marked once:\n{dot}");
}

#[test]
fn dot_with_trace_labels_edges_with_gradient_norms_and_names_leaves() {
    let (x, w, loss) = small_graph();
    let trace = loss.backward_explained();
    let names = vec![("input \"x\"".to_string(), x.clone()), ("weight".to_string(), w.clone())];
    let dot = to_dot_with(&loss, &DotOptions { names: &names, trace: Some(&trace) });
    // mul sends 10 to x and sqrt(20) = 4.472 to w; affine sends sqrt(8) = 2.828 to mul.
    for label in ["label=\" 10.00\"", "label=\" 4.472\"", "label=\" 2.828\"", "label=\" 1.414\""] {
        assert!(dot.contains(label), "missing {label} in:\n{dot}");
    }
    assert!(dot.contains("input \\\"x\\\"\\n[2]\\n|grad| 10.00"), "quotes escaped, leaf norm shown:\n{dot}");
    assert!(dot.contains("weight\\n[2]\\n|grad| 4.472"), "{dot}");
}

#[test]
fn health_reports_hand_computed_norms_ratios_and_missing_gradients() {
    // w = [[3, 0], [0, 4]] (|w| = 5) gets the gradient [[1, 1], [1, 1]] (|g| = 2) from
    // sum(w); SGD with lr 0.5 moves it by 0.5 everywhere: |dw| = 1, ratio 0.2.
    let w = Tensor::from_vec(vec![3.0, 0.0, 0.0, 4.0], &[2, 2]).requires_grad_();
    let unused = Tensor::ones(&[3]).requires_grad_();
    let dead = Tensor::ones(&[2]).requires_grad_();
    let params = vec![("w".to_string(), w.clone()), ("unused".to_string(), unused), ("dead".to_string(), dead.clone())];
    let mut opt = Sgd::new(params.iter().map(|(_, t)| t.clone()).collect(), 0.5);
    w.sum_all().add(&dead.relu().mul_scalar(0.0).sum_all()).backward();
    let before = WeightSnapshot::take(&params);
    opt.step();
    let report = HealthReport::check(&params, Some(&before));

    let p = &report.params[0];
    assert_eq!(p.grad_norm, Some(2.0));
    // After the step w = [[2.5, -0.5], [-0.5, 3.5]]: |w| = sqrt(6.25 + 0.25 + 0.25 + 12.25).
    assert_close(&[p.weight_norm], &[19f64.sqrt()], 1e-7, "weight norm after the step");
    assert_close(&[p.update_ratio.unwrap()], &[1.0 / 5.0], 1e-7, "update ratio |dw| / |w_before|");
    assert!(p.warning.as_deref().unwrap().contains("20%"), "{:?}", p.warning);
    assert!(report.params[1].grad_norm.is_none());
    assert!(report.params[1].warning.as_deref().unwrap().starts_with("no gradient"));
    assert_eq!(report.params[2].grad_norm, Some(0.0));
    assert!(report.params[2].warning.as_deref().unwrap().contains("all zeros"));
    assert_eq!(report.warnings().len(), 3);
    let text = report.to_string();
    assert!(text.contains("unused") && text.contains("0.2000"), "{text}");
}

#[test]
fn dead_units_and_gate_saturation_count_by_hand() {
    // Pre-activations of 2 examples x 3 units: unit 0 never positive, unit 2 positive once.
    let pre = Tensor::from_vec(vec![-1.0, 2.0, 0.0, 0.0, 1.0, 0.5], &[2, 3]);
    let d = dead_units(&pre);
    assert_eq!((d.dead, d.units), (1, 3));
    assert_eq!(dead_units(&pre.relu()), d, "activations and pre-activations agree");
    // Units of a [batch, channels, width] tensor are (channel, position) pairs.
    let conv = Tensor::from_vec(vec![0.0, 1.0, 0.0, 0.0, 0.0, 0.0, 0.0, 2.0], &[2, 2, 2]);
    assert_eq!(dead_units(&conv).dead, 2);

    let gates = Tensor::from_vec(vec![0.01, 0.04, 0.05, 0.5, 0.95, 0.96, 0.999, 0.3], &[2, 4]);
    assert_eq!(gate_saturation(&gates), 4.0 / 8.0);
    let report = HealthReport::default().with_dead_units("relu1", &pre).with_gate_saturation("lstm gates", &gates);
    let text = report.to_string();
    assert!(text.contains("dead units in relu1: 1 of 3 (33.3%)"), "{text}");
    assert!(text.contains("saturated gates in lstm gates: 50.0%"), "{text}");
}

#[test]
fn metrics_log_writes_csv_and_a_two_chart_svg() {
    let mut log = MetricsLog::new(&["train_loss", "test_loss", "test_accuracy"]);
    log.record(0, &[("train_loss", 2.5)]);
    log.record(10, &[("train_loss", 1.25)]);
    log.record(10, &[("test_loss", 1.5), ("test_accuracy", 0.75)]);
    log.record(20, &[("train_loss", 0.5)]);
    let dir = std::env::temp_dir().join(format!("glassbox-metrics-test-{}", std::process::id()));
    let charts = [
        log.chart("loss", "cross-entropy", &["train_loss", "test_loss"], true),
        log.chart("accuracy", "fraction correct", &["test_accuracy"], false),
    ];
    let (csv_path, svg_path) = log.write(&dir, &charts).unwrap();
    let csv = std::fs::read_to_string(&csv_path).unwrap();
    assert_eq!(csv, "step,train_loss,test_loss,test_accuracy\n0,2.5,,\n10,1.25,1.5,0.75\n20,0.5,,\n");
    let svg = std::fs::read_to_string(&svg_path).unwrap();
    assert!(svg.starts_with("<svg") && svg.trim_end().ends_with("</svg>"));
    assert_eq!(svg.matches("<g class=\"chart\">").count(), 2);
    assert_eq!(svg.matches("<polyline").count(), 3, "one line per series");
    for text in [">loss<", ">accuracy<", ">train_loss<", ">test_loss<", ">test_accuracy<", ">step<"] {
        assert!(svg.contains(text), "missing {text}");
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn plot_scales_map_data_to_pixels_and_ticks_are_round() {
    let linear = Scale { lo: 0.0, hi: 10.0, from: 100.0, to: 600.0, log: false };
    assert_eq!((linear.map(0.0), linear.map(5.0), linear.map(10.0)), (100.0, 350.0, 600.0));
    let log = Scale { lo: 1.0, hi: 100.0, from: 300.0, to: 100.0, log: true };
    assert_close(&[log.map(1.0), log.map(10.0), log.map(100.0)], &[300.0, 200.0, 100.0], 1e-12, "log scale");

    let (lo, hi, ticks) = linear_ticks(0.03, 2.31, 6);
    assert_eq!((lo, hi), (0.0, 2.5));
    assert_close(&ticks, &[0.0, 0.5, 1.0, 1.5, 2.0, 2.5], 1e-12, "linear ticks");
    // Two decades of data: the axis adds 5% of its log width each side, ticks at 1, 2, 5.
    let (lo, hi, ticks) = log_ticks(0.02, 2.0);
    assert_close(&[lo.log10(), hi.log10()], &[0.02f64.log10() - 0.1, 2f64.log10() + 0.1], 1e-12, "log axis ends");
    assert_close(&ticks, &[0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0], 1e-12, "log ticks");
    // A narrow range gets finer mantissas; a wide one only powers of ten.
    assert_close(&log_ticks(0.15, 0.3).2, &[0.2, 0.3], 1e-12, "narrow log ticks");
    assert_eq!(log_ticks(1e-6, 1e3).2.len(), 10);

    // 640 x 320: the plot area runs x 78..616 and y 58..268; the axes span 0..10 exactly.
    let svg = to_svg(&[Chart::new("line").series("y = x", vec![(0.0, 0.0), (10.0, 10.0)])], 640, 320);
    assert!(svg.contains("<polyline points=\"78.0,268.0 616.0,58.0\""), "{svg}");
    assert_eq!(svg.matches("<circle").count(), 2, "sparse series get markers");
    // A NaN breaks the line in two instead of poisoning it.
    let svg =
        to_svg(&[Chart::new("gap").series("s", vec![(0.0, 1.0), (1.0, 2.0), (2.0, f64::NAN), (3.0, 1.0)])], 640, 320);
    assert_eq!(svg.matches("<polyline").count(), 2);
}
