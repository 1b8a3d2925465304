//! The GPT model: shapes, parameter names, learning on a tiny corpus, sampling.

use glassbox::data::text::{random_windows, TextData};
use glassbox::nn::gpt::sample_logits;
use glassbox::nn::{Gpt, GptConfig, Module};
use glassbox::optim::{AdamW, Optimizer};
use glassbox::rng::Rng;

fn tiny() -> GptConfig {
    GptConfig { vocab_size: 11, block_size: 8, n_layer: 2, n_head: 2, n_embd: 16 }
}

#[test]
fn forward_gives_logits_per_position_and_names_follow_nanogpt() {
    let model = Gpt::new(tiny(), &mut Rng::new(0));
    let ids: Vec<usize> = (0..2 * 5).map(|i| i % 11).collect();
    assert_eq!(model.logits(&ids, 2, 5).shape(), &[2, 5, 11]);
    let names: Vec<String> = model.named_parameters().into_iter().map(|(n, _)| n).collect();
    for expected in [
        "transformer.wte.weight",
        "transformer.h.1.attn.c_attn.weight",
        "transformer.h.0.mlp.c_proj.bias",
        "lm_head.weight",
    ] {
        assert!(names.iter().any(|n| n == expected), "missing {expected} in {names:?}");
    }
    // 2 embeddings, 12 tensors per block, final norm 2, head 1.
    assert_eq!(names.len(), 2 + 2 * 12 + 2 + 1);
}

#[test]
fn causal_model_output_at_a_position_ignores_later_tokens() {
    let model = Gpt::new(tiny(), &mut Rng::new(1));
    let a = model.logits(&[1, 2, 3, 4], 1, 4).narrow(1, 0, 2).to_vec();
    let b = model.logits(&[1, 2, 9, 0], 1, 4).narrow(1, 0, 2).to_vec();
    assert_eq!(a, b);
}

#[test]
fn dropout_changes_only_training_losses_and_draws_from_the_given_generator() {
    let model = Gpt::new(tiny(), &mut Rng::new(3));
    let ids: Vec<usize> = (0..2 * 8).map(|i| (i * 3) % 11).collect();
    let targets: Vec<usize> = (0..2 * 8).map(|i| (i * 5) % 11).collect();
    let plain = model.loss(&ids, &targets, 2, 8).item();
    // p = 0 is the plain loss, and draws nothing.
    let mut rng = Rng::new(4);
    assert_eq!(model.loss_with_dropout(&ids, &targets, 2, 8, 0.0, &mut rng).item(), plain);
    assert_eq!(rng.next_u64(), Rng::new(4).next_u64());
    // p > 0 changes the loss; the same generator state gives the same masks.
    let dropped = model.loss_with_dropout(&ids, &targets, 2, 8, 0.5, &mut Rng::new(5)).item();
    assert_ne!(dropped, plain);
    assert_eq!(model.loss_with_dropout(&ids, &targets, 2, 8, 0.5, &mut Rng::new(5)).item(), dropped);
}

#[test]
fn gpt_learns_a_repeating_text() {
    let text = "abcdefghij".repeat(40);
    let data = TextData::from_text(&text, 0.1).unwrap();
    let config = GptConfig { vocab_size: data.vocab.len(), ..tiny() };
    let mut rng = Rng::new(2);
    let model = Gpt::new(config, &mut rng);
    let mut opt = AdamW::new(model.parameters(), 1e-2).weight_decay(0.0);
    let mut first = None;
    let mut last = 0.0;
    for _ in 0..60 {
        let (x, y) = random_windows(&data.train, 4, 8, &mut rng);
        let loss = model.loss(&x, &y, 4, 8);
        first.get_or_insert(loss.item());
        last = loss.item();
        opt.zero_grad();
        loss.backward();
        opt.step();
    }
    let first = first.unwrap();
    assert!(first > 2.0 && last < 0.3, "loss went from {first} to {last}");
    let continuation = model.generate(&data.vocab.encode("abc").unwrap(), 7, 0.5, Some(2), &mut rng);
    assert_eq!(data.vocab.decode(&continuation), "defghij");
}

#[test]
fn top_k_sampling_never_picks_outside_the_top_k() {
    let logits = [0.0, 5.0, 1.0, 4.9, -3.0];
    let mut rng = Rng::new(3);
    for _ in 0..200 {
        let pick = sample_logits(&logits, 1.0, Some(2), &mut rng);
        assert!(pick == 1 || pick == 3, "picked {pick}");
    }
}
