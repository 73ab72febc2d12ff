//! Kernel benchmarks on PIXEL-base sizes (8 images x 529 patches = 4232 tokens,
//! width 768, MLP 3072, 12 heads of 64 over 397 tokens after MAE masking).
//!
//! `cargo bench --bench kernels` (a few minutes on 2 cores); filter with e.g.
//! `cargo bench --bench kernels -- matmul/nt`. GEMMs report GFLOP/s via
//! `Throughput::Elements(flops)`: criterion's "elements" *are* flops here, so
//! its "Gelem/s" reads as GFLOP/s. The fused kernels report bytes moved
//! (each input read once, each output written once) as GB/s.

use criterion::{
    criterion_group, criterion_main, BenchmarkId, Criterion, SamplingMode, Throughput,
};
use pixel_kernels::gemm::{sgemm, sgemm_batched, GemmShape};
use pixel_kernels::{gelu, layer_norm, softmax};
use std::time::Duration;

/// Linear layers of PIXEL-base as (tokens M, in K, out N).
const LINEAR_SHAPES: [(usize, usize, usize); 3] =
    [(4232, 768, 768), (4232, 768, 3072), (4232, 3072, 768)];

/// Tokens x width for the row kernels.
const TOKENS: usize = 4232;
const WIDTH: usize = 768;
const MLP: usize = 3072;
/// Attention: batch x heads items of (SEQ, SEQ) scores, head dim 64.
const HEADS_TIMES_BATCH: usize = 96;
const SEQ: usize = 397;
const HEAD_DIM: usize = 64;

/// Values in [-1, 1) from a cheap LCG: benchmarks need no real randomness.
fn values(n: usize) -> Vec<f32> {
    let mut s = 12345u32;
    (0..n)
        .map(|_| {
            s = s.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
            (s >> 8) as f32 / (1u32 << 23) as f32 - 1.0
        })
        .collect()
}

fn bench_matmul(c: &mut Criterion) {
    let mut group = c.benchmark_group("matmul");
    group.sampling_mode(SamplingMode::Flat);
    group.sample_size(10);
    group.warm_up_time(Duration::from_millis(500));
    group.measurement_time(Duration::from_secs(2));
    for &(m, k, n) in &LINEAR_SHAPES {
        // For the linear y = x W^T with x (M, K), W (N, K):
        // nt: forward y (M, N) = x (M, K) @ W^T;
        // nn: the same sizes with B stored (K, N) (dX = dY @ W for the transposed layer);
        // tn: weight gradient dW (N, K) = dY^T @ x, dY stored (M, N): reduces over M.
        let layouts = [
            (
                "nt",
                GemmShape {
                    m,
                    n,
                    k,
                    trans_a: false,
                    trans_b: true,
                },
            ),
            (
                "nn",
                GemmShape {
                    m,
                    n,
                    k,
                    trans_a: false,
                    trans_b: false,
                },
            ),
            (
                "tn",
                GemmShape {
                    m: n,
                    n: k,
                    k: m,
                    trans_a: true,
                    trans_b: false,
                },
            ),
        ];
        for (layout, s) in layouts {
            let (a, b) = (values(s.m * s.k), values(s.k * s.n));
            let mut out = vec![0.0f32; s.m * s.n]; // C (m, n)
                                                   // Elements = flops (2 m n k), so criterion's elem/s = flop/s.
            group.throughput(Throughput::Elements(s.flops() as u64));
            let id = BenchmarkId::new(layout, format!("{}x{}x{}", s.m, s.k, s.n));
            group.bench_function(id, |bench| {
                bench.iter(|| sgemm(s, 1.0, &a, &b, 0.0, &mut out))
            });
        }
    }
    // Attention, batched over batch x heads: scores = Q K^T and context = P V.
    let qk = GemmShape {
        m: SEQ,
        n: SEQ,
        k: HEAD_DIM,
        trans_a: false,
        trans_b: true,
    };
    let pv = GemmShape {
        m: SEQ,
        n: HEAD_DIM,
        k: SEQ,
        trans_a: false,
        trans_b: false,
    };
    for (name, s) in [("attn_qk_nt", qk), ("attn_pv_nn", pv)] {
        let (a, b) = (
            values(HEADS_TIMES_BATCH * s.m * s.k),
            values(HEADS_TIMES_BATCH * s.k * s.n),
        );
        let mut out = vec![0.0f32; HEADS_TIMES_BATCH * s.m * s.n]; // (BH, m, n)
        group.throughput(Throughput::Elements(
            (s.flops() * HEADS_TIMES_BATCH as f64) as u64,
        ));
        let id = BenchmarkId::new(name, format!("{HEADS_TIMES_BATCH}x{}x{}x{}", s.m, s.k, s.n));
        group.bench_function(id, |bench| {
            bench.iter(|| {
                let (sa, sb) = (s.m * s.k, s.k * s.n);
                sgemm_batched(s, HEADS_TIMES_BATCH, 1.0, &a, sa, &b, sb, 0.0, &mut out)
            })
        });
    }
    group.finish();
}

/// Bytes of `n` f32 values times `tensors` (inputs read + outputs written).
fn bytes(n: usize, tensors: usize) -> Throughput {
    Throughput::Bytes((n * tensors * std::mem::size_of::<f32>()) as u64)
}

