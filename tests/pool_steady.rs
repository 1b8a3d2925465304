//! A steady training loop must neither allocate fresh buffers nor grow the buffer pool: every
//! buffer a step parks must be one a later step asks for again. Its own test binary, so no
//! other test touches the process-wide pool while it counts.

use glassbox::backend::cpu::pool;
use glassbox::nn::{Conv2d, Flatten, Gpt, GptConfig, Linear, Lstm, MaxPool2d, Module, Relu, Sequential};
use glassbox::optim::{Adam, AdamW, Optimizer};
use glassbox::rng::Rng;
use glassbox::Tensor;

/// Runs `step` a few times to warm the pool up, then checks that more steps neither miss nor
/// leave more bytes parked.
fn assert_steady(what: &str, mut step: impl FnMut()) {
    for _ in 0..3 {
        step();
    }
    let before = pool::stats();
    for _ in 0..4 {
        step();
    }
    let after = pool::stats();
    assert_eq!(after.misses, before.misses, "{what}: fresh allocations in a steady loop");
    assert_eq!(
        after.pooled_bytes, before.pooled_bytes,
        "{what}: the pool grew from {} to {} bytes: buffers were parked that no step asks for",
        before.pooled_bytes, after.pooled_bytes
    );
}

#[test]
fn lstm_cnn_and_gpt_training_steps_keep_the_pool_steady() {
    // Tensors made outside the pool (zeros padding `narrow`'s gradient, convolution outputs,
    // embedding lookups, a copy of every dropout's output) used to be parked when dropped and
    // never reused: the pool grew every step.
    let mut rng = Rng::new(0);
    let lstm = Lstm::new(28, 64, &mut rng);
    let head = Linear::new(64, 10, &mut rng);
    let mut params = lstm.parameters();
    params.extend(head.parameters());
    let mut opt = Adam::new(params, 1e-3);
    let x = Tensor::randn(&[32, 12, 28], 1);
    let y: Vec<usize> = (0..32).map(|i| i % 10).collect();
    assert_steady("LSTM", || {
        let loss = head.forward(&lstm.forward_with_state(&x, None).h).cross_entropy(&y);
        opt.zero_grad();
        loss.backward();
        opt.step();
    });

    let cnn = Sequential::new()
        .push(Conv2d::new(1, 8, [5, 5], &mut rng).padding([2, 2]))
        .push(Relu)
        .push(MaxPool2d::new([2, 2]))
        .push(Flatten)
        .push(Linear::new(8 * 14 * 14, 10, &mut rng));
    let mut opt = Adam::new(cnn.parameters(), 1e-3);
    let images = Tensor::randn(&[16, 1, 28, 28], 2);
    let labels: Vec<usize> = (0..16).map(|i| i % 10).collect();
    assert_steady("CNN", || {
        let loss = cnn.forward(&images).cross_entropy(&labels);
        opt.zero_grad();
        loss.backward();
        opt.step();
    });

    // Sizes chosen so the activations (8 x 16 tokens x 32) are big enough to be pooled.
    let config = GptConfig { vocab_size: 65, block_size: 16, n_layer: 1, n_head: 2, n_embd: 32 };
    let gpt = Gpt::new(config, &mut rng);
    let mut opt = AdamW::new(gpt.parameters(), 1e-3);
    let ids: Vec<usize> = (0..8 * 16).map(|i| (i * 7) % 65).collect();
    let targets: Vec<usize> = (0..8 * 16).map(|i| (i * 11) % 65).collect();
    let mut dropout_rng = Rng::new(1);
    assert_steady("GPT with dropout", || {
        let loss = gpt.loss_with_dropout(&ids, &targets, 8, 16, 0.1, &mut dropout_rng);
        opt.zero_grad();
        loss.backward();
        opt.step();
    });
}
