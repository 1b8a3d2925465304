//! Every version of every CUDA kernel in kernels/*.cu against the CPU path, on small shapes with
//! ragged edges. The same test bodies run on a GPU (`--features cuda`, when one is present) and
//! on the CPU emulation of CUDA (`--features cuda-emu`, on any machine); without either feature,
//! or without a device, each test prints why it skipped.

#[cfg(any(feature = "cuda", feature = "cuda-emu"))]
mod common;

#[cfg(not(any(feature = "cuda", feature = "cuda-emu")))]
#[test]
fn cuda_kernel_tests_need_a_cuda_feature() {
    println!("skip: built without --features cuda or --features cuda-emu; no CUDA kernel was run");
}

#[cfg(any(feature = "cuda", feature = "cuda-emu"))]
mod on_device {
    use super::common::cuda::*;
    use glassbox::autograd::{BinaryOp, UnaryOp};
    use glassbox::backend::cpu;
    use glassbox::backend::cuda::{EwLayout, KernelArg};
    use glassbox::backend::CompareOp;
    use glassbox::tensor::Layout;

    fn i(v: usize) -> KernelArg {
        KernelArg::I32(v as i32)
    }

    fn f(v: f32) -> KernelArg {
        KernelArg::F32(v)
    }

    /// (kernel op code, CPU op, p0, p1) for every unary op of kernels/elementwise.cu.
    fn unary_ops() -> Vec<(i32, UnaryOp, f32, f32)> {
        vec![
            (1, UnaryOp::Neg, 0.0, 0.0),
            (2, UnaryOp::Exp, 0.0, 0.0),
            (3, UnaryOp::Log, 0.0, 0.0),
            (4, UnaryOp::Sqrt, 0.0, 0.0),
            (5, UnaryOp::Abs, 0.0, 0.0),
            (6, UnaryOp::Relu, 0.0, 0.0),
            (7, UnaryOp::Sigmoid, 0.0, 0.0),
            (8, UnaryOp::Tanh, 0.0, 0.0),
            (9, UnaryOp::Gelu, 0.0, 0.0),
            (10, UnaryOp::Powf(3.0), 3.0, 0.0),
            (11, UnaryOp::Affine { mul: -1.5, add: 0.25 }, -1.5, 0.25),
        ]
    }

    #[test]
    fn elementwise_unary_versions_match_the_cpu() {
        let Some(dev) = device() else { return };
        for n in [1usize, 37, 1000, 4099] {
            // Positive inputs for log, sqrt and powf; both signs for the rest.
            let x: Vec<f32> = random(n, 1).iter().map(|v| v * 2.0).collect();
            let pos: Vec<f32> = x.iter().map(|v| v.abs() + 0.1).collect();
            for (code, op, p0, p1) in unary_ops() {
                let input = if matches!(op, UnaryOp::Log | UnaryOp::Sqrt | UnaryOp::Powf(_)) { &pos } else { &x };
                let want = cpu::elementwise::unary::<f32>(op, input, &Layout::contiguous(&[n]));
                let (dx, dy) = (upload(&dev, input), poisoned(&dev, n));
                for version in ["elementwise_v1_unary_contiguous", "elementwise_v3_unary_vec4"] {
                    // A small grid, so the grid-stride loop wraps.
                    let args = [KernelArg::I32(code), f(p0), f(p1), dx.arg(), dy.arg(), i(n)];
                    dev.launch(version, (3, 1, 1), (64, 1, 1), &args).unwrap();
                    check(&format!("{version} {op:?} n={n}"), &download(&dev, &dy, n), &want, ELEMENTWISE_TOL);
                }
            }
        }
    }

    #[test]
    fn elementwise_binary_versions_match_the_cpu() {
        let Some(dev) = device() else { return };
        let binary = [(0, BinaryOp::Add), (1, BinaryOp::Sub), (2, BinaryOp::Mul), (3, BinaryOp::Div)];
        for n in [1usize, 5, 1000, 4099] {
            let a = random(n, 2);
            let b: Vec<f32> = random(n, 3).iter().map(|v| v + 3.0).collect();
            let l = Layout::contiguous(&[n]);
            let (da, db, dy) = (upload(&dev, &a), upload(&dev, &b), poisoned(&dev, n));
            for (code, op) in binary {
                let want = cpu::elementwise::binary::<f32>(op, &a, &l, &b, &l);
                for version in ["elementwise_v1_binary_contiguous", "elementwise_v3_binary_vec4"] {
                    let args = [KernelArg::I32(code), da.arg(), db.arg(), dy.arg(), i(n)];
                    dev.launch(version, (2, 1, 1), (128, 1, 1), &args).unwrap();
                    check(&format!("{version} {op:?} n={n}"), &download(&dev, &dy, n), &want, ELEMENTWISE_TOL);
                }
            }
        }
    }

