//! Small helpers shared by the examples: flag parsing, thread setup and a progress bar; the
//! instrument flags (`--explain`, `--graph`, `--health`, `--log-dir`) are in `instruments.rs`.
//! (Each example includes this file with `mod common;`.)

#![allow(dead_code)]

pub mod instruments;

use std::io::{IsTerminal, Write};
use std::str::FromStr;
use std::time::Instant;

/// `--name value` flags, parsed by hand to keep the examples free of a CLI dependency.
pub struct Flags {
    args: Vec<String>,
    known: Vec<(&'static str, &'static str)>,
}

impl Flags {
    /// Reads the process arguments.
    pub fn from_env() -> Flags {
        Flags { args: std::env::args().skip(1).collect(), known: Vec::new() }
    }

    /// The value of `--name`, or `default`; exits with a message if it does not parse.
    pub fn get<T: FromStr>(&mut self, name: &'static str, default: T, help: &'static str) -> T {
        self.known.push((name, help));
        match self.value(name) {
            None => default,
            Some(v) => v.parse().unwrap_or_else(|_| {
                eprintln!("error: --{name} {v:?} is not a valid value ({help})");
                std::process::exit(2)
            }),
        }
    }

    /// The value of `--name` if given.
    pub fn optional<T: FromStr>(&mut self, name: &'static str, help: &'static str) -> Option<T> {
        self.known.push((name, help));
        self.value(name).map(|v| {
            v.parse().unwrap_or_else(|_| {
                eprintln!("error: --{name} {v:?} is not a valid value ({help})");
                std::process::exit(2)
            })
        })
    }

    /// True if the switch `--name` is present.
    pub fn switch(&mut self, name: &'static str, help: &'static str) -> bool {
        self.known.push((name, help));
        self.args.iter().any(|a| a == &format!("--{name}"))
    }

    fn value(&self, name: &str) -> Option<String> {
        let flag = format!("--{name}");
        let prefix = format!("--{name}=");
        for (i, a) in self.args.iter().enumerate() {
            if a == &flag {
                return match self.args.get(i + 1) {
                    Some(v) => Some(v.clone()),
                    None => {
                        eprintln!("error: --{name} needs a value");
                        std::process::exit(2)
                    }
                };
            }
            if let Some(v) = a.strip_prefix(&prefix) {
                return Some(v.to_string());
            }
        }
        None
    }

    /// Prints usage for `--help`, and rejects flags nobody asked for. Call after all gets.
    pub fn finish(&self, about: &str) {
        let usage = || {
            let mut s = format!("{about}\n\nflags:\n");
            for (name, help) in &self.known {
                s.push_str(&format!("  --{name:<14} {help}\n"));
            }
            s
        };
        if self.args.iter().any(|a| a == "--help" || a == "-h") {
            print!("{}", usage());
            std::process::exit(0);
        }
        for (i, a) in self.args.iter().enumerate() {
            if let Some(name) = a.strip_prefix("--") {
                let name = name.split('=').next().unwrap_or(name);
                if !self.known.iter().any(|(k, _)| *k == name) {
                    eprintln!("error: unknown flag --{name}\n\n{}", usage());
                    std::process::exit(2);
                }
            } else if i == 0 || !self.args[i - 1].starts_with("--") || self.args[i - 1].contains('=') {
                eprintln!("error: unexpected argument {a:?}\n\n{}", usage());
                std::process::exit(2);
            }
        }
    }
}

/// Loads the MNIST-format files in `dir` and says what was loaded (and on how many threads
/// the run will train), or exits with the loader's message.
pub fn load_mnist(dir: &std::path::Path, threads: usize) -> glassbox::data::Mnist {
    let start = Instant::now();
    let mnist = glassbox::data::Mnist::load(dir).unwrap_or_else(|e| {
        eprintln!("error: {e}");
        std::process::exit(1)
    });
    println!(
        "loaded {} training and {} test images of {}x{} from {} in {:.2}s; {threads} threads",
        mnist.train.len(),
        mnist.test.len(),
        mnist.train.rows,
        mnist.train.cols,
        dir.display(),
        start.elapsed().as_secs_f64()
    );
    mnist
}

