//! Finetuning end to end on tiny slices of the real datasets in ../shared/data
//! (or $PIXEL_DATA): for every task the training loss falls and the dev metric
//! ends above the majority baseline; the best checkpoint reloads through
//! `pixel evaluate` / `pixel predict`.

use std::path::{Path, PathBuf};
use std::process::Command;

use pixel::finetune::data::{load_dataset, make_batch, render_examples, BatchOrder, Target};
use pixel::finetune::eval::{majority_predictions, score};
use pixel::finetune::run::{run_finetuning, task_renderer, FinetuneOptions, FinetuneSummary};
use pixel::finetune::Task;
use pixel::model::finetune::{FinetuneLabels, Pooling, IGNORE};
use pixel::render::Layout;

fn data_dir() -> PathBuf {
    match std::env::var_os("PIXEL_DATA") {
        Some(d) => PathBuf::from(d),
        None => Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/data"),
    }
}

fn ud(name: &str, split: &str) -> PathBuf {
    let dir = data_dir().join("ud").join(name);
    let prefix = match name {
        "UD_English-EWT" => "en_ewt",
        "UD_Tamil-TTB" => "ta_ttb",
        _ => "cop_scriptorium",
    };
    dir.join(format!("{prefix}-ud-{split}.conllu"))
}

fn out_dir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("pixel-finetune-test-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    d
}

/// A small from-scratch run: tiny model, short strips, a few dozen steps.
fn options(task: Task, train: PathBuf, dev: PathBuf, name: &str) -> FinetuneOptions {
    FinetuneOptions {
        task,
        train,
        dev,
        init: None,
        scratch_config: "tiny".into(),
        out: out_dir(name),
        max_seq_length: 64,
        batch_size: 16,
        grad_accum: 1,
        lr: 2e-3,
        steps: 60,
        warmup_steps: 5,
        weight_decay: 0.0,
        max_grad_norm: 1.0,
        dropout: Some(0.0),
        eval_every: 30,
        patience: 0,
        seed: 3,
        layout: task.defaults().layout,
        pooling: Pooling::Mean,
        labels: None,
        max_train_examples: Some(256),
        max_dev_examples: Some(64),
        progress: false,
    }
}

fn check_learns(s: &FinetuneSummary, what: &str) {
    eprintln!(
        "{what}: loss {} -> {}, best {} at {}, baseline {}",
        s.first_loss, s.last_loss, s.best.summary, s.best_step, s.baseline.summary
    );
    assert!(
        s.last_loss < 0.8 * s.first_loss,
        "{what}: loss did not fall ({} -> {})",
        s.first_loss,
        s.last_loss
    );
    assert!(
        s.best.metric > s.baseline.metric,
        "{what}: dev {} not above the majority baseline {}",
        s.best.summary,
        s.baseline.summary
    );
    assert!(s.best_dir.join("model.safetensors").is_file());
}

#[test]
fn pos_tagging_learns_on_english_ewt() {
    let o = options(
        Task::Pos,
        ud("UD_English-EWT", "train"),
        ud("UD_English-EWT", "dev"),
        "pos",
    );
    let s = run_finetuning(&o).unwrap();
    check_learns(&s, "pos en_ewt");
    let _ = std::fs::remove_dir_all(&o.out);
}