    #[test]
    fn elementwise_strided_versions_broadcast_and_transpose_like_the_cpu() {
        let Some(dev) = device() else { return };
        // a: [4, 1, 7] seen transposed from a [7, 1, 4] buffer; b: a [5, 7] row broadcast over
        // the first dim; output [4, 5, 7].
        let shape = [4usize, 5, 7];
        let a_buf = random(7 * 4, 4);
        let b_buf: Vec<f32> = random(5 * 7, 5).iter().map(|v| v + 4.0).collect();
        let la = Layout::contiguous(&[7, 1, 4]).permute(&[2, 1, 0]).broadcast_to(&shape).unwrap();
        let lb = Layout::contiguous(&[5, 7]).broadcast_to(&shape).unwrap();
        let n = 4 * 5 * 7;
        let ew = EwLayout::new(&[&la, &lb]).unwrap();
        let (da, db, dy) = (upload(&dev, &a_buf), upload(&dev, &b_buf), poisoned(&dev, n));
        let ops: [(i32, &str, glassbox::tensor::HostBuffer<f32>); 10] = [
            (0, "add", cpu::elementwise::binary::<f32>(BinaryOp::Add, &a_buf, &la, &b_buf, &lb)),
            (1, "sub", cpu::elementwise::binary::<f32>(BinaryOp::Sub, &a_buf, &la, &b_buf, &lb)),
            (2, "mul", cpu::elementwise::binary::<f32>(BinaryOp::Mul, &a_buf, &la, &b_buf, &lb)),
            (3, "div", cpu::elementwise::binary::<f32>(BinaryOp::Div, &a_buf, &la, &b_buf, &lb)),
            (4, "gt", cpu::elementwise::compare::<f32>(CompareOp::Gt, &a_buf, &la, &b_buf, &lb)),
            (5, "ge", cpu::elementwise::compare::<f32>(CompareOp::Ge, &a_buf, &la, &a_buf, &la)),
            (6, "lt", cpu::elementwise::compare::<f32>(CompareOp::Lt, &a_buf, &la, &b_buf, &lb)),
            (7, "le", cpu::elementwise::compare::<f32>(CompareOp::Le, &a_buf, &la, &b_buf, &lb)),
            (8, "eq", cpu::elementwise::compare::<f32>(CompareOp::Eq, &a_buf, &la, &a_buf, &la)),
            (9, "gelu_backward", cpu::elementwise::gelu_backward::<f32>(&a_buf, &la, &b_buf, &lb)),
        ];
        for (code, name, want) in ops {
            // ge and eq compare a with itself, so their answers are all ones.
            let (second, ew) =
                if code == 5 || code == 8 { (&da, EwLayout::new(&[&la, &la]).unwrap()) } else { (&db, ew) };
            let args = [KernelArg::I32(code), KernelArg::from_struct(&ew), da.arg(), second.arg(), dy.arg()];
            dev.launch("elementwise_v2_binary_strided", (2, 1, 1), (64, 1, 1), &args).unwrap();
            check(
                &format!("elementwise_v2_binary_strided {name} {shape:?}"),
                &download(&dev, &dy, n),
                &want,
                ELEMENTWISE_TOL,
            );
        }
        for (code, op, p0, p1) in unary_ops() {
            let input: Vec<f32> = a_buf.iter().map(|v| v.abs() + 0.1).collect();
            let want = cpu::elementwise::unary::<f32>(op, &input, &la);
            let dx = upload(&dev, &input);
            let ew = EwLayout::new(&[&la]).unwrap();
            let args = [KernelArg::I32(code), f(p0), f(p1), KernelArg::from_struct(&ew), dx.arg(), dy.arg()];
            dev.launch("elementwise_v2_unary_strided", (3, 1, 1), (32, 1, 1), &args).unwrap();
            check(
                &format!("elementwise_v2_unary_strided {op:?} {shape:?}"),
                &download(&dev, &dy, n),
                &want,
                ELEMENTWISE_TOL,
            );
        }
    }