fn bench_fused(c: &mut Criterion) {
    let mut group = c.benchmark_group("fused");
    group.sample_size(20);
    group.warm_up_time(Duration::from_millis(500));
    group.measurement_time(Duration::from_secs(2));

    // layer_norm over (TOKENS, WIDTH).
    let n = TOKENS * WIDTH;
    let (inp, w, bias) = (values(n), values(WIDTH), values(WIDTH));
    let (mut out, mut mean, mut rstd) = (vec![0.0; n], vec![0.0; TOKENS], vec![0.0; TOKENS]);
    group.throughput(bytes(n, 2)); // read inp, write out
    group.bench_function("layer_norm_forward/4232x768", |bench| {
        bench.iter(|| {
            layer_norm::layer_norm_forward(
                &mut out, &mut mean, &mut rstd, &inp, &w, &bias, WIDTH, 1e-6,
            )
        })
    });
    let dout = values(n);
    let (mut dinp, mut dw, mut db) = (vec![0.0; n], vec![0.0; WIDTH], vec![0.0; WIDTH]);
    group.throughput(bytes(n, 3)); // read dout, inp; write dinp
    group.bench_function("layer_norm_backward/4232x768", |bench| {
        bench.iter(|| {
            layer_norm::layer_norm_backward(
                &mut dinp, &mut dw, &mut db, &dout, &inp, &w, &mean, &rstd, WIDTH,
            )
        })
    });

    // softmax over attention scores (BH, SEQ, SEQ) with a key mask (8, SEQ).
    let n = HEADS_TIMES_BATCH * SEQ * SEQ;
    let scores = values(n);
    let mask: Vec<f32> = (0..8 * SEQ)
        .map(|i| if i % 7 == 0 { -1e9 } else { 0.0 })
        .collect();
    let rows_per_mask_row = HEADS_TIMES_BATCH / 8 * SEQ; // heads x queries per example
    let mut probs = vec![0.0; n];
    group.throughput(bytes(n, 2)); // read scores, write probs
    group.bench_function("softmax_forward/96x397x397", |bench| {
        bench.iter(|| {
            softmax::softmax_forward(&mut probs, &scores, Some(&mask), rows_per_mask_row, SEQ)
        })
    });
    let dprobs = values(n);
    let mut dscores = vec![0.0; n];
    group.throughput(bytes(n, 3)); // read dprobs, probs; write dscores
    group.bench_function("softmax_backward/96x397x397", |bench| {
        bench.iter(|| softmax::softmax_backward(&mut dscores, &dprobs, &probs, SEQ))
    });

    // GELU over the MLP hidden activations (TOKENS, MLP), values ~N(0, 2).
    let n = TOKENS * MLP;
    let x: Vec<f32> = values(n).iter().map(|v| v * 3.0).collect();
    let mut y = vec![0.0; n];
    group.throughput(bytes(n, 2)); // read x, write y
    group.bench_function("gelu_forward/4232x3072", |bench| {
        bench.iter(|| gelu::gelu_forward(&mut y, &x))
    });
    let dy = values(n);
    let mut dx = vec![0.0; n];
    group.throughput(bytes(n, 3)); // read dy, x; write dx
    group.bench_function("gelu_backward/4232x3072", |bench| {
        bench.iter(|| gelu::gelu_backward(&mut dx, &dy, &x))
    });
    group.finish();
}

/// The blocked attention kernel alone (on packed qkv, no tape), on PIXEL-base's
/// encoder (8 x 12 heads, 397 tokens, dim 64) and decoder (8 x 16 heads, 530
/// tokens, dim 32). FLOPs are those done: forward 4 n^2 d per head, backward
/// 10 n^2 d (the scores recomputed, then four products).
fn bench_attention_kernel(c: &mut Criterion) {
    use pixel_kernels::attention::{self, AttentionShape};
    use pixel_kernels::Buffer;
    let mut group = c.benchmark_group("attention_kernel");
    group.sample_size(10);
    for (name, batch, heads, seq, dim) in [("encoder", 8, 12, 397, 64), ("decoder", 8, 16, 530, 32)]
    {
        let len = batch * heads * seq * dim;
        let (qkv, dctx) = (Buffer::Cpu(values(3 * len)), Buffer::Cpu(values(len)));
        let mask = Buffer::Cpu(
            (0..batch * seq)
                .map(|i| if i % 7 == 0 { -10000.0 } else { 0.0 })
                .collect(),
        );
        let s = AttentionShape {
            batch,
            heads,
            seq,
            head_dim: dim,
            scale: 1.0 / (dim as f32).sqrt(),
            dropout: None,
        };
        let per_head = (batch * heads * seq * seq * dim) as u64;
        let mut ctx = Buffer::Cpu(vec![0.0; len]);
        group.throughput(Throughput::Elements(4 * per_head));
        group.bench_function(format!("{name}_forward"), |bench| {
            bench.iter(|| attention::forward(&mut ctx, &qkv, Some(&mask), s))
        });
        let mut dqkv = qkv.clone();
        group.throughput(Throughput::Elements(10 * per_head));
        group.bench_function(format!("{name}_backward"), |bench| {
            bench.iter(|| attention::backward(&mut dqkv, None, &dctx, &qkv, Some(&mask), s))
        });
        // Backward that also gives the context back (attention_linear's):
        // one more product, 2 n^2 d.
        group.throughput(Throughput::Elements(12 * per_head));
        group.bench_function(format!("{name}_backward_with_context"), |bench| {
            bench.iter(|| {
                let ctx = Some(&mut ctx);
                attention::backward(&mut dqkv, ctx, &dctx, &qkv, Some(&mask), s)
            })
        });
    }
    group.finish();
}

criterion_group!(benches, bench_matmul, bench_fused, bench_attention_kernel);
criterion_main!(benches);
