//! End-to-end pretraining on a tiny config: the loss falls, the checkpoint
//! reloads to identical outputs, and a resumed run reproduces the
//! uninterrupted one exactly.

use std::path::PathBuf;
use std::sync::atomic::AtomicBool;

use pixel::engine::{Device, Rng, Tape, Var};
use pixel::model::checkpoint::load_checkpoint;
use pixel::model::{ForwardMode, PatchMasking, PixelConfig, PixelForPreTraining};
use pixel::pretrain::run::{checkpoint_dir, run_pretraining, PretrainOptions};
use pixel::render::Layout;

fn options(out: PathBuf, steps: u64) -> PretrainOptions {
    let mut config = PixelConfig::tiny(32);
    config.hidden_dropout_prob = 0.1;
    config.attention_probs_dropout_prob = 0.1;
    PretrainOptions {
        config,
        corpus: None,
        out,
        steps,
        batch_size: 8,
        grad_accum: 1,
        lr: 2e-3,
        min_lr: 1e-5,
        warmup_steps: 5,
        weight_decay: 0.05,
        max_grad_norm: 1.0,
        seed: 7,
        layout: Layout::Pygame,
        eval_every: 20,
        save_every: 1000,
        recon_every: 1000,
        resume: false,
        progress: false,
        device: Device::Cpu,
        stop_at: None,
        parallel: Default::default(),
        check_every: 100,
    }
}

fn tmp(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("pixel-test-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    d
}

#[test]
fn tiny_pretraining_learns_checkpoints_and_resumes_exactly() {
    let no_stop = AtomicBool::new(false);
    // Uninterrupted run.
    let full_dir = tmp("full");
    let full = run_pretraining(&options(full_dir.clone(), 40), &no_stop).expect("run");
    assert_eq!(full.losses.len(), 40);
    let mean = |xs: &[(u64, f32)]| xs.iter().map(|x| x.1).sum::<f32>() / xs.len() as f32;
    let (first, last) = (mean(&full.losses[..5]), mean(&full.losses[35..]));
    assert!(
        last < 0.9 * first,
        "loss did not fall: first 5 steps {first}, last 5 {last}"
    );
    for f in [
        "log.csv",
        "loss.png",
        "reconstruction.png",
        "checkpoint/model.safetensors",
        "checkpoint/config.json",
    ] {
        assert!(full_dir.join(f).is_file(), "missing {f}");
    }

    // Interrupted at step 20, then resumed: identical losses.
    let part_dir = tmp("part");
    let mut opts = options(part_dir.clone(), 40);
    opts.stop_at = Some(20);
    let first_half = run_pretraining(&opts, &no_stop).expect("first half");
    assert!(first_half.interrupted && first_half.losses.len() == 20);
    let mut opts = options(part_dir.clone(), 40);
    opts.resume = true;
    let second_half = run_pretraining(&opts, &no_stop).expect("resume");
    let resumed: Vec<(u64, f32)> = first_half
        .losses
        .iter()
        .chain(&second_half.losses)
        .copied()
        .collect();
    assert_eq!(
        resumed, full.losses,
        "resumed run differs from the uninterrupted one"
    );

    // The checkpoint reloads (generic loader) to identical outputs.
    let ckpt = load_checkpoint(checkpoint_dir(&full_dir)).expect("load checkpoint");
    let config = ckpt.config.clone().expect("config.json");
    let mut reloaded = PixelForPreTraining::new(config.clone(), &mut Rng::new(1));
    reloaded
        .params
        .load_state_dict(&ckpt.weights)
        .expect("weights");
    let ckpt2 = load_checkpoint(checkpoint_dir(&part_dir)).expect("load resumed checkpoint");
    let mut resumed_model = PixelForPreTraining::new(config.clone(), &mut Rng::new(2));
    resumed_model
        .params
        .load_state_dict(&ckpt2.weights)
        .expect("weights");
    let l = config.num_patches();
    let mut pixels = pixel::engine::Tensor::zeros(&[1, 3, 16, 16 * l]);
    Rng::new(3).fill_uniform(pixels.data_mut(), 0.0, 1.0);
    let attn = vec![1.0; l];
    let mut mask = vec![0.0; l];
    for m in mask
        .iter_mut()
        .take(l - pixel::model::masking::num_kept_patches(l, 0.25))
    {
        *m = 1.0;
    }
    let masking = PatchMasking::explicit(&mask, 1, l).unwrap();
    let run = |m: &PixelForPreTraining| {
        let mut t = Tape::no_grad();
        let pv = m.params.vars(&mut t);
        let mut rng = Rng::new(0);
        let mode = ForwardMode {
            training: false,
            rng: &mut rng,
        };
        m.forward(
            &mut t,
            &pv,
            &Var::constant(pixels.clone()),
            &attn,
            &masking,
            mode,
        )
        .logits
        .data()
        .to_vec()
    };
    assert_eq!(
        run(&reloaded),
        run(&resumed_model),
        "resumed and uninterrupted final weights differ"
    );
    let _ = std::fs::remove_dir_all(&full_dir);
    let _ = std::fs::remove_dir_all(&part_dir);
}

#[test]
fn empty_corpus_is_a_clear_error() {
    let dir = tmp("empty");
    std::fs::create_dir_all(&dir).unwrap();
    let corpus = dir.join("empty.txt");
    std::fs::write(&corpus, "\n\n").unwrap();
    let mut opts = options(dir.join("out"), 5);
    opts.corpus = Some(corpus);
    let err = run_pretraining(&opts, &AtomicBool::new(false))
        .unwrap_err()
        .to_string();
    assert!(err.contains("no text lines"), "{err}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// What `--device cuda` must say here: `None` where a driver is present (a
/// GPU machine, where the flag may work).
#[cfg(not(feature = "cuda"))]
fn missing_cuda() -> Option<&'static str> {
    Some("--device cuda: this build has no CUDA support; rebuild with --features cuda")
}

#[cfg(feature = "cuda")]
fn missing_cuda() -> Option<&'static str> {
    (!pixel::engine::kernels::cuda::driver_present())
        .then_some("--device cuda: no CUDA driver found")
}

/// `--device cuda` of `pixel pretrain` and `pixel finetune` fails at once,
/// before reading data or writing anything, saying what is missing: CUDA
/// support in this build, or (with it) a driver.
#[test]
fn device_cuda_says_what_is_missing() {
    let Some(expected) = missing_cuda() else {
        eprintln!("a CUDA driver is present: the error path is not checked here");
        return;
    };
    let exe = env!("CARGO_BIN_EXE_pixel");
    let out_dir = tmp("device");
    let out = out_dir.display().to_string();
    let commands: [&[&str]; 2] = [
        &[
            "pretrain", "--steps", "1", "--out", &out, "--device", "cuda",
        ],
        &[
            "finetune", "--task", "pos", "--train", "x.conllu", "--dev", "y.conllu", "--out", &out,
            "--device", "cuda",
        ],
    ];
    for args in commands {
        let run = std::process::Command::new(exe)
            .args(args)
            .output()
            .expect("run pixel");
        let stderr = String::from_utf8_lossy(&run.stderr);
        assert!(!run.status.success(), "{args:?} succeeded");
        assert!(stderr.contains(expected), "{args:?}: {stderr}");
        assert!(!out_dir.exists(), "{args:?} wrote {}", out_dir.display());
    }
}