    #[test]
    fn where_and_assign_and_fill_match_the_cpu() {
        let Some(dev) = device() else { return };
        let shape = [3usize, 6];
        let cond: Vec<f32> = random(6, 6).iter().map(|v| if *v > 0.0 { 1.0 } else { 0.0 }).collect();
        let (t, fl) = (random(18, 7), random(1, 8));
        let lc = Layout::contiguous(&[6]).broadcast_to(&shape).unwrap();
        let lt = Layout::contiguous(&shape);
        let lf = Layout::contiguous(&[]).broadcast_to(&shape).unwrap();
        let want = cpu::elementwise::where_cond::<f32>((&cond, &lc), (&t, &lt), (&fl, &lf));
        let (dc, dt, df, dy) = (upload(&dev, &cond), upload(&dev, &t), upload(&dev, &fl), poisoned(&dev, 18));
        let ew = EwLayout::new(&[&lc, &lt, &lf]).unwrap();
        let args = [KernelArg::from_struct(&ew), dc.arg(), dt.arg(), df.arg(), dy.arg()];
        dev.launch("elementwise_v2_where_strided", (1, 1, 1), (64, 1, 1), &args).unwrap();
        check("elementwise_v2_where_strided [3, 6]", &download(&dev, &dy, 18), &want, 0.0);

        // Assign a transposed [6, 3] source into columns 2..5 of a [6, 9] destination.
        let dst_layout = Layout::contiguous(&[6, 9]).narrow(1, 2, 3);
        let src = random(18, 9);
        let src_layout = Layout::contiguous(&[3, 6]).transpose(0, 1);
        let mut want = vec![0.5f32; 54];
        cpu::elementwise::assign::<f32>(&mut want, &dst_layout, &src, &src_layout);
        let (dd, ds) = (upload(&dev, &[0.5; 54]), upload(&dev, &src));
        let ew = EwLayout::new(&[&dst_layout, &src_layout]).unwrap();
        dev.launch(
            "elementwise_v2_assign_strided",
            (1, 1, 1),
            (32, 1, 1),
            &[KernelArg::from_struct(&ew), dd.arg(), ds.arg()],
        )
        .unwrap();
        check("elementwise_v2_assign_strided [6, 3] into [6, 9]", &download(&dev, &dd, 54), &want, 0.0);

        let dy = poisoned(&dev, 1001);
        dev.launch("elementwise_v1_fill", (2, 1, 1), (128, 1, 1), &[dy.arg(), f(2.5), i(1001)]).unwrap();
        check("elementwise_v1_fill n=1001", &download(&dev, &dy, 1001), &[2.5; 1001], 0.0);
    }

    fn ids(v: &[usize]) -> Vec<i32> {
        v.iter().map(|&x| x as i32).collect()
    }

    #[test]
    fn reduce_versions_match_the_cpu_over_any_dims() {
        let Some(dev) = device() else { return };
        use glassbox::backend::cuda::RdLayout;
        use glassbox::backend::ReduceKind;
        // A [5, 3, 70] buffer seen as [70, 5, 3] (permuted), reduced over several dim sets.
        let x = random(5 * 3 * 70, 11);
        let view = Layout::contiguous(&[5, 3, 70]).permute(&[2, 0, 1]);
        let dx = upload(&dev, &x);
        for dims in [vec![0], vec![1], vec![2], vec![0, 2], vec![0, 1, 2], vec![1, 2]] {
            for (kind, code) in [(ReduceKind::Sum, 0), (ReduceKind::Max, 1)] {
                let want = cpu::reduce::reduce::<f32>(kind, &x, &view, &dims);
                let (rd, n_out, n_red) = RdLayout::new(&view, &dims).unwrap();
                assert_eq!(n_out, want.len());
                let out = poisoned(&dev, n_out);
                let args = |_: ()| {
                    [KernelArg::I32(code), KernelArg::from_struct(&rd), dx.arg(), out.arg(), i(n_out), i(n_red)]
                };
                dev.launch("reduce_v1_naive", ((n_out as u32).div_ceil(64), 1, 1), (64, 1, 1), &args(())).unwrap();
                let tol = if code == 0 { ACCUMULATED_TOL } else { 0.0 };
                check(&format!("reduce_v1_naive {kind:?} dims {dims:?}"), &download(&dev, &out, n_out), &want, tol);
                let out = poisoned(&dev, n_out);
                let args = [KernelArg::I32(code), KernelArg::from_struct(&rd), dx.arg(), out.arg(), i(n_out), i(n_red)];
                dev.launch("reduce_v2_block", (n_out as u32, 1, 1), (256, 1, 1), &args).unwrap();
                check(&format!("reduce_v2_block {kind:?} dims {dims:?}"), &download(&dev, &out, n_out), &want, tol);
            }
        }
    }

