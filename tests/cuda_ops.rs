//! The autograd op set on a CUDA device against the CPU: for each op, the same computation
//! runs on both, and the outputs and every input gradient must agree. Also: moving tensors and
//! models, the clear panic when ops mix devices, errors instead of panics for unusable devices,
//! and small models training on the device.
//!
//! The same test bodies run on a GPU (`--features cuda`) and on the CPU emulation of CUDA
//! (`--features cuda-emu`); without either, or without a device, the tests print a skip.

#[cfg(any(feature = "cuda", feature = "cuda-emu"))]
mod common;

#[cfg(not(any(feature = "cuda", feature = "cuda-emu")))]
#[test]
fn cuda_op_tests_need_a_cuda_feature() {
    use glassbox::Device;
    println!("skip: built without --features cuda or --features cuda-emu; no op was run on CUDA");
    // Naming CUDA in such a build is an error that says why.
    let err = "cuda".parse::<Device>().unwrap_err();
    assert!(err.to_string().contains("--features cuda"), "{err}");
}

#[cfg(any(feature = "cuda", feature = "cuda-emu"))]
mod on_device {
    use super::common::cuda::device;
    use glassbox::nn::{Activation, Gpt, GptConfig, Module, Sequential};
    use glassbox::optim::{Adam, AdamW, Optimizer, RmsProp, Sgd};
    use glassbox::rng::Rng;
    use glassbox::{DType, Device, Tensor};

    /// Forward results of one op: a handful of roundings apart (different exp/tanh, sum order).
    const OP_TOL: f64 = 1e-4;

    fn cuda() -> Option<Device> {
        device().map(|d| Device::Cuda(d.ordinal()))
    }

    fn assert_close(what: &str, got: &[f32], want: &[f32], tol: f64) {
        assert_eq!(got.len(), want.len(), "{what}: lengths differ");
        for (i, (&g, &w)) in got.iter().zip(want).enumerate() {
            let err = (g as f64 - w as f64).abs() / (w as f64).abs().max(1.0);
            assert!(
                err <= tol || (g.is_nan() && w.is_nan()),
                "{what}: element {i} is {g} on CUDA, {w} on the CPU (tolerance {tol})"
            );
        }
    }

    /// Runs `f` on `inputs` on the CPU and on `dev`, as leaves needing gradients; compares the
    /// outputs and, after backward of `sum(out * r)` with a random `r`, every input gradient.
    fn check_op(name: &str, dev: Device, inputs: &[&Tensor], f: impl Fn(&[Tensor]) -> Tensor) {
        let cpu_in: Vec<Tensor> = inputs.iter().map(|t| t.detach().requires_grad_()).collect();
        let dev_in: Vec<Tensor> = inputs.iter().map(|t| t.to(dev).unwrap().detach().requires_grad_()).collect();
        let (out_cpu, out_dev) = (f(&cpu_in), f(&dev_in));
        assert_eq!(out_dev.device(), dev, "{name}: the result left the device");
        assert_eq!(out_cpu.shape(), out_dev.shape(), "{name}: shapes differ");
        assert_close(&format!("{name} forward"), &out_dev.to_vec(), &out_cpu.to_vec(), OP_TOL);
        let r = Tensor::randn(out_cpu.shape(), 99);
        out_cpu.mul(&r).sum_all().backward();
        out_dev.mul(&r.to(dev).unwrap()).sum_all().backward();
        for (k, (c, d)) in cpu_in.iter().zip(&dev_in).enumerate() {
            match (c.grad(), d.grad()) {
                (Some(gc), Some(gd)) => {
                    assert_eq!(gd.device(), dev, "{name}: gradient {k} is not on the device");
                    assert_close(&format!("{name} gradient {k}"), &gd.to_vec(), &gc.to_vec(), OP_TOL);
                }
                (None, None) => {}
                (gc, gd) => panic!("{name}: gradient {k} exists on CPU: {}, on CUDA: {}", gc.is_some(), gd.is_some()),
            }
        }
        println!("{name}: forward and gradients match the CPU");
    }

    fn randn(shape: &[usize], seed: u64) -> Tensor {
        Tensor::randn(shape, seed)
    }

    fn positive(shape: &[usize], seed: u64) -> Tensor {
        Tensor::rand(shape, seed).add_scalar(0.5)
    }