/// Sizes rayon's global pool: `--threads` if given, else `RAYON_NUM_THREADS` or the core count.
pub fn init_threads(threads: Option<usize>) -> usize {
    if let Some(n) = threads {
        if let Err(e) = rayon::ThreadPoolBuilder::new().num_threads(n).build_global() {
            eprintln!("warning: could not size the thread pool: {e}");
        }
    }
    rayon::current_num_threads()
}

/// A one-line progress bar, redrawn in place on a terminal and silent otherwise (so logs and
/// CI output stay clean).
pub struct Progress {
    total: usize,
    label: String,
    start: Instant,
    enabled: bool,
    last_drawn: usize,
}

impl Progress {
    /// A bar for `total` steps.
    pub fn new(label: impl Into<String>, total: usize) -> Progress {
        Progress {
            total,
            label: label.into(),
            start: Instant::now(),
            enabled: std::io::stderr().is_terminal(),
            last_drawn: usize::MAX,
        }
    }

    /// Redraws at `done` steps with a status text.
    pub fn update(&mut self, done: usize, status: &str) {
        if !self.enabled || self.total == 0 {
            return;
        }
        let width = 30;
        let filled = done * width / self.total;
        if filled == self.last_drawn && done != self.total {
            return;
        }
        self.last_drawn = filled;
        let elapsed = self.start.elapsed().as_secs_f64();
        eprint!(
            "\r{} [{}{}] {done}/{} {elapsed:.1}s {status}   ",
            self.label,
            "#".repeat(filled),
            "-".repeat(width - filled),
            self.total
        );
        let _ = std::io::stderr().flush();
    }

    /// Clears the bar line.
    pub fn finish(&self) {
        if self.enabled {
            eprint!("\r{}\r", " ".repeat(100));
        }
    }
}

/// The data flags every MNIST example shares, parsed with per-example defaults.
pub struct MnistRun {
    /// Passes over the training set.
    pub epochs: usize,
    /// Examples per step.
    pub batch_size: usize,
    /// Adam's peak learning rate (cosine-decayed to 0 over the run).
    pub lr: f64,
    /// Seed for initialization and shuffling.
    pub seed: u64,
    /// Worker threads actually in use.
    pub threads: usize,
    /// Folder with the four MNIST-format IDX files.
    pub data: std::path::PathBuf,
    /// `--explain`, `--graph`, `--health`, `--log-dir`, `--log-every`.
    pub instruments: instruments::Instruments,
}

impl MnistRun {
    /// Reads `--epochs --batch-size --lr --seed --threads --data`, the instrument flags (logs
    /// default to `runs/<name>`) and `--help`, with the example's own defaults, and sizes the
    /// thread pool.
    pub fn from_flags(name: &str, about: &str, epochs: usize, batch_size: usize, lr: f64) -> MnistRun {
        let mut flags = Flags::from_env();
        let epochs: usize = flags.get("epochs", epochs, "passes over the training set");
        let batch_size: usize = flags.get("batch-size", batch_size, "examples per step");
        let lr: f64 = flags.get("lr", lr, "Adam learning rate (cosine-decayed to 0 over the run)");
        let seed: u64 = flags.get("seed", 0, "seed for initialization and shuffling");
        let threads: Option<usize> =
            flags.optional("threads", "worker threads (default: RAYON_NUM_THREADS or all cores)");
        let data =
            flags.get("data", glassbox::data::mnist::default_dir(), "folder with the four MNIST-format IDX files");
        let instruments = instruments::Instruments::from_flags(&mut flags, &format!("runs/{name}"));
        flags.finish(about);
        if batch_size == 0 || epochs == 0 {
            eprintln!("error: --batch-size and --epochs must be positive");
            std::process::exit(2);
        }
        MnistRun { epochs, batch_size, lr, seed, threads: init_threads(threads), data, instruments }
    }