    #[test]
    fn softmax_versions_and_backward_match_the_cpu() {
        let Some(dev) = device() else { return };
        for (rows, cols) in [(1usize, 1usize), (3, 5), (17, 33), (9, 300)] {
            let x: Vec<f32> = random(rows * cols, 12).iter().map(|v| v * 4.0).collect();
            let g = random(rows * cols, 13);
            let (dx, dg) = (upload(&dev, &x), upload(&dev, &g));
            for log in [false, true] {
                let want = cpu::softmax::softmax_rows::<f32>(&x, cols, log);
                let grid_rows = (rows as u32).div_ceil(4);
                for (version, grid, block) in [
                    ("softmax_v1_naive", (rows as u32).div_ceil(32), 32u32),
                    ("softmax_v2_warp", grid_rows, 128),
                    ("softmax_v3_online", grid_rows, 128),
                ] {
                    let dy = poisoned(&dev, rows * cols);
                    dev.launch(
                        version,
                        (grid, 1, 1),
                        (block, 1, 1),
                        &[dx.arg(), dy.arg(), i(rows), i(cols), i(log as usize)],
                    )
                    .unwrap();
                    check(
                        &format!("{version} log={log} {rows}x{cols}"),
                        &download(&dev, &dy, rows * cols),
                        &want,
                        SOFTMAX_TOL,
                    );
                }
                let want_dx = cpu::softmax::softmax_backward_rows::<f32>(&want, &g, cols, log);
                let (dy, dgrad) = (upload(&dev, &want), poisoned(&dev, rows * cols));
                let args = [dy.arg(), dg.arg(), dgrad.arg(), i(rows), i(cols), i(log as usize)];
                dev.launch("softmax_backward_v1_warp", (grid_rows, 1, 1), (128, 1, 1), &args).unwrap();
                let what = format!("softmax_backward_v1_warp log={log} {rows}x{cols}");
                check(&what, &download(&dev, &dgrad, rows * cols), &want_dx, SOFTMAX_TOL);
            }
        }
    }

    #[test]
    fn fused_cross_entropy_matches_the_cpu() {
        let Some(dev) = device() else { return };
        for (rows, cols) in [(1usize, 2usize), (7, 10), (33, 65)] {
            let x: Vec<f32> = random(rows * cols, 14).iter().map(|v| v * 3.0).collect();
            let targets: Vec<usize> = (0..rows).map(|r| (r * 7 + 3) % cols).collect();
            let (loss, probs) = cpu::softmax::cross_entropy_rows::<f32>(&x, cols, &targets);
            let (dx, dt) = (upload(&dev, &x), dev.upload_i32(&ids(&targets)).unwrap());
            let (dp, dl) = (poisoned(&dev, rows * cols), poisoned(&dev, rows));
            let args = [dx.arg(), dt.arg(), dp.arg(), dl.arg(), i(rows), i(cols)];
            dev.launch("cross_entropy_v1_forward", ((rows as u32).div_ceil(2), 1, 1), (64, 1, 1), &args).unwrap();
            check(
                &format!("cross_entropy_v1_forward probs {rows}x{cols}"),
                &download(&dev, &dp, rows * cols),
                &probs,
                SOFTMAX_TOL,
            );
            let mean = download(&dev, &dl, rows).iter().map(|&v| v as f64).sum::<f64>() / rows as f64;
            check(
                &format!("cross_entropy_v1_forward mean loss {rows}x{cols}"),
                &[mean as f32],
                &[loss as f32],
                SOFTMAX_TOL,
            );
            let scale = 0.7 / rows as f32;
            let want = cpu::softmax::cross_entropy_backward_rows::<f32>(&probs, cols, &targets, scale);
            let (dprobs, dgrad) = (upload(&dev, &probs), poisoned(&dev, rows * cols));
            let args = [dprobs.arg(), dt.arg(), dgrad.arg(), i(rows), i(cols), f(scale)];
            dev.launch("cross_entropy_v1_backward", (2, 1, 1), (64, 1, 1), &args).unwrap();
            check(
                &format!("cross_entropy_v1_backward {rows}x{cols}"),
                &download(&dev, &dgrad, rows * cols),
                &want,
                ELEMENTWISE_TOL,
            );
        }
    }