    #[test]
    fn elementwise_ops_and_their_gradients_match_the_cpu() {
        let Some(dev) = cuda() else { return };
        let x = randn(&[3, 7], 1);
        let p = positive(&[3, 7], 2);
        check_op("neg", dev, &[&x], |t| t[0].neg());
        check_op("exp", dev, &[&x], |t| t[0].exp());
        check_op("log", dev, &[&p], |t| t[0].log());
        check_op("sqrt", dev, &[&p], |t| t[0].sqrt());
        check_op("abs", dev, &[&x], |t| t[0].abs());
        check_op("relu", dev, &[&x], |t| t[0].relu());
        check_op("sigmoid", dev, &[&x], |t| t[0].sigmoid());
        check_op("tanh", dev, &[&x], |t| t[0].tanh());
        check_op("gelu", dev, &[&x], |t| t[0].gelu());
        check_op("powf", dev, &[&p], |t| t[0].powf(2.5));
        check_op("affine", dev, &[&x], |t| t[0].affine(-2.0, 0.5));
        // Broadcasting both ways, and a transposed operand.
        let row = randn(&[7], 3);
        let col = positive(&[3, 1], 4);
        check_op("add broadcast", dev, &[&x, &row], |t| t[0].add(&t[1]));
        check_op("sub broadcast", dev, &[&x, &col], |t| t[0].sub(&t[1]));
        check_op("mul transposed", dev, &[&x, &randn(&[7, 3], 5)], |t| t[0].mul(&t[1].t()));
        check_op("div broadcast", dev, &[&x, &col], |t| t[0].div(&t[1]));
        check_op("where / clamp_min", dev, &[&x], |t| t[0].clamp_min(0.1));
        check_op("masked_fill", dev, &[&x], |t| t[0].masked_fill(&t[0].gt_scalar(0.5), -1.0));
        check_op("compare", dev, &[&x, &row], |t| t[0].ge(&t[1]).add(&t[0].lt_scalar(0.0)).mul(&t[0]));
    }

    #[test]
    fn reductions_and_shape_ops_match_the_cpu() {
        let Some(dev) = cuda() else { return };
        let x = randn(&[4, 5, 6], 6);
        check_op("sum dims", dev, &[&x], |t| t[0].sum(&[0, 2], false));
        check_op("mean keepdim", dev, &[&x], |t| t[0].mean(&[1], true));
        check_op("max", dev, &[&x], |t| t[0].max(&[2], false));
        check_op("sum_all", dev, &[&x], |t| t[0].sum_all().reshape(&[1]));
        check_op("permute + contiguous", dev, &[&x], |t| t[0].permute(&[2, 0, 1]).contiguous());
        check_op("narrow + reshape", dev, &[&x], |t| t[0].narrow(1, 1, 3).reshape(&[4, 18]));
        // Two slices of one tensor: on a device the second gradient takes the out-of-place
        // path of `autograd::accumulate` (zeros around the slice, then an add).
        check_op("overlapping narrows", dev, &[&x], |t| t[0].narrow(2, 0, 4).mul(&t[0].narrow(2, 2, 4)));
        check_op("concat", dev, &[&x, &randn(&[4, 2, 6], 7)], |t| Tensor::concat(&[t[0].clone(), t[1].clone()], 1));
        check_op("stack + split", dev, &[&x], |t| Tensor::stack(&t[0].split(2, 0), 0));
        check_op("broadcast_to", dev, &[&randn(&[5, 1], 8)], |t| t[0].broadcast_to(&[3, 5, 4]));
        check_op("to_dtype f32", dev, &[&x], |t| t[0].to_dtype(DType::F32));
    }

    #[test]
    fn matmul_linear_and_losses_match_the_cpu() {
        let Some(dev) = cuda() else { return };
        check_op("matmul", dev, &[&randn(&[5, 7], 9), &randn(&[7, 3], 10)], |t| t[0].matmul(&t[1]));
        check_op("matmul batched broadcast", dev, &[&randn(&[2, 5, 7], 11), &randn(&[7, 3], 12)], |t| {
            t[0].matmul(&t[1])
        });
        check_op("matmul transposed", dev, &[&randn(&[7, 5], 13), &randn(&[3, 7], 14)], |t| t[0].t().matmul(&t[1].t()));
        check_op("linear", dev, &[&randn(&[2, 3, 6], 15), &randn(&[4, 6], 16), &randn(&[4], 17)], |t| {
            t[0].linear(&t[1], &t[2])
        });
        check_op("softmax dim 1", dev, &[&randn(&[4, 9], 18)], |t| t[0].softmax(1));
        check_op("log_softmax dim 0", dev, &[&randn(&[4, 9], 19)], |t| t[0].log_softmax(0));
        let targets = [3usize, 0, 8, 8];
        check_op("cross_entropy", dev, &[&randn(&[4, 9], 20)], |t| t[0].cross_entropy(&targets).reshape(&[1]));
        check_op("mse_loss", dev, &[&randn(&[3, 4], 21), &randn(&[3, 4], 22)], |t| t[0].mse_loss(&t[1]).reshape(&[1]));
        let probs = Tensor::rand(&[3, 4], 23).affine(0.8, 0.1);
        check_op("binary_cross_entropy", dev, &[&probs, &Tensor::rand(&[3, 4], 24)], |t| {
            t[0].binary_cross_entropy(&t[1]).reshape(&[1])
        });
        check_op("bce_with_logits", dev, &[&randn(&[3, 4], 25), &Tensor::rand(&[3, 4], 26)], |t| {
            t[0].binary_cross_entropy_with_logits(&t[1]).reshape(&[1])
        });
    }

