//! CUDA twin of the fused attention of `ops/attention.rs`: per-head products
//! through cuBLAS, the masked softmax and dropout as kernels.

use pixel_kernels::cuda::launch as k;
use pixel_kernels::gemm::GemmShape;

use super::linalg::product;
use super::{buf, constant_on, device_of, zeros};
use crate::ops::attention::AttentionConfig;
use crate::rng::Rng;
use crate::tape::{Tape, Var};
use crate::tensor::Tensor;

/// Multi-head self-attention (shapes checked by the CPU op): q, k, v (B, N, C),
/// heads interleaved as (B, N, H, D). Saves per-head q, k, v; the
/// probabilities are recomputed in backward and the dropout mask regenerated
/// from its seed (counter-based), so nothing of size N^2 is kept.
#[allow(clippy::too_many_arguments)]
pub fn attention(
    t: &mut Tape,
    q: &Var,
    kv: &Var,
    v: &Var,
    key_mask: Option<&Tensor>,
    cfg: AttentionConfig,
    rng: &mut Rng,
) -> Var {
    let name = "attention";
    let dev = device_of(name, &[q.value(), kv.value(), v.value()]);
    let shape = q.shape().to_vec();
    let (b, n, c) = (shape[0], shape[1], shape[2]);
    let h = cfg.num_heads;
    let d = c / h;
    let bh = b * h;
    let scale = 1.0 / (d as f32).sqrt();
    let mask = key_mask.map(|m| constant_on(name, m, &dev)); // (B, N) additive
    let seed = (cfg.training && cfg.dropout > 0.0).then(|| rng.next_u64());
    let p_drop = cfg.dropout;
    // (B, N, H, D) -> (B, H, N, D) and back.
    let heads = move |x: &Tensor| {
        let mut out = zeros(&dev, &[bh, n, d]);
        k::permute(
            out.cuda_buffer_mut(name),
            buf(name, x),
            &[b, n, h, d],
            &[0, 2, 1, 3],
        );
        out
    };
    let merge = move |x: &Tensor| {
        let dev = device_of(name, &[x]);
        let mut out = zeros(&dev, &[b, n, c]);
        k::permute(
            out.cuda_buffer_mut(name),
            buf(name, x),
            &[b, h, n, d],
            &[0, 2, 1, 3],
        );
        out
    };
    // softmax(q k^T * scale + key mask) per head: (B*H, N, N).
    let probs = move |qh: &Tensor, kh: &Tensor, mask: Option<&Tensor>| {
        let qk = GemmShape {
            m: n,
            n,
            k: d,
            trans_a: false,
            trans_b: true,
        };
        let mut p = product(name, qk, bh, scale, qh, n * d, kh, n * d, &[bh, n, n]);
        let mask = mask.map(|m| buf(name, m));
        k::softmax_forward(p.cuda_buffer_mut(name), None, mask, bh * n, n, h * n);
        p
    };
    let dropout = move |x: &mut Tensor| {
        if let Some(seed) = seed {
            let len = x.numel();
            k::dropout_in_place(x.cuda_buffer_mut(name), len, seed, p_drop);
        }
    };
    let (qh, kh, vh) = (heads(q.value()), heads(kv.value()), heads(v.value()));
    let mut p = probs(&qh, &kh, mask.as_ref());
    dropout(&mut p);
    let pv = GemmShape {
        m: n,
        n: d,
        k: n,
        trans_a: false,
        trans_b: false,
    };
    let ctx = product(name, pv, bh, 1.0, &p, n * n, &vh, n * d, &[bh, n, d]);
    drop(p);
    let out = merge(&ctx);
    if !t.needs_grad(&[q, kv, v]) {
        return Var::constant(out);
    }
    t.add_flops(4.0 * (bh * n * n * d) as f64);
    t.record(
        name,
        out,
        &[q, kv, v],
        Box::new(move |dout, _| {
            let dctx = heads(&dout); // (B*H, N, D)
            let p = probs(&qh, &kh, mask.as_ref());
            // dv = probs_used^T dctx (probs_used = probs after dropout).
            let nn_t = GemmShape {
                m: n,
                n: d,
                k: n,
                trans_a: true,
                trans_b: false,
            };
            let dvh = {
                let mut used = p.clone();
                dropout(&mut used);
                product(name, nn_t, bh, 1.0, &used, n * n, &dctx, n * d, &[bh, n, d])
            };
            // dprobs = dctx v^T, through the dropout mask, then softmax backward.
            let nd_t = GemmShape {
                m: n,
                n,
                k: d,
                trans_a: false,
                trans_b: true,
            };
            let mut ds = product(name, nd_t, bh, 1.0, &dctx, n * d, &vh, n * d, &[bh, n, n]);
            dropout(&mut ds);
            k::softmax_backward_in_place(ds.cuda_buffer_mut(name), buf(name, &p), bh * n, n);
            drop(p);
            // dq = dscores k / sqrt(D); dk = dscores^T q / sqrt(D).
            let nn = GemmShape {
                m: n,
                n: d,
                k: n,
                trans_a: false,
                trans_b: false,
            };
            let dqh = product(name, nn, bh, scale, &ds, n * n, &kh, n * d, &[bh, n, d]);
            let dkh = product(name, nn_t, bh, scale, &ds, n * n, &qh, n * d, &[bh, n, d]);
            vec![Some(merge(&dqh)), Some(merge(&dkh)), Some(merge(&dvh))]
        }),
    )
}
