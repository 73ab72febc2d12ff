//! `pixel encode` and `pixel reconstruct` on the parity fixture (skipped without it): the
//! encoder output against the PyTorch reference, errors for bad inputs and for a checkpoint
//! without the decoder.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use pixel_model::checkpoint::{read_npy, read_npy_dir, write_safetensors, StateDict};

fn fixture_dir() -> Option<PathBuf> {
    let dir = std::env::var("PIXEL_FIXTURES")
        .map(PathBuf::from)
        .unwrap_or_else(|_| {
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared/fixtures/pixel-tiny")
        });
    if dir.join("unmasked_last_hidden_state.npy").is_file() {
        Some(dir)
    } else {
        println!("skipped: no fixture at {}", dir.display());
        None
    }
}

fn out_dir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("pixel-encode-test-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn pixel(args: &[&str], checkpoint: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_pixel"))
        .args(args)
        .arg("--checkpoint")
        .arg(checkpoint)
        .output()
        .expect("pixel runs")
}

fn path(p: &Path) -> &str {
    p.to_str().unwrap()
}

#[test]
fn encode_matches_the_reference_unmasked_encoder() {
    let Some(dir) = fixture_dir() else { return };
    let out = out_dir("npy").join("hidden.npy");
    let pv = dir.join("pixel_values.npy");
    let am = dir.join("attention_mask.npy");
    let run = pixel(
        &[
            "encode",
            "--pixel-values",
            path(&pv),
            "--attention-mask",
            path(&am),
            "-o",
            path(&out),
        ],
        &dir,
    );
    assert!(
        run.status.success(),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );
    let ours = read_npy(&out).unwrap();
    let reference = read_npy(dir.join("unmasked_last_hidden_state.npy")).unwrap();
    assert_eq!(ours.shape(), reference.shape());
    let err = ours
        .data()
        .iter()
        .zip(reference.data())
        .fold(0f32, |m, (a, b)| m.max((a - b).abs()));
    assert!(err <= 1e-4 * reference.max_abs(), "max abs err {err}");

    // A rendered text: one example, L = 24 from the checkpoint.
    let text_out = out.with_file_name("text.npy");
    let run = pixel(&["encode", "Hello", "-o", path(&text_out)], &dir);
    assert!(
        run.status.success(),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );
    assert_eq!(read_npy(&text_out).unwrap().shape(), &[1, 25, 64]);
}

#[test]
fn encode_rejects_inputs_that_do_not_fit_the_model() {
    let Some(dir) = fixture_dir() else { return };
    let out = out_dir("bad").join("hidden.npy");
    // The patch mask as pixel values: wrong rank, named in the message, no panic.
    let wrong = dir.join("patch_mask.npy");
    let run = pixel(
        &[
            "encode",
            "--pixel-values",
            path(&wrong),
            "--attention-mask",
            path(&wrong),
            "-o",
            path(&out),
        ],
        &dir,
    );
    assert_eq!(run.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert!(
        stderr.contains("pixel_values must be (B, 3, 16, 384)"),
        "{stderr}"
    );
    assert!(!out.exists());
}

#[test]
fn reconstruct_needs_the_decoder() {
    let Some(dir) = fixture_dir() else { return };
    let tmp = out_dir("recon");
    let png = tmp.join("r.png");
    let run = pixel(
        &[
            "reconstruct",
            "Hello world",
            "--seed",
            "1",
            "-o",
            path(&png),
        ],
        &dir,
    );
    assert!(
        run.status.success(),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );
    assert!(png.is_file());

    // The encoder weights alone: encode works, reconstruct says what is missing.
    let encoder_only = tmp.join("encoder");
    std::fs::create_dir_all(&encoder_only).unwrap();
    let weights = read_npy_dir(&dir, None).unwrap();
    let vit: StateDict = weights
        .into_iter()
        .filter(|(k, _)| k.starts_with("vit."))
        .collect();
    write_safetensors(encoder_only.join("model.safetensors"), &vit).unwrap();
    std::fs::copy(dir.join("config.json"), encoder_only.join("config.json")).unwrap();
    let run = pixel(&["reconstruct", "Hello", "-o", path(&png)], &encoder_only);
    assert_eq!(run.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert!(stderr.contains("lacks the decoder weights"), "{stderr}");
    let hidden = tmp.join("h.npy");
    let run = pixel(&["encode", "Hello", "-o", path(&hidden)], &encoder_only);
    assert!(
        run.status.success(),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );
}
