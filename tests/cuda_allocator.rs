//! The caching allocator in a training loop: after the first steps, a step takes every buffer
//! from the cache and none from the driver. Alone in its test binary, so no other test
//! allocates on the device meanwhile. Runs on a GPU (`--features cuda`) or the emulator
//! (`--features cuda-emu`); prints a skip otherwise.

#[cfg(any(feature = "cuda", feature = "cuda-emu"))]
mod common;

#[cfg(not(any(feature = "cuda", feature = "cuda-emu")))]
#[test]
fn allocator_test_needs_a_cuda_feature() {
    println!("skip: built without --features cuda or --features cuda-emu");
}

#[cfg(any(feature = "cuda", feature = "cuda-emu"))]
mod on_device {
    use super::common::cuda::device;
    use glassbox::nn::{Activation, Module, Sequential};
    use glassbox::optim::{Adam, Optimizer};
    use glassbox::rng::Rng;
    use glassbox::{Device, Tensor};

    #[test]
    fn a_training_step_in_steady_state_allocates_nothing_from_the_driver() {
        let Some(gpu) = device() else { return };
        let dev = Device::Cuda(gpu.ordinal());
        let model = Sequential::mlp(&[8, 16, 4], Activation::Tanh, 0.0, &mut Rng::new(42));
        model.move_to(dev).unwrap();
        let mut opt = Adam::new(model.parameters(), 1e-3);
        let x = Tensor::randn(&[8, 8], 43).to(dev).unwrap();
        let step = |opt: &mut Adam| {
            let loss = model.forward(&x).cross_entropy(&[0, 1, 2, 3, 0, 1, 2, 3]);
            opt.zero_grad();
            loss.backward();
            opt.step();
        };
        step(&mut opt);
        step(&mut opt);
        let before = gpu.allocator_stats();
        step(&mut opt);
        let after = gpu.allocator_stats();
        println!("allocator after a steady step: {after:?}");
        assert!(after.cache_hits > before.cache_hits, "the step allocated nothing at all? {after:?}");
        assert_eq!(
            after.driver_allocs, before.driver_allocs,
            "a steady step went to the driver: {before:?} -> {after:?}"
        );
    }
}
