//! A GPT-style decoder-only transformer (Radford et al. 2019): token + learned position
//! embeddings, a stack of pre-LayerNorm blocks (causal self-attention, then a GELU MLP, each
//! around a residual connection), a final LayerNorm and a linear head to vocabulary logits.
//! Parameter names follow nanoGPT's / HuggingFace GPT-2's (`transformer.h.0.attn.c_attn.weight`
//! and so on, with PyTorch's `[out, in]` linear layout).

use super::{Embedding, Init, LayerNorm, Linear, Module};
use crate::rng::Rng;
use crate::Tensor;

/// Sizes of a GPT.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GptConfig {
    /// Number of distinct tokens.
    pub vocab_size: usize,
    /// Longest context the position table covers.
    pub block_size: usize,
    /// Number of transformer blocks.
    pub n_layer: usize,
    /// Attention heads per block.
    pub n_head: usize,
    /// Width of the residual stream.
    pub n_embd: usize,
}

/// Multi-head causal self-attention: one linear map to queries, keys and values for all heads,
/// the fused attention op per head, and an output projection.
pub struct CausalSelfAttention {
    /// `[3 C, C]`: queries, keys and values, stacked.
    pub c_attn: Linear,
    /// `[C, C]`: mixes the heads' outputs.
    pub c_proj: Linear,
    n_head: usize,
}

impl CausalSelfAttention {
    /// Attention over `n_embd` features split into `n_head` heads; weights N(0, 0.02), the
    /// output projection scaled down by `1 / sqrt(2 n_layer)` as in GPT-2, so the residual
    /// stream's variance does not grow with depth.
    pub fn new(n_embd: usize, n_head: usize, n_layer: usize, rng: &mut Rng) -> CausalSelfAttention {
        assert!(
            n_embd.is_multiple_of(n_head),
            "CausalSelfAttention: width {n_embd} is not divisible by {n_head} heads"
        );
        let proj_std = 0.02 / (2.0 * n_layer as f64).sqrt();
        CausalSelfAttention {
            c_attn: Linear::with_init(n_embd, 3 * n_embd, Init::Normal { std: 0.02 }, true, rng),
            c_proj: Linear::with_init(n_embd, n_embd, Init::Normal { std: proj_std }, true, rng),
            n_head,
        }
    }
}

impl Module for CausalSelfAttention {
    fn forward(&self, x: &Tensor) -> Tensor {
        // Heads are read in place from the packed [B, T, 3C] projection; the output comes
        // back as [B, T, C] with the heads side by side.
        let y = self.c_attn.forward(x).multi_head_attention(self.n_head, true);
        self.c_proj.forward(&y)
    }

    fn named_parameters(&self) -> Vec<(String, Tensor)> {
        prefixed("c_attn", &self.c_attn).into_iter().chain(prefixed("c_proj", &self.c_proj)).collect()
    }

    fn describe(&self) -> String {
        format!("CausalSelfAttention(width {}, {} heads)", self.c_proj.weight.shape()[0], self.n_head)
    }
}

/// One transformer block: `x + attn(ln_1(x))`, then `x + mlp(ln_2(x))` with a 4x GELU MLP.
pub struct Block {
    /// Normalizes the attention's input.
    pub ln_1: LayerNorm,
    /// Causal self-attention.
    pub attn: CausalSelfAttention,
    /// Normalizes the MLP's input.
    pub ln_2: LayerNorm,
    /// `C -> 4C`
    pub c_fc: Linear,
    /// `4C -> C`
    pub mlp_proj: Linear,
}

impl Block {
    /// A block of width `n_embd` (see [`CausalSelfAttention::new`] for the initialization).
    pub fn new(n_embd: usize, n_head: usize, n_layer: usize, rng: &mut Rng) -> Block {
        let proj_std = 0.02 / (2.0 * n_layer as f64).sqrt();
        Block {
            ln_1: LayerNorm::new(n_embd),
            attn: CausalSelfAttention::new(n_embd, n_head, n_layer, rng),
            ln_2: LayerNorm::new(n_embd),
            c_fc: Linear::with_init(n_embd, 4 * n_embd, Init::Normal { std: 0.02 }, true, rng),
            mlp_proj: Linear::with_init(4 * n_embd, n_embd, Init::Normal { std: proj_std }, true, rng),
        }
    }

