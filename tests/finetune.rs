//! Finetuning end to end on tiny slices of the real datasets in ../shared/data
//! (or $PIXEL_DATA): for every task the training loss falls and the dev metric
//! ends above the majority baseline; the best checkpoint reloads through
//! `pixel evaluate` / `pixel predict`.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::AtomicBool;

use pixel::finetune::data::{load_dataset, make_batch, render_examples, BatchOrder, Target};
use pixel::finetune::eval::{majority_predictions, score};
use pixel::finetune::run::{run_finetuning, task_renderer, FinetuneOptions, FinetuneSummary};
use pixel::finetune::Task;
use pixel::model::heads::{FinetuneLabels, Pooling, IGNORE_INDEX as IGNORE};
use pixel::render::{Layout, RenderingStrategy};

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
        freeze_encoder: false,
        eval_every: 30,
        patience: 0,
        seed: 3,
        layout: task.defaults().layout,
        rendering: None,
        allow_rendering_mismatch: false,
        pooling: Pooling::Mean,
        labels: None,
        max_train_examples: Some(256),
        max_dev_examples: Some(64),
        qa: Default::default(),
        progress: false,
        parallel: Default::default(),
        check_every: 100,
        device: pixel::engine::Device::Cpu,
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
    let s = run_finetuning(&o, &AtomicBool::new(false)).unwrap();
    check_learns(&s, "pos en_ewt");
    let _ = std::fs::remove_dir_all(&o.out);
}

#[test]
fn ner_learns_on_masakhaner_pcm() {
    let dir = data_dir().join("ner/masakhaner1/pcm");
    let mut o = options(Task::Ner, dir.join("train.txt"), dir.join("dev.txt"), "ner");
    o.steps = 120;
    o.eval_every = 40;
    let s = run_finetuning(&o, &AtomicBool::new(false)).unwrap();
    check_learns(&s, "ner pcm");
    let _ = std::fs::remove_dir_all(&o.out);
}

#[test]
fn parsing_learns_on_english_ewt() {
    let mut o = options(
        Task::Parse,
        ud("UD_English-EWT", "train"),
        ud("UD_English-EWT", "dev"),
        "parse",
    );
    o.steps = 120;
    o.eval_every = 40;
    let s = run_finetuning(&o, &AtomicBool::new(false)).unwrap();
    check_learns(&s, "parse en_ewt");
    let _ = std::fs::remove_dir_all(&o.out);
}

#[test]
fn pos_tagging_learns_on_coptic_script() {
    let o = options(
        Task::Pos,
        ud("UD_Coptic-Scriptorium", "train"),
        ud("UD_Coptic-Scriptorium", "dev"),
        "pos-cop",
    );
    let s = run_finetuning(&o, &AtomicBool::new(false)).unwrap();
    check_learns(&s, "pos coptic");
    let _ = std::fs::remove_dir_all(&o.out);
}

#[test]
fn sentence_classification_learns_on_sst2() {
    for pooling in [Pooling::Mean, Pooling::Cls, Pooling::Max, Pooling::Pma(2)] {
        let dir = data_dir().join("sst2");
        let mut o = options(
            Task::Classify,
            dir.join("train.tsv"),
            dir.join("train.tsv"),
            "sst2",
        );
        // Fitting check: the dev slice is the training slice (short phrases learn fast).
        o.max_train_examples = Some(64);
        o.max_dev_examples = Some(64);
        o.pooling = pooling;
        o.steps = 200;
        o.eval_every = 50;
        let s = run_finetuning(&o, &AtomicBool::new(false)).unwrap();
        check_learns(&s, &format!("sst2 {pooling:?}"));
        let _ = std::fs::remove_dir_all(&o.out);
    }
}

