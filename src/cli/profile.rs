//! `pixel bench --profile`: one training step with every op timed, printed per
//! op kind and per model part (a roofline-style table against this machine's
//! measured FMA ceiling).

use std::time::Instant;

use pixel_engine::optim::{AdamW, AdamWConfig};
use pixel_engine::profile::OpStats;
use pixel_engine::{Rng, Tape, Var};
use pixel_model::train::PretrainBatch;
use pixel_model::{ForwardMode, PixelForPreTraining};

/// GFLOP/s this 2-core Zen 3 sustains in an FMA loop (shared/anchors/sgemm.md).
const FMA_CEILING_GFLOPS: f64 = 188.0;

/// Profile forward + backward on a tape, then time the AdamW update.
pub fn profile_step(model: &mut PixelForPreTraining, batch: &PretrainBatch, rng: &mut Rng) {
    let mut tape = Tape::new();
    tape.enable_profiling();
    let started = Instant::now();
    let pv = model.params.vars(&mut tape);
    let pixels = Var::constant(batch.pixel_values.clone());
    if let Some(p) = &mut tape.profiler {
        p.restart_clock();
    }
    let mode = ForwardMode {
        training: true,
        rng,
    };
    let out = model.forward(
        &mut tape,
        &pv,
        &pixels,
        &batch.attention_mask,
        &batch.masking,
        mode,
    );
    let forward_s = started.elapsed().as_secs_f64();
    let mut grads = tape.backward(&out.loss);
    let grads = model.params.take_grads(&pv, &mut grads);
    drop(pv);
    let backward_s = started.elapsed().as_secs_f64() - forward_s;
    let t_opt = Instant::now();
    let mut opt = AdamW::new(AdamWConfig {
        weight_decay: 0.05,
        ..Default::default()
    });
    model.params.adamw_update(&mut opt, &grads, 1e-4);
    let adamw_s = t_opt.elapsed().as_secs_f64();
    let total = forward_s + backward_s + adamw_s;
    let profiler = tape.profiler.take().expect("profiling tape");
    println!(
        "\nprofile of one training step: forward {:.1} ms, backward {:.1} ms, AdamW {:.1} ms, total {:.1} ms",
        forward_s * 1e3,
        backward_s * 1e3,
        adamw_s * 1e3,
        total * 1e3
    );
    println!("forward time of an op = compute since the previous recorded op; matmul backward FLOPs = 2x forward.");
    print_table(
        "op",
        profiler
            .by_op()
            .into_iter()
            .map(|(k, s)| (k.to_string(), s)),
        total,
    );
    print_table("model part", profiler.by_scope().into_iter(), total);
}

fn print_table(what: &str, rows: impl Iterator<Item = (String, OpStats)>, total: f64) {
    println!(
        "\n{what:<28} {:>6} {:>10} {:>10} {:>7} {:>9} {:>9} {:>8}",
        "calls", "fwd ms", "bwd ms", "share", "GFLOP", "GFLOP/s", "% peak"
    );
    for (name, s) in rows {
        let flops = 3.0 * s.forward_flops; // forward + backward
        let rate = if flops > 0.0 {
            flops / s.total_s() / 1e9
        } else {
            0.0
        };
        println!(
            "{name:<28} {:>6} {:>10.1} {:>10.1} {:>6.1}% {:>9.2} {:>9} {:>8}",
            s.calls,
            s.forward_s * 1e3,
            s.backward_s * 1e3,
            100.0 * s.total_s() / total,
            flops / 1e9,
            if flops > 0.0 {
                format!("{rate:.1}")
            } else {
                "-".into()
            },
            if flops > 0.0 {
                format!("{:.0}%", 100.0 * rate / FMA_CEILING_GFLOPS)
            } else {
                "-".into()
            },
        );
    }
}
