//! Model parity with the reference PyTorch PIXEL: forward outputs, loss and
//! every gradient, from a fixture directory (`PIXEL_FIXTURES`, default
//! `../shared/fixtures/pixel-tiny`). Runs unchanged on any fixture of that format.
//! With the `cuda` feature the same comparison also runs on GPU 0 when a
//! driver is present.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use pixel::engine::{Device, Rng, Tape, Tensor, Var};
use pixel::model::checkpoint::{read_npy, read_npy_dir};
use pixel::model::{ForwardMode, PatchMasking, PixelConfig, PixelForPreTraining};

fn fixture_dir() -> Option<PathBuf> {
    match std::env::var("PIXEL_FIXTURES") {
        Ok(d) => {
            let p = PathBuf::from(d);
            assert!(
                p.is_dir(),
                "PIXEL_FIXTURES={} is not a directory",
                p.display()
            );
            Some(p)
        }
        Err(_) => {
            let p = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared/fixtures/pixel-tiny");
            if p.is_dir() {
                Some(p)
            } else {
                eprintln!(
                    "skipping parity: no fixture at {} and PIXEL_FIXTURES unset",
                    p.display()
                );
                None
            }
        }
    }
}

/// Max |ours - ref| and max |ref| of one tensor.
fn errors(ours: &[f32], reference: &Tensor) -> (f32, f32) {
    assert_eq!(ours.len(), reference.numel(), "length mismatch");
    let err = ours
        .iter()
        .zip(reference.data())
        .fold(0.0f32, |m, (a, b)| m.max((a - b).abs()));
    (err, reference.max_abs())
}

struct Tally {
    worst_name: String,
    worst_ratio: f32,
    failures: Vec<String>,
}

impl Tally {
    /// Compare with tolerance 1e-4 * max|ref| (floor `atol` for near-zero tensors).
    fn check(&mut self, name: &str, ours: &[f32], reference: &Tensor, atol: f32) {
        let (err, scale) = errors(ours, reference);
        let tol = (1e-4 * scale).max(atol);
        let ratio = err / tol;
        if ratio > self.worst_ratio {
            self.worst_ratio = ratio;
            self.worst_name = format!("{name} (max abs err {err:.3e}, max |ref| {scale:.3e})");
        }
        if err > tol || err.is_nan() {
            self.failures
                .push(format!("{name}: max abs err {err:.3e} > tol {tol:.3e}"));
        }
    }
}

#[test]
fn forward_backward_and_unmasked_encoder_match_reference() {
    let Some(dir) = fixture_dir() else { return };
    check_parity(&dir, Device::Cpu);
}

/// The same comparison with the model and inputs on GPU 0 (outputs copied back).
#[cfg(feature = "cuda")]
#[test]
fn forward_backward_and_unmasked_encoder_match_reference_on_cuda() {
    let Some(dir) = fixture_dir() else { return };
    if let Err(e) = pixel::engine::kernels::cuda::device(0) {
        eprintln!("skipping CUDA parity: {e}");
        return;
    }
    check_parity(&dir, Device::Cuda(0));
}

/// A host copy of a var's value (a clone on the CPU).
fn host(v: &Var) -> Tensor {
    v.value().to_host()
}

fn check_parity(dir: &Path, device: Device) {
    let config = PixelConfig::from_file(dir.join("config.json")).expect("fixture config");
    let weights = read_npy_dir(dir, None).expect("fixture weights");
    let mut model = PixelForPreTraining::new(config.clone(), &mut Rng::new(0));
    let report = model
        .params
        .load_state_dict(&weights)
        .expect("load weights");
    assert!(
        report.missing.is_empty(),
        "fixture lacks weights: {:?}",
        report.missing
    );
    model
        .params
        .to_device(device)
        .expect("parameters to device");

    let npy = |name: &str| {
        read_npy(dir.join(format!("{name}.npy"))).unwrap_or_else(|e| panic!("{name}: {e}"))
    };
    let pixel_values = npy("pixel_values");
    let attention_mask = npy("attention_mask");
    let patch_mask = npy("patch_mask");
    let (b, l) = (attention_mask.shape()[0], attention_mask.shape()[1]);
    assert_eq!(l, config.num_patches(), "fixture L differs from config");
    let masking = PatchMasking::explicit(patch_mask.data(), b, l).expect("fixture patch mask");

    let mut tape = Tape::new();
    let pv = model.params.vars(&mut tape);
    let pixels = tape.leaf(Arc::new(
        pixel_values.to_device(device).expect("pixels to device"),
    ));
    let mut rng = Rng::new(0);
    let mode = ForwardMode {
        training: false,
        rng: &mut rng,
    };
    let out = model.forward(
        &mut tape,
        &pv,
        &pixels,
        attention_mask.data(),
        &masking,
        mode,
    );

    let mut tally = Tally {
        worst_name: String::new(),
        worst_ratio: 0.0,
        failures: vec![],
    };
    tally.check(
        "last_hidden_state",
        host(&out.last_hidden_state).data(),
        &npy("last_hidden_state"),
        1e-7,
    );
    tally.check("logits", host(&out.logits).data(), &npy("logits"), 1e-7);
    tally.check("loss", host(&out.loss).data(), &npy("loss"), 1e-7);
    assert_eq!(out.loss_mask, npy("loss_mask").data(), "loss_mask differs");

    let mut grads = tape.backward(&out.loss);
    let dpixels = grads.take(&pixels).expect("gradient for pixel_values");
    tally.check(
        "grad.pixel_values",
        dpixels.to_host().data(),
        &npy("grad.pixel_values"),
        1e-7,
    );
    let param_grads = model.params.take_grads(&pv, &mut grads);
    let mut checked = 0;
    for (p, g) in model.params.iter().zip(&param_grads) {
        if !p.trainable {
            continue;
        }
        let reference = npy(&format!("grad.{}", p.name));
        let g = g
            .as_ref()
            .unwrap_or_else(|| panic!("no gradient reached {}", p.name));
        // Gradients that are exactly zero in exact arithmetic (attention key
        // bias) are rounding noise in the fixture: an absolute floor covers them.
        tally.check(
            &format!("grad.{}", p.name),
            g.to_host().data(),
            &reference,
            1e-7,
        );
        checked += 1;
    }
    drop(pv);

    // Unmasked encoder (finetuning path), no tape; optional in the fixture format.
    if dir.join("unmasked_last_hidden_state.npy").is_file() {
        let mut t2 = Tape::no_grad();
        let pv2 = model.params.vars(&mut t2);
        let mut rng = Rng::new(0);
        let mode = ForwardMode {
            training: false,
            rng: &mut rng,
        };
        let hidden = model.encode_unmasked(
            &mut t2,
            &pv2,
            &Var::constant(pixel_values.to_device(device).expect("pixels to device")),
            attention_mask.data(),
            mode,
        );
        tally.check(
            "unmasked_last_hidden_state",
            host(&hidden).data(),
            &npy("unmasked_last_hidden_state"),
            1e-7,
        );
    } else {
        eprintln!("parity: fixture has no unmasked_last_hidden_state.npy; that check is skipped");
    }

    eprintln!(
        "parity ({device:?}): {checked} parameter gradients + 6 outputs checked; worst {} at {:.3} of tolerance",
        tally.worst_name, tally.worst_ratio
    );
    assert!(
        tally.failures.is_empty(),
        "parity failures:\n{}",
        tally.failures.join("\n")
    );
}
