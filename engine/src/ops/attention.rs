//! Softmax with an additive mask, and fused multi-head self-attention
//! (QK^T, mask, softmax, dropout, PV as one tape node).

use pixel_kernels::attention::{self as attention_kernel, AttentionShape};
use pixel_kernels::softmax as softmax_kernel;

use super::matmul::{bias_grad, linear_forward, linear_input_grad, linear_weight_grad};
use super::{constant_on, device_of};
use crate::rng::Rng;
use crate::tape::{Tape, Var};
use crate::tensor::Tensor;

/// Softmax over the last axis of `x` (rows, cols) after adding `mask`
/// (G, cols), where every `rows / G` consecutive rows share one mask row.
/// The mask is a constant (moved to x's device). Saves its output.
pub fn softmax(t: &mut Tape, x: &Var, mask: Option<&Tensor>) -> Var {
    let shape = x.shape().to_vec();
    let cols = *shape.last().expect("softmax: rank >= 1");
    let rows = x.value().numel() / cols.max(1);
    let rows_per_mask_row = match mask {
        Some(m) => {
            let g = m.numel() / cols.max(1);
            assert!(
                m.numel().is_multiple_of(cols) && g > 0 && rows.is_multiple_of(g),
                "softmax: mask shape {:?} does not broadcast over input {shape:?}",
                m.shape()
            );
            rows / g
        }
        None => 1,
    };
    let device = x.value().device();
    let mask = mask.map(|m| constant_on("softmax", m, device));
    let mut out = Tensor::zeros_on(&shape, device);
    softmax_kernel::forward(
        out.buffer_mut(),
        x.value().buffer(),
        mask.as_ref().map(|m| m.buffer()),
        rows,
        cols,
        rows_per_mask_row,
    );
    if !t.needs_grad(&[x]) {
        return Var::constant(out);
    }
    let y = out.clone();
    t.record(
        "softmax",
        out,
        &[x],
        Box::new(move |dy, _| {
            let mut dx = Tensor::zeros_on(y.shape(), device);
            softmax_kernel::backward(dx.buffer_mut(), dy.buffer(), y.buffer(), rows, cols);
            vec![Some(dx)]
        }),
    )
}

/// Settings of one attention call.
#[derive(Clone, Copy, Debug)]
pub struct AttentionConfig {
    pub num_heads: usize,
    /// Dropout on the attention probabilities.
    pub dropout: f32,
    pub training: bool,
}

/// The kernel's shape of an attention call on `qkv` (B, N, 3 C), after
/// checking it, its device and `key_mask` (moved there), with a dropout seed
/// drawn from `rng` when dropout applies. `op` names the caller in errors.
fn attention_call(
    op: &str,
    qkv: &Var,
    key_mask: Option<&Tensor>,
    cfg: AttentionConfig,
    rng: &mut Rng,
) -> (AttentionShape, Option<Tensor>) {
    let shape = qkv.shape();
    assert!(
        shape.len() == 3 && shape[2].is_multiple_of(3),
        "{op}: qkv must be (B, N, 3 C), got {shape:?}"
    );
    let (b, n, c) = (shape[0], shape[1], shape[2] / 3);
    let h = cfg.num_heads;
    assert!(
        h > 0 && c % h == 0,
        "{op}: width {c} not divisible by {h} heads"
    );
    let d = c / h;
    if let Some(m) = key_mask {
        assert!(
            m.numel() == b * n,
            "{op}: key mask shape {:?} does not match (B, N) = ({b}, {n})",
            m.shape()
        );
    }
    let device = qkv.value().device();
    let mask = key_mask.map(|m| constant_on(op, m, device)); // (B, N)
    let s = AttentionShape {
        batch: b,
        heads: h,
        seq: n,
        head_dim: d,
        scale: 1.0 / (d as f32).sqrt(),
        dropout: (cfg.training && cfg.dropout > 0.0).then(|| (rng.next_u64(), cfg.dropout)),
    };
    (s, mask)
}