    /// The block with dropout on each residual branch before it is added back (GPT-2's
    /// `resid_pdrop`): probability `p`, masks drawn from `rng`. With `p = 0` this is
    /// [`Module::forward`].
    pub fn forward_with_dropout(&self, x: &Tensor, p: f64, rng: &mut Rng) -> Tensor {
        let attn = self.attn.forward(&self.ln_1.forward(x)).dropout(p, true, rng);
        let x = x.add(&attn);
        let hidden = self.c_fc.forward(&self.ln_2.forward(&x)).gelu();
        x.add(&self.mlp_proj.forward(&hidden).dropout(p, true, rng))
    }
}

impl Module for Block {
    fn forward(&self, x: &Tensor) -> Tensor {
        // Dropout with p = 0 returns its input and draws nothing, so this generator is unused.
        self.forward_with_dropout(x, 0.0, &mut Rng::new(0))
    }

    fn named_parameters(&self) -> Vec<(String, Tensor)> {
        let mut out = prefixed("ln_1", &self.ln_1);
        out.extend(prefixed("attn", &self.attn));
        out.extend(prefixed("ln_2", &self.ln_2));
        out.extend(prefixed("mlp.c_fc", &self.c_fc));
        out.extend(prefixed("mlp.c_proj", &self.mlp_proj));
        out
    }

    fn describe(&self) -> String {
        format!("Block({})", self.attn.describe())
    }
}

/// The whole model.
pub struct Gpt {
    /// Its sizes.
    pub config: GptConfig,
    /// Token embeddings `[vocab, C]`.
    pub wte: Embedding,
    /// Position embeddings `[block_size, C]`.
    pub wpe: Embedding,
    /// The blocks, in order.
    pub blocks: Vec<Block>,
    /// Final normalization.
    pub ln_f: LayerNorm,
    /// `C -> vocab`, no bias.
    pub lm_head: Linear,
}

impl Gpt {
    /// A freshly initialized model.
    pub fn new(config: GptConfig, rng: &mut Rng) -> Gpt {
        let GptConfig { vocab_size, block_size, n_layer, n_head, n_embd } = config;
        Gpt {
            config,
            wte: Embedding::new(vocab_size, n_embd, Init::Normal { std: 0.02 }, rng),
            wpe: Embedding::new(block_size, n_embd, Init::Normal { std: 0.02 }, rng),
            blocks: (0..n_layer).map(|_| Block::new(n_embd, n_head, n_layer, rng)).collect(),
            ln_f: LayerNorm::new(n_embd),
            lm_head: Linear::with_init(n_embd, vocab_size, Init::Normal { std: 0.02 }, false, rng),
        }
    }

    /// Logits `[batch, t, vocab]` for token ids laid out `[batch, t]` (row-major).
    pub fn logits(&self, ids: &[usize], batch: usize, t: usize) -> Tensor {
        self.logits_with_dropout(ids, batch, t, 0.0, &mut Rng::new(0))
    }

    /// [`Gpt::logits`] as in training with dropout `p` (nanoGPT's placement: on the sum of
    /// the embeddings and on each residual branch), masks drawn from `rng`. Regularizes a
    /// model that sees its corpus many times over: the default Shakespeare run passes over the
    /// training text about 13 times, and without dropout its validation loss stalls while the
    /// training loss keeps falling.
    pub fn logits_with_dropout(&self, ids: &[usize], batch: usize, t: usize, p: f64, rng: &mut Rng) -> Tensor {
        assert!(
            t <= self.config.block_size,
            "Gpt::forward: sequence length {t} exceeds the block size {}",
            self.config.block_size
        );
        assert!(ids.len() == batch * t, "Gpt::forward: {} ids for a [{batch}, {t}] batch", ids.len());
        if let Some(&bad) = ids.iter().find(|&&i| i >= self.config.vocab_size) {
            panic!("Gpt::forward: token id {bad} is outside the vocabulary of {}", self.config.vocab_size);
        }
        let tokens = self.wte.forward(ids, &[batch, t]);
        let positions = self.wpe.weight.narrow(0, 0, t);
        let mut x = tokens.add(&positions).dropout(p, true, rng);
        for block in &self.blocks {
            x = block.forward_with_dropout(&x, p, rng);
        }
        self.lm_head.forward(&self.ln_f.forward(&x))
    }

    /// Mean next-token cross-entropy of `ids` against `targets` (both `[batch, t]`).
    pub fn loss(&self, ids: &[usize], targets: &[usize], batch: usize, t: usize) -> Tensor {
        self.loss_with_dropout(ids, targets, batch, t, 0.0, &mut Rng::new(0))
    }

