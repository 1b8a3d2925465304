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
