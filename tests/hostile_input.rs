//! Hostile but realistic input to the built `pixel` binary, one test per class
//! (issue 18): each generates its bad files in a scratch directory, runs the
//! command with a deadline, and checks that it fails (non-zero exit) with a
//! message naming the file, flag or field, without a panic and in bounded
//! time. For the classes that used to lose data silently, the test checks
//! that nothing is lost. Tiny configs and short strips only.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use pixel::engine::Tensor;
use pixel::model::checkpoint::{read_safetensors, write_safetensors};

/// What a run printed and how it ended.
struct Outcome {
    code: Option<i32>,
    stderr: String,
    stdout: String,
}

/// Runs `pixel args...` in `dir`, killing it (and failing) after `limit`.
fn pixel_in(dir: &Path, args: &[&str], limit: Duration) -> Outcome {
    let child = Command::new(env!("CARGO_BIN_EXE_pixel"))
        .args(args)
        .current_dir(dir)
        .env("RUST_BACKTRACE", "0")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start pixel");
    wait_bounded(child, args, limit)
}

fn wait_bounded(mut child: std::process::Child, args: &[&str], limit: Duration) -> Outcome {
    let started = Instant::now();
    // Drain the pipes on threads so a chatty child cannot block on a full pipe.
    let mut out = child.stdout.take().unwrap();
    let mut err = child.stderr.take().unwrap();
    let out = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = out.read_to_string(&mut s);
        s
    });
    let err = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = err.read_to_string(&mut s);
        s
    });
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if started.elapsed() > limit {
            let _ = child.kill();
            let _ = child.wait();
            panic!("pixel {args:?} ran past {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let outcome = Outcome {
        code: status.code(),
        stdout: out.join().unwrap(),
        stderr: err.join().unwrap(),
    };
    assert!(
        !outcome.stderr.contains("panicked"),
        "pixel {args:?} panicked:\n{}",
        outcome.stderr
    );
    outcome
}

/// Expects a clean failure whose message holds every one of `needles`.
fn fails_naming(dir: &Path, args: &[&str], needles: &[&str]) -> String {
    let o = pixel_in(dir, args, Duration::from_secs(30));
    assert!(
        o.code.is_some_and(|c| c != 0),
        "pixel {args:?} should fail, exit {:?}\n{}{}",
        o.code,
        o.stdout,
        o.stderr
    );
    for n in needles {
        assert!(
            o.stderr.contains(n),
            "pixel {args:?}: the message does not name {n:?}:\n{}",
            o.stderr
        );
    }
    o.stderr
}

/// A fresh scratch directory for one test.
fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("pixel-hostile-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// The tiny PIXEL fixture (config.json, model.safetensors, pytorch_model.bin).
fn fixture_dir() -> PathBuf {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    match std::env::var_os("PIXEL_FIXTURES") {
        Some(d) => root.join(d),
        None => root.join("../shared/fixtures/pixel-tiny"),
    }
}

/// A copy of the fixture checkpoint (config.json + `weights`) in `dir/name`.
fn fixture_copy(dir: &Path, name: &str, weights: &str) -> PathBuf {
    let to = dir.join(name);
    std::fs::create_dir_all(&to).unwrap();
    for f in ["config.json", weights] {
        std::fs::copy(fixture_dir().join(f), to.join(f)).unwrap();
    }
    to
}

/// A small CoNLL-U file: `n` three-word sentences.
fn conllu(n: usize) -> String {
    (0..n)
        .map(|i| {
            format!(
                "# sent_id = {i}\n# text = The cat sat\n\
                 1\tThe\tthe\tDET\t_\t_\t2\tdet\t_\t_\n\
                 2\tcat\tcat\tNOUN\t_\t_\t3\tnsubj\t_\t_\n\
                 3\tsat\tsit\tVERB\t_\t_\t0\troot\t_\t_\n\n"
            )
        })
        .collect()
}

/// A corpus of `n` short English lines (enough strips for a run at L = 32).
fn small_corpus(n: usize) -> String {
    (0..n)
        .map(|i| format!("line {i} of a small corpus for a quick pretraining run\n"))
        .collect()
}

/// Quick finetuning flags: tiny model (the default), one step of 4 examples;
/// add `--max-seq-length 32` ([`SHORT_STRIPS`]) unless a test sets its own.
const QUICK_FINETUNE: [&str; 6] = ["--steps", "1", "--batch-size", "4", "--eval-every", "1"];
const SHORT_STRIPS: [&str; 2] = ["--max-seq-length", "32"];

/// Quick pretraining flags on `corpus`: tiny model, 32 patches.
fn quick_pretrain<'a>(corpus: &'a str, out: &'a str, steps: &'a str) -> Vec<&'a str> {
    vec![
        "pretrain",
        "--corpus",
        corpus,
        "--out",
        out,
        "--steps",
        steps,
        "--batch-size",
        "4",
        "--eval-every",
        "1000",
        "--recon-every",
        "1000",
    ]
}

