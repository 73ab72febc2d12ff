//! `pixel bench --profile`: one training step with every op timed, printed per
//! op kind and per model part (a roofline-style table against this machine's
//! ceilings, measured at start: the FMA loop of the ISA in use on all threads,
//! and triad memory bandwidth).

use pixel_engine::profile::{OpStats, Profiler};
use pixel_engine::Rng;
use pixel_kernels::peak;
use pixel_model::train::{pretraining_loss, PretrainBatch, Trainer};
use std::time::Duration;

/// This machine's ceilings, measured once (about 0.8 s).
#[derive(Clone, Copy)]
struct Ceilings {
    gflops: f64,
    gbytes: f64,
}

fn measure_ceilings() -> Ceilings {
    let isa = pixel_kernels::cpu::isa();
    let threads = rayon::current_num_threads();
    let gflops = peak::fma_peak_gflops(isa, threads, Duration::from_millis(300));
    let gbytes = peak::memory_bandwidth(Duration::from_millis(500)).triad;
    println!(
        "\nceilings measured now: {isa} FMA loop on {threads} threads {gflops:.1} GFLOP/s, triad bandwidth {gbytes:.1} GB/s ({})",
        pixel_kernels::cpu::model_name()
    );
    Ceilings { gflops, gbytes }
}

/// Profile one training step (the same [`Trainer::train_on`] every run uses):
/// every op of forward and backward timed on the tape, then clipping and the
/// AdamW update timed as a whole.
pub fn profile_step(
    trainer: &mut Trainer,
    batch: &PretrainBatch,
    rng: &mut Rng,
) -> anyhow::Result<()> {
    let ceilings = measure_ceilings();
    let mut profiler = Profiler::new();
    let stats = trainer
        .train_on_profiled(
            std::slice::from_ref(batch),
            &mut profiler,
            |model, tape, params, batch| pretraining_loss(model, tape, params, batch, true, rng),
        )
        .map_err(|e| anyhow::anyhow!("profiled step: {e}"))?;
    let (forward_s, backward_s, update_s) = (stats.forward_s, stats.backward_s, stats.update_s);
    let total = forward_s + backward_s + update_s;
    println!(
        "\nprofile of one training step: forward {:.1} ms, backward {:.1} ms, clip + AdamW {:.1} ms, total {:.1} ms",
        forward_s * 1e3,
        backward_s * 1e3,
        update_s * 1e3,
        total * 1e3
    );
    println!(
        "forward time of an op = compute since the previous recorded op; FLOPs are matmul FLOPs, backward = 2x forward;\n\
         GB = bytes of inputs + output (f32) x 3 (forward + backward), a lower bound on traffic;\n\
         %peak = of the FMA ceiling ({:.0} GFLOP/s), %bw = of the triad bandwidth ({:.1} GB/s)",
        ceilings.gflops, ceilings.gbytes
    );
    print_table(
        "op",
        profiler
            .by_op()
            .into_iter()
            .map(|(k, s)| (k.to_string(), s)),
        total,
        ceilings,
    );
    print_table(
        "model part",
        profiler.by_scope().into_iter(),
        total,
        ceilings,
    );
    Ok(())
}

fn print_table(
    what: &str,
    rows: impl Iterator<Item = (String, OpStats)>,
    total: f64,
    ceilings: Ceilings,
) {
    println!(
        "\n{what:<26} {:>5} {:>9} {:>9} {:>6} {:>8} {:>8} {:>6} {:>7} {:>7} {:>5}",
        "calls", "fwd ms", "bwd ms", "share", "GFLOP", "GFLOP/s", "%peak", "GB", "GB/s", "%bw"
    );
    for (name, s) in rows {
        let flops = 3.0 * s.forward_flops; // forward + backward (2x)
        let bytes = 3.0 * s.forward_bytes; // same rule of thumb for traffic
        let rate = flops / s.total_s() / 1e9;
        let (rate_col, peak_col) = if flops > 0.0 {
            (
                format!("{rate:.1}"),
                format!("{:.0}%", 100.0 * rate / ceilings.gflops),
            )
        } else {
            ("-".to_string(), "-".to_string())
        };
        let gbs = bytes / s.total_s().max(1e-12) / 1e9;
        println!(
            "{name:<26} {:>5} {:>9.1} {:>9.1} {:>5.1}% {:>8.2} {:>8} {:>6} {:>7.2} {:>7.1} {:>4.0}%",
            s.calls,
            s.forward_s * 1e3,
            s.backward_s * 1e3,
            100.0 * s.total_s() / total,
            flops / 1e9,
            rate_col,
            peak_col,
            bytes / 1e9,
            gbs,
            100.0 * gbs / ceilings.gbytes,
        );
    }
}