/// Multi-head self-attention on the packed projections `qkv` (B, N, 3 C):
/// each row holds the token's query, key and value side by side (one linear
/// layer with the three weights stacked writes it), each with its heads
/// interleaved as (H, D) like PyTorch's view, C = H * D. `key_mask` (B, N) is
/// additive (0 attended, -10000 masked) on keys. Returns the merged context
/// (B, N, C). Saves qkv (the kernels read each head in place) and the key
/// mask; the probabilities are recomputed in backward and the dropout mask
/// regenerated from its seed, so nothing of size N^2 is kept.
pub fn attention(
    t: &mut Tape,
    qkv: &Var,
    key_mask: Option<&Tensor>,
    cfg: AttentionConfig,
    rng: &mut Rng,
) -> Var {
    let device = device_of("attention", &[qkv]);
    let (s, mask) = attention_call("attention", qkv, key_mask, cfg, rng);
    let shape = qkv.shape().to_vec();
    let (b, n, c) = (s.batch, s.seq, shape[2] / 3);
    let mut out = Tensor::zeros_on(&[b, n, c], device);
    let qkv_value = qkv.arc();
    let mask_buf = mask.as_ref().map(|m| m.buffer());
    attention_kernel::forward(out.buffer_mut(), qkv_value.buffer(), mask_buf, s);
    if !t.needs_grad(&[qkv]) {
        return Var::constant(out);
    }
    t.add_flops(4.0 * (b * s.heads * n * n * s.head_dim) as f64);
    t.record(
        "attention",
        out,
        &[qkv],
        Box::new(move |dout, _| {
            let mut dqkv = Tensor::zeros_on(&shape, device);
            let mask_buf = mask.as_ref().map(|m| m.buffer());
            attention_kernel::backward(
                dqkv.buffer_mut(),
                None,
                dout.buffer(),
                qkv_value.buffer(),
                mask_buf,
                s,
            );
            vec![Some(dqkv)]
        }),
    )
}

/// `y = attention(qkv) W^T + b`: [`attention`] and the output projection
/// after it as one node that saves only qkv (and the weight). Backward gets
/// the context back from the attention backward, which recomputes the
/// probabilities anyway (one more product per head, about 2 N^2 D FLOPs),
/// instead of keeping the (B, N, C) context alive from forward to backward
/// for the weight gradient. The same values and gradients as the two ops.
/// w (out, C), b (out).
pub fn attention_linear(
    t: &mut Tape,
    qkv: &Var,
    key_mask: Option<&Tensor>,
    cfg: AttentionConfig,
    w: &Var,
    b: &Var,
    rng: &mut Rng,
) -> Var {
    let device = device_of("attention_linear", &[qkv, w, b]);
    let (s, mask) = attention_call("attention_linear", qkv, key_mask, cfg, rng);
    let qkv_shape = qkv.shape().to_vec();
    let (batch, n, c) = (s.batch, s.seq, qkv_shape[2] / 3);
    let ws = w.shape();
    assert!(
        ws.len() == 2 && ws[1] == c && b.shape() == [ws[0]],
        "attention_linear: context width {c} does not fit weight {ws:?} and bias {:?} (expected [out, {c}] and [out])",
        b.shape()
    );
    let (rows, out_f) = (batch * n, ws[0]);
    let ctx_shape = [batch, n, c];
    let mut ctx = Tensor::zeros_on(&ctx_shape, device);
    let mask_buf = mask.as_ref().map(|m| m.buffer());
    attention_kernel::forward(ctx.buffer_mut(), qkv.value().buffer(), mask_buf, s);
    let y = linear_forward(&ctx, w.value(), Some(b.value()), rows, &[batch, n, out_f]);
    drop(ctx);
    if !t.needs_grad(&[qkv, w, b]) {
        return Var::constant(y);
    }
    let (qkv_value, wv) = (qkv.arc(), w.arc());
    t.add_flops(4.0 * (batch * s.heads * n * n * s.head_dim) as f64);
    t.add_flops(2.0 * (rows * c * out_f) as f64);
    t.record(
        "attention_linear",
        y,
        &[qkv, w, b],
        Box::new(move |dy, needs| {
            let db = needs[2].then(|| bias_grad(&dy, rows, out_f));
            let dctx = linear_input_grad(&dy, &wv, &ctx_shape);
            // The context again, from the attention backward (which runs
            // even when qkv needs no gradient, for the weight's).
            let mut dqkv = Tensor::zeros_on(&qkv_shape, device);
            let mut ctx = needs[1].then(|| Tensor::zeros_on(&ctx_shape, device));
            let mask_buf = mask.as_ref().map(|m| m.buffer());
            attention_kernel::backward(
                dqkv.buffer_mut(),
                ctx.as_mut().map(|c| c.buffer_mut()),
                dctx.buffer(),
                qkv_value.buffer(),
                mask_buf,
                s,
            );
            drop(dctx);
            let dw = ctx.map(|ctx| linear_weight_grad(&dy, &ctx, rows));
            vec![needs[0].then_some(dqkv), dw, db]
        }),
    )
}

