//! Checkpoints: safetensors round trips (bit-exact, in the reference implementation's byte
//! layout), errors that name the file and the tensor, atomic writes, and resumed runs that
//! continue the exact loss curve of an uninterrupted one.

mod common;

use std::collections::BTreeMap;
use std::fs;
use std::path::Path;

use common::scratch::TempDir;
use common::training::{OptKind, Run, Task};
use glassbox::io::{
    decode_safetensors, encode_safetensors, load_checkpoint, load_module, load_safetensors, save_checkpoint,
    save_module, save_safetensors, IoError, TrainState,
};
use glassbox::nn::{Activation, Linear, Module, Sequential};
use glassbox::optim::{Adam, Optimizer, Sgd};
use glassbox::rng::Rng;
use glassbox::{DType, Tensor};

fn bits32(t: &Tensor) -> Vec<u32> {
    t.to_vec().iter().map(|v| v.to_bits()).collect()
}

fn bits64(t: &Tensor) -> Vec<u64> {
    t.to_vec_f64().iter().map(|v| v.to_bits()).collect()
}

/// Asserts `err` is about `path` (and `tensor`, if given) and its text contains each of `parts`.
fn assert_io_error(err: &IoError, path: &Path, tensor: Option<&str>, parts: &[&str]) {
    let text = err.to_string();
    assert_eq!(err.path(), path, "{text}");
    assert!(text.contains(&path.display().to_string()), "error should name the file: {text}");
    assert_eq!(err.tensor_name(), tensor, "{text}");
    if let Some(name) = tensor {
        assert!(text.contains(&format!("'{name}'")), "error should name tensor {name}: {text}");
    }
    for part in parts {
        assert!(text.contains(part), "error should contain {part:?}: {text}");
    }
}

fn mlp(seed: u64) -> Sequential {
    Sequential::mlp(&[4, 6, 3], Activation::Tanh, 0.0, &mut Rng::new(seed))
}

// ---------------------------------------------------------------------------------------------
// The file format

#[test]
fn tensors_round_trip_bit_exactly_whatever_their_layout() {
    let dir = TempDir::new("roundtrip");
    let path = dir.path("t.safetensors");
    let special = Tensor::from_vec(vec![f32::INFINITY, f32::NEG_INFINITY, -0.0, f32::MIN_POSITIVE / 8.0], &[4]);
    let nan_payload = f64::from_bits(0x7ff8_dead_beef_0001);
    let tensors = vec![
        ("matrix".to_string(), Tensor::randn(&[3, 5], 1)),
        ("transposed_view".to_string(), Tensor::randn(&[4, 3], 2).t()),
        ("f64".to_string(), Tensor::from_vec_f64(vec![1.0 / 3.0, nan_payload, -1e300], &[3])),
        ("scalar".to_string(), Tensor::scalar(2.5)),
        ("empty".to_string(), Tensor::zeros(&[0, 7])),
        ("special".to_string(), special.clone()),
        ("unicode \"name\" ✓".to_string(), Tensor::ones(&[1])),
    ];
    let metadata = BTreeMap::from([("key".to_string(), "value with \"quotes\"\n".to_string())]);
    save_safetensors(&path, &tensors, &metadata).expect("save");
    let file = load_safetensors(&path).expect("load");
    assert_eq!(file.metadata, metadata);
    assert_eq!(file.tensors.len(), tensors.len());
    for (name, original) in &tensors {
        let loaded = file.get(name).unwrap_or_else(|| panic!("{name} missing"));
        assert_eq!(loaded.shape(), original.shape(), "{name}");
        assert_eq!(loaded.dtype(), original.dtype(), "{name}");
        assert!(loaded.is_contiguous() && !loaded.requires_grad(), "{name}");
        match original.dtype() {
            DType::F32 => assert_eq!(bits32(loaded), bits32(original), "{name}"),
            DType::F64 => assert_eq!(bits64(loaded), bits64(original), "{name}"),
        }
    }
}