    /// Loads the data set, or exits with the loader's message.
    pub fn load(&self) -> glassbox::data::Mnist {
        load_mnist(&self.data, self.threads)
    }

    /// Trains `model` (whose input is a batch of images shaped `[batch] + image_shape`, and
    /// whose output is `[batch, 10]` logits) with softmax cross-entropy and Adam on a cosine
    /// schedule; prints each epoch's train loss, test accuracy and time, then the per-class
    /// report and, last, `test accuracy: 0.XXXX`. The instruments apply: on health steps,
    /// `extra_health` (if any) reports on the batch too (the LSTM's gate saturation). Writes the
    /// metrics log after every epoch. Returns the final test confusion matrix.
    pub fn train_classifier(
        &self,
        model: &mut dyn glassbox::nn::Module,
        image_shape: &[usize],
        mnist: &glassbox::data::Mnist,
        extra_health: Option<&dyn Fn(&glassbox::Tensor) -> String>,
    ) -> glassbox::metrics::ConfusionMatrix {
        use glassbox::data::{shuffled_batches, NUM_CLASSES};
        use glassbox::inspect::{HealthReport, MetricsLog, WeightSnapshot};
        use glassbox::optim::{Adam, CosineSchedule, Optimizer};

        let ins = &self.instruments;
        let params = model.named_parameters();
        let mut log = MetricsLog::new(&["train_loss", "test_loss", "train_accuracy", "test_accuracy"]);
        let (mut window_loss, mut window_correct, mut window_seen) = (0.0, 0, 0);

        let start = Instant::now();
        // Shuffling draws from its own stream, so changing the model never changes the batches.
        let mut rng = glassbox::rng::Rng::new(self.seed.wrapping_add(1));
        let mut optimizer = Adam::new(model.parameters(), self.lr);
        let steps_per_epoch = mnist.train.len().div_ceil(self.batch_size);
        let schedule = CosineSchedule {
            base_lr: self.lr,
            min_lr: 0.0,
            warmup_steps: 0,
            total_steps: self.epochs * steps_per_epoch,
        };
        let (mut x_buf, mut y_buf) = (glassbox::tensor::HostBuffer::new(), Vec::new());
        let mut step = 0;
        for epoch in 1..=self.epochs {
            let epoch_start = Instant::now();
            model.set_training(true);
            let batches = shuffled_batches(mnist.train.len(), self.batch_size, &mut rng);
            let mut progress = Progress::new(format!("epoch {epoch}/{}", self.epochs), batches.len());
            let (mut loss_sum, mut seen) = (0.0, 0);
            for (i, batch) in batches.iter().enumerate() {
                mnist.train.gather_normalized(batch, &mut x_buf);
                mnist.train.gather_labels(batch, &mut y_buf);
                let shape: Vec<usize> = std::iter::once(batch.len()).chain(image_shape.iter().copied()).collect();
                let x = glassbox::Tensor::from_buffer(std::mem::take(&mut x_buf), &shape);
                let logits = model.forward(&x);
                let loss = logits.cross_entropy(&y_buf);
                optimizer.zero_grad();
                ins.backward(step, &loss, || {
                    let mut names = params.clone();
                    names.push(("input batch".to_string(), x.clone()));
                    names
                });
                optimizer.set_learning_rate(schedule.lr_at(step));
                let before = ins.health_due(step).then(|| WeightSnapshot::take(&params));
                optimizer.step();
                if let Some(before) = before {
                    progress.finish();
                    println!("\nhealth at step {step}:\n{}", HealthReport::check(&params, Some(&before)));
                    if let Some(extra) = extra_health {
                        println!("{}", glassbox::no_grad(|| extra(&x)));
                    }
                }
                step += 1;
                let batch_loss = loss.item_f64();
                loss_sum += batch_loss * batch.len() as f64;
                seen += batch.len();
                let predicted = glassbox::metrics::argmax_rows(&logits.to_vec(), NUM_CLASSES);
                window_correct += predicted.iter().zip(&y_buf).filter(|(p, t)| p == t).count();
                window_loss += batch_loss * batch.len() as f64;
                window_seen += batch.len();
                if step % ins.log_every == 0 {
                    let (l, a) = (window_loss / window_seen as f64, window_correct as f64 / window_seen as f64);
                    log.record(step, &[("train_loss", l), ("train_accuracy", a)]);
                    (window_loss, window_correct, window_seen) = (0.0, 0, 0);
                }
                progress.update(i + 1, &format!("loss {:.4}", loss_sum / seen as f64));
            }
            progress.finish();
            let train_time = epoch_start.elapsed().as_secs_f64();
            model.set_training(false);
            let (confusion, test_loss) = evaluate_classifier(model, image_shape, &mnist.test);
            println!(
                "epoch {epoch:>2}/{}  train loss {:.4}  test loss {test_loss:.4}  test accuracy {:.4}  {train_time:.1}s",
                self.epochs,
                loss_sum / seen as f64,
                confusion.accuracy()
            );
            log.record(step, &[("test_loss", test_loss), ("test_accuracy", confusion.accuracy())]);
            instruments::write_metrics(
                &log,
                &ins.log_dir,
                &model.describe(),
                &["train_loss", "test_loss"],
                &["train_accuracy", "test_accuracy"],
            );
        }
        let (confusion, _) = evaluate_classifier(model, image_shape, &mnist.test);
        println!("\n{}", confusion.per_class_report());
        println!("confusion matrix (rows: true class, columns: predicted):\n{confusion}");
        println!(
            "metrics: {} and {}",
            ins.log_dir.join("metrics.csv").display(),
            ins.log_dir.join("metrics.svg").display()
        );
        println!("training and evaluation took {:.1}s", start.elapsed().as_secs_f64());
        println!("test accuracy: {:.4}", confusion.accuracy());
        confusion
    }
}

