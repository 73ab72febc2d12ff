//! The rendering strategy through the command line: `pixel pretrain --rendering bigrams` writes
//! it into the checkpoint's config.json, finetuning from that checkpoint draws with it and
//! carries it into the finetuned config, evaluation and reconstruction read it back; another
//! rendering needs --allow-rendering-mismatch; unknown names are errors listing the allowed ones.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use pixel::render::{RenderConfig, Renderer, RenderingStrategy};

fn exe() -> Command {
    Command::new(env!("CARGO_BIN_EXE_pixel"))
}

fn tmp(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("pixel-rendering-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn ner_dir() -> PathBuf {
    let data = match std::env::var_os("PIXEL_DATA") {
        Some(d) => PathBuf::from(d),
        None => Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/data"),
    };
    data.join("ner/masakhaner1/pcm")
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn ok(o: Output, what: &str) -> Output {
    assert!(o.status.success(), "{what} failed: {}", stderr(&o));
    o
}

fn config_json(dir: &Path) -> serde_json::Value {
    let text = std::fs::read_to_string(dir.join("config.json")).unwrap();
    serde_json::from_str(&text).unwrap()
}

/// A tiny pretraining (L = 16, 4 steps) on a small corpus; returns the checkpoint directory.
fn pretrain(out: &Path, rendering: Option<&str>) -> PathBuf {
    let corpus = out.join("corpus.txt");
    let lines: Vec<String> = (0..120)
        .map(|i| format!("Line {i} of a small corpus, with some words to draw."))
        .collect();
    std::fs::write(&corpus, lines.join("\n")).unwrap();
    let mut cmd = exe();
    cmd.args(["pretrain", "--steps", "4", "--batch-size", "4"])
        .args(["--max-seq-length", "16", "--eval-every", "2"])
        .args(["--save-every", "100", "--recon-every", "100"])
        .arg("--corpus")
        .arg(&corpus)
        .arg("--out")
        .arg(out.join("pretrain"));
    if let Some(r) = rendering {
        cmd.args(["--rendering", r]);
    }
    ok(cmd.output().unwrap(), "pretrain");
    out.join("pretrain/checkpoint")
}

/// A few steps of NER finetuning from `init` into `out`.
fn finetune(init: &Path, out: &Path, extra: &[&str]) -> Output {
    let dir = ner_dir();
    exe()
        .args(["finetune", "--task", "ner", "--init"])
        .arg(init)
        .arg("--train")
        .arg(dir.join("train.txt"))
        .arg("--dev")
        .arg(dir.join("dev.txt"))
        .arg("--out")
        .arg(out)
        .args([
            "--max-seq-length",
            "16",
            "--batch-size",
            "4",
            "--steps",
            "2",
        ])
        .args(["--eval-every", "2", "--max-train-examples", "8"])
        .args(["--max-dev-examples", "4"])
        .args(extra)
        .output()
        .unwrap()
}

#[test]
fn bigrams_flow_from_pretraining_to_finetuning_evaluation_and_reconstruction() {
    if !ner_dir().join("train.txt").exists() {
        println!("skipped: {} not found", ner_dir().display());
        return;
    }
    let root = tmp("flow");
    let ckpt = pretrain(&root, Some("bigrams"));
    assert_eq!(config_json(&ckpt)["rendering"], "bigrams");

    // Finetuning draws with the checkpoint's rendering and records it.
    let same = root.join("ner-bigrams");
    ok(finetune(&ckpt, &same, &[]), "finetune");
    assert_eq!(config_json(&same.join("best"))["rendering"], "bigrams");
    let eval = ok(
        exe()
            .args(["evaluate", "--checkpoint"])
            .arg(same.join("best"))
            .arg("--data")
            .arg(ner_dir().join("dev.txt"))
            .output()
            .unwrap(),
        "evaluate",
    );
    assert!(String::from_utf8_lossy(&eval.stdout).contains("f1 "));

    // Another rendering is refused without the flag, naming both ...
    let refused = finetune(
        &ckpt,
        &root.join("ner-refused"),
        &["--rendering", "continuous"],
    );
    assert!(!refused.status.success());
    let err = stderr(&refused);
    assert!(
        err.contains("bigrams")
            && err.contains("continuous")
            && err.contains("--allow-rendering-mismatch"),
        "{err}"
    );
    assert!(!root.join("ner-refused/best").exists());
    // ... and allowed with it, with a warning; the finetuned model records what it saw.
    let mixed = root.join("ner-continuous");
    let allowed = ok(
        finetune(
            &ckpt,
            &mixed,
            &["--rendering", "continuous", "--allow-rendering-mismatch"],
        ),
        "finetune --allow-rendering-mismatch",
    );
    assert!(
        stderr(&allowed).contains("warning:"),
        "{}",
        stderr(&allowed)
    );
    assert!(config_json(&mixed.join("best")).get("rendering").is_none());

    // Evaluating with another rendering than the model's needs the flag too.
    let eval_other = exe()
        .args(["evaluate", "--checkpoint"])
        .arg(same.join("best"))
        .arg("--data")
        .arg(ner_dir().join("dev.txt"))
        .args(["--rendering", "words"])
        .output()
        .unwrap();
    assert!(!eval_other.status.success());
    assert!(stderr(&eval_other).contains("--allow-rendering-mismatch"));

    // Reconstruction reads the rendering from the checkpoint: it draws bigrams.
    let png = root.join("recon.png");
    let text = "Some words to draw";
    let recon = ok(
        exe()
            .args(["reconstruct", "--checkpoint"])
            .arg(&ckpt)
            .arg(text)
            .arg("-o")
            .arg(&png)
            .output()
            .unwrap(),
        "reconstruct",
    );
    assert!(png.exists());
    let patches = |rendering| {
        Renderer::new(RenderConfig {
            max_seq_length: 16,
            rendering,
            ..RenderConfig::default()
        })
        .unwrap()
        .render_text(text)
        .num_text_patches
    };
    let (bigrams, continuous) = (
        patches(RenderingStrategy::Bigrams),
        patches(RenderingStrategy::Continuous),
    );
    assert_ne!(bigrams, continuous);
    let said = String::from_utf8_lossy(&recon.stdout).into_owned();
    assert!(
        said.contains(&format!(": {bigrams} text patches")),
        "{said}"
    );

    // A malformed field is an error naming the value and the allowed names.
    let bad = root.join("bad-checkpoint");
    std::fs::create_dir_all(&bad).unwrap();
    for entry in std::fs::read_dir(&ckpt).unwrap() {
        let entry = entry.unwrap();
        std::fs::copy(entry.path(), bad.join(entry.file_name())).unwrap();
    }
    let mut config = config_json(&bad);
    config["rendering"] = "bigramz".into();
    std::fs::write(bad.join("config.json"), config.to_string()).unwrap();
    let finetune_bad = finetune(&bad, &root.join("ner-bad"), &[]);
    let reconstruct_bad = exe()
        .args(["reconstruct", "--checkpoint"])
        .arg(&bad)
        .arg("x")
        .arg("-o")
        .arg(root.join("bad.png"))
        .output()
        .unwrap();
    for (what, out) in [("finetune", finetune_bad), ("reconstruct", reconstruct_bad)] {
        assert!(!out.status.success(), "{what} accepted a bad rendering");
        let err = stderr(&out);
        assert!(
            err.contains("\"bigramz\"") && err.contains("continuous, bigrams, mono, words"),
            "{what}: {err}"
        );
    }
    let _ = std::fs::remove_dir_all(&root);
}

#[test]
fn default_pretraining_writes_no_rendering_field() {
    let root = tmp("default");
    let ckpt = pretrain(&root, None);
    let config = config_json(&ckpt);
    assert!(config.get("rendering").is_none(), "{config}");
    let state = std::fs::read_to_string(ckpt.join("trainer_state.json")).unwrap();
    assert!(state.contains("\"layout\": \"pygame\""), "{state}");
    let _ = std::fs::remove_dir_all(&root);
}

#[test]
fn unknown_rendering_names_are_errors_listing_the_allowed_ones() {
    let out = exe()
        .args(["render", "Hello", "--rendering", "bigram"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(
        err.contains("bigram") && err.contains("continuous, bigrams, mono, words"),
        "{err}"
    );
}

#[test]
fn render_draws_every_rendering_by_name() {
    let root = tmp("render");
    let mut counts = Vec::new();
    for name in ["continuous", "bigrams", "mono", "words"] {
        let png = root.join(format!("{name}.png"));
        let out = ok(
            exe()
                .args(["render", "Hello world", "--rendering", name, "-o"])
                .arg(&png)
                .output()
                .unwrap(),
            name,
        );
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        let line = text
            .lines()
            .find(|l| l.starts_with("num_text_patches"))
            .unwrap()
            .to_string();
        assert!(png.exists());
        counts.push((name, line));
    }
    // "Hello world": continuous 5 patches; bigrams He ll o | wo rl d = 8 (He and wo are wider
    // than a patch); mono 11 cells = 5.5 patches.
    assert_eq!(counts[0].1, "num_text_patches: 5", "{counts:?}");
    assert_eq!(counts[1].1, "num_text_patches: 8", "{counts:?}");
    assert_eq!(counts[2].1, "num_text_patches: 6", "{counts:?}");
    let _ = std::fs::remove_dir_all(&root);
}