#[test]
fn corrupt_tensor_storage_in_a_pytorch_zip_is_named() {
    let dir = scratch("zip-crc");
    let ckpt = fixture_copy(&dir, "ckpt", "pytorch_model.bin");
    let path = ckpt.join("pytorch_model.bin");
    let mut bytes = std::fs::read(&path).unwrap();
    // torch stores its entries uncompressed: find the largest tensor's f32
    // bytes (as in the safetensors copy) and flip 16 bytes inside them.
    let weights = read_safetensors(fixture_dir().join("model.safetensors")).unwrap();
    let largest = weights.values().max_by_key(|t| t.numel()).unwrap();
    let raw: Vec<u8> = largest
        .data()
        .iter()
        .flat_map(|v| v.to_le_bytes())
        .collect();
    let at = bytes
        .windows(raw.len())
        .position(|w| w == raw.as_slice())
        .expect("the storage bytes in the zip");
    for b in &mut bytes[at + 64..at + 80] {
        *b ^= 0xa5;
    }
    std::fs::write(&path, bytes).unwrap();
    let ckpt = ckpt.to_str().unwrap();
    fails_naming(&dir, &["inspect", ckpt], &["pytorch_model.bin", "checksum"]);
    fails_naming(
        &dir,
        &["reconstruct", "--checkpoint", ckpt, "a text"],
        &["pytorch_model.bin", "checksum"],
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn non_finite_weights_are_refused_unless_allowed() {
    let dir = scratch("nan-weights");
    let ckpt = fixture_copy(&dir, "ckpt", "model.safetensors");
    let path = ckpt.join("model.safetensors");
    let mut weights = read_safetensors(&path).unwrap();
    let key = "vit.encoder.layer.0.output.dense.weight";
    let t = &weights[key];
    let mut values = t.data().to_vec();
    values[3] = f32::NAN;
    weights.insert(key.into(), Tensor::new(t.shape(), values));
    write_safetensors(&path, &weights).unwrap();
    let c = ckpt.to_str().unwrap();
    std::fs::write(dir.join("t.conllu"), conllu(8)).unwrap();
    fails_naming(
        &dir,
        &["reconstruct", "--checkpoint", c, "a text"],
        &[key, "model.safetensors", "--allow-non-finite"],
    );
    let o = pixel_in(
        &dir,
        &[
            "reconstruct",
            "--checkpoint",
            c,
            "a text",
            "--allow-non-finite",
        ],
        Duration::from_secs(30),
    );
    assert_eq!(o.code, Some(0), "{}", o.stderr);
    fails_naming(
        &dir,
        &[
            "finetune", "--task", "pos", "--init", c, "--train", "t.conllu", "--dev", "t.conllu",
            "--out", "o",
        ],
        &[key, "--init"],
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn learning_rates_that_are_not_positive_finite_are_refused_up_front() {
    let dir = scratch("lr");
    std::fs::write(dir.join("t.conllu"), conllu(8)).unwrap();
    for lr in ["--lr=inf", "--lr=nan", "--lr=-1", "--lr=0"] {
        let mut args = quick_pretrain("missing.txt", "out", "3");
        args.push(lr);
        fails_naming(&dir, &args, &["--lr must be a positive finite number"]);
        fails_naming(
            &dir,
            &[
                "finetune", "--task", "pos", "--train", "t.conllu", "--dev", "t.conllu", "--out",
                "ft", lr,
            ],
            &["--lr must be a positive finite number"],
        );
    }
    assert!(!dir.join("out").exists() && !dir.join("ft").exists());
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn mask_ratios_outside_zero_one_are_refused_and_a_good_one_reaches_the_config() {
    let dir = scratch("mask-ratio");
    std::fs::write(dir.join("c.txt"), small_corpus(200)).unwrap();
    for r in [
        "--mask-ratio=0",
        "--mask-ratio=1",
        "--mask-ratio=-0.5",
        "--mask-ratio=nan",
    ] {
        let mut args = quick_pretrain("c.txt", "out", "2");
        args.push(r);
        fails_naming(&dir, &args, &["--mask-ratio must be in (0, 1)"]);
    }
    assert!(!dir.join("out").exists());
    let mut args = quick_pretrain("c.txt", "out", "2");
    args.push("--mask-ratio=0.4");
    let o = pixel_in(&dir, &args, Duration::from_secs(60));
    assert_eq!(o.code, Some(0), "{}", o.stderr);
    let config = std::fs::read_to_string(dir.join("out/checkpoint/config.json")).unwrap();
    assert!(config.contains("\"mask_ratio\": 0.4"), "{config}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_run_with_no_good_state_says_so_and_writes_no_checkpoint() {
    let dir = scratch("no-good-state");
    std::fs::write(dir.join("c.txt"), small_corpus(200)).unwrap();
    let mut args = quick_pretrain("c.txt", "out", "5");
    // Finite but absurd: the first update sends the weights to infinity.
    args.extend(["--lr", "1e30", "--warmup-steps", "0"]);
    fails_naming(
        &dir,
        &args,
        &["no good state to save", "not finite", "nothing was written"],
    );
    assert!(!dir.join("out/checkpoint").exists());
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn text_without_spaces_is_packed_without_loss() {
    let dir = scratch("spaceless");
    let alphabet: Vec<char> = "天地玄黄宇宙洪荒日月盈昃辰宿列张寒来暑往秋收冬藏闰余成岁律吕调阳"
        .chars()
        .collect();
    let (mut spaceless, mut spaced) = (String::new(), String::new());
    let mut k = 7usize;
    for _ in 0..8 {
        for j in 0..3000 {
            k = (k * 1_103_515_245 + 12_345) % (1 << 31);
            let c = alphabet[k % alphabet.len()];
            spaceless.push(c);
            // The same text with a space every 5 characters (word-segmented).
            if j > 0 && j % 5 == 0 {
                spaced.push(' ');
            }
            spaced.push(c);
        }
        spaceless.push('\n');
        spaced.push('\n');
    }
    std::fs::write(dir.join("spaceless.txt"), &spaceless).unwrap();
    std::fs::write(dir.join("spaced.txt"), &spaced).unwrap();
    let strips = |corpus: &str| -> usize {
        let out = format!("out-{corpus}");
        let mut args = quick_pretrain(corpus, &out, "1");
        args.extend(["--stop-at", "0"]);
        let o = pixel_in(&dir, &args, Duration::from_secs(60));
        assert_eq!(o.code, Some(0), "{}", o.stderr);
        let line = o.stderr.lines().find(|l| l.starts_with("corpus:")).unwrap();
        let before = line.split(" train strips").next().unwrap();
        let train: usize = before.rsplit(' ').next().unwrap().parse().unwrap();
        let eval: usize = line
            .split(" eval strips")
            .next()
            .unwrap()
            .rsplit(' ')
            .next()
            .unwrap()
            .parse()
            .unwrap();
        train + eval
    };
    let (a, b) = (strips("spaceless.txt"), strips("spaced.txt"));
    let ratio = a as f64 / b as f64;
    assert!(
        (0.95..=1.05).contains(&ratio),
        "spaceless {a} strips vs spaced {b}: text was lost"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn sizes_that_cannot_fit_are_refused_with_the_numbers() {
    let dir = scratch("sizes");
    std::fs::write(dir.join("t.conllu"), conllu(8)).unwrap();
    let started = Instant::now();
    fails_naming(
        &dir,
        &["pretrain", "--max-seq-length", "100000", "--out", "p"],
        &["--max-seq-length 100000", "of memory"],
    );
    fails_naming(
        &dir,
        &[
            "finetune",
            "--task",
            "pos",
            "--train",
            "t.conllu",
            "--dev",
            "t.conllu",
            "--out",
            "f",
            "--max-seq-length",
            "100000",
        ],
        &["--max-seq-length 100000", "of memory"],
    );
    fails_naming(
        &dir,
        &["render", "--max-seq-length", "100000000000", "text"],
        &["--max-seq-length 100000000000", "of memory"],
    );
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "size checks are slow"
    );
    let fixture: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(fixture_dir().join("config.json")).unwrap())
            .unwrap();
    for (field, value) in [
        ("intermediate_size", serde_json::json!(1_000_000_000_000u64)),
        ("hidden_size", serde_json::json!(1u64 << 40)),
    ] {
        let mut config = fixture.clone();
        config[field] = value;
        config["num_attention_heads"] = serde_json::json!(1);
        std::fs::write(dir.join("big.json"), config.to_string()).unwrap();
        fails_naming(
            &dir,
            &["pretrain", "--config", "big.json", "--out", "p"],
            &["big.json", field],
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn bad_finetuning_arguments_are_errors_not_panics() {
    let dir = scratch("finetune-args");
    std::fs::write(dir.join("t.conllu"), conllu(8)).unwrap();
    std::fs::write(
        dir.join("t.tsv"),
        "sentence\tlabel\na fine day\t1\na bad day\t0\n",
    )
    .unwrap();
    let base = [
        "finetune", "--train", "t.conllu", "--dev", "t.conllu", "--out", "o",
    ];
    let cases: [(&[&str], &str); 5] = [
        (
            &["--task", "pos", "--max-train-examples", "0"],
            "--max-train-examples",
        ),
        (&["--task", "pos", "--dropout", "1.5"], "--dropout"),
        (
            &["--task", "pos", "--max-seq-length", "1"],
            "--max-seq-length",
        ),
        (&["--task", "classify", "--labels", "only"], "--labels"),
        (&["--task", "classify", "--pooling", "pma3"], "PMA pooling"),
    ];
    for (extra, needle) in cases {
        let mut args = base.to_vec();
        if extra[1] == "classify" {
            args[2] = "t.tsv";
            args[4] = "t.tsv";
        }
        args.extend(extra);
        args.extend(QUICK_FINETUNE);
        if !extra.contains(&"--max-seq-length") {
            args.extend(SHORT_STRIPS);
        }
        fails_naming(&dir, &args, &[needle]);
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// A change to a config.json.
type ConfigEdit = fn(&mut serde_json::Value);

#[test]
fn finetuned_configs_whose_labels_contradict_are_named() {
    let dir = scratch("labels");
    std::fs::write(dir.join("t.conllu"), conllu(8)).unwrap();
    let mut args = vec![
        "finetune", "--task", "pos", "--train", "t.conllu", "--dev", "t.conllu", "--out", "o",
    ];
    args.extend(QUICK_FINETUNE);
    args.extend(SHORT_STRIPS);
    let o = pixel_in(&dir, &args, Duration::from_secs(60));
    assert_eq!(o.code, Some(0), "{}", o.stderr);
    let config_path = dir.join("o/best/config.json");
    let good: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&config_path).unwrap()).unwrap();
    let edits: [(&str, ConfigEdit); 4] = [
        ("num_labels", |c| c["num_labels"] = 0.into()),
        ("num_labels is 5", |c| c["num_labels"] = 5.into()),
        ("label2id", |c| c["label2id"]["NOUN"] = 0.into()),
        ("id2label key \"99\"", |c| {
            let v = c["id2label"]["0"].take();
            c["id2label"].as_object_mut().unwrap().remove("0");
            c["id2label"]["99"] = v;
        }),
    ];
    for (needle, edit) in edits {
        let mut config = good.clone();
        edit(&mut config);
        std::fs::write(&config_path, config.to_string()).unwrap();
        fails_naming(
            &dir,
            &["predict", "--checkpoint", "o/best", "The cat sat"],
            &["o/best", needle],
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_resume_that_contradicts_the_checkpoint_names_the_field_and_both_values() {
    let dir = scratch("resume");
    std::fs::write(dir.join("c.txt"), small_corpus(200)).unwrap();
    let mut first = quick_pretrain("c.txt", "out", "4");
    first.extend(["--stop-at", "1"]);
    let o = pixel_in(&dir, &first, Duration::from_secs(60));
    assert_eq!(o.code, Some(0), "{}", o.stderr);
    let mut again = quick_pretrain("c.txt", "out", "4");
    again.extend(["--resume", "--lr", "0.001"]);
    fails_naming(
        &dir,
        &again,
        &["max_lr: 0.003 vs 0.001", "trainer_state.json"],
    );
    let mut again = quick_pretrain("c.txt", "out", "6");
    again.push("--resume");
    fails_naming(&dir, &again, &["total_steps: 4 vs 6"]);
    let _ = std::fs::remove_dir_all(&dir);
}

#[cfg(unix)]
#[test]
fn fifos_devices_and_directories_are_refused_by_type() {
    let dir = scratch("paths");
    let fifo = dir.join("pipe");
    let made = Command::new("mkfifo").arg(&fifo).status();
    if made.is_ok_and(|s| s.success()) {
        fails_naming(
            &dir,
            &[
                "finetune", "--task", "pos", "--train", "pipe", "--dev", "pipe", "--out", "o",
            ],
            &["pipe", "FIFO"],
        );
        fails_naming(&dir, &quick_pretrain("pipe", "p", "1"), &["pipe", "FIFO"]);
        fails_naming(&dir, &["inspect", "pipe"], &["pipe", "FIFO"]);
    }
    fails_naming(
        &dir,
        &quick_pretrain("/dev/zero", "p", "1"),
        &["/dev/zero", "device"],
    );
    std::fs::create_dir_all(dir.join("d")).unwrap();
    fails_naming(
        &dir,
        &[
            "finetune", "--task", "ner", "--train", "d", "--dev", "d", "--out", "o",
        ],
        &["d", "a directory"],
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[cfg(unix)]
#[test]
fn corpus_walks_end_on_symlink_loops_and_name_what_they_skip() {
    let dir = scratch("walk");
    std::fs::create_dir_all(dir.join("corpus/sub")).unwrap();
    std::fs::write(dir.join("corpus/sub/a.txt"), small_corpus(200)).unwrap();
    std::fs::write(dir.join("corpus/blob.bin"), b"\x00\x01\x02binary").unwrap();
    std::os::unix::fs::symlink(dir.join("corpus"), dir.join("corpus/sub/loop")).unwrap();
    let mut args = quick_pretrain("corpus", "p", "1");
    args.extend(["--stop-at", "0"]);
    let o = pixel_in(&dir, &args, Duration::from_secs(60));
    assert_eq!(o.code, Some(0), "{}", o.stderr);
    assert!(o.stderr.contains("blob.bin: not text"), "{}", o.stderr);
    assert!(
        o.stderr.contains("loop: a directory already walked"),
        "{}",
        o.stderr
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_conllu_file_starting_with_a_bom_is_read() {
    let dir = scratch("bom");
    std::fs::write(dir.join("t.conllu"), format!("\u{feff}{}", conllu(8))).unwrap();
    let mut args = vec![
        "finetune", "--task", "pos", "--train", "t.conllu", "--dev", "t.conllu", "--out", "o",
    ];
    args.extend(QUICK_FINETUNE);
    args.extend(SHORT_STRIPS);
    let o = pixel_in(&dir, &args, Duration::from_secs(60));
    assert_eq!(o.code, Some(0), "{}", o.stderr);
    assert!(o.stderr.contains("8 examples"), "{}", o.stderr);
    let _ = std::fs::remove_dir_all(&dir);
}

#[cfg(unix)]
#[test]
fn sigterm_finishes_the_step_saves_and_exits_non_zero() {
    let dir = scratch("sigterm");
    std::fs::write(dir.join("c.txt"), small_corpus(200)).unwrap();
    let args = quick_pretrain("c.txt", "out", "100000");
    let child = Command::new(env!("CARGO_BIN_EXE_pixel"))
        .args(&args)
        .current_dir(&dir)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Wait until training steps are being logged, then ask it to stop.
    let log = dir.join("out/log.csv");
    let started = Instant::now();
    while std::fs::read_to_string(&log).map_or(0, |t| t.lines().count()) < 3 {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "no steps logged"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    // SAFETY: kill(2) on our own child's pid.
    assert_eq!(unsafe { libc::kill(child.id() as i32, libc::SIGTERM) }, 0);
    let o = wait_bounded(child, &args, Duration::from_secs(30));
    assert_eq!(o.code, Some(128 + libc::SIGTERM), "{}", o.stderr);
    assert!(o.stderr.contains("stopped by SIGTERM"), "{}", o.stderr);
    let state = std::fs::read_to_string(dir.join("out/checkpoint/trainer_state.json")).unwrap();
    let state: serde_json::Value = serde_json::from_str(&state).unwrap();
    let step = state["step"].as_u64().unwrap();
    assert!(step >= 2, "{state}");
    let rows = std::fs::read_to_string(&log).unwrap().lines().count() - 1;
    assert_eq!(
        rows as u64, step,
        "the checkpoint is at the last logged step"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_pair_file_given_to_a_single_sentence_classifier_is_refused() {
    let dir = scratch("pairs");
    std::fs::write(
        dir.join("single.tsv"),
        "sentence\tlabel\na fine day\t1\na bad day\t0\n",
    )
    .unwrap();
    std::fs::write(
        dir.join("pair.tsv"),
        "sentence1\tsentence2\tlabel\na fine\tday\t1\na bad\tday\t0\n",
    )
    .unwrap();
    let mut args = vec![
        "finetune",
        "--task",
        "classify",
        "--train",
        "single.tsv",
        "--dev",
        "single.tsv",
        "--out",
        "o",
    ];
    args.extend(QUICK_FINETUNE);
    args.extend(SHORT_STRIPS);
    let o = pixel_in(&dir, &args, Duration::from_secs(60));
    assert_eq!(o.code, Some(0), "{}", o.stderr);
    fails_naming(
        &dir,
        &["evaluate", "--checkpoint", "o/best", "--data", "pair.tsv"],
        &["--data pair.tsv", "sentence pairs", "single sentences"],
    );
    fails_naming(
        &dir,
        &[
            "predict",
            "--checkpoint",
            "o/best",
            "a fine",
            "--pair",
            "day",
        ],
        &["sentence pairs"],
    );
    args[6] = "pair.tsv";
    args[8] = "o2";
    fails_naming(&dir, &args, &["--dev pair.tsv", "sentence pairs"]);
    let _ = std::fs::remove_dir_all(&dir);
}
