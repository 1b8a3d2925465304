//! Trains the documents' MLP (784-256-128-10, ReLU, softmax cross-entropy, Adam, batch 128)
//! on MNIST and reports test accuracy, macro precision / recall / F1 and the confusion matrix.
//!
//! `cargo run --release --example mnist -- --help` lists the flags. `--data DIR` takes any
//! folder with the four MNIST-format IDX files (plain or .gz), so Fashion-MNIST works as is.
//! `--checkpoint PATH` saves the run (weights, Adam state, step, epoch, shuffling generator) at
//! the end of every epoch; `--resume PATH` continues a saved run, with the same flags, exactly
//! as if it had never stopped.
//! The instruments: `--explain` prints the first step's backward pass node by node, `--graph
//! PATH` draws its autograd graph, `--health N` prints per-layer health every N steps, and the
//! loss and accuracy curves go to `--log-dir` (default `runs/mnist`) as CSV and SVG.

mod common;

use std::path::PathBuf;
use std::time::Instant;

use common::instruments::{write_metrics, Instruments};
use glassbox::data::{sequential_batches, shuffled_batches, ImageSet, NUM_CLASSES};
use glassbox::inspect::{HealthReport, MetricsLog, WeightSnapshot};
use glassbox::io::{load_checkpoint, save_checkpoint, TrainState};
use glassbox::metrics::{argmax_rows, ConfusionMatrix};
use glassbox::nn::{Activation, Module, Sequential};
use glassbox::optim::{Adam, CosineSchedule, Optimizer};
use glassbox::rng::Rng;
use glassbox::tensor::HostBuffer;
use glassbox::{no_grad, Device, Tensor};

fn main() {
    let mut flags = common::Flags::from_env();
    let epochs: usize = flags.get("epochs", 8, "passes over the training set");
    let batch_size: usize = flags.get("batch-size", 128, "examples per step");
    let lr: f64 = flags.get("lr", 1e-3, "Adam learning rate (cosine-decayed to 0 over the run)");
    let seed: u64 = flags.get("seed", 0, "seed for initialization and shuffling");
    let threads: Option<usize> = flags.optional("threads", "worker threads (default: RAYON_NUM_THREADS or all cores)");
    let data: PathBuf =
        flags.get("data", glassbox::data::mnist::default_dir(), "folder with the four MNIST-format IDX files");
    let checkpoint: Option<PathBuf> =
        flags.optional("checkpoint", "save the run here at the end of each epoch (safetensors, written atomically)");
    let resume: Option<PathBuf> =
        flags.optional("resume", "continue the run saved in this checkpoint (give the flags it was started with)");
    let device_name: String = flags.get("device", "cpu".to_string(), common::DEVICE_HELP);
    let instruments = Instruments::from_flags(&mut flags, "runs/mnist");
    flags.finish("glassbox MNIST: an MLP 784-256-128-10 trained with Adam");
    if batch_size == 0 || epochs == 0 {
        eprintln!("error: --batch-size and --epochs must be positive");
        std::process::exit(2);
    }
    let threads = common::init_threads(threads);
    // The training loop runs on a worker thread (see `glassbox::on_worker`).
    glassbox::on_worker(move || {
        let device = common::open_device(&device_name);

        let start = Instant::now();
        let mnist = common::load_mnist(&data, threads);

        let mut rng = Rng::new(seed);
        let pixels = mnist.train.pixels_per_image();
        let model = Sequential::mlp(&[pixels, 256, 128, NUM_CLASSES], Activation::Relu, 0.0, &mut rng);
        println!("model: {} on {device}", model.describe());
        // Parameters move before the optimizer is built, so its state is made on the same device.
        model.move_to(device).unwrap_or_else(|e| {
            eprintln!("error: {e}");
            std::process::exit(1)
        });
        let params = model.named_parameters();
        let mut optimizer = Adam::new(model.parameters(), lr);
        let steps_per_epoch = mnist.train.len().div_ceil(batch_size);
        let schedule =
            CosineSchedule { base_lr: lr, min_lr: 0.0, warmup_steps: 0, total_steps: epochs * steps_per_epoch };
        let mut log = MetricsLog::new(&["train_loss", "test_loss", "train_accuracy", "test_accuracy"]);
        // Train points average the last `log_every` steps: one batch alone is too noisy to read.
        let (mut window_loss, mut window_correct, mut window_seen) = (0.0, 0, 0);

        let mut y_buf = Vec::new();
        let mut step = 0;
        let mut first_epoch = 1;
        if let Some(path) = &resume {
            // The model and optimizer were just built exactly as in the saved run; the checkpoint
            // overwrites their numbers, and the generator continues the saved run's shuffling.
            let state = load_checkpoint(path, &model, &mut optimizer).unwrap_or_else(|e| {
                eprintln!("error: cannot resume: {e}");
                std::process::exit(1)
            });
            (rng, step, first_epoch) = (state.rng, state.step as usize, state.epoch as usize + 1);
            println!("resumed from {} after epoch {} (step {step})", path.display(), state.epoch);
            if state.epoch as usize >= epochs {
                println!("the checkpoint has already trained all {epochs} epochs; evaluating only");
            }
        }
        for epoch in first_epoch..=epochs {
            let epoch_start = Instant::now();
            let batches = shuffled_batches(mnist.train.len(), batch_size, &mut rng);
            let mut progress = common::Progress::new(format!("epoch {epoch}/{epochs}"), batches.len());
            let (mut loss_sum, mut seen) = (0.0, 0);
            for (i, batch) in batches.iter().enumerate() {
                // The last batch's buffer went into its tensor; `gather_normalized` takes a
                // recycled one of this size (parked by that tensor's drop) from the pool.
                let mut x_buf = HostBuffer::new();
                mnist.train.gather_normalized(batch, &mut x_buf);
                mnist.train.gather_labels(batch, &mut y_buf);
                let x = on(device, Tensor::from_buffer(x_buf, &[batch.len(), pixels]));
                let health_now = instruments.health_due(step);
                let (logits, relus) =
                    if health_now { forward_keeping_relus(&model, &x) } else { (model.forward(&x), Vec::new()) };
                let loss = logits.cross_entropy(&y_buf);
                optimizer.zero_grad();
                instruments.backward(step, &loss, || {
                    let mut names = params.clone();
                    names.push(("input batch".to_string(), x.clone()));
                    names
                });
                optimizer.set_learning_rate(schedule.lr_at(step));
                let before = health_now.then(|| WeightSnapshot::take(&params));
                optimizer.step();
                if let Some(before) = before {
                    let report = relus
                        .iter()
                        .fold(HealthReport::check(&params, Some(&before)), |r, (name, h)| r.with_dead_units(name, h));
                    progress.finish();
                    println!("\nhealth at step {step}:\n{report}");
                }
                step += 1;
                let batch_loss = loss.item_f64();
                loss_sum += batch_loss * batch.len() as f64;
                seen += batch.len();
                let predicted = argmax_rows(&logits.to_vec(), NUM_CLASSES);
                window_correct += predicted.iter().zip(&y_buf).filter(|(p, t)| p == t).count();
                window_loss += batch_loss * batch.len() as f64;
                window_seen += batch.len();
                if step % instruments.log_every == 0 {
                    log.record(
                        step,
                        &[
                            ("train_loss", window_loss / window_seen as f64),
                            ("train_accuracy", window_correct as f64 / window_seen as f64),
                        ],
                    );
                    (window_loss, window_correct, window_seen) = (0.0, 0, 0);
                }
                progress.update(i + 1, &format!("loss {:.4}", loss_sum / seen as f64));
            }
            progress.finish();
            let train_time = epoch_start.elapsed().as_secs_f64();
            let (confusion, test_loss) = evaluate(&model, &mnist.test, device);
            println!(
            "epoch {epoch:>2}/{epochs}  train loss {:.4}  test loss {test_loss:.4}  test accuracy {:.4}  {train_time:.2}s",
            loss_sum / seen as f64,
            confusion.accuracy()
        );
            if let Some(path) = &checkpoint {
                let state = TrainState { step: step as u64, epoch: epoch as u64, rng: rng.clone() };
                if let Err(e) = save_checkpoint(path, &model, &optimizer, &state) {
                    eprintln!("error: cannot save the checkpoint: {e}");
                    std::process::exit(1);
                }
                println!("saved checkpoint {} (epoch {epoch}, step {step})", path.display());
            }
            log.record(step, &[("test_loss", test_loss), ("test_accuracy", confusion.accuracy())]);
            write_metrics(
                &log,
                &instruments.log_dir,
                "MNIST MLP",
                &["train_loss", "test_loss"],
                &["train_accuracy", "test_accuracy"],
            );
        }

        let (confusion, _) = evaluate(&model, &mnist.test, device);
        println!("\n{}", confusion.per_class_report());
        println!("confusion matrix (rows: true class, columns: predicted):\n{confusion}");
        println!(
            "macro precision {:.4}  macro recall {:.4}  macro F1 {:.4}",
            confusion.macro_precision(),
            confusion.macro_recall(),
            confusion.macro_f1()
        );
        println!(
            "metrics: {} and {}",
            instruments.log_dir.join("metrics.csv").display(),
            instruments.log_dir.join("metrics.svg").display()
        );
        println!("total time {:.1}s", start.elapsed().as_secs_f64());
        println!("test accuracy: {:.4}", confusion.accuracy());
    })
}