/// Predicts every image of `set` (batches of 1000, no graph) and tallies the results; also
/// returns the mean cross-entropy over the set.
pub fn evaluate_classifier(
    model: &dyn glassbox::nn::Module,
    image_shape: &[usize],
    set: &glassbox::data::ImageSet,
) -> (glassbox::metrics::ConfusionMatrix, f64) {
    use glassbox::data::{sequential_batches, NUM_CLASSES};
    let mut confusion = glassbox::metrics::ConfusionMatrix::new(NUM_CLASSES);
    let (mut x_buf, mut y_buf) = (glassbox::tensor::HostBuffer::new(), Vec::new());
    let mut loss_sum = 0.0;
    glassbox::no_grad(|| {
        for batch in sequential_batches(set.len(), 1000) {
            set.gather_normalized(&batch, &mut x_buf);
            set.gather_labels(&batch, &mut y_buf);
            let shape: Vec<usize> = std::iter::once(batch.len()).chain(image_shape.iter().copied()).collect();
            let logits = model.forward(&glassbox::Tensor::from_buffer(std::mem::take(&mut x_buf), &shape));
            loss_sum += logits.cross_entropy(&y_buf).item_f64() * batch.len() as f64;
            for (&truth, pred) in y_buf.iter().zip(glassbox::metrics::argmax_rows(&logits.to_vec(), NUM_CLASSES)) {
                confusion.add(truth, pred);
            }
        }
    });
    (confusion, loss_sum / set.len().max(1) as f64)
}

/// Help text of the `--device` flag.
pub const DEVICE_HELP: &str = "cpu, cuda or cuda:N (CUDA needs a build with --features cuda)";

/// The device named by `--device`, checked by moving a tensor there: exits with the reason
/// (not built in, no driver, no such GPU) rather than failing later inside an op.
pub fn open_device(name: &str) -> glassbox::Device {
    let device: glassbox::Device = name.parse().unwrap_or_else(|e| {
        eprintln!("error: --device {name}: {e}");
        std::process::exit(2)
    });
    if let Err(e) = glassbox::Tensor::zeros(&[1]).to(device) {
        eprintln!("error: --device {name}: {e}");
        std::process::exit(1)
    }
    device
}