#[test]
fn token_labels_sit_on_each_words_first_patch() {
    let ds = load_dataset(
        Task::Pos,
        &ud("UD_English-EWT", "dev"),
        &Task::Pos.fixed_labels().unwrap(),
    )
    .unwrap();
    let examples = &ds.examples[..4];
    let renderer = task_renderer(64, Layout::Pango, RenderingStrategy::Continuous).unwrap();
    let (rs, _) = render_examples(&renderer, examples, false, "dev");
    let ex: Vec<_> = examples.iter().collect();
    let rr: Vec<_> = rs.iter().collect();
    let batch = make_batch(Task::Pos, &ex, &rr, true);
    assert_eq!(batch.pixel_values.shape(), &[4, 3, 16, 16 * 64]);
    let FinetuneLabels::Tokens(labels) = &batch.labels else {
        panic!("token labels expected")
    };
    for (i, (e, r)) in examples.iter().zip(&rs).enumerate() {
        let starts = r.word_starts.as_ref().unwrap();
        let Target::Tags(tags) = &e.target else {
            panic!()
        };
        let row = &labels[i * 64..(i + 1) * 64];
        let labelled: Vec<usize> = (0..64).filter(|&p| row[p] != IGNORE).collect();
        assert_eq!(labelled, starts[..starts.len() - 1].to_vec());
        for (w, &p) in starts[..starts.len() - 1].iter().enumerate() {
            assert_eq!(row[p], tags[w] as i64);
        }
        // The attention mask covers the text and the EOS patch.
        let eos = *starts.last().unwrap();
        assert_eq!(batch.attention_mask[i * 64 + eos.min(63)], 1.0);
    }
    // Parsing: word starts padded with IGNORE after the EOS entry; heads as CoNLL-U.
    let ds = load_dataset(
        Task::Parse,
        &ud("UD_English-EWT", "dev"),
        &Task::Parse.fixed_labels().unwrap(),
    )
    .unwrap();
    let e = &ds.examples[0];
    let (rs, _) = render_examples(&renderer, std::slice::from_ref(e), false, "dev");
    let batch = make_batch(Task::Parse, &[e], &[&rs[0]], true);
    let FinetuneLabels::Parsing {
        word_starts,
        arc_labels,
        rel_labels,
    } = &batch.labels
    else {
        panic!("parsing labels expected")
    };
    let starts = rs[0].word_starts.as_ref().unwrap();
    assert_eq!(word_starts.len(), 65);
    for (j, &s) in starts.iter().enumerate() {
        assert_eq!(word_starts[j], s as i64);
    }
    assert!(word_starts[starts.len()..].iter().all(|&s| s == IGNORE));
    let Target::Tree { heads, rels } = &e.target else {
        panic!()
    };
    let n = starts.len() - 1;
    for j in 0..n {
        assert_eq!(arc_labels[j], heads[j] as i64);
        assert_eq!(rel_labels[j], rels[j] as i64);
    }
    assert!(arc_labels[n..].iter().all(|&h| h == IGNORE));
}

#[test]
fn batch_order_visits_every_example_once_per_pass() {
    let mut order = BatchOrder::new(10, 4, 1);
    let mut seen: Vec<usize> = (0..3).flat_map(|_| order.next_batch()).collect();
    seen.sort();
    assert_eq!(seen, (0..10).collect::<Vec<_>>());
    assert_eq!(order.epoch, 0);
    order.next_batch();
    assert_eq!(order.epoch, 1);
}