    #[test]
    fn layernorm_forward_and_both_backwards_match_the_cpu() {
        let Some(dev) = device() else { return };
        for (rows, cols) in [(1usize, 1usize), (5, 7), (70, 33), (3, 1500)] {
            let x: Vec<f32> = random(rows * cols, 15).iter().map(|v| v * 2.0 + 0.5).collect();
            let (w, b, g) = (random(cols, 16), random(cols, 17), random(rows * cols, 18));
            let eps = 1e-5;
            let (y, mean, rstd) = cpu::layernorm::layer_norm::<f32>(&x, &w, &b, cols, eps);
            let (dxv, dw, db) = cpu::layernorm::layer_norm_backward::<f32>(&x, &w, &mean, &rstd, &g, cols);
            let (d_x, d_w, d_b, d_g) = (upload(&dev, &x), upload(&dev, &w), upload(&dev, &b), upload(&dev, &g));
            let (d_y, d_mean, d_rstd) = (poisoned(&dev, rows * cols), poisoned(&dev, rows), poisoned(&dev, rows));
            let args = [
                d_x.arg(),
                d_w.arg(),
                d_b.arg(),
                d_y.arg(),
                d_mean.arg(),
                d_rstd.arg(),
                i(rows),
                i(cols),
                f(eps as f32),
            ];
            dev.launch("layernorm_v1_forward", ((rows as u32).div_ceil(4), 1, 1), (128, 1, 1), &args).unwrap();
            let what = format!("layernorm_v1_forward {rows}x{cols}");
            check(&what, &download(&dev, &d_y, rows * cols), &y, ELEMENTWISE_TOL * 10.0);
            check(&format!("{what} mean"), &download(&dev, &d_mean, rows), &mean, ELEMENTWISE_TOL);
            check(&format!("{what} rstd"), &download(&dev, &d_rstd, rows), &rstd, ELEMENTWISE_TOL * 10.0);
            let (d_mean, d_rstd) = (upload(&dev, &mean), upload(&dev, &rstd));
            for (version, grid, block) in [
                ("layernorm_backward_v1_atomic", (rows as u32).div_ceil(4), 128u32),
                ("layernorm_backward_v2_block", (rows as u32).div_ceil(32), 256),
            ] {
                let d_dx = poisoned(&dev, rows * cols);
                let (d_dw, d_db) = (upload(&dev, &vec![0.0; cols]), upload(&dev, &vec![0.0; cols]));
                let args = [
                    d_x.arg(),
                    d_w.arg(),
                    d_mean.arg(),
                    d_rstd.arg(),
                    d_g.arg(),
                    d_dx.arg(),
                    d_dw.arg(),
                    d_db.arg(),
                    i(rows),
                    i(cols),
                ];
                dev.launch(version, (grid, 1, 1), (block, 1, 1), &args).unwrap();
                let what = format!("{version} {rows}x{cols}");
                check(&format!("{what} dx"), &download(&dev, &d_dx, rows * cols), &dxv, ACCUMULATED_TOL);
                check(&format!("{what} dw"), &download(&dev, &d_dw, cols), &dw, ACCUMULATED_TOL);
                check(&format!("{what} db"), &download(&dev, &d_db, cols), &db, ACCUMULATED_TOL);
            }
        }
    }

    #[test]
    fn fused_optimizer_steps_match_the_cpu() {
        let Some(dev) = device() else { return };
        let n = 1037;
        let (w, g) = (random(n, 19), random(n, 20));
        let m0: Vec<f32> = random(n, 21).iter().map(|v| v * 0.1).collect();
        let v0: Vec<f32> = random(n, 22).iter().map(|v| v * v * 0.1).collect();
        for decoupled in [true, false] {
            let step = cpu::optim::AdamStep {
                lr: 1e-2,
                beta1: 0.9,
                beta2: 0.95,
                eps: 1e-8,
                weight_decay: 0.1,
                decoupled,
                step: 3,
            };
            let (mut w1, mut m1, mut v1) = (w.clone(), m0.clone(), v0.clone());
            cpu::optim::adam::<f32>(&mut w1, &g, &mut m1, &mut v1, step);
            let (dw, dg, dm, dv) = (upload(&dev, &w), upload(&dev, &g), upload(&dev, &m0), upload(&dev, &v0));
            let t = step.step as i32;
            let (shrink, l2) =
                if decoupled { (1.0 - step.lr * step.weight_decay, 0.0) } else { (1.0, step.weight_decay) };
            let c1 = 1.0 / (1.0 - step.beta1.powi(t));
            let c2s = (1.0 / (1.0 - step.beta2.powi(t))).sqrt();
            let args = [
                dw.arg(),
                dg.arg(),
                dm.arg(),
                dv.arg(),
                i(n),
                f(step.lr as f32),
                f(step.beta1 as f32),
                f(step.beta2 as f32),
                f(step.eps as f32),
                f(shrink as f32),
                f(l2 as f32),
                f(c1 as f32),
                f(c2s as f32),
            ];
            dev.launch("optim_v1_adamw", (3, 1, 1), (128, 1, 1), &args).unwrap();
            let what = format!("optim_v1_adamw decoupled={decoupled}");
            check(&format!("{what} w"), &download(&dev, &dw, n), &w1, ELEMENTWISE_TOL);
            check(&format!("{what} m"), &download(&dev, &dm, n), &m1, ELEMENTWISE_TOL);
            check(&format!("{what} v"), &download(&dev, &dv, n), &v1, ELEMENTWISE_TOL);
        }
        let (mut w1, mut b1) = (w.clone(), m0.clone());
        cpu::optim::sgd::<f32>(&mut w1, &g, &mut b1, 0.1, 0.9, 0.01);
        let (dw, dg, db) = (upload(&dev, &w), upload(&dev, &g), upload(&dev, &m0));
        dev.launch(
            "optim_v1_sgd",
            (2, 1, 1),
            (256, 1, 1),
            &[dw.arg(), dg.arg(), db.arg(), i(n), f(0.1), f(0.9), f(0.01)],
        )
        .unwrap();
        check("optim_v1_sgd w", &download(&dev, &dw, n), &w1, ELEMENTWISE_TOL);
        check("optim_v1_sgd buf", &download(&dev, &db, n), &b1, ELEMENTWISE_TOL);
        let (mut w1, mut s1) = (w.clone(), v0.clone());
        cpu::optim::rmsprop::<f32>(&mut w1, &g, &mut s1, 0.01, 0.99, 1e-8, 0.01);
        let (dw, ds) = (upload(&dev, &w), upload(&dev, &v0));
        let args = [dw.arg(), dg.arg(), ds.arg(), i(n), f(0.01), f(0.99), f(1e-8), f(0.01)];
        dev.launch("optim_v1_rmsprop", (2, 1, 1), (256, 1, 1), &args).unwrap();
        check("optim_v1_rmsprop w", &download(&dev, &dw, n), &w1, ELEMENTWISE_TOL);
        check("optim_v1_rmsprop square average", &download(&dev, &ds, n), &s1, ELEMENTWISE_TOL);
    }

