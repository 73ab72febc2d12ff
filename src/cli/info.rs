//! `pixel info`: what this machine is and what it can do, measured: the CPU,
//! its caches, the ISA the kernels use and the GEMM's blocking, the FMA-loop
//! ceiling of every ISA on one thread and on all threads, and memory bandwidth.

use pixel_kernels::cpu::{caches, model_name};
use pixel_kernels::gemm::{blocking_for, default_path, GemmPath};
use pixel_kernels::{peak, Isa};
use std::time::Duration;

#[derive(clap::Args)]
pub struct InfoArgs {
    /// Skip the measurements (ceilings, bandwidth): print only what the CPU reports.
    #[arg(long)]
    pub no_measure: bool,
    /// Print the model presets side by side with their parameter counts (a
    /// Markdown table) instead.
    #[arg(long)]
    pub presets: bool,
}

pub fn run(args: InfoArgs) -> anyhow::Result<()> {
    if args.presets {
        print!("{}", pixel::presets::presets_markdown());
        return Ok(());
    }
    let threads = rayon::current_num_threads();
    let c = caches();
    let kib = |b: usize| {
        if b >= 1 << 20 {
            format!("{} MiB", b >> 20)
        } else {
            format!("{} KiB", b >> 10)
        }
    };
    println!("CPU: {} ({threads} rayon threads)", model_name());
    println!(
        "caches (CPU 0): L1d {}, L2 {}, L3 {}",
        kib(c.l1d),
        kib(c.l2),
        kib(c.l3)
    );
    let names: Vec<&str> = Isa::available().iter().map(|i| i.name()).collect();
    let active = pixel_kernels::cpu::isa();
    println!(
        "ISAs: {} (kernels use {active}; force one with --isa or PIXEL_ISA=scalar|avx2|avx512)",
        names.join(", ")
    );
    match default_path() {
        GemmPath::Packed(isa) => {
            let b = blocking_for(isa, 768);
            println!(
                "GEMM: packed, {isa} micro-kernel, blocks for depth 768: KC {} x MC {} x NC {} (B panel shared by the threads)",
                b.kc, b.mc, b.nc
            );
        }
        GemmPath::Matrixmultiply => println!("GEMM: matrixmultiply (PIXEL_GEMM=matrixmultiply)"),
    }
    if args.no_measure {
        return Ok(());
    }
    println!("\nFMA-loop ceiling (GFLOP/s, best of ~0.3 s each):");
    println!(
        "{:<8} {:>10} {:>12}",
        "ISA",
        "1 thread",
        format!("{threads} threads")
    );
    for isa in Isa::available() {
        let one = peak::fma_peak_gflops(isa, 1, Duration::from_millis(300));
        let all = peak::fma_peak_gflops(isa, threads, Duration::from_millis(300));
        let mark = if isa == active { "  <- in use" } else { "" };
        println!("{:<8} {one:>10.1} {all:>12.1}{mark}", isa.name());
    }
    let bw = peak::memory_bandwidth(Duration::from_millis(1000));
    println!(
        "\nmemory bandwidth ({threads} threads, buffers of {} MiB): copy {:.1} GB/s, triad {:.1} GB/s",
        bw.buffer_bytes >> 20,
        bw.copy,
        bw.triad
    );
    Ok(())
}