    /// [`Gpt::loss`] with dropout `p` (see [`Gpt::logits_with_dropout`]): the training loss.
    pub fn loss_with_dropout(
        &self,
        ids: &[usize],
        targets: &[usize],
        batch: usize,
        t: usize,
        p: f64,
        rng: &mut Rng,
    ) -> Tensor {
        let logits = self.logits_with_dropout(ids, batch, t, p, rng);
        logits.reshape(&[batch * t, self.config.vocab_size]).cross_entropy(targets)
    }

    /// Every parameter.
    pub fn parameters(&self) -> Vec<Tensor> {
        Module::named_parameters(self).into_iter().map(|(_, t)| t).collect()
    }

    /// Number of trainable scalars.
    pub fn num_parameters(&self) -> usize {
        self.parameters().iter().map(|p| p.numel()).sum()
    }

    /// Continues `prompt` by `count` tokens, sampling each from the softmax of the last
    /// position's logits divided by `temperature`, restricted to the `top_k` likeliest tokens
    /// when given. Runs without a graph.
    pub fn generate(
        &self,
        prompt: &[usize],
        count: usize,
        temperature: f64,
        top_k: Option<usize>,
        rng: &mut Rng,
    ) -> Vec<usize> {
        assert!(temperature > 0.0, "Gpt::generate: temperature must be positive, got {temperature}");
        let mut tokens = prompt.to_vec();
        crate::no_grad(|| {
            for _ in 0..count {
                let start = tokens.len().saturating_sub(self.config.block_size);
                let context = &tokens[start..];
                let logits = self.logits(context, 1, context.len());
                let vocab = self.config.vocab_size;
                let last = logits.narrow(1, context.len() - 1, 1).reshape(&[vocab]).to_vec_f64();
                tokens.push(sample_logits(&last, temperature, top_k, rng));
            }
        });
        tokens[prompt.len()..].to_vec()
    }
}

/// As a [`Module`], a GPT takes its token ids as a `[batch, t]` tensor of whole numbers
/// (glassbox has no integer dtype) and returns the logits; [`Gpt::logits`] takes them as a
/// slice. This is what lets checkpoints and the instruments treat it like any other model.
impl Module for Gpt {
    fn forward(&self, ids: &Tensor) -> Tensor {
        assert!(ids.rank() == 2, "Gpt::forward: token ids must be [batch, t], got shape {:?}", ids.shape());
        let (batch, t) = (ids.shape()[0], ids.shape()[1]);
        let ids: Vec<usize> = ids
            .to_vec_f64()
            .into_iter()
            .map(|v| {
                assert!(v >= 0.0 && v.fract() == 0.0, "Gpt::forward: token id {v} is not a whole number >= 0");
                v as usize
            })
            .collect();
        self.logits(&ids, batch, t)
    }

    /// Every parameter with its nanoGPT-style name.
    fn named_parameters(&self) -> Vec<(String, Tensor)> {
        let mut out = vec![
            ("transformer.wte.weight".to_string(), self.wte.weight.clone()),
            ("transformer.wpe.weight".to_string(), self.wpe.weight.clone()),
        ];
        for (i, block) in self.blocks.iter().enumerate() {
            out.extend(prefixed(&format!("transformer.h.{i}"), block));
        }
        out.extend(prefixed("transformer.ln_f", &self.ln_f));
        out.extend(prefixed("lm_head", &self.lm_head));
        out
    }

    fn describe(&self) -> String {
        let c = self.config;
        format!(
            "Gpt({} layers, {} heads, width {}, context {}, vocab {})",
            c.n_layer, c.n_head, c.n_embd, c.block_size, c.vocab_size
        )
    }
}

/// Draws an index from `softmax(logits / temperature)`, keeping only the `top_k` largest.
pub fn sample_logits(logits: &[f64], temperature: f64, top_k: Option<usize>, rng: &mut Rng) -> usize {
    let mut order: Vec<usize> = (0..logits.len()).collect();
    order.sort_by(|&a, &b| logits[b].total_cmp(&logits[a]));
    let keep = top_k.unwrap_or(logits.len()).clamp(1, logits.len());
    let kept = &order[..keep];
    let max = logits[kept[0]];
    let weights: Vec<f64> = kept.iter().map(|&i| ((logits[i] - max) / temperature).exp()).collect();
    let mut target = rng.uniform() * weights.iter().sum::<f64>();
    for (&i, w) in kept.iter().zip(&weights) {
        if target < *w {
            return i;
        }
        target -= w;
    }
    kept[keep - 1]
}

/// A module's named parameters with `prefix.` in front.
fn prefixed(prefix: &str, module: &dyn Module) -> Vec<(String, Tensor)> {
    module.named_parameters().into_iter().map(|(n, t)| (format!("{prefix}.{n}"), t)).collect()
}
