//! Misuse of every public op panics at the op's front door with a message a person can act
//! on: it names the op, the shapes involved and what was expected. One table row per misuse:
//! the call that must panic, and the substrings its message must contain.
//!
//! A second table runs the ops on empty tensors and zero-size dims, which are legal and must
//! give the right (empty) shapes rather than panic inside a kernel.
//!
//! Mixed devices cannot be tested until a second device exists: `Device` has only `Cpu`, and
//! every op checks device equality in `check_same_kind` alongside the dtype check exercised
//! here. When CUDA lands, each "dtypes differ" row gets a "different devices" twin.

use std::panic::{catch_unwind, AssertUnwindSafe};

use glassbox::nn::{Linear, Module};
use glassbox::rng::Rng;
use glassbox::tensor::{CpuStorage, HostBuffer, Layout, Storage};
use glassbox::{DType, Tensor};

/// One misuse: `call` must panic with a message containing every one of `expect`.
struct Misuse {
    call: fn(),
    expect: &'static [&'static str],
}

fn m(shape: &[usize]) -> Tensor {
    Tensor::zeros(shape)
}

fn f64s(shape: &[usize]) -> Tensor {
    Tensor::full_dtype(shape, 0.0, DType::F64)
}

const MISUSES: &[Misuse] = &[
    // Elementwise binary ops and comparisons: broadcasting and dtypes.
    Misuse { call: || drop(m(&[2, 3]).add(&m(&[4, 5]))), expect: &["add", "[2, 3]", "[4, 5]", "cannot be broadcast"] },
    Misuse {
        call: || drop(m(&[2, 3]).sub(&m(&[2]))),
        expect: &["sub", "[2, 3]", "[2]", "trailing dims must be equal or 1"],
    },
    Misuse { call: || drop(m(&[3]).mul(&m(&[0]))), expect: &["mul", "[3]", "[0]", "cannot be broadcast"] },
    Misuse { call: || drop(m(&[2, 3]).div(&f64s(&[2, 3]))), expect: &["div", "dtypes differ", "f32", "f64", "[2, 3]"] },
    Misuse { call: || drop(m(&[2]).gt(&m(&[3]))), expect: &["gt", "[2]", "[3]", "cannot be broadcast"] },
    Misuse { call: || drop(m(&[2]).ge(&m(&[3]))), expect: &["ge", "[2]", "[3]"] },
    Misuse { call: || drop(m(&[2]).lt(&m(&[3]))), expect: &["lt", "[2]", "[3]"] },
    Misuse { call: || drop(m(&[2]).le(&m(&[3]))), expect: &["le", "[2]", "[3]"] },
    Misuse { call: || drop(m(&[2]).eq(&f64s(&[2]))), expect: &["eq", "dtypes differ", "f32", "f64"] },
    Misuse {
        call: || drop(Tensor::where_cond(&m(&[4]), &m(&[2, 3]), &m(&[3]))),
        expect: &["where", "condition [4]", "on_true [2, 3]", "on_false [3]", "cannot be broadcast"],
    },
    Misuse {
        call: || drop(Tensor::where_cond(&f64s(&[3]), &m(&[3]), &m(&[3]))),
        expect: &["where", "dtypes differ", "f64", "f32"],
    },
    Misuse { call: || drop(m(&[2, 3]).masked_fill(&m(&[2]), 1.0)), expect: &["where", "condition [2]", "[2, 3]"] },
    // Reductions: axes and empty dims.
    Misuse { call: || drop(m(&[2, 3]).sum(&[2], false)), expect: &["sum", "dim 2", "[2, 3]", "rank 2"] },
    Misuse { call: || drop(m(&[2, 3]).mean(&[0, 5], true)), expect: &["mean", "dim 5", "[2, 3]"] },
    Misuse { call: || drop(m(&[2, 0]).max(&[1], false)), expect: &["max", "dim 1 of size 0", "[2, 0]"] },
    Misuse { call: || drop(m(&[0]).max(&[0], false)), expect: &["max", "size 0", "[0]"] },
    Misuse { call: || drop(Tensor::scalar(1.0).sum(&[0], false)), expect: &["sum", "dim 0", "shape []", "rank 0"] },
    Misuse {
        call: || drop(m(&[2, 3]).sum_to_shape(&[4])),
        expect: &["sum_to_shape", "[4]", "does not broadcast to [2, 3]"],
    },
    Misuse { call: || drop(m(&[2, 3]).argmax(2)), expect: &["argmax", "dim 2", "[2, 3]"] },
    Misuse { call: || drop(m(&[3, 0]).argmax(1)), expect: &["argmax", "dim 1 has size 0", "[3, 0]"] },
    // Matmul: rank, inner dims, batch dims, dtype.
    Misuse {
        call: || drop(m(&[2, 3]).matmul(&m(&[4, 5]))),
        expect: &["matmul", "[2, 3]", "[4, 5]", "inner dims 3 vs 4"],
    },
    Misuse { call: || drop(m(&[3]).matmul(&m(&[3, 2]))), expect: &["matmul", "at least 2 dims", "[3]", "[3, 2]"] },
    Misuse { call: || drop(m(&[2, 3]).matmul(&Tensor::scalar(1.0))), expect: &["matmul", "at least 2 dims", "[]"] },
    Misuse {
        call: || drop(m(&[2, 2, 3]).matmul(&m(&[3, 3, 4]))),
        expect: &["matmul", "batch dims", "[2, 2, 3]", "[3, 3, 4]", "cannot be broadcast"],
    },
    Misuse { call: || drop(m(&[2, 3]).matmul(&f64s(&[3, 2]))), expect: &["matmul", "dtypes differ", "f32", "f64"] },
    Misuse {
        call: || drop(m(&[0, 3]).matmul(&m(&[2, 0]))),
        expect: &["matmul", "[0, 3]", "[2, 0]", "inner dims 3 vs 2"],
    },
    // Views and shapes.
    Misuse {
        call: || drop(m(&[2, 3]).reshape(&[4, 2])),
        expect: &["reshape", "[2, 3]", "6 elements", "[4, 2]", "8 elements"],
    },
    Misuse { call: || drop(m(&[0, 3]).reshape(&[1])), expect: &["reshape", "[0, 3]", "0 elements", "[1]"] },
    Misuse {
        call: || drop(m(&[0]).reshape(&[usize::MAX, 2, 0])),
        expect: &["reshape", "more elements than this machine can address"],
    },
    Misuse { call: || drop(m(&[2, 3]).flatten_from(3)), expect: &["flatten_from", "start 3", "rank 2", "[2, 3]"] },
    Misuse { call: || drop(m(&[2, 3]).transpose(0, 2)), expect: &["transpose", "dim 2", "[2, 3]"] },
    Misuse { call: || drop(m(&[3]).t()), expect: &["t:", "at least 2 dims", "[3]"] },
    Misuse {
        call: || drop(m(&[2, 3]).permute(&[0, 0])),
        expect: &["permute", "[0, 0]", "not a permutation", "[2, 3]"],
    },
    Misuse { call: || drop(m(&[2, 3]).permute(&[1])), expect: &["permute", "[1]", "2 dims", "[2, 3]"] },
    Misuse { call: || drop(m(&[2, 3]).permute(&[0, 7])), expect: &["permute", "[0, 7]", "[2, 3]"] },
    Misuse { call: || drop(m(&[2, 3]).narrow(2, 0, 1)), expect: &["narrow", "dim 2", "[2, 3]"] },
    Misuse {
        call: || drop(m(&[2, 3]).narrow(1, 2, 2)),
        expect: &["narrow", "2..4", "out of bounds", "size 3", "[2, 3]"],
    },
    Misuse {
        call: || drop(m(&[2, 3]).narrow(1, usize::MAX, 2)),
        expect: &["narrow", "out of bounds", "size 3", "[2, 3]"],
    },
    Misuse {
        call: || drop(m(&[2, 3]).broadcast_to(&[3, 3])),
        expect: &["broadcast_to", "[2, 3]", "[3, 3]", "only size-1 dims stretch"],
    },
    Misuse { call: || drop(m(&[2, 3]).expand(&[3])), expect: &["broadcast_to", "[2, 3]", "[3]"] },
    Misuse { call: || drop(m(&[2, 3]).unsqueeze(3)), expect: &["unsqueeze", "dim 3", "[2, 3]", "at most 2"] },
    Misuse { call: || drop(m(&[2, 3]).squeeze(1)), expect: &["squeeze", "dim 1 has size 3", "only size-1 dims"] },
    Misuse { call: || drop(m(&[2, 3]).squeeze(4)), expect: &["squeeze", "dim 4", "[2, 3]"] },
    Misuse { call: || drop(Tensor::concat(&[], 0)), expect: &["concat", "at least one tensor"] },
    Misuse {
        call: || drop(Tensor::concat(&[m(&[2, 3]), m(&[3, 3])], 1)),
        expect: &["concat", "part 1 has shape [3, 3]", "part 0 has [2, 3]", "all dims except 1 must match"],
    },
    Misuse { call: || drop(Tensor::concat(&[m(&[2, 3]), m(&[2])], 0)), expect: &["concat", "part 1 has shape [2]"] },
    Misuse { call: || drop(Tensor::concat(&[m(&[2, 3])], 2)), expect: &["concat", "dim 2", "[2, 3]"] },
    Misuse { call: || drop(Tensor::concat(&[m(&[2]), f64s(&[2])], 0)), expect: &["concat", "dtypes differ"] },
    Misuse { call: || drop(Tensor::stack(&[], 0)), expect: &["stack", "at least one tensor"] },
    Misuse {
        call: || drop(Tensor::stack(&[m(&[2, 3]), m(&[3, 2])], 0)),
        expect: &["stack", "part 1 has shape [3, 2]", "part 0 has [2, 3]"],
    },
    Misuse { call: || drop(Tensor::stack(&[m(&[2, 3])], 3)), expect: &["stack", "dim 3", "[2, 3]", "at most 2"] },
    Misuse { call: || drop(m(&[4]).split(0, 0)), expect: &["split", "size must be positive", "[4]"] },
    Misuse { call: || drop(m(&[4]).split(2, 1)), expect: &["split", "dim 1", "[4]"] },
    // Softmax.
    Misuse { call: || drop(m(&[2, 3]).softmax(2)), expect: &["softmax", "dim 2", "[2, 3]"] },
    Misuse { call: || drop(Tensor::scalar(1.0).log_softmax(0)), expect: &["log_softmax", "dim 0", "shape []"] },
    // Losses.
    Misuse { call: || drop(m(&[6]).cross_entropy(&[0])), expect: &["cross_entropy", "[batch, classes]", "[6]"] },
    Misuse {
        call: || drop(m(&[2, 3]).cross_entropy(&[0])),
        expect: &["cross_entropy", "1 targets", "2 rows", "[2, 3]"],
    },
    Misuse {
        call: || drop(m(&[2, 3]).cross_entropy(&[0, 3])),
        expect: &["cross_entropy", "target 1 is class 3", "3 classes"],
    },
    Misuse {
        call: || drop(m(&[2, 0]).cross_entropy(&[0, 0])),
        expect: &["cross_entropy", "class 0", "0 classes", "[2, 0]"],
    },
    Misuse {
        call: || drop(m(&[2, 3]).mse_loss(&m(&[3, 2]))),
        expect: &["mse_loss", "input shape [2, 3]", "target shape [3, 2]", "must be equal"],
    },
    Misuse { call: || drop(m(&[2]).mse_loss(&f64s(&[2]))), expect: &["mse_loss", "dtypes differ"] },
    Misuse {
        call: || drop(m(&[4]).binary_cross_entropy(&m(&[1]))),
        expect: &["binary_cross_entropy", "[4]", "[1]", "must be equal"],
    },
    Misuse {
        call: || drop(m(&[4]).binary_cross_entropy_with_logits(&m(&[2, 2]))),
        expect: &["binary_cross_entropy_with_logits", "[4]", "[2, 2]", "must be equal"],
    },
    // Indexing.
    Misuse {
        call: || drop(m(&[2, 3]).index_select(0, &[5])),
        expect: &["index_select", "index 0 is 5", "size 2", "[2, 3]"],
    },
    Misuse { call: || drop(m(&[2, 3]).index_select(2, &[0])), expect: &["index_select", "dim 2", "[2, 3]"] },
    Misuse { call: || drop(m(&[0, 3]).index_select(0, &[0])), expect: &["index_select", "size 0", "[0, 3]"] },
    Misuse { call: || drop(m(&[5]).embedding(&[0], &[1])), expect: &["embedding", "[vocab, dim]", "[5]"] },
    Misuse { call: || drop(m(&[5, 2]).embedding(&[0, 1], &[3])), expect: &["embedding", "2 ids", "[3]"] },
    Misuse {
        call: || drop(m(&[5, 2]).embedding(&[1, 7], &[2])),
        expect: &["embedding", "id 7", "position 1", "vocabulary of 5", "[5, 2]"],
    },
    Misuse { call: || drop(m(&[3, 4]).gather(2, &[0], &[1, 1])), expect: &["gather", "dim 2", "[3, 4]"] },
    Misuse {
        call: || drop(m(&[3, 4]).gather(1, &[0, 0], &[2])),
        expect: &["gather", "index shape [2]", "rank 2", "[3, 4]"],
    },
    Misuse {
        call: || drop(m(&[3, 4]).gather(1, &[0; 5], &[5, 1])),
        expect: &["gather", "index shape [5, 1]", "[3, 4]"],
    },
    Misuse { call: || drop(m(&[3, 4]).gather(1, &[0], &[2, 1])), expect: &["gather", "1 index values", "[2, 1]"] },
    Misuse {
        call: || drop(m(&[3, 4]).gather(1, &[0, 4], &[2, 1])),
        expect: &["gather", "value 4", "position 1", "size 4"],
    },
    // Dropout.
    Misuse {
        call: || drop(m(&[3]).dropout(1.5, true, &mut Rng::new(0))),
        expect: &["dropout", "1.5", "[0, 1]", "[3]"],
    },
    Misuse { call: || drop(m(&[3]).dropout(f64::NAN, true, &mut Rng::new(0))), expect: &["dropout", "NaN", "[0, 1]"] },
    // In-place writes.
    Misuse {
        call: || m(&[2, 3]).copy_from_(&m(&[3, 2])),
        expect: &["copy_from_", "source has shape [3, 2]", "[2, 3]"],
    },
    Misuse { call: || m(&[2]).copy_from_(&f64s(&[2])), expect: &["copy_from_", "dtypes differ", "f32", "f64"] },
    Misuse { call: || m(&[2, 3]).t().copy_from_(&m(&[3, 2])), expect: &["copy_from_", "must be contiguous", "[3, 2]"] },
    Misuse {
        call: || {
            let a = m(&[4]);
            a.copy_from_(&a.narrow(0, 0, 4));
        },
        expect: &["copy_from_", "shares storage"],
    },
    Misuse {
        call: || m(&[2]).sgd_step_(&m(&[3]), &m(&[2]), 0.1, 0.0, 0.0),
        expect: &["sgd_step_", "grad has shape [3]", "[2]"],
    },
    // Construction, reading and autograd.
    Misuse {
        call: || drop(Tensor::from_vec(vec![1.0; 5], &[2, 3])),
        expect: &["from_vec", "5 values", "[2, 3]", "6 elements"],
    },
    Misuse {
        call: || drop(Tensor::from_buffer(HostBuffer::<f32>::zeroed(7), &[2, 3])),
        expect: &["Tensor::from_buffer", "7 values", "[2, 3]", "6 elements"],
    },
    Misuse {
        call: || drop(Tensor::zeros(&[usize::MAX, 2])),
        expect: &["Tensor::full", "[18446744073709551615, 2]", "more elements than this machine can address"],
    },
    Misuse {
        call: || {
            drop(Tensor::from_storage(
                Storage::Cpu(CpuStorage::F32(HostBuffer::zeroed(5))),
                Layout::contiguous(&[2, 3]),
            ))
        },
        expect: &["from_storage", "[2, 3]", "reaches element 6", "storage holds 5"],
    },
    Misuse {
        call: || {
            let _ = m(&[2, 3]).item();
        },
        expect: &["item", "[2, 3]", "6 elements", "exactly one"],
    },
    Misuse {
        call: || {
            let _ = m(&[0]).item();
        },
        expect: &["item", "[0]", "0 elements"],
    },
    Misuse {
        call: || {
            let _ = m(&[2, 3]).dim(2);
        },
        expect: &["dim 2", "[2, 3]", "rank 2"],
    },
    Misuse {
        call: || m(&[2]).requires_grad_().mul_scalar(2.0).backward(),
        expect: &["backward", "[2]", "needs a scalar", "sum_all"],
    },
    Misuse { call: || m(&[]).backward(), expect: &["backward", "does not require grad", "requires_grad_"] },
    Misuse {
        call: || {
            let x = m(&[2]).requires_grad_().exp();
            x.backward_with_grad(&m(&[3]));
        },
        expect: &["backward_with_grad", "upstream gradient has shape [3]", "[2]"],
    },
    Misuse {
        call: || {
            let x = m(&[2]).requires_grad_().exp();
            x.backward_with_grad(&f64s(&[2]));
        },
        expect: &["backward_with_grad", "dtypes differ"],
    },
    Misuse {
        call: || drop(m(&[2]).requires_grad_().exp().requires_grad_()),
        expect: &["set_requires_grad", "[2]", "computed by exp", "only leaf tensors"],
    },
    // A layer's front door, built on the ops above.
    Misuse {
        call: || drop(Linear::new(4, 2, &mut Rng::new(0)).forward(&m(&[3, 5]))),
        expect: &["Linear", "[3, 5]", "expected 4 features"],
    },
];