#[test]
fn majority_baselines_on_hand_made_examples() {
    use pixel::finetune::data::Example;
    use pixel::render::Input;
    let words = |n: usize| Input::Words((0..n).map(|i| format!("w{i}")).collect());
    let tags = |t: Vec<usize>| Example {
        input: words(t.len()),
        target: Target::Tags(t),
    };
    let train = vec![tags(vec![1, 1, 2]), tags(vec![1, 3])];
    let eval = vec![tags(vec![1, 2, 1, 1])];
    let p = majority_predictions(Task::Pos, &train, &eval, &[3]);
    assert_eq!(p, vec![Target::Tags(vec![1, 1, 1])]);
    let labels: Vec<String> = (0..4).map(|i| i.to_string()).collect();
    let r = score(Task::Pos, &labels, &eval, &p);
    assert!((r.metric - 200.0 / 3.0).abs() < 1e-9, "{}", r.summary);
    assert_eq!(r.unscored_words, 1);
    // Parsing: the most frequent offset is +1 (word attaches to the next word).
    let tree = |heads: Vec<usize>, rels: Vec<usize>| Example {
        input: words(heads.len()),
        target: Target::Tree { heads, rels },
    };
    let train = vec![tree(vec![2, 3, 0], vec![5, 5, 1])];
    let eval = vec![tree(vec![2, 0], vec![5, 1])];
    let p = majority_predictions(Task::Parse, &train, &eval, &[2]);
    assert_eq!(
        p,
        vec![Target::Tree {
            heads: vec![2, 0],
            rels: vec![5, 5]
        }]
    );
    let r = score(Task::Parse, &labels, &eval, &p);
    assert!(r.summary.contains("uas 100.00 las 50.00"), "{}", r.summary);
}

#[test]
fn cli_finetune_then_evaluate_and_predict() {
    let exe = env!("CARGO_BIN_EXE_pixel");
    let out = out_dir("cli");
    let dir = data_dir().join("ner/masakhaner1/pcm");
    let status = Command::new(exe)
        .args(["finetune", "--task", "ner", "--config", "tiny"])
        .arg("--train")
        .arg(dir.join("train.txt"))
        .arg("--dev")
        .arg(dir.join("dev.txt"))
        .arg("--out")
        .arg(&out)
        .args([
            "--max-seq-length",
            "64",
            "--batch-size",
            "8",
            "--steps",
            "6",
        ])
        .args(["--eval-every", "3", "--max-train-examples", "32"])
        .args(["--max-dev-examples", "16", "--lr", "1e-3"])
        .status()
        .unwrap();
    assert!(status.success());
    let best = out.join("best");
    let eval = Command::new(exe)
        .args(["evaluate", "--checkpoint"])
        .arg(&best)
        .arg("--data")
        .arg(dir.join("dev.txt"))
        .output()
        .unwrap();
    assert!(
        eval.status.success(),
        "{}",
        String::from_utf8_lossy(&eval.stderr)
    );
    let text = String::from_utf8_lossy(&eval.stdout);
    assert!(text.contains("f1 "), "{text}");
    let pred = Command::new(exe)
        .args(["predict", "--checkpoint"])
        .arg(&best)
        .arg("Obi go Lagos for Monday")
        .output()
        .unwrap();
    assert!(
        pred.status.success(),
        "{}",
        String::from_utf8_lossy(&pred.stderr)
    );
    let text = String::from_utf8_lossy(&pred.stdout);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 5, "{text}");
    assert!(lines[0].starts_with("Obi\t"), "{text}");
    // A task mismatch and a missing checkpoint are errors that name the problem.
    let wrong = Command::new(exe)
        .args(["predict", "--task", "pos", "--checkpoint"])
        .arg(&best)
        .arg("x")
        .output()
        .unwrap();
    assert!(!wrong.status.success());
    assert!(String::from_utf8_lossy(&wrong.stderr).contains("finetuned for ner"));
    let missing = Command::new(exe)
        .args(["evaluate", "--checkpoint", "/nonexistent/ckpt", "--data"])
        .arg(dir.join("dev.txt"))
        .output()
        .unwrap();
    assert!(!missing.status.success());
    assert!(String::from_utf8_lossy(&missing.stderr).contains("/nonexistent/ckpt"));
    let _ = std::fs::remove_dir_all(&out);
}