    #[test]
    fn index_kernels_match_the_cpu_including_repeated_indices() {
        let Some(dev) = device() else { return };
        use glassbox::backend::cuda::GatherLayout;
        // index_select / index_add along dim 1 of [3, 11, 5], with repeats.
        let shape = [3usize, 11, 5];
        let x = random(3 * 11 * 5, 23);
        let idx = vec![4usize, 0, 10, 4, 4, 7];
        let want = cpu::index::index_select::<f32>(&x, &Layout::contiguous(&shape), 1, &idx);
        let (dx, di, dy) = (upload(&dev, &x), dev.upload_i32(&ids(&idx)).unwrap(), poisoned(&dev, want.len()));
        let args = [dx.arg(), di.arg(), dy.arg(), i(3), i(idx.len()), i(11), i(5)];
        dev.launch("index_v1_select", (2, 1, 1), (32, 1, 1), &args).unwrap();
        check("index_v1_select dim 1 of [3, 11, 5]", &download(&dev, &dy, want.len()), &want, 0.0);
        let src = random(want.len(), 24);
        let want = cpu::index::index_add::<f32>(&shape, 1, &idx, &src);
        let (ds, dout) = (upload(&dev, &src), upload(&dev, &vec![0.0; want.len()]));
        let args = [ds.arg(), di.arg(), dout.arg(), i(3), i(idx.len()), i(11), i(5)];
        dev.launch("index_v1_add_atomic", (2, 1, 1), (32, 1, 1), &args).unwrap();
        check("index_v1_add_atomic dim 1 of [3, 11, 5]", &download(&dev, &dout, want.len()), &want, ELEMENTWISE_TOL);

        // gather / scatter_add along dim 1 of [4, 9], index [4, 6] (a cross-entropy-like pick).
        let shape = [4usize, 9];
        let x = random(36, 25);
        let index: Vec<usize> = (0..24).map(|p| (p * 5 + 2) % 9).collect();
        let index_shape = [4usize, 6];
        let want = cpu::index::gather::<f32>(&x, &Layout::contiguous(&shape), 1, &index, &index_shape);
        let gl = GatherLayout::new(&shape, 1, &index_shape).unwrap();
        let (dx, di, dy) = (upload(&dev, &x), dev.upload_i32(&ids(&index)).unwrap(), poisoned(&dev, 24));
        dev.launch(
            "index_v1_gather",
            (1, 1, 1),
            (64, 1, 1),
            &[dx.arg(), di.arg(), dy.arg(), KernelArg::from_struct(&gl), i(24)],
        )
        .unwrap();
        check("index_v1_gather dim 1 of [4, 9]", &download(&dev, &dy, 24), &want, 0.0);
        let src = random(24, 26);
        let want = cpu::index::scatter_add::<f32>(&shape, 1, &index, &index_shape, &src);
        let (ds, dout) = (upload(&dev, &src), upload(&dev, &[0.0; 36]));
        let args = [ds.arg(), di.arg(), dout.arg(), KernelArg::from_struct(&gl), i(24)];
        dev.launch("index_v1_scatter_add_atomic", (1, 1, 1), (64, 1, 1), &args).unwrap();
        check("index_v1_scatter_add_atomic dim 1 of [4, 9]", &download(&dev, &dout, 36), &want, ELEMENTWISE_TOL);
    }