/// The panic message of `call`, or `None` if it did not panic.
fn panic_message(call: fn()) -> Option<String> {
    let payload = catch_unwind(AssertUnwindSafe(call)).err()?;
    Some(
        payload
            .downcast_ref::<String>()
            .cloned()
            .or_else(|| payload.downcast_ref::<&str>().map(|s| s.to_string()))
            .unwrap_or_else(|| "(a panic without a message)".to_string()),
    )
}

#[test]
fn every_misuse_panics_naming_the_op_the_shapes_and_the_expectation() {
    // Each panic is caught and checked; the default hook would print all of them.
    let hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(|_| {}));
    let mut problems = Vec::new();
    for (row, misuse) in MISUSES.iter().enumerate() {
        match panic_message(misuse.call) {
            None => problems.push(format!("row {row} {:?}: did not panic", misuse.expect)),
            Some(message) => {
                let missing: Vec<&&str> = misuse.expect.iter().filter(|part| !message.contains(*part)).collect();
                if !missing.is_empty() {
                    problems.push(format!("row {row}: message {message:?} lacks {missing:?}"));
                }
            }
        }
    }
    std::panic::set_hook(hook);
    assert!(problems.is_empty(), "{} of {} rows failed:\n{}", problems.len(), MISUSES.len(), problems.join("\n"));
}