#[test]
fn parser_predicts_raw_text_without_gold_trees() {
    use pixel::engine::Rng;
    use pixel::finetune::data::example_from_text;
    use pixel::finetune::eval::predict;
    use pixel::model::heads::PixelForFinetuning;
    use pixel::model::PixelConfig;
    let model = PixelForFinetuning::new(
        PixelConfig::tiny(32),
        Task::Parse.head(38, Pooling::Mean),
        &mut Rng::new(1),
    );
    let example = example_from_text(Task::Parse, "the cat sat on the mat");
    let renderer = task_renderer(32, Layout::Pango, RenderingStrategy::Continuous).unwrap();
    let (rs, _) = render_examples(&renderer, std::slice::from_ref(&example), false, "text");
    let pred = predict(&model, Task::Parse, std::slice::from_ref(&example), &rs, 1).unwrap();
    let Target::Tree { heads, rels } = &pred[0] else {
        panic!("parser must predict a tree")
    };
    assert_eq!(heads.len(), 6);
    assert_eq!(rels.len(), 6);
    assert!(heads.iter().all(|&h| h <= 32) && rels.iter().all(|&r| r < 38));
}

#[test]
fn foreign_finetuned_checkpoint_loads_with_task_given() {
    use pixel::engine::{Rng, Tensor};
    use pixel::finetune::data::example_from_text;
    use pixel::finetune::eval::predict;
    use pixel::finetune::run::load_finetuned;
    use pixel::model::checkpoint::save_checkpoint;
    use pixel::model::heads::PixelForFinetuning;
    use pixel::model::PixelConfig;
    // A token-classification checkpoint as HuggingFace writes it: HF key names,
    // id2label, no pixel-specific fields, plus a key the model does not use.
    let labels = ["O", "B-PER", "I-PER"];
    let mut config = PixelConfig::tiny(32);
    config.id2label = Some(
        labels
            .iter()
            .enumerate()
            .map(|(i, l)| (i.to_string(), l.to_string()))
            .collect(),
    );
    let model = PixelForFinetuning::new(
        config.clone(),
        Task::Ner.head(3, Pooling::Mean),
        &mut Rng::new(5),
    );
    let mut weights = model.state_dict();
    weights.insert("qa_outputs.weight".into(), Tensor::zeros(&[2, 64]));
    let dir = out_dir("foreign");
    save_checkpoint(&dir, &model.config, &weights).unwrap();
    let err = load_finetuned(&dir, None).err().expect("task is unknown");
    assert!(format!("{err:#}").contains("pass --task"), "{err:#}");
    let loaded = load_finetuned(&dir, Some(Task::Ner)).unwrap();
    assert_eq!(loaded.labels, labels);
    assert_eq!(loaded.layout, Layout::Pango);
    let example = example_from_text(Task::Ner, "Obi go Lagos");
    let renderer = task_renderer(32, Layout::Pango, RenderingStrategy::Continuous).unwrap();
    let (rs, _) = render_examples(&renderer, std::slice::from_ref(&example), false, "text");
    let a = predict(&model, Task::Ner, std::slice::from_ref(&example), &rs, 1).unwrap();
    let b = predict(
        &loaded.model,
        Task::Ner,
        std::slice::from_ref(&example),
        &rs,
        1,
    )
    .unwrap();
    assert_eq!(a, b);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn freeze_encoder_trains_the_head_only() {
    use pixel::engine::Rng;
    use pixel::model::checkpoint::load_checkpoint;
    use pixel::model::heads::PixelForFinetuning;
    let mut o = options(
        Task::Pos,
        ud("UD_English-EWT", "train"),
        ud("UD_English-EWT", "dev"),
        "freeze",
    );
    o.freeze_encoder = true;
    o.steps = 10;
    o.eval_every = 10;
    o.max_train_examples = Some(64);
    o.max_dev_examples = Some(16);
    let s = run_finetuning(&o, &AtomicBool::new(false)).unwrap();
    // The run builds its model from Rng::new(seed) first: the same initial weights.
    let initial = PixelForFinetuning::new(
        pixel::config_preset("tiny", 64).unwrap(),
        Task::Pos.head(17, Pooling::Mean),
        &mut Rng::new(o.seed),
    )
    .state_dict();
    let trained = load_checkpoint(&s.best_dir).unwrap().weights;
    let mut encoder_keys = 0;
    for (name, before) in &initial {
        let after = &trained[name];
        if name.starts_with("vit.") {
            encoder_keys += 1;
            assert_eq!(before.data(), after.data(), "{name} changed while frozen");
        } else {
            assert_ne!(before.data(), after.data(), "{name} did not train");
        }
    }
    assert!(encoder_keys > 10);
    let _ = std::fs::remove_dir_all(&o.out);
}

#[test]
fn sentence_pair_classification_fits_a_small_slice() {
    // Pairs built from SST-2: sentence 1 carries the label, sentence 2 is a
    // fixed neutral sentence; the model must read the pair rendering.
    let dir = out_dir("pairs-data");
    std::fs::create_dir_all(&dir).unwrap();
    let sst = std::fs::read_to_string(data_dir().join("sst2/train.tsv")).unwrap();
    let mut tsv = String::from("sentence1\tsentence2\tlabel\n");
    for line in sst.lines().skip(1).take(64) {
        let (sentence, label) = line.rsplit_once('\t').unwrap();
        tsv += &format!("{sentence}\tthat is what the critic wrote .\t{label}\n");
    }
    let path = dir.join("pairs.tsv");
    std::fs::write(&path, tsv).unwrap();
    let ds = load_dataset(Task::Classify, &path, &["0".into(), "1".into()]).unwrap();
    assert!(matches!(
        ds.examples[0].input,
        pixel::render::Input::Pair(..)
    ));
    let mut o = options(Task::Classify, path.clone(), path, "pairs");
    o.steps = 200;
    o.eval_every = 50;
    let s = run_finetuning(&o, &AtomicBool::new(false)).unwrap();
    check_learns(&s, "sentence pairs");
    let _ = std::fs::remove_dir_all(&o.out);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_stop_request_ends_the_run_after_one_step_with_an_evaluation() {
    let mut o = options(
        Task::Pos,
        ud("UD_English-EWT", "train"),
        ud("UD_English-EWT", "dev"),
        "stop",
    );
    o.max_train_examples = Some(32);
    o.max_dev_examples = Some(8);
    let s = run_finetuning(&o, &AtomicBool::new(true)).unwrap();
    assert_eq!(s.steps, 1);
    assert_eq!(s.best_step, 1);
    assert!(s.stopped_early);
    let log = std::fs::read_to_string(o.out.join("log.csv")).unwrap();
    assert_eq!(log.lines().count(), 2, "{log}");
    let _ = std::fs::remove_dir_all(&o.out);
}

#[test]
fn a_non_finite_step_saves_the_last_good_state_and_names_the_step() {
    // A learning rate this large puts the weights near 1e30 after one update:
    // a later forward pass overflows and the step is refused.
    let mut o = options(
        Task::Pos,
        ud("UD_English-EWT", "train"),
        ud("UD_English-EWT", "dev"),
        "nonfinite",
    );
    o.max_train_examples = Some(32);
    o.max_dev_examples = Some(8);
    o.lr = 1e30;
    o.warmup_steps = 0;
    o.steps = 20;
    o.max_grad_norm = 1e30;
    let err = run_finetuning(&o, &AtomicBool::new(false))
        .unwrap_err()
        .to_string();
    let log = std::fs::read_to_string(o.out.join("log.csv")).unwrap();
    let good_steps = log.lines().count() - 1;
    assert!(good_steps >= 1, "the first step is finite: {log}");
    assert!(
        err.starts_with(&format!("step {}: ", good_steps + 1)),
        "error must name the failing step {}: {err}",
        good_steps + 1
    );
    assert!(
        err.contains(&format!(
            "saved the last good state (after step {good_steps})"
        )),
        "{err}"
    );
    let last = pixel::finetune::run::last_good_dir(&o.out);
    assert!(err.contains(&last.display().to_string()), "{err}");
    let saved = pixel::model::checkpoint::load_checkpoint(&last).expect("last good state");
    assert!(saved
        .weights
        .values()
        .all(|t| t.data().iter().all(|v| v.is_finite())));
    let _ = std::fs::remove_dir_all(&o.out);
}