    /// (name, block, tile rows, tile cols) of every matmul version; the grid covers the tiles.
    const MATMUL_VERSIONS: [(&str, (u32, u32), u32, u32); 7] = [
        ("matmul_v1_naive", (16, 16), 16, 16),
        ("matmul_v2_coalesced", (32, 8), 8, 32),
        ("matmul_v3_shared", (32, 32), 32, 32),
        ("matmul_v4_register_blocked", (256, 1), 128, 128),
        ("matmul_v5_vectorized", (256, 1), 128, 128),
        ("matmul_v6_tf32_wmma", (128, 1), 64, 64),
        ("matmul_v6_bf16_wmma", (128, 1), 64, 64),
    ];

    #[test]
    fn every_matmul_version_matches_exact_dot_products_on_ragged_shapes() {
        let Some(dev) = device() else { return };
        // (batch, m, k, n): tiny, odd, k and n multiples of 4 (v5's float4 path) and not.
        for (batch, m, k, n) in
            [(1usize, 1usize, 1usize, 1usize), (1, 7, 13, 5), (2, 67, 36, 132), (1, 130, 64, 129), (1, 33, 300, 20)]
        {
            let a = random(batch * m * k, 27);
            let b = random(batch * k * n, 28);
            let (da, db) = (upload(&dev, &a), upload(&dev, &b));
            // Exact f64 values and the scale f32 rounding works at, sum_k |a_ik b_kj|.
            let mut exact = vec![0.0f64; batch * m * n];
            let mut scale = vec![0.0f64; batch * m * n];
            for z in 0..batch {
                for r in 0..m {
                    for c in 0..n {
                        for p in 0..k {
                            let prod = a[z * m * k + r * k + p] as f64 * b[z * k * n + p * n + c] as f64;
                            exact[z * m * n + r * n + c] += prod;
                            scale[z * m * n + r * n + c] += prod.abs();
                        }
                    }
                }
            }
            for (name, block, tile_rows, tile_cols) in MATMUL_VERSIONS {
                // v1 puts rows on x; the others put columns on x.
                let grid = if name == "matmul_v1_naive" {
                    ((m as u32).div_ceil(tile_rows), (n as u32).div_ceil(tile_cols), batch as u32)
                } else {
                    ((n as u32).div_ceil(tile_cols), (m as u32).div_ceil(tile_rows), batch as u32)
                };
                let dc = poisoned(&dev, batch * m * n);
                dev.launch(name, grid, (block.0, block.1, 1), &[da.arg(), db.arg(), dc.arg(), i(m), i(n), i(k)])
                    .unwrap();
                let got = download(&dev, &dc, batch * m * n);
                let err = got
                    .iter()
                    .zip(&exact)
                    .zip(&scale)
                    .map(|((&g, &e), &s)| {
                        let d = (g as f64 - e).abs() / s.max(f64::MIN_POSITIVE);
                        if d.is_nan() {
                            f64::INFINITY
                        } else {
                            d
                        }
                    })
                    .fold(0.0, f64::max);
                let tol = if name.contains("tf32") {
                    TF32_TOL
                } else if name.contains("bf16") {
                    BF16_TOL
                } else {
                    MATMUL_TOL
                };
                let verdict = if err <= tol { "ok" } else { "FAILED" };
                println!("{name} {batch}x{m}x{k}x{n}: max error {err:.2e} of sum|ab| (tolerance {tol:.0e}) {verdict}");
                assert!(err <= tol, "{name} {batch}x{m}x{k}x{n}: error {err:e} > {tol:e}");
            }
        }
    }