#[cfg(test)]
mod tests {
    use crate::gradcheck::randn;
    use crate::ops::{self, AttentionConfig};
    use crate::test_support::{
        assert_same_bits, check, forward_backward, inputs, on, rng, test_device,
    };
    use crate::{Rng, Tape, Tensor};

    #[test]
    fn gradcheck_softmax_with_mask() {
        let mut r = rng();
        let x = randn(&[2, 3, 5], &mut r);
        let mask = Tensor::new(
            &[2, 5],
            vec![0., 0., -10000., 0., 0., 0., 0., 0., 0., -10000.],
        );
        check(vec![x.clone()], |t, v| ops::softmax(t, &v[0], None));
        check(vec![x], move |t, v| ops::softmax(t, &v[0], Some(&mask)));
    }

    #[test]
    fn gradcheck_attention_with_mask_and_dropout() {
        let mut r = rng();
        let (b, n, c) = (2, 5, 8);
        let qkv = randn(&[b, n, 3 * c], &mut r);
        let mut mask = vec![0.0f32; b * n];
        mask[n - 1] = -10000.0;
        mask[2 * n - 2] = -10000.0;
        let mask = Tensor::new(&[b, n], mask);
        for dropout in [0.0, 0.25] {
            let m = mask.clone();
            check(vec![qkv.clone()], move |t, vs| {
                let mut rng = Rng::new(7);
                let cfg = AttentionConfig {
                    num_heads: 2,
                    dropout,
                    training: true,
                };
                ops::attention(t, &vs[0], Some(&m), cfg, &mut rng)
            });
        }
    }

    test_device!(softmax_with_mask, 1e-5, |d| {
        let x = inputs(&[&[4, 3, 6]], 42);
        let mut mask = Tensor::zeros(&[2, 6]);
        mask.data_mut()[5] = -10000.0;
        mask.data_mut()[6] = -10000.0;
        let mut out = forward_backward(d, &x, 43, |t, v| ops::softmax(t, &v[0], None));
        out.extend(forward_backward(d, &x, 44, move |t, v| {
            ops::softmax(t, &v[0], Some(&mask))
        }));
        out
    });

    // Rows longer than a block (300 > 256 threads, not a multiple of 32:
    // several warps, a partial last warp, strided loops).
    test_device!(softmax_on_long_rows, 1e-4, |d| {
        let s = inputs(&[&[4, 33, 300]], 63);
        let mut mask = Tensor::zeros(&[2, 300]);
        mask.data_mut()[7] = -10000.0;
        mask.data_mut()[299] = -10000.0;
        mask.data_mut()[300] = -10000.0;
        forward_backward(d, &s, 64, move |t, v| ops::softmax(t, &v[0], Some(&mask)))
    });

    #[test]
    fn gradcheck_attention_linear_with_mask_and_dropout() {
        let mut r = rng();
        let (b, n, c, out) = (2, 5, 8, 6);
        let (qkv, w, bias) = (
            randn(&[b, n, 3 * c], &mut r),
            randn(&[out, c], &mut r),
            randn(&[out], &mut r),
        );
        let mut mask = Tensor::zeros(&[b, n]);
        mask.data_mut()[n - 1] = -10000.0;
        for dropout in [0.0, 0.25] {
            let m = mask.clone();
            check(vec![qkv.clone(), w.clone(), bias.clone()], move |t, vs| {
                let cfg = AttentionConfig {
                    num_heads: 2,
                    dropout,
                    training: true,
                };
                let rng = &mut Rng::new(7);
                ops::attention_linear(t, &vs[0], Some(&m), cfg, &vs[1], &vs[2], rng)
            });
        }
    }

    /// The fused node gives the bits of attention then linear: its backward
    /// gets the same context back from the attention kernel.
    #[test]
    fn attention_linear_matches_the_unfused_pair_bit_for_bit() {
        let mut r = rng();
        let values = [&[2, 7, 24][..], &[5, 8], &[5]].map(|s| randn(s, &mut r));
        let mut mask = Tensor::zeros(&[2, 7]);
        mask.data_mut()[3] = -10000.0;
        let cfg = AttentionConfig {
            num_heads: 2,
            dropout: 0.2,
            training: true,
        };
        let rng = || Rng::new(3);
        assert_same_bits(
            "attention_linear",
            &values,
            |t, v| ops::attention_linear(t, &v[0], Some(&mask), cfg, &v[1], &v[2], &mut rng()),
            |t, v| {
                let ctx = ops::attention(t, &v[0], Some(&mask), cfg, &mut rng());
                ops::linear(t, &ctx, &v[1], Some(&v[2]))
            },
        );
    }

