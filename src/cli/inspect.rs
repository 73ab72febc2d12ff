//! `pixel inspect`: describe a checkpoint: its config, parameter counts per group
//! and how its keys compare with the PIXEL pretraining model's.

use std::path::PathBuf;

use anyhow::Context;
use pixel::presets::thousands;
use pixel_model::checkpoint::{
    compare_keys, expected_encoder_keys, expected_pretraining_keys, infer_config, load_checkpoint,
    ParamCounts,
};

/// Arguments of `pixel inspect`.
#[derive(clap::Args, Debug)]
pub struct InspectArgs {
    /// A checkpoint directory (config.json with model.safetensors, pytorch_model.bin or
    /// *.npy files) or a single weights file.
    pub checkpoint: PathBuf,
    /// Also list every tensor with its shape, and every missing/unexpected key.
    #[arg(long)]
    pub tensors: bool,
    /// Compare with the encoder-only keys (finetuned models) instead of PIXELForPreTraining.
    #[arg(long)]
    pub encoder_only: bool,
}

/// Prints a key list, the first few only unless `all`.
fn print_keys(what: &str, keys: &[String], all: bool) {
    const SHOWN: usize = 12;
    if keys.is_empty() {
        return;
    }
    println!("  {} {what}:", keys.len());
    let shown = if all {
        keys.len()
    } else {
        keys.len().min(SHOWN)
    };
    for key in &keys[..shown] {
        println!("    {key}");
    }
    if shown < keys.len() {
        println!("    ... {} more (--tensors lists all)", keys.len() - shown);
    }
}

pub fn run(args: InspectArgs) -> anyhow::Result<()> {
    let ckpt = load_checkpoint(&args.checkpoint)
        .with_context(|| format!("cannot load checkpoint {}", args.checkpoint.display()))?;
    let values: usize = ckpt.weights.values().map(|t| t.numel()).sum();
    println!(
        "checkpoint: {} ({}), {} tensors, {} values ({:.1} MB as f32)",
        ckpt.weights_path.display(),
        ckpt.format,
        ckpt.weights.len(),
        thousands(values),
        values as f64 * 4.0 / 1e6
    );

    let (config, source) = match &ckpt.config {
        Some(c) => (c.clone(), "config.json"),
        None => match infer_config(&ckpt.weights) {
            Some(c) => (
                c,
                "no config.json; inferred from the weights (head counts assumed)",
            ),
            None => anyhow::bail!(
                "{}: no config.json and no vit.embeddings.patch_embeddings.projection.weight \
                 to infer one from",
                args.checkpoint.display()
            ),
        },
    };
    println!("\nconfig ({source}):");
    for line in config.to_string().lines() {
        println!("  {line}");
    }
    match pixel::rendering::config_rendering(&config, &args.checkpoint.display().to_string()) {
        Ok(r) => println!("  rendering {r}"),
        Err(e) => println!("  rendering: {e}"),
    }

    let c = ParamCounts::of_state_dict(&ckpt.weights);
    println!("\nparameters:");
    let rows = [
        ("patch embedding", c.patch_embedding),
        ("encoder blocks", c.encoder_blocks),
        ("encoder total", c.encoder_total),
        ("decoder blocks", c.decoder_blocks),
        ("decoder total", c.decoder_total),
        ("other (heads)", c.other),
        ("total", c.total),
        ("trainable", c.trainable),
    ];
    for (name, n) in rows {
        println!("  {name:<16} {:>13}", thousands(n));
    }
    println!(
        "  (trainable = total minus the frozen sin-cos position tables, {})",
        thousands(c.frozen)
    );

    let (expected, against) = if args.encoder_only {
        (expected_encoder_keys(&config), "the encoder (vit.*)")
    } else {
        (expected_pretraining_keys(&config), "PIXELForPreTraining")
    };
    let report = compare_keys(&ckpt.weights, &expected);
    println!(
        "\nkeys vs {against} for this config ({} keys):",
        expected.len()
    );
    if report.is_exact() {
        println!("  all keys matched");
    }
    print_keys(
        "missing (would be newly initialised)",
        &report.missing,
        args.tensors,
    );
    print_keys("unexpected (not used)", &report.unexpected, args.tensors);
    for m in &report.mismatched {
        println!(
            "  shape mismatch: {} expected {:?}, found {:?}",
            m.key, m.expected, m.found
        );
    }

    let non_finite: Vec<&String> = ckpt
        .weights
        .iter()
        .filter(|(_, t)| !t.all_finite())
        .map(|(k, _)| k)
        .collect();
    if !non_finite.is_empty() {
        println!("\nnon-finite values (NaN/inf) in: {non_finite:?}");
    }

    if args.tensors {
        println!("\ntensors:");
        for (key, t) in &ckpt.weights {
            println!("  {key:<64} {:?}", t.shape());
        }
    }
    Ok(())
}
