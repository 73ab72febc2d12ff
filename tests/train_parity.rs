//! The reference optimizer steps (HF AdamW, PIXEL schedule, decay groups,
//! clipping) from `PIXEL_TRAIN_FIXTURES` (default ../shared/fixtures/pixel-tiny-train):
//! per-step loss, gradient norm, clip coefficient, lr, and the final weights.

use std::path::PathBuf;

use pixel::engine::optim::LrSchedule;
use pixel::engine::Rng;
use pixel::model::checkpoint::{read_npy, read_npy_dir};
use pixel::model::train::{PretrainBatch, Trainer};
use pixel::model::{PatchMasking, PixelConfig, PixelForPreTraining};

fn fixture_dir() -> Option<PathBuf> {
    match std::env::var("PIXEL_TRAIN_FIXTURES") {
        Ok(d) => Some(PathBuf::from(d)),
        Err(_) => {
            let p = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
                .join("../shared/fixtures/pixel-tiny-train");
            if p.is_dir() {
                Some(p)
            } else {
                eprintln!("skipping train parity: no fixture at {}", p.display());
                None
            }
        }
    }
}

#[test]
fn reference_steps_match_losses_and_final_weights() {
    let Some(dir) = fixture_dir() else { return };
    let config = PixelConfig::from_file(dir.join("config.json")).expect("config");
    let meta: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("steps.json")).expect("steps.json"))
            .expect("json");
    let opt = &meta["optimizer"];
    let sched = &meta["schedule"];
    let f = |v: &serde_json::Value| v.as_f64().expect("number");
    let schedule = LrSchedule::WarmupCosineToMin {
        max_lr: f(&sched["max_lr"]) as f32,
        min_lr: f(&sched["min_lr"]) as f32,
        warmup: f(&sched["warmup_steps"]) as u64,
        total: f(&sched["total_steps"]) as u64,
    };
    let mut model = PixelForPreTraining::new(config.clone(), &mut Rng::new(0));
    let init = read_npy_dir(&dir, Some("init.")).expect("init weights");
    let report = model.params.load_state_dict(&init).expect("load init");
    assert!(
        report.missing.is_empty(),
        "missing init weights: {:?}",
        report.missing
    );
    let mut trainer = Trainer::new(
        model,
        f(&opt["weight_decay"]) as f32,
        schedule,
        f(&meta["max_grad_norm"]) as f32,
    );
    trainer.optimizer.config.beta1 = f(&opt["beta1"]) as f32;
    trainer.optimizer.config.beta2 = f(&opt["beta2"]) as f32;
    trainer.optimizer.config.eps = f(&opt["eps"]) as f32;

    let steps = meta["steps"].as_array().expect("steps");
    let mut rng = Rng::new(0);
    let mut worst_loss_rel = 0.0f64;
    for (k, expect) in steps.iter().enumerate() {
        let npy = |name: &str| read_npy(dir.join(format!("step{k}.{name}.npy"))).expect(name);
        let pixel_values = npy("pixel_values");
        let attention_mask = npy("attention_mask");
        let (b, l) = (attention_mask.shape()[0], attention_mask.shape()[1]);
        let masking = PatchMasking::explicit(npy("patch_mask").data(), b, l).expect("mask");
        let batch = PretrainBatch {
            pixel_values: std::sync::Arc::new(pixel_values),
            attention_mask: attention_mask.data().to_vec(),
            masking,
        };
        let stats = trainer
            .train_step(&[batch], false, &mut rng)
            .expect("finite step");
        let rel = |ours: f64, theirs: f64| (ours - theirs).abs() / theirs.abs().max(1e-12);
        let loss_rel = rel(stats.loss as f64, f(&expect["loss"]));
        worst_loss_rel = worst_loss_rel.max(loss_rel);
        assert!(
            loss_rel < 1e-4,
            "step {k}: loss {} vs {}",
            stats.loss,
            expect["loss"]
        );
        assert!(
            rel(stats.grad_norm, f(&expect["grad_norm"])) < 1e-4,
            "step {k}: grad_norm {} vs {}",
            stats.grad_norm,
            expect["grad_norm"]
        );
        assert!(
            (stats.clip_coef as f64 - f(&expect["clip_coef"])).abs() < 1e-4,
            "step {k}: clip_coef"
        );
        assert!(
            (stats.lr as f64 - f(&expect["lr"])).abs() < 1e-9,
            "step {k}: lr {} vs {}",
            stats.lr,
            expect["lr"]
        );
    }
    let finals = read_npy_dir(&dir, Some("final.")).expect("final weights");
    assert!(!finals.is_empty(), "no final.* weights in fixture");
    let mut worst = (String::new(), 0.0f32);
    for (name, reference) in &finals {
        let ours = trainer.model.params.get(name);
        let err = ours
            .data()
            .iter()
            .zip(reference.data())
            .fold(0.0f32, |m, (a, b)| m.max((a - b).abs()));
        let ratio = err / (1e-4 * reference.max_abs()).max(1e-7);
        if ratio > worst.1 {
            worst = (name.clone(), ratio);
        }
        assert!(
            ratio <= 1.0,
            "{name}: final weights differ by {err:.3e} (max |ref| {:.3e})",
            reference.max_abs()
        );
    }
    eprintln!("train parity: worst loss rel err {worst_loss_rel:.2e}; worst final weight {} at {:.3} of tolerance", worst.0, worst.1);
}
