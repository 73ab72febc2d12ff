//! Quick GFLOP/s of every GEMM path on the PIXEL-base linear shapes (median of
//! a few runs): `cargo run --release -p pixel-kernels --example gemm_paths`.
use pixel_kernels::gemm::{sgemm_on, GemmPath, GemmShape};
use pixel_kernels::Isa;
use std::time::Instant;

extern "C" {
    fn clock_gettime(clock: i32, ts: *mut [i64; 2]) -> i32;
}

/// CPU seconds of this process (all threads): robust to other tenants.
fn cpu_seconds() -> f64 {
    let mut ts = [0i64; 2];
    // SAFETY: CLOCK_PROCESS_CPUTIME_ID = 2 writes a timespec.
    unsafe { clock_gettime(2, &mut ts) };
    ts[0] as f64 + ts[1] as f64 * 1e-9
}

fn main() {
    let mut paths: Vec<GemmPath> = Isa::available().into_iter().map(GemmPath::Packed).collect();
    paths.push(GemmPath::Matrixmultiply);
    let only: Option<String> = std::env::args().nth(1);
    let shapes = [
        ("nt", GemmShape::nt(4232, 3072, 768)),
        ("nt", GemmShape::nt(4232, 768, 768)),
        ("nt", GemmShape::nt(4232, 768, 3072)),
        ("nn", GemmShape::nn(4232, 768, 3072)),
        ("nn", GemmShape::nn(4232, 3072, 768)),
        ("tn", GemmShape::tn(3072, 768, 4232)),
        ("tn", GemmShape::tn(768, 3072, 4232)),
        ("nt1", GemmShape::nt(8, 768, 768)),
        ("attn_qk", GemmShape::nt(397, 397, 64)),
        ("attn_pv", GemmShape::nn(397, 64, 397)),
    ];
    for (name, s) in shapes {
        let a: Vec<f32> = (0..s.m * s.k).map(|i| (i % 7) as f32 * 0.1).collect();
        let b: Vec<f32> = (0..s.k * s.n).map(|i| (i % 5) as f32 * 0.1).collect();
        let mut c = vec![0.0f32; s.m * s.n];
        for &path in &paths {
            if let Some(o) = &only {
                if !path.name().contains(o.as_str()) {
                    continue;
                }
            }
            let parallel = !name.starts_with("attn");
            let reps = (3e10 / s.flops()).clamp(3.0, 200.0) as usize;
            let mut times = vec![];
            let mut cpu_times = vec![];
            let threads = if parallel {
                rayon::current_num_threads()
            } else {
                1
            } as f64;
            for _ in 0..reps {
                let (t, cpu) = (Instant::now(), cpu_seconds());
                sgemm_on(path, parallel, s, 1.0, &a, &b, 0.0, &mut c);
                times.push(t.elapsed().as_secs_f64());
                cpu_times.push((cpu_seconds() - cpu) / threads);
            }
            cpu_times.sort_by(|x, y| x.partial_cmp(y).unwrap());
            times.sort_by(|x, y| x.partial_cmp(y).unwrap());
            let med = times[times.len() / 2];
            println!(
                "{name:8} {:>5}x{:>5}x{:>5} {:18} {:7.1} GFLOP/s (best {:7.1}; per CPU-second {:7.1})",
                s.m, s.k, s.n, path.name(), s.flops() / med / 1e9, s.flops() / times[0] / 1e9,
                s.flops() / cpu_times[cpu_times.len() / 2] / 1e9
            );
        }
    }
}