/// The fixture was written by Python's `safetensors.numpy.save_file` (see
/// `tests/fixtures/make_safetensors_fixture.py`): reading it proves we read what PyTorch's side
/// writes, and writing the same bytes proves PyTorch's side reads what we write.
#[test]
fn our_bytes_equal_the_reference_implementations() {
    let fixture = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/python_written.safetensors");
    let bytes = fs::read(&fixture).expect("read fixture");
    let file = decode_safetensors("python_written", &bytes).expect("decode the reference file");
    assert_eq!(file.metadata.get("note").map(String::as_str), Some("made by safetensors.numpy"));
    let weight = file.get("weight").expect("weight");
    assert_eq!((weight.shape(), weight.dtype()), (&[2usize, 3][..], DType::F32));
    assert_eq!(weight.to_vec(), vec![-2.5, -1.5, -0.5, 0.5, 1.5, 2.5]);
    assert_eq!(file.get("bias").expect("bias").to_vec_f64(), vec![1.5, -2.0]);
    assert_eq!(file.get("bias").expect("bias").dtype(), DType::F64);
    let scale = file.get("scale").expect("scale");
    assert_eq!((scale.shape(), scale.item()), (&[][..], 3.25));
    assert_eq!(file.get("empty").expect("empty").shape(), &[0, 4]);
    let special = bits32(file.get("special").expect("special"));
    assert_eq!(special, vec![f32::INFINITY.to_bits(), f32::NEG_INFINITY.to_bits(), (-0.0f32).to_bits(), 1]);

    let ours = encode_safetensors("ours", &file.tensors, &file.metadata).expect("encode");
    assert_eq!(ours, bytes, "our encoding differs from the reference implementation's");
}

#[test]
fn corrupt_and_truncated_files_are_errors_naming_the_file() {
    let dir = TempDir::new("corrupt");
    let path = dir.path("w.safetensors");
    save_module(&path, &mlp(0)).expect("save");
    let good = fs::read(&path).expect("read");

    fs::write(&path, &good[..good.len() - 3]).expect("write");
    let err = load_module(&path, &mlp(1)).expect_err("truncated data");
    assert_io_error(&err, &path, Some("2.weight"), &["data_offsets", "reach past the data section"]);

    fs::write(&path, &good[..20]).expect("write");
    let err = load_safetensors(&path).expect_err("truncated header");
    assert_io_error(&err, &path, None, &["truncated", "only 12 bytes follow"]);

    fs::write(&path, &good[..5]).expect("write");
    let err = load_safetensors(&path).expect_err("too short");
    assert_io_error(&err, &path, None, &["8-byte header length", "only 5 bytes"]);

    let mut flipped = good.clone();
    flipped[8] = b'[';
    fs::write(&path, &flipped).expect("write");
    let err = load_safetensors(&path).expect_err("not an object");
    assert_io_error(&err, &path, None, &["not a valid JSON object"]);

    let mut huge = good.clone();
    huge[..8].copy_from_slice(&u64::MAX.to_le_bytes());
    fs::write(&path, &huge).expect("write");
    let err = load_safetensors(&path).expect_err("huge header length");
    assert_io_error(&err, &path, None, &["header length 18446744073709551615", "limit"]);

    let missing = dir.path("absent.safetensors");
    let err = load_safetensors(&missing).expect_err("missing");
    assert_io_error(&err, &missing, None, &["cannot open"]);
}