    #[test]
    fn flash_attention_forward_and_backward_match_the_cpu() {
        let Some(dev) = device() else { return };
        use cpu::attention::{AttentionInputs, AttentionShape, GradientLayout, HeadLayout};
        use glassbox::backend::cuda::{AttnGrads, AttnHeads, AttnShape};
        // (batch, heads, t_q, t_k, d, causal, packed qkv): both instantiations (d <= 64, <= 128),
        // ragged tiles, t_q != t_k, and GPT's packed [B, T, 3C] layout read in place.
        let cases = [
            (2usize, 2usize, 37usize, 37usize, 16usize, true, true),
            (1, 3, 5, 40, 8, false, false),
            (2, 1, 33, 33, 80, true, false),
            (1, 2, 20, 20, 64, false, true),
            (2, 1, 40, 40, 48, true, true),
        ];
        for (batch, heads, tq, tk, d, causal, packed) in cases {
            let shape = AttentionShape { batch, heads, t_q: tq, t_k: tk, d, causal };
            let (ql, kl, vl, len_q, len_kv) = if packed {
                let l = |part| HeadLayout::packed_qkv(part, heads, tq, d);
                (l(0), l(1), l(2), batch * tq * 3 * heads * d, 0)
            } else {
                let l = |t| HeadLayout::contiguous(heads, t, d);
                (l(tq), l(tk), l(tk), batch * heads * tq * d, batch * heads * tk * d)
            };
            let q = random(len_q, 30);
            let (k, v) = if packed { (q.clone(), q.clone()) } else { (random(len_kv, 31), random(len_kv, 32)) };
            let inputs = AttentionInputs { q: (&q, ql), k: (&k, kl), v: (&v, vl) };
            let (o, lse) = cpu::attention::attention_forward::<f32>(inputs, shape);
            let (dq, dk, dv) = (upload(&dev, &q), upload(&dev, &k), upload(&dev, &v));
            let (d_o, d_lse) = (poisoned(&dev, o.len()), poisoned(&dev, lse.len()));
            let s = AttnShape::new(shape).unwrap();
            let heads_arg = |l| KernelArg::from_struct(&AttnHeads::new(l).unwrap());
            let kernel = match d {
                0..=32 => "attention_v2_flash_forward_d32",
                33..=64 => "attention_v2_flash_forward_d64",
                _ => "attention_v2_flash_forward_d128",
            };
            let args = [
                dq.arg(),
                heads_arg(ql),
                dk.arg(),
                heads_arg(kl),
                dv.arg(),
                heads_arg(vl),
                d_o.arg(),
                d_lse.arg(),
                KernelArg::from_struct(&s),
            ];
            dev.launch(kernel, ((tq as u32).div_ceil(32), (batch * heads) as u32, 1), (32, 1, 1), &args).unwrap();
            let what = format!("{kernel} b{batch} h{heads} tq{tq} tk{tk} d{d} causal={causal} packed={packed}");
            check(&format!("{what} o"), &download(&dev, &d_o, o.len()), &o, SOFTMAX_TOL);
            check(&format!("{what} lse"), &download(&dev, &d_lse, lse.len()), &lse, SOFTMAX_TOL);

            // Backward, into one buffer laid out as the op front doors lay it out.
            let grads = if packed {
                let l = |part| HeadLayout::packed_qkv(part, heads, tq, d);
                GradientLayout { chunk: tq * 3 * heads * d, dq: l(0), dk: l(1), dv: l(2) }
            } else {
                let part = |offset, t| HeadLayout { offset, batch_stride: 0, head_stride: t * d, row_stride: d };
                GradientLayout {
                    chunk: heads * (tq + 2 * tk) * d,
                    dq: part(0, tq),
                    dk: part(heads * tq * d, tk),
                    dv: part(heads * (tq + tk) * d, tk),
                }
            };
            let g = random(o.len(), 33);
            let want = cpu::attention::attention_backward::<f32>(inputs, &o, &lse, &g, shape, grads);
            let (d_o, d_lse, d_g) = (upload(&dev, &o), upload(&dev, &lse), upload(&dev, &g));
            let d_dvec = poisoned(&dev, lse.len());
            let rows = (batch * heads * tq) as u32;
            let args = [d_o.arg(), d_g.arg(), d_dvec.arg(), KernelArg::from_struct(&s)];
            dev.launch("attention_v2_flash_backward_dot", (rows.div_ceil(8), 1, 1), (256, 1, 1), &args).unwrap();
            let d_grad = upload(&dev, &vec![0.0; want.len()]);
            let kernel = match d {
                0..=32 => "attention_v2_flash_backward_d32",
                33..=64 => "attention_v2_flash_backward_d64",
                _ => "attention_v2_flash_backward_d128",
            };
            let args = [
                dq.arg(),
                heads_arg(ql),
                dk.arg(),
                heads_arg(kl),
                dv.arg(),
                heads_arg(vl),
                d_lse.arg(),
                d_dvec.arg(),
                d_g.arg(),
                d_grad.arg(),
                KernelArg::from_struct(&AttnGrads::new(grads).unwrap()),
                KernelArg::from_struct(&s),
            ];
            dev.launch(kernel, ((tk as u32).div_ceil(32), (batch * heads) as u32, 1), (64, 1, 1), &args).unwrap();
            let what = format!("{kernel} b{batch} h{heads} tq{tq} tk{tk} d{d} causal={causal} packed={packed}");
            check(&format!("{what} dq dk dv"), &download(&dev, &d_grad, want.len()), &want, SOFTMAX_TOL);
        }
    }

    #[test]
    fn every_kernel_in_kernels_cu_is_launched_by_a_test_here() {
        // A kernel added to kernels/*.cu without a test fails here (its name must appear in
        // this file, where every launch names its kernel).
        let this_file = include_str!("cuda_kernels.rs");
        let untested: Vec<&str> = glassbox::backend::cuda::KERNEL_FILES
            .iter()
            .flat_map(|f| f.kernels.iter().map(|k| k.name))
            .filter(|name| !this_file.contains(&format!("\"{name}\"")))
            .collect();
        assert!(untested.is_empty(), "kernels without a test in tests/cuda_kernels.rs: {untested:?}");
    }
}