/// Predicts every image of `set` (in batches, without a graph) and tallies the results;
/// also returns the mean cross-entropy over the set.
fn evaluate(model: &Sequential, set: &ImageSet, device: Device) -> (ConfusionMatrix, f64) {
    let mut confusion = ConfusionMatrix::new(NUM_CLASSES);
    let (mut x_buf, mut y_buf) = (HostBuffer::new(), Vec::new());
    let mut loss_sum = 0.0;
    no_grad(|| {
        for batch in sequential_batches(set.len(), 1000) {
            set.gather_normalized(&batch, &mut x_buf);
            set.gather_labels(&batch, &mut y_buf);
            let x = Tensor::from_buffer(std::mem::take(&mut x_buf), &[batch.len(), set.pixels_per_image()]);
            let logits = model.forward(&on(device, x));
            loss_sum += logits.cross_entropy(&y_buf).item_f64() * batch.len() as f64;
            for (&truth, pred) in y_buf.iter().zip(argmax_rows(&logits.to_vec(), NUM_CLASSES)) {
                confusion.add(truth, pred);
            }
        }
    });
    (confusion, loss_sum / set.len().max(1) as f64)
}

/// The model's forward pass, keeping each ReLU layer's output (named by its position, as the
/// parameters are) so the health report can count dead units.
fn forward_keeping_relus(model: &Sequential, x: &Tensor) -> (Tensor, Vec<(String, Tensor)>) {
    let mut relus = Vec::new();
    let mut h = x.clone();
    for (i, layer) in model.layers().iter().enumerate() {
        h = layer.forward(&h);
        if layer.describe() == "Relu" {
            relus.push((format!("layer {i} (ReLU)"), h.clone()));
        }
    }
    (h, relus)
}

/// `x` on `device` (a batch is built on the host, then uploaded).
fn on(device: Device, x: Tensor) -> Tensor {
    x.to(device).unwrap_or_else(|e| panic!("moving a batch to {device}: {e}"))
}