/// A legal call on empty tensors or zero-size dims, and the shape it must give.
struct EdgeCase {
    what: &'static str,
    call: fn() -> Tensor,
    shape: &'static [usize],
}

const EDGE_CASES: &[EdgeCase] = &[
    EdgeCase { what: "unary on [0, 3]", call: || m(&[0, 3]).gelu().exp().log().sqrt().abs().tanh(), shape: &[0, 3] },
    EdgeCase { what: "affine on [0]", call: || m(&[0]).affine(2.0, 1.0).powf(2.0).sigmoid().relu().neg(), shape: &[0] },
    EdgeCase { what: "broadcast [0, 1] with [4]", call: || m(&[0, 1]).add(&m(&[4])), shape: &[0, 4] },
    EdgeCase { what: "compare [0] with scalar", call: || m(&[0]).gt_scalar(0.0), shape: &[0] },
    EdgeCase {
        what: "where on [2, 0]",
        call: || Tensor::where_cond(&m(&[2, 0]), &m(&[2, 0]), &m(&[0])),
        shape: &[2, 0],
    },
    EdgeCase { what: "sum over a zero-size dim", call: || m(&[3, 0]).sum(&[1], false), shape: &[3] },
    EdgeCase { what: "sum_all of empty", call: || m(&[0, 5]).sum_all(), shape: &[] },
    EdgeCase {
        what: "max over a non-empty dim of an empty tensor",
        call: || m(&[0, 5]).max(&[1], true),
        shape: &[0, 1],
    },
    EdgeCase { what: "matmul with zero rows", call: || m(&[0, 3]).matmul(&m(&[3, 2])), shape: &[0, 2] },
    EdgeCase { what: "matmul with zero inner dim", call: || m(&[2, 0]).matmul(&m(&[0, 3])), shape: &[2, 3] },
    EdgeCase { what: "batched matmul, zero batch", call: || m(&[0, 2, 3]).matmul(&m(&[3, 4])), shape: &[0, 2, 4] },
    EdgeCase { what: "softmax over zero columns", call: || m(&[2, 0]).softmax(1), shape: &[2, 0] },
    EdgeCase { what: "log_softmax over zero rows", call: || m(&[0, 4]).log_softmax(1), shape: &[0, 4] },
    EdgeCase { what: "cross_entropy of zero rows", call: || m(&[0, 4]).cross_entropy(&[]), shape: &[] },
    EdgeCase { what: "reshape empty", call: || m(&[0, 3]).reshape(&[3, 0, 7]), shape: &[3, 0, 7] },
    EdgeCase { what: "narrow to nothing", call: || m(&[2, 3]).narrow(1, 3, 0), shape: &[2, 0] },
    EdgeCase {
        what: "concat with an empty part",
        call: || Tensor::concat(&[m(&[2, 0]), m(&[2, 3])], 1),
        shape: &[2, 3],
    },
    EdgeCase { what: "stack empty tensors", call: || Tensor::stack(&[m(&[0]), m(&[0])], 1), shape: &[0, 2] },
    EdgeCase { what: "index_select nothing", call: || m(&[2, 3]).index_select(1, &[]), shape: &[2, 0] },
    EdgeCase { what: "gather from an empty index", call: || m(&[2, 3]).gather(1, &[], &[2, 0]), shape: &[2, 0] },
    EdgeCase { what: "embedding of no ids", call: || m(&[5, 2]).embedding(&[], &[0, 3]), shape: &[0, 3, 2] },
    EdgeCase { what: "transpose and contiguous of empty", call: || m(&[0, 3]).t().contiguous(), shape: &[3, 0] },
    EdgeCase { what: "to_dtype of empty", call: || m(&[0]).to_dtype(DType::F64), shape: &[0] },
    EdgeCase { what: "dropout of empty", call: || m(&[0, 2]).dropout(0.5, true, &mut Rng::new(0)), shape: &[0, 2] },
    EdgeCase { what: "mse of empty", call: || m(&[0]).mse_loss(&m(&[0])), shape: &[] },
    EdgeCase {
        what: "huge dims around a zero",
        call: || Tensor::zeros(&[1 << 40, 0, 1 << 20]),
        shape: &[1 << 40, 0, 1 << 20],
    },
];

#[test]
fn empty_tensors_and_zero_size_dims_give_empty_results() {
    for case in EDGE_CASES {
        let out = catch_unwind(AssertUnwindSafe(case.call))
            .unwrap_or_else(|_| panic!("{}: panicked on a legal empty input", case.what));
        assert_eq!(out.shape(), case.shape, "{}", case.what);
    }
    // Gradients flow through empty tensors too (and are empty).
    let x = m(&[0, 3]).requires_grad_();
    x.matmul(&m(&[3, 2])).sum_all().backward();
    assert_eq!(x.grad().expect("gradient").shape(), &[0, 3]);
}