    test_device!(attention_linear, 1e-4, |d| {
        let x = inputs(&[&[2, 5, 24], &[6, 8], &[6]], 47);
        let mut mask = Tensor::zeros(&[2, 5]);
        mask.data_mut()[4] = -10000.0;
        let cfg = AttentionConfig {
            num_heads: 2,
            dropout: 0.2,
            training: true,
        };
        forward_backward(d, &x, 48, move |t, v| {
            let rng = &mut Rng::new(2);
            ops::attention_linear(t, &v[0], Some(&mask), cfg, &v[1], &v[2], rng)
        })
    });

    test_device!(attention_with_key_mask, 1e-4, |d| {
        let x = inputs(&[&[2, 5, 24]], 45);
        let mut mask = Tensor::zeros(&[2, 5]);
        mask.data_mut()[4] = -10000.0;
        mask.data_mut()[8] = -10000.0;
        let cfg = AttentionConfig {
            num_heads: 2,
            dropout: 0.0,
            training: true,
        };
        forward_backward(d, &x, 46, move |t, v| {
            ops::attention(t, &v[0], Some(&mask), cfg, &mut Rng::new(2))
        })
    });

    // Attention dropout: each device checks (asserts) its own backward against
    // central differences of its own forward (the same Rng seed gives the same
    // mask in every call). A backward that regenerated a different mask than
    // the forward fails this by far (checked: off by up to 10x with another
    // seed). The mask is a hash of (seed, index) on every device, so the
    // output and gradients are also compared with the CPU's.
    test_device!(attention_dropout_backward_matches_its_forward, 1e-4, |d| {
        let x = inputs(&[&[2, 5, 24]], 80);
        let dirs = inputs(&[&[2, 5, 24]], 81);
        let dout = inputs(&[&[2, 5, 8]], 82).remove(0);
        let cfg = AttentionConfig {
            num_heads: 2,
            dropout: 0.3,
            training: true,
        };
        // L(qkv) = sum(attention(qkv) * dout), in f64 on the host.
        let loss = |xs: &[Tensor]| -> f64 {
            let mut tape = Tape::no_grad();
            let v: Vec<_> = xs.iter().map(|x| tape.leaf_tensor(on(d, x))).collect();
            let y = ops::attention(&mut tape, &v[0], None, cfg, &mut Rng::new(9));
            let y = y.value().to_host();
            y.data()
                .iter()
                .zip(dout.data())
                .map(|(&a, &b)| a as f64 * b as f64)
                .sum()
        };
        let mut tape = Tape::new();
        let v: Vec<_> = x.iter().map(|x| tape.leaf_tensor(on(d, x))).collect();
        let y = ops::attention(&mut tape, &v[0], None, cfg, &mut Rng::new(9));
        let grads = tape.backward_with(&y, on(d, &dout));
        let h = 1e-2f32;
        let mut out = Vec::new();
        // One input, qkv.
        {
            let i = 0;
            let g = grads.get(&v[i]).expect("gradient").to_host();
            let analytic: f64 = g
                .data()
                .iter()
                .zip(dirs[i].data())
                .map(|(&a, &b)| a as f64 * b as f64)
                .sum();
            let shifted = |sign: f32| {
                let mut xs = x.clone();
                xs[i]
                    .data_mut()
                    .iter_mut()
                    .zip(dirs[i].data())
                    .for_each(|(a, &u)| *a += sign * h * u);
                loss(&xs)
            };
            let numeric = (shifted(1.0) - shifted(-1.0)) / (2.0 * h as f64);
            assert!(
                (numeric - analytic).abs() <= 2e-2 * (1.0 + analytic.abs()),
                "attention dropout on {d:?}, input {i}: numeric {numeric}, analytic {analytic}"
            );
            out.push(g);
        }
        // The mask must drop something, or the test proves nothing.
        let no_drop = AttentionConfig {
            dropout: 0.0,
            ..cfg
        };
        let mut tape = Tape::no_grad();
        let v: Vec<_> = x.iter().map(|x| tape.leaf_tensor(on(d, x))).collect();
        let plain = ops::attention(&mut tape, &v[0], None, no_drop, &mut Rng::new(9));
        let dropped = y.value().to_host();
        assert!(
            plain.value().to_host().data() != dropped.data(),
            "attention dropout on {d:?} dropped nothing"
        );
        out.push(dropped);
        out
    });
}