#[test]
fn lying_headers_are_errors_naming_the_tensor() {
    let header = |json: &str, data_len: usize| {
        let mut bytes = (json.len() as u64).to_le_bytes().to_vec();
        bytes.extend_from_slice(json.as_bytes());
        bytes.extend(std::iter::repeat_n(0u8, data_len));
        bytes
    };
    let cases: &[(&str, usize, Option<&str>, &[&str])] = &[
        (r#"{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,12]}}"#, 12, Some("a"), &["span 12 bytes", "needs 8"]),
        (
            r#"{"a":{"dtype":"F32","shape":[1000000,1000000],"data_offsets":[0,8]}}"#,
            8,
            Some("a"),
            &["shape [1000000, 1000000]", "needs 4000000000000"],
        ),
        (
            r#"{"a":{"dtype":"F32","shape":[4294967296,4294967296,4294967296],"data_offsets":[0,0]}}"#,
            0,
            Some("a"),
            &["more elements than this machine can address"],
        ),
        (r#"{"a":{"dtype":"BF16","shape":[2],"data_offsets":[0,4]}}"#, 4, Some("a"), &["dtype BF16", "F32 and F64"]),
        (r#"{"a":{"dtype":"Q9","shape":[2],"data_offsets":[0,4]}}"#, 4, Some("a"), &["unknown dtype \"Q9\""]),
        (r#"{"a":{"dtype":"F32","shape":[-2],"data_offsets":[0,8]}}"#, 8, Some("a"), &["shape entry 0 is -2"]),
        (r#"{"a":{"dtype":"F32","shape":[2]}}"#, 8, Some("a"), &["no \"data_offsets\""]),
        (r#"{"a":{"dtype":"F32","shape":[2],"data_offsets":[8,0]}}"#, 8, Some("a"), &["end before they begin"]),
        (
            r#"{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}}"#,
            12,
            Some("b"),
            &["starts at byte 4", "tensor 'a' ends at byte 8", "overlaps"],
        ),
        (r#"{"a":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}}"#, 8, Some("a"), &["leaves a gap"]),
        (r#"{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}"#, 8, None, &["trailing bytes", "ends at byte 4"]),
        (
            r#"{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},"a":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}}"#,
            8,
            Some("a"),
            &["appears twice"],
        ),
        (r#"{"__metadata__":{"k":3}}"#, 0, Some("__metadata__"), &["key 'k' holds a number"]),
        (r#"{"a":[1,2]}"#, 0, Some("a"), &["header entry is an array"]),
        (r#"{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}"#, 4, None, &["not a valid JSON object"]),
    ];
    for (json, data_len, tensor, parts) in cases {
        let err = decode_safetensors("lying", &header(json, *data_len)).expect_err(json);
        assert_io_error(&err, Path::new("lying"), *tensor, parts);
    }
}

#[test]
fn writing_refuses_duplicate_and_reserved_names() {
    let t = || Tensor::ones(&[1]);
    let err = encode_safetensors("out", &[("a".into(), t()), ("a".into(), t())], &BTreeMap::new()).unwrap_err();
    assert_io_error(&err, Path::new("out"), Some("a"), &["two tensors have this name"]);
    let err = encode_safetensors("out", &[("__metadata__".into(), t())], &BTreeMap::new()).unwrap_err();
    assert_io_error(&err, Path::new("out"), Some("__metadata__"), &["reserved"]);
}

// ---------------------------------------------------------------------------------------------
// Models

#[test]
fn module_weights_round_trip_under_their_pytorch_names() {
    let dir = TempDir::new("module");
    let path = dir.path("mlp.safetensors");
    let model = mlp(0);
    save_module(&path, &model).expect("save");
    let file = load_safetensors(&path).expect("load");
    let mut names: Vec<&str> = file.tensors.iter().map(|(n, _)| n.as_str()).collect();
    names.sort_unstable();
    assert_eq!(names, ["0.bias", "0.weight", "2.bias", "2.weight"]);
    assert_eq!(file.get("0.weight").expect("0.weight").shape(), &[6, 4], "PyTorch's [out, in] layout");

    let other = mlp(1);
    assert_ne!(bits32(&other.parameters()[0]), bits32(&model.parameters()[0]));
    load_module(&path, &other).expect("load into a fresh model");
    for (a, b) in model.parameters().iter().zip(other.parameters()) {
        assert_eq!(bits32(a), bits32(&b));
    }
    let x = Tensor::randn(&[2, 4], 9);
    assert_eq!(bits32(&model.forward(&x)), bits32(&other.forward(&x)));
}

#[test]
fn loading_names_the_missing_misshaped_or_mistyped_tensor_and_changes_nothing() {
    let dir = TempDir::new("mismatch");
    let path = dir.path("w.safetensors");
    let target = mlp(3);
    let before: Vec<Vec<u32>> = target.parameters().iter().map(bits32).collect();
    let weights = |m: &Sequential| m.named_parameters();

    // Missing: a file from a model with one layer fewer.
    let small = Sequential::new().push(Linear::new(4, 6, &mut Rng::new(0)));
    save_module(&path, &small).expect("save");
    let err = load_module(&path, &target).expect_err("missing");
    assert_io_error(&err, &path, Some("2.weight"), &["the model has this parameter but the file does not"]);

    // Misshaped: same names, another width.
    let wide = Sequential::mlp(&[4, 7, 3], Activation::Tanh, 0.0, &mut Rng::new(0));
    save_module(&path, &wide).expect("save");
    let err = load_module(&path, &target).expect_err("misshaped");
    assert_io_error(&err, &path, Some("0.weight"), &["shape [7, 4] in the file", "has shape [6, 4]"]);

    // Mistyped: an f64 copy of the right shapes.
    let as_f64: Vec<(String, Tensor)> =
        weights(&target).into_iter().map(|(n, t)| (n, t.to_dtype(DType::F64).detach())).collect();
    save_safetensors(&path, &as_f64, &BTreeMap::new()).expect("save");
    let err = load_module(&path, &target).expect_err("mistyped");
    assert_io_error(&err, &path, Some("0.weight"), &["dtype f64 in the file", "parameter is f32"]);

    // Unexpected: one tensor too many.
    let mut extra = weights(&mlp(5));
    extra.push(("4.weight".to_string(), Tensor::zeros(&[2, 2])));
    save_safetensors(&path, &extra, &BTreeMap::new()).expect("save");
    let err = load_module(&path, &target).expect_err("unexpected");
    assert_io_error(&err, &path, Some("4.weight"), &["the model has no parameter of that name"]);

    let after: Vec<Vec<u32>> = target.parameters().iter().map(bits32).collect();
    assert_eq!(before, after, "a failed load must not change the model");
}

// ---------------------------------------------------------------------------------------------
// Training checkpoints

/// Trains `total` steps straight, and again with a checkpoint after `at` steps that a fresh
/// model, optimizer and generator (built from another seed) resume from: the losses and final
/// weights must be identical to the bit.
fn assert_resume_is_exact(kind: OptKind, total: usize, at: usize) {
    let dir = TempDir::new("resume");
    let path = dir.path("ckpt.safetensors");
    let task = Task::new(256, 12, 4, 7);
    let sizes = [12, 32, 16, 4];

    let mut straight = Run::new(&sizes, kind, 16, 1);
    let reference: Vec<u32> = (0..total).map(|_| straight.step(&task).to_bits()).collect();

    let mut first = Run::new(&sizes, kind, 16, 1);
    let mut losses: Vec<u32> = (0..at).map(|_| first.step(&task).to_bits()).collect();
    first.save(&path).expect("save");
    drop(first);

    let mut resumed = Run::new(&sizes, kind, 16, 999);
    resumed.load(&path).expect("load");
    assert_eq!(resumed.step, at as u64);
    losses.extend((at..total).map(|_| resumed.step(&task).to_bits()));
    assert_eq!(losses, reference, "{kind:?}: the resumed loss curve differs from the uninterrupted one");
    assert_eq!(resumed.weight_bits(), straight.weight_bits(), "{kind:?}: final weights differ");
}

#[test]
fn a_resumed_run_continues_the_exact_loss_curve_for_every_optimizer() {
    for kind in OptKind::ALL {
        assert_resume_is_exact(kind, 40, 17);
    }
}

#[test]
fn checkpoints_carry_step_epoch_and_a_pending_normal_sample() {
    let dir = TempDir::new("state");
    let path = dir.path("ckpt.safetensors");
    let model = mlp(0);
    let opt = Sgd::new(model.parameters(), 0.1);
    let mut rng = Rng::new(11);
    rng.normal(); // leaves the second normal of the pair pending: it must survive the trip
    let state = TrainState { step: 123_456_789_012, epoch: 42, rng: rng.clone() };
    save_checkpoint(&path, &model, &opt, &state).expect("save");
    let mut opt2 = Sgd::new(mlp(1).parameters(), 0.5);
    let loaded = load_checkpoint(&path, &mlp(1), &mut opt2).expect("load");
    assert_eq!((loaded.step, loaded.epoch), (123_456_789_012, 42));
    assert_eq!(loaded.rng.state(), rng.state());
    assert_eq!(opt2.learning_rate(), 0.1, "the learning rate is part of the state");
    let mut restored = loaded.rng;
    assert_eq!(restored.normal().to_bits(), rng.normal().to_bits());
}

#[test]
fn optimizer_state_that_does_not_fit_is_refused_and_changes_nothing() {
    let dir = TempDir::new("optstate");
    let path = dir.path("ckpt.safetensors");
    let model = mlp(0);
    let sgd = Sgd::new(model.parameters(), 0.1).momentum(0.9);
    save_checkpoint(&path, &model, &sgd, &TrainState { step: 1, epoch: 0, rng: Rng::new(0) }).expect("save");

    let target = mlp(2);
    let before: Vec<Vec<u32>> = target.parameters().iter().map(bits32).collect();
    let mut adam = Adam::new(target.parameters(), 1e-3);
    let err = load_checkpoint(&path, &target, &mut adam).expect_err("Sgd state into Adam");
    assert_io_error(&err, &path, Some("optimizer.exp_avg.0"), &["missing"]);
    assert_eq!(before, target.parameters().iter().map(bits32).collect::<Vec<_>>(), "model changed");
    assert_eq!(adam.state().iter().find(|(k, _)| k == "step").map(|(_, t)| t.item_f64()), Some(0.0));

    // Adam state for fewer parameters than the optimizer has.
    let mut state = Adam::new(model.parameters(), 1e-3).state();
    state.retain(|(k, _)| !k.ends_with(".3"));
    let err = adam.load_state(&state).expect_err("too few buffers");
    assert_eq!(err.key(), "exp_avg.3");
    let mut state = Adam::new(model.parameters(), 1e-3).state();
    state.push(("exp_avg.4".to_string(), Tensor::zeros(&[1])));
    let err = adam.load_state(&state).expect_err("an entry too many");
    assert!(err.to_string().contains("'exp_avg.4'") && err.to_string().contains("not part of"), "{err}");
    let mut state = Adam::new(model.parameters(), 1e-3).state();
    for (k, t) in state.iter_mut() {
        if k == "step" {
            *t = Tensor::from_vec_f64(vec![2.5], &[]);
        }
    }
    let err = adam.load_state(&state).expect_err("fractional step");
    assert!(err.to_string().contains("'step'") && err.to_string().contains("whole number"), "{err}");
}

#[test]
fn a_weights_file_is_not_a_training_checkpoint() {
    let dir = TempDir::new("notckpt");
    let path = dir.path("w.safetensors");
    save_module(&path, &mlp(0)).expect("save");
    let mut opt = Sgd::new(mlp(0).parameters(), 0.1);
    let err = load_checkpoint(&path, &mlp(0), &mut opt).expect_err("weights only");
    assert_io_error(&err, &path, None, &["not a glassbox training checkpoint", "load_module"]);

    // A checkpoint's weights load into a model alone, ignoring the optimizer's entries.
    let model = mlp(0);
    save_checkpoint(&path, &model, &opt, &TrainState { step: 0, epoch: 0, rng: Rng::new(0) }).expect("save");
    let other = mlp(1);
    load_module(&path, &other).expect("weights from a checkpoint");
    assert_eq!(bits32(&other.parameters()[2]), bits32(&model.parameters()[2]));
}

// ---------------------------------------------------------------------------------------------
// Atomic writes

#[test]
fn saving_replaces_the_file_whole_and_leaves_no_temporary_file() {
    let dir = TempDir::new("atomic");
    let path = dir.path("w.safetensors");
    save_module(&path, &mlp(0)).expect("first save");
    save_module(&path, &mlp(1)).expect("second save over the first");
    assert_eq!(dir.file_names(), ["w.safetensors"], "temporary files left behind");
    let check = mlp(2);
    load_module(&path, &check).expect("load");
    assert_eq!(bits32(&check.parameters()[0]), bits32(&mlp(1).parameters()[0]));
}

#[test]
fn a_failed_save_keeps_the_previous_file() {
    let dir = TempDir::new("failsave");
    let path = dir.path("w.safetensors");
    save_module(&path, &mlp(0)).expect("save");
    let before = fs::read(&path).expect("read");
    let dup = vec![("x".to_string(), Tensor::ones(&[1])), ("x".to_string(), Tensor::ones(&[1]))];
    assert!(save_safetensors(&path, &dup, &BTreeMap::new()).is_err());
    assert_eq!(fs::read(&path).expect("read"), before);

    let nowhere = dir.path("no/such/dir/w.safetensors");
    let err = save_module(&nowhere, &mlp(0)).expect_err("missing directory");
    assert_io_error(&err, &nowhere, None, &["cannot create"]);
    assert_eq!(dir.file_names(), ["w.safetensors"]);
}
