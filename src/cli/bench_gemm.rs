//! `pixel bench --gemm`: GFLOP/s of every GEMM path this CPU can run (the
//! packed GEMM with each ISA's micro-kernel, and matrixmultiply) on the
//! products PIXEL-base computes at batch 8, L = 529, in all three layouts of
//! a linear layer and the batched attention products, as % of the FMA-loop
//! ceiling of the path's ISA measured in the same process.

use std::time::{Duration, Instant};

use pixel_kernels::gemm::{sgemm_batched, sgemm_on, GemmPath, GemmShape};
use pixel_kernels::{peak, Isa};

/// (name, shape, batch): linear layers as `x W^T` (nt), `dY W` (nn) and
/// `dY^T X` (tn) for tokens M = 8 x 529, widths 768 / 3072 (encoder) and
/// 512 / 2048 (decoder); attention heads (8 x 12 of 397 tokens, head dim 64).
fn shapes() -> Vec<(&'static str, GemmShape, usize)> {
    let m = 8 * 529;
    let mut v = Vec::new();
    for (k, n) in [
        (768, 768),
        (768, 3072),
        (3072, 768),
        (512, 2048),
        (2048, 512),
    ] {
        v.push(("x W^T", GemmShape::nt(m, n, k), 1));
        v.push(("dY W", GemmShape::nn(m, k, n), 1));
        v.push(("dY^T X", GemmShape::tn(n, k, m), 1));
    }
    v.push(("Q K^T", GemmShape::nt(397, 397, 64), 96));
    v.push(("P V", GemmShape::nn(397, 64, 397), 96));
    v
}

pub fn run(repeats: usize) -> anyhow::Result<()> {
    let threads = rayon::current_num_threads();
    let mut paths: Vec<GemmPath> = Isa::available().into_iter().map(GemmPath::Packed).collect();
    paths.retain(|p| *p != GemmPath::Packed(Isa::Scalar)); // minutes per product
    paths.push(GemmPath::Matrixmultiply);
    let ceiling = |isa: Isa| peak::fma_peak_gflops(isa, threads, Duration::from_millis(300));
    let ceilings: Vec<(Isa, f64)> = Isa::available()
        .into_iter()
        .map(|i| (i, ceiling(i)))
        .collect();
    let ceiling_of = |p: GemmPath| {
        // matrixmultiply's best kernel is AVX2+FMA.
        let isa = match p {
            GemmPath::Packed(isa) => isa,
            GemmPath::Matrixmultiply => Isa::best().min(Isa::Avx2),
        };
        ceilings
            .iter()
            .find(|(i, _)| *i == isa)
            .map_or(f64::NAN, |c| c.1)
    };
    println!(
        "pixel bench --gemm: {} ({threads} threads); FMA-loop ceilings {}",
        pixel_kernels::cpu::model_name(),
        ceilings
            .iter()
            .map(|(i, g)| format!("{i} {g:.0} GFLOP/s"))
            .collect::<Vec<_>>()
            .join(", ")
    );
    println!(
        "{:<8} {:>20} {:>6} {:<16} {:>9} {:>9} {:>7}",
        "layout", "m x k x n", "batch", "path", "median ms", "GFLOP/s", "%ceil"
    );
    for (name, s, batch) in shapes() {
        let a = values(batch * s.m * s.k, 1);
        let b = values(batch * s.k * s.n, 2);
        let mut c = vec![0.0f32; batch * s.m * s.n];
        let flops = s.flops() * batch as f64;
        for &path in &paths {
            let mut run_once = || {
                if batch == 1 {
                    sgemm_on(path, true, s, 1.0, &a, &b, 0.0, &mut c);
                } else {
                    batched_on(path, s, batch, &a, &b, &mut c);
                }
            };
            run_once(); // warm-up: packing buffers, page faults
            let mut times: Vec<f64> = (0..repeats.max(1))
                .map(|_| {
                    let t = Instant::now();
                    run_once();
                    t.elapsed().as_secs_f64()
                })
                .collect();
            times.sort_by(f64::total_cmp);
            let med = times[times.len() / 2];
            let rate = flops / med / 1e9;
            println!(
                "{name:<8} {:>20} {batch:>6} {:<16} {:>9.1} {rate:>9.1} {:>6.0}%",
                format!("{}x{}x{}", s.m, s.k, s.n),
                path.name(),
                med * 1e3,
                100.0 * rate / ceiling_of(path)
            );
        }
    }
    Ok(())
}

/// The attention products on one path: one item per rayon task, as
/// `sgemm_batched` does with the default path.
fn batched_on(path: GemmPath, s: GemmShape, batch: usize, a: &[f32], b: &[f32], c: &mut [f32]) {
    use rayon::prelude::*;
    if path == pixel_kernels::gemm::default_path() {
        return sgemm_batched(s, batch, 1.0, a, s.m * s.k, b, s.k * s.n, 0.0, c);
    }
    c.par_chunks_mut(s.m * s.n).enumerate().for_each(|(i, c)| {
        let a = &a[i * s.m * s.k..(i + 1) * s.m * s.k];
        let b = &b[i * s.k * s.n..(i + 1) * s.k * s.n];
        sgemm_on(path, false, s, 1.0, a, b, 0.0, c);
    });
}

/// Values in [-1, 1) from a cheap LCG.
fn values(n: usize, seed: u32) -> Vec<f32> {
    let mut s = seed.wrapping_mul(747_796_405).wrapping_add(1);
    (0..n)
        .map(|_| {
            s = s.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
            (s >> 8) as f32 / (1u32 << 23) as f32 - 1.0
        })
        .collect()
}