    #[test]
    fn layer_norm_attention_indexing_and_dropout_match_the_cpu() {
        let Some(dev) = cuda() else { return };
        check_op("layer_norm", dev, &[&randn(&[2, 3, 10], 27), &randn(&[10], 28), &randn(&[10], 29)], |t| {
            t[0].layer_norm(&t[1], &t[2], 1e-5)
        });
        check_op(
            "scaled_dot_product_attention causal",
            dev,
            &[&randn(&[2, 9, 8], 30), &randn(&[2, 9, 8], 31), &randn(&[2, 9, 8], 32)],
            |t| Tensor::scaled_dot_product_attention(&t[0], &t[1], &t[2], true),
        );
        check_op("multi_head_attention", dev, &[&randn(&[2, 5, 3 * 12], 33)], |t| t[0].multi_head_attention(3, true));
        check_op("index_select repeats", dev, &[&randn(&[6, 4], 34)], |t| t[0].index_select(0, &[5, 0, 5, 2]));
        check_op("embedding", dev, &[&randn(&[10, 4], 35)], |t| t[0].embedding(&[1, 9, 1, 0, 3, 3], &[2, 3]));
        check_op("gather", dev, &[&randn(&[3, 5], 36)], |t| t[0].gather(1, &[4, 0, 1, 1, 2, 3], &[3, 2]));
        check_op("dropout", dev, &[&randn(&[4, 6], 37)], |t| t[0].dropout(0.3, true, &mut Rng::new(5)));
    }

    #[test]
    fn ops_that_mix_devices_panic_naming_the_op_and_both_devices() {
        let Some(dev) = cuda() else { return };
        let a = Tensor::ones(&[2, 2]).to(dev).unwrap();
        let b = Tensor::ones(&[2, 2]);
        let message = std::panic::catch_unwind(|| a.matmul(&b)).unwrap_err();
        let message = message.downcast_ref::<String>().cloned().unwrap_or_default();
        assert!(message.contains("matmul") && message.contains("cuda:0") && message.contains("cpu"), "{message}");
        let message = std::panic::catch_unwind(|| b.add(&a)).unwrap_err();
        let message = message.downcast_ref::<String>().cloned().unwrap_or_default();
        assert!(message.contains("add") && message.contains("cuda:0") && message.contains("cpu"), "{message}");
    }

    #[test]
    fn moving_tensors_round_trips_values_and_rejects_f64() {
        let Some(dev) = cuda() else { return };
        let x = randn(&[3, 4], 38);
        let on_dev = x.to(dev).unwrap();
        assert_eq!(on_dev.device(), dev);
        assert_eq!(on_dev.to(Device::Cpu).unwrap().to_vec(), x.to_vec());
        // A transposed view moves as its values, packed.
        assert_eq!(x.t().to(dev).unwrap().to_vec(), x.t().to_vec());
        let err = Tensor::from_vec_f64(vec![1.0], &[1]).to(dev).unwrap_err();
        assert!(err.to_string().contains("f32 only"), "{err}");
        assert_eq!(format!("{dev}"), "cuda:0");
        assert_eq!("cuda".parse::<Device>().unwrap(), dev);
        // A device that does not exist is an error, not a panic.
        assert!(Tensor::ones(&[1]).to(Device::Cuda(7)).is_err());
    }

    #[test]
    fn ops_without_a_cuda_kernel_say_so() {
        let Some(dev) = cuda() else { return };
        let x = Tensor::ones(&[1, 1, 4, 4]).to(dev).unwrap();
        let w = Tensor::ones(&[1, 1, 3, 3]).to(dev).unwrap();
        let message = std::panic::catch_unwind(|| x.conv2d(&w, None, [1, 1], [0, 0])).unwrap_err();
        let message = message.downcast_ref::<String>().cloned().unwrap_or_default();
        assert!(message.contains("conv2d has no CUDA kernel"), "{message}");
    }

