//! Trains a character-level GPT on `data/shakespeare/input.txt` (first 90% for training, last
//! 10% for validation), prints `val loss: X.XXXX` as it goes, and a generated sample at the end.
//!
//! `cargo run --release --example gpt -- --help` lists the flags.

mod common;

use std::path::PathBuf;
use std::time::Instant;

use glassbox::data::text::{default_shakespeare_path, random_windows, TextData};
use glassbox::inspect::MetricsLog;
use glassbox::io::{load_checkpoint, load_module, save_checkpoint, TrainState};
use glassbox::nn::{Gpt, GptConfig, Module};
use glassbox::no_grad;
use glassbox::optim::{AdamW, CosineSchedule, Optimizer};
use glassbox::rng::Rng;

fn main() {
    let mut flags = common::Flags::from_env();
    let n_layer: usize = flags.get("layers", 4, "transformer blocks");
    let n_head: usize = flags.get("heads", 4, "attention heads per block");
    let n_embd: usize = flags.get("width", 128, "width of the residual stream");
    let block_size: usize = flags.get("block", 128, "context length in characters");
    let batch: usize = flags.get("batch-size", 16, "sequences per step");
    let steps: usize =
        flags.get("steps", 6000, "training steps (the default run fits in about 9.5 minutes on 2 idle cores)");
    let lr: f64 = flags.get("lr", 3e-3, "peak AdamW learning rate (warmup, then cosine decay)");
    let min_lr: f64 = flags.get("min-lr", 1e-4, "learning rate at the end of the cosine decay");
    let weight_decay: f64 = flags.get("weight-decay", 0.3, "AdamW weight decay (matrices only)");
    let warmup: usize = flags.get("warmup", 100, "linear warmup steps");
    let clip: f64 = flags.get("clip", 1.0, "clip the global gradient norm to this (0: off)");
    let dropout: f64 = flags.get("dropout", 0.1, "dropout on the embeddings and residual branches while training");
    let eval_every: usize = flags.get("eval-every", 500, "steps between validation estimates");
    let eval_batches: usize = flags.get("eval-batches", 50, "batches per validation estimate");
    let seed: u64 = flags.get("seed", 1337, "seed for initialization, batches and sampling");
    let temperature: f64 = flags.get("temperature", 0.8, "sampling temperature");
    let top_k: usize = flags.get("top-k", 0, "sample only from the k likeliest characters (0: all)");
    let sample_len: usize = flags.get("sample-len", 500, "characters to generate at the end");
    let threads: Option<usize> = flags.optional("threads", "worker threads (default: RAYON_NUM_THREADS or all cores)");
    let data: PathBuf = flags.get("data", default_shakespeare_path(), "UTF-8 text corpus");
    let log_dir: PathBuf = flags.get("log-dir", PathBuf::from("runs/gpt"), "folder for metrics.csv and metrics.svg");
    let checkpoint: Option<PathBuf> =
        flags.optional("checkpoint", "save the run here at every evaluation and at the end (safetensors, atomic)");
    let resume = flags.switch("resume", "continue the run saved at --checkpoint (same flags as when it started)");
    let sample_only =
        flags.switch("sample-only", "load the weights saved at --checkpoint and only generate (same model flags)");
    let device_name: String = flags.get("device", "cpu".to_string(), common::DEVICE_HELP);
    flags.finish("glassbox GPT: a character-level transformer language model");
    let threads = common::init_threads(threads);
    // The training loop runs on a worker thread (see `glassbox::on_worker`).
    glassbox::on_worker(move || {
        let device = common::open_device(&device_name);
        if (resume || sample_only) && checkpoint.is_none() {
            eprintln!("error: --resume and --sample-only need --checkpoint PATH");
            std::process::exit(2);
        }
        let fail = |what: &str, e: &dyn std::fmt::Display| -> ! {
            eprintln!("error: {what}: {e}");
            std::process::exit(1)
        };

        let corpus = TextData::load(&data, 0.1).unwrap_or_else(|e| fail("cannot load the corpus", &e));
        let config = GptConfig { vocab_size: corpus.vocab.len(), block_size, n_layer, n_head, n_embd };
        let mut rng = Rng::new(seed);
        let model = Gpt::new(config, &mut rng);
        // Parameters move before the optimizer is built, so its state is made on the same device.
        model.move_to(device).unwrap_or_else(|e| fail("cannot move the model", &e));
        println!(
            "corpus {} chars ({} train / {} val), vocab {}; model {:?}, {} parameters; {threads} threads; on {device}",
            corpus.train.len() + corpus.val.len(),
            corpus.train.len(),
            corpus.val.len(),
            corpus.vocab.len(),
            config,
            model.num_parameters()
        );
        let top_k = (top_k > 0).then_some(top_k);
        let prompt = corpus.vocab.encode("\n").unwrap_or_else(|_| vec![0]);

        if sample_only {
            let path = checkpoint.as_deref().expect("checked above");
            load_module(path, &model).unwrap_or_else(|e| fail("cannot load the checkpoint", &e));
            let sample = model.generate(&prompt, sample_len, temperature, top_k, &mut rng);
            println!(
                "--- sample from {} (temperature {temperature}) ---\n{}\n---",
                path.display(),
                corpus.vocab.decode(&sample)
            );
            return;
        }

        // Decay only the matrices (weights of linear layers and embeddings), as GPT-2 does.
        let params = model.parameters();
        let exempt: Vec<_> = params.iter().filter(|t| t.rank() < 2).cloned().collect();
        let mut optimizer =
            AdamW::new(params.clone(), lr).betas(0.9, 0.95).weight_decay(weight_decay).no_weight_decay_for(&exempt);
        let schedule = CosineSchedule { base_lr: lr, min_lr, warmup_steps: warmup, total_steps: steps };

        let mut first_step = 0;
        if resume {
            let path = checkpoint.as_deref().expect("checked above");
            let state = load_checkpoint(path, &model, &mut optimizer).unwrap_or_else(|e| fail("cannot resume", &e));
            first_step = state.step as usize;
            rng = state.rng;
            println!("resumed {} at step {first_step}", path.display());
        }
        let save = |step: usize, rng: &Rng, optimizer: &AdamW| {
            if let Some(path) = &checkpoint {
                let state = TrainState { step: step as u64, epoch: 0, rng: rng.clone() };
                save_checkpoint(path, &model, optimizer, &state)
                    .unwrap_or_else(|e| fail("cannot save the checkpoint", &e));
            }
        };

        let mut log = MetricsLog::new(&["train_loss", "val_loss"]);
        let start = Instant::now();
        let mut train_loss_avg = None;
        for step in first_step..steps {
            let (x, y) = random_windows(&corpus.train, batch, block_size, &mut rng);
            let loss = model.loss_with_dropout(&x, &y, batch, block_size, dropout, &mut rng);
            optimizer.zero_grad();
            loss.backward();
            if clip > 0.0 {
                glassbox::optim::clip_grad_norm(&params, clip);
            }
            let lr_now = schedule.lr_at(step);
            optimizer.set_learning_rate(lr_now);
            optimizer.step();
            let l = loss.item_f64();
            train_loss_avg = Some(train_loss_avg.map_or(l, |a: f64| 0.95 * a + 0.05 * l));
            let last = step + 1 == steps;
            if (step + 1) % eval_every == 0 || last {
                // The same validation windows at every evaluation (from their own generator, so the
                // training stream is undisturbed): estimates compare across steps and across resumes.
                let val =
                    estimate_loss(&model, &corpus.val, eval_batches, batch, block_size, &mut Rng::new(seed ^ 0x5eed));
                let elapsed = start.elapsed().as_secs_f64();
                println!(
                    "step {:>5}/{steps}  train loss {:.4}  lr {lr_now:.2e}  {:.0} ms/step  {elapsed:.0}s",
                    step + 1,
                    train_loss_avg.unwrap_or(f64::NAN),
                    1000.0 * elapsed / (step + 1 - first_step) as f64
                );
                println!("val loss: {val:.4}");
                log.record(step + 1, &[("train_loss", train_loss_avg.unwrap_or(f64::NAN)), ("val_loss", val)]);
                common::instruments::write_metrics(&log, &log_dir, "char GPT", &["train_loss", "val_loss"], &[]);
                save(step + 1, &rng, &optimizer);
            }
        }

        let sample = model.generate(&prompt, sample_len, temperature, top_k, &mut rng);
        println!("\n--- sample (temperature {temperature}) ---\n{}\n---", corpus.vocab.decode(&sample));
        println!("total time {:.1}s", start.elapsed().as_secs_f64());
    })
}

/// Mean loss over `batches` random validation windows, without a graph.
fn estimate_loss(model: &Gpt, tokens: &[usize], batches: usize, batch: usize, block: usize, rng: &mut Rng) -> f64 {
    no_grad(|| {
        let total: f64 = (0..batches)
            .map(|_| {
                let (x, y) = random_windows(tokens, batch, block, rng);
                model.loss(&x, &y, batch, block).item_f64()
            })
            .sum();
        total / batches as f64
    })
}
