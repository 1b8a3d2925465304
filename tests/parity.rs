//! Parity with PyTorch: layers run on the inputs and weights of fixtures that
//! `scripts/make_parity_fixtures.py` wrote with PyTorch, and must reproduce PyTorch's outputs
//! and the gradients of `sum(output * upstream)` for the input and every parameter.
//!
//! Each case runs twice: in f64 (the fixtures' precision), where any difference beyond
//! rounding is a wrong formula, and in f32, the training type, at ~1e-5.

use std::path::PathBuf;

use glassbox::io::load_safetensors;
use glassbox::io::TensorFile;
use glassbox::nn::gpt::Block;
use glassbox::nn::Module;
use glassbox::rng::Rng;
use glassbox::{DType, Tensor};

/// f64: the same math in another order differs by a few ulps of the largest intermediate.
const F64_TOL: f64 = 1e-10;
/// f32: a handful of roundings of ~6e-8 relative through a few layers, relative to max(1, |x|).
const F32_TOL: f64 = 2e-5;

fn fixture(name: &str) -> TensorFile {
    let path =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/parity").join(format!("{name}.safetensors"));
    load_safetensors(&path).unwrap_or_else(|e| panic!("{e}"))
}

/// The fixture tensor `name` as a fresh leaf of `dtype` that requires grad.
fn leaf(f: &TensorFile, name: &str, dtype: DType) -> Tensor {
    let t = f.get(name).unwrap_or_else(|| panic!("fixture has no tensor {name}"));
    Tensor::from_vec_f64(t.to_vec_f64(), t.shape()).to_dtype(dtype).detach().requires_grad_()
}

fn assert_matches(what: &str, got: &Tensor, expected: &Tensor, tol: f64) {
    assert_eq!(got.shape(), expected.shape(), "{what}: shape");
    let (g, e) = (got.to_vec_f64(), expected.to_vec_f64());
    for (i, (a, b)) in g.iter().zip(&e).enumerate() {
        assert!((a - b).abs() <= tol * b.abs().max(1.0), "{what}[{i}]: glassbox {a}, PyTorch {b} (tolerance {tol})");
    }
}

fn check_gpt_block(dtype: DType, tol: f64) {
    let f = fixture("gpt_block");
    let n_head: usize = f.metadata["n_head"].parse().unwrap();
    let c = f.get("input").unwrap().shape()[2];
    let mut block = Block::new(c, n_head, 1, &mut Rng::new(0));
    let p = |name: &str| leaf(&f, name, dtype);
    block.ln_1.weight = p("ln_1.weight");
    block.ln_1.bias = p("ln_1.bias");
    block.attn.c_attn.weight = p("attn.c_attn.weight");
    block.attn.c_attn.bias = Some(p("attn.c_attn.bias"));
    block.attn.c_proj.weight = p("attn.c_proj.weight");
    block.attn.c_proj.bias = Some(p("attn.c_proj.bias"));
    block.ln_2.weight = p("ln_2.weight");
    block.ln_2.bias = p("ln_2.bias");
    block.c_fc.weight = p("mlp.c_fc.weight");
    block.c_fc.bias = Some(p("mlp.c_fc.bias"));
    block.mlp_proj.weight = p("mlp.c_proj.weight");
    block.mlp_proj.bias = Some(p("mlp.c_proj.bias"));
    let x = p("input");
    let out = block.forward(&x);
    assert_matches("gpt_block output", &out, f.get("output").unwrap(), tol);
    out.backward_with_grad(&leaf(&f, "upstream", dtype).detach());
    assert_matches("gpt_block grad.input", &x.grad().unwrap(), f.get("grad.input").unwrap(), tol);
    let params = block.named_parameters();
    assert_eq!(params.len(), 12);
    for (name, t) in params {
        let expected = f.get(&format!("grad.{name}")).unwrap_or_else(|| panic!("fixture has no grad.{name}"));
        assert_matches(&format!("gpt_block grad.{name}"), &t.grad().unwrap(), expected, tol);
    }
}

#[test]
fn gpt_block_matches_pytorch_in_f64() {
    check_gpt_block(DType::F64, F64_TOL);
}

#[test]
fn gpt_block_matches_pytorch_in_f32() {
    check_gpt_block(DType::F32, F32_TOL);
}

fn check_cross_entropy(dtype: DType, tol: f64) {
    let f = fixture("cross_entropy");
    let logits = leaf(&f, "input", dtype);
    let targets: Vec<usize> = f.get("targets").unwrap().to_vec_f64().iter().map(|&t| t as usize).collect();
    let loss = logits.cross_entropy(&targets);
    assert_matches("cross_entropy loss", &loss, f.get("output").unwrap(), tol);
    loss.backward_with_grad(&leaf(&f, "upstream", dtype).detach());
    assert_matches("cross_entropy grad", &logits.grad().unwrap(), f.get("grad.input").unwrap(), tol);
}

#[test]
fn cross_entropy_matches_pytorch_in_f64_and_f32() {
    check_cross_entropy(DType::F64, F64_TOL);
    check_cross_entropy(DType::F32, F32_TOL);
}

fn check_lstm(dtype: DType, tol: f64) {
    let f = fixture("lstm");
    let p = |name: &str| leaf(&f, name, dtype);
    let lstm = glassbox::nn::Lstm::from_weights(p("weight_ih_l0"), p("weight_hh_l0"), p("bias_ih_l0"), p("bias_hh_l0"));
    let x = p("input");
    let out = lstm.forward(&x);
    assert_matches("lstm output", &out, f.get("output").unwrap(), tol);
    out.backward_with_grad(&leaf(&f, "upstream", dtype).detach());
    assert_matches("lstm grad.input", &x.grad().unwrap(), f.get("grad.input").unwrap(), tol);
    for (name, t) in lstm.named_parameters() {
        let expected = f.get(&format!("grad.{name}")).unwrap_or_else(|| panic!("fixture has no grad.{name}"));
        assert_matches(&format!("lstm grad.{name}"), &t.grad().unwrap(), expected, tol);
    }
}

#[test]
fn lstm_matches_pytorch_in_f64_and_f32() {
    check_lstm(DType::F64, F64_TOL);
    check_lstm(DType::F32, F32_TOL);
}

fn check_conv_pool(dtype: DType, tol: f64) {
    let f = fixture("conv_pool");
    let meta = |k: &str| f.metadata[k].parse::<usize>().unwrap();
    let (stride, padding, pool) = (meta("stride"), meta("padding"), meta("pool"));
    let (x, w, b) = (leaf(&f, "input", dtype), leaf(&f, "weight", dtype), leaf(&f, "bias", dtype));
    let out = x.conv2d(&w, Some(&b), [stride, stride], [padding, padding]).max_pool2d([pool, pool], [pool, pool]);
    assert_matches("conv_pool output", &out, f.get("output").unwrap(), tol);
    out.backward_with_grad(&leaf(&f, "upstream", dtype).detach());
    for (name, t) in [("input", &x), ("weight", &w), ("bias", &b)] {
        assert_matches(
            &format!("conv_pool grad.{name}"),
            &t.grad().unwrap(),
            f.get(&format!("grad.{name}")).unwrap(),
            tol,
        );
    }
}

#[test]
fn conv_and_max_pool_match_pytorch_in_f64_and_f32() {
    check_conv_pool(DType::F64, F64_TOL);
    check_conv_pool(DType::F32, F32_TOL);
}