    /// Trains an MLP on a fixed batch with `make_opt` on the CPU and on the device from the
    /// same initialization; the losses must fall and agree step by step.
    fn train_mlp_both_ways(dev: Device, name: &str, make_opt: fn(Vec<Tensor>) -> Box<dyn Optimizer>) {
        let x = randn(&[16, 8], 40);
        let labels: Vec<usize> = (0..16).map(|i| i % 4).collect();
        let run = |device: Device| -> Vec<f64> {
            let model = Sequential::mlp(&[8, 32, 4], Activation::Relu, 0.0, &mut Rng::new(41));
            model.move_to(device).unwrap();
            let mut opt = make_opt(model.parameters());
            let x = x.to(device).unwrap();
            (0..8)
                .map(|_| {
                    let loss = model.forward(&x).cross_entropy(&labels);
                    opt.zero_grad();
                    loss.backward();
                    opt.step();
                    loss.item_f64()
                })
                .collect()
        };
        let (on_cpu, on_dev) = (run(Device::Cpu), run(dev));
        println!("{name}: CPU losses {on_cpu:.4?}\n{name}: CUDA losses {on_dev:.4?}");
        assert!(on_dev[7] < on_dev[0] * 0.8, "{name}: the loss did not fall on the device: {on_dev:?}");
        for (c, d) in on_cpu.iter().zip(&on_dev) {
            assert!((c - d).abs() < 1e-3 * c.abs().max(1.0), "{name}: CPU loss {c} vs CUDA loss {d}");
        }
    }

    #[test]
    fn an_mlp_trains_on_the_device_like_on_the_cpu_with_every_optimizer() {
        let Some(dev) = cuda() else { return };
        train_mlp_both_ways(dev, "adam", |p| Box::new(Adam::new(p, 1e-2)));
        train_mlp_both_ways(dev, "adamw", |p| Box::new(AdamW::new(p, 1e-2).weight_decay(0.1)));
        train_mlp_both_ways(dev, "sgd", |p| Box::new(Sgd::new(p, 0.1).momentum(0.9)));
        train_mlp_both_ways(dev, "rmsprop", |p| Box::new(RmsProp::new(p, 1e-2)));
    }

    #[test]
    fn a_tiny_gpt_matches_the_cpu_forward_and_backward() {
        let Some(dev) = cuda() else { return };
        let config = GptConfig { vocab_size: 11, block_size: 8, n_layer: 2, n_head: 2, n_embd: 16 };
        let (ids, targets): (Vec<usize>, Vec<usize>) = (0..16).map(|i| ((i * 7) % 11, (i * 3 + 1) % 11)).unzip();
        let run = |device: Device| {
            let model = Gpt::new(config, &mut Rng::new(44));
            model.move_to(device).unwrap();
            let loss = model.loss(&ids, &targets, 2, 8);
            loss.backward();
            let grads: Vec<Vec<f32>> = model.parameters().iter().map(|p| p.grad().unwrap().to_vec()).collect();
            (loss.item_f64(), grads)
        };
        let ((loss_cpu, grads_cpu), (loss_dev, grads_dev)) = (run(Device::Cpu), run(dev));
        println!("gpt loss: CPU {loss_cpu:.6}, CUDA {loss_dev:.6}");
        assert!((loss_cpu - loss_dev).abs() < 1e-4, "gpt loss: CPU {loss_cpu} vs CUDA {loss_dev}");
        for (k, (c, d)) in grads_cpu.iter().zip(&grads_dev).enumerate() {
            assert_close(&format!("gpt parameter {k} gradient"), d, c, 1e-3);
        }
    }

    #[test]
    fn copy_from_loads_host_values_into_a_device_parameter() {
        let Some(dev) = cuda() else { return };
        let w = Tensor::zeros(&[2, 3]).requires_grad_();
        w.move_to_(dev).unwrap();
        assert_eq!(w.device(), dev);
        let values = randn(&[2, 3], 45);
        w.copy_from_(&values);
        assert_eq!(w.device(), dev);
        assert_eq!(w.to_vec(), values.to_vec());
        // Computed tensors do not move in place.
        let y = w.mul_scalar(2.0);
        assert!(y.move_to_(Device::Cpu).unwrap_err().to_string().contains("leaf"));
    }
}
