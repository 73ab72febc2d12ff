//! Tape ops at PIXEL-base shapes, forward and forward+backward: fused
//! attention for the encoder (B 8, N 397, 12 heads of 64) and decoder (B 8,
//! N 530, 16 heads of 32); the MLP's second half `gelu_linear` (encoder 3072
//! -> 768, decoder 2048 -> 512, same rows). Throughput is matmul FLOPs
//! (elements = FLOPs).

use std::hint::black_box;
use std::sync::Arc;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use pixel::engine::ops::{self, AttentionConfig};
use pixel::engine::{Rng, Tape, Tensor};

fn random(shape: &[usize], rng: &mut Rng) -> Tensor {
    let mut t = Tensor::zeros(shape);
    rng.fill_normal(t.data_mut(), 0.0, 1.0);
    t
}

fn bench_attention(c: &mut Criterion) {
    pixel::keep_freed_memory(); // as the `pixel` binary does
    let mut group = c.benchmark_group("attention");
    group.sample_size(10);
    for (name, b, n, heads, d) in [("encoder", 8, 397, 12, 64), ("decoder", 8, 530, 16, 32)] {
        let mut rng = Rng::new(0);
        let width = heads * d;
        // Shared, not copied per iteration: the op only reads it.
        let qkv = Arc::new(random(&[b, n, 3 * width], &mut rng));
        let mask = Tensor::zeros(&[b, n]);
        let cfg = AttentionConfig {
            num_heads: heads,
            dropout: 0.0,
            training: true,
        };
        let fwd_flops = 4.0 * (b * heads * n * n * d) as f64;
        group.throughput(Throughput::Elements(fwd_flops as u64));
        group.bench_function(format!("{name}_forward"), |bench| {
            bench.iter(|| {
                let mut t = Tape::no_grad();
                let qkv = t.leaf(qkv.clone());
                black_box(ops::attention(&mut t, &qkv, Some(&mask), cfg, &mut rng));
            })
        });
        group.throughput(Throughput::Elements((3.0 * fwd_flops) as u64));
        group.bench_function(format!("{name}_forward_backward"), |bench| {
            bench.iter(|| {
                let mut t = Tape::new();
                let qkv = t.leaf(qkv.clone());
                let out = ops::attention(&mut t, &qkv, Some(&mask), cfg, &mut rng);
                let dout = Tensor::full(out.shape(), 1e-3);
                black_box(t.backward_with(&out, dout));
            })
        });
    }
    group.finish();
}

fn bench_gelu_linear(c: &mut Criterion) {
    pixel::keep_freed_memory();
    let mut group = c.benchmark_group("gelu_linear");
    group.sample_size(10);
    for (name, rows, inner, width) in [
        ("encoder", 8 * 397, 3072, 768),
        ("decoder", 8 * 530, 2048, 512),
    ] {
        let mut rng = Rng::new(1);
        let x = Arc::new(random(&[rows, inner], &mut rng));
        let w = Arc::new(random(&[width, inner], &mut rng));
        let b = Arc::new(random(&[width], &mut rng));
        let flops = 2.0 * (rows * inner * width) as f64;
        group.throughput(Throughput::Elements(flops as u64));
        group.bench_function(format!("{name}_forward"), |bench| {
            bench.iter(|| {
                let mut t = Tape::no_grad();
                let [x, w, b] = [&x, &w, &b].map(|v| t.leaf((*v).clone()));
                black_box(ops::gelu_linear(&mut t, &x, &w, &b));
            })
        });
        group.throughput(Throughput::Elements((3.0 * flops) as u64));
        group.bench_function(format!("{name}_forward_backward"), |bench| {
            bench.iter(|| {
                let mut t = Tape::new();
                let [x, w, b] = [&x, &w, &b].map(|v| t.leaf((*v).clone()));
                let out = ops::gelu_linear(&mut t, &x, &w, &b);
                let dout = Tensor::full(out.shape(), 1e-3);
                black_box(t.backward_with(&out, dout));
            })
        });
    }
    group.finish();
}

criterion_group!(benches, bench_attention, bench_gelu_linear);
criterion_main!(benches);
