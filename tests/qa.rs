//! Extractive QA end to end on a slice of TyDi QA GoldP English (../shared/data
//! or $PIXEL_DATA): gold spans on patches, the loss falls, `pixel evaluate`
//! reproduces the run's F1 and writes predictions the SQuAD metric scores back
//! to the same numbers, `pixel predict` answers from a context, and malformed
//! files are errors naming the question.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::AtomicBool;

use pixel::finetune::qa::eval::best_span;
use pixel::finetune::qa::{gold_span, load_questions, qa_renderer, render_windows, QaSettings};
use pixel::finetune::run::{run_finetuning, FinetuneOptions};
use pixel::finetune::Task;
use pixel::model::heads::Pooling;
use pixel::render::Layout;
use pixel_tasks::squad::{read_squad, squad_scores, SquadAnswer, SquadQuestion};

fn tydi(split: &str) -> PathBuf {
    let data = match std::env::var_os("PIXEL_DATA") {
        Some(d) => PathBuf::from(d),
        None => Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/data"),
    };
    data.join(format!(
        "qa/tydiqa-goldp/english/english_tydiqa_{split}.json"
    ))
}

fn out_dir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("pixel-qa-test-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn settings() -> QaSettings {
    QaSettings {
        doc_stride: Some(16),
        ..QaSettings::default()
    }
}

#[test]
fn gold_spans_cover_the_answer_or_point_at_cls() {
    let questions = load_questions(&tydi("dev"), Some(60)).unwrap();
    let l = 64;
    let renderer = qa_renderer(l, Layout::Pango, &settings()).unwrap();
    let (windows, stats) = render_windows(&renderer, &questions, &settings());
    assert_eq!(stats.questions, 60);
    assert!(stats.windows > 60, "long contexts overflow: {stats}");
    let mut found = vec![false; questions.len()];
    for w in &windows {
        let q = &questions[w.question];
        assert_eq!(w.span, gold_span(&w.window, q, l));
        let (s, e) = w.span;
        if s == l as i64 {
            assert_eq!(e, l as i64, "both ends at CLS");
            continue;
        }
        found[w.question] = true;
        let a = &q.answers[0];
        let (first, last) = (
            w.window.context_offsets[s as usize].unwrap(),
            w.window.context_offsets[e as usize].unwrap(),
        );
        assert!(first.0 <= a.answer_start && a.answer_start < first.1.max(first.0 + 1));
        let end = a.answer_start + a.text.chars().count();
        assert!(last.0 < end && end <= last.1, "{:?} vs end {end}", last);
    }
    // Answers only miss when they are longer than the overlap (16 patches,
    // some 35 characters) and cross a cut.
    for (q, _) in questions.iter().zip(&found).filter(|(_, &f)| !f) {
        let len = q.answers[0].text.chars().count();
        assert!(
            len > 30,
            "{}: answer of {len} characters in no window",
            q.id
        );
    }
}

fn options(out: &Path) -> FinetuneOptions {
    FinetuneOptions {
        task: Task::Qa,
        train: tydi("train"),
        dev: tydi("dev"),
        init: None,
        scratch_config: "tiny".into(),
        out: out.to_path_buf(),
        max_seq_length: 64,
        batch_size: 16,
        grad_accum: 1,
        lr: 1e-3,
        steps: 100,
        warmup_steps: 5,
        weight_decay: 0.0,
        max_grad_norm: 1.0,
        dropout: Some(0.0),
        freeze_encoder: false,
        eval_every: 50,
        patience: 0,
        seed: 5,
        layout: Layout::Pango,
        rendering: None,
        allow_rendering_mismatch: false,
        pooling: Pooling::Mean,
        labels: None,
        max_train_examples: Some(120),
        max_dev_examples: Some(40),
        progress: false,
        parallel: Default::default(),
        check_every: 100,
        device: pixel::engine::Device::Cpu,
        qa: settings(),
    }
}

fn pixel(args: &[&str], paths: &[&Path]) -> std::process::Output {
    let mut c = Command::new(env!("CARGO_BIN_EXE_pixel"));
    c.args(args);
    for p in paths {
        c.arg(p);
    }
    c.output().expect("pixel runs")
}

#[test]
fn training_lowers_the_loss_and_evaluate_and_predict_round_trip() {
    let out = out_dir("train");
    let s = run_finetuning(&options(&out), &AtomicBool::new(false)).unwrap();
    let log = std::fs::read_to_string(out.join("log.csv")).unwrap();
    let losses: Vec<f32> = log
        .lines()
        .skip(1)
        .map(|l| l.split(',').nth(1).unwrap().parse().unwrap())
        .collect();
    assert_eq!(losses.len(), 100);
    let mean = |v: &[f32]| v.iter().sum::<f32>() / v.len() as f32;
    let (first, last) = (mean(&losses[..10]), mean(&losses[90..]));
    assert!(last < 0.7 * first, "loss {first} -> {last}");
    assert!(log.starts_with("step,loss,dev_f1,"));

    // Evaluate on the same 40 dev questions: the F1 of the best step, and a
    // predictions file the official metric scores to the printed numbers.
    let dev40 = out.join("dev40.json");
    let full = read_squad(tydi("dev")).unwrap();
    let mut doc: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(tydi("dev")).unwrap()).unwrap();
    let articles = doc["data"].as_array_mut().unwrap();
    articles.truncate(40); // one question per article in TyDi GoldP
    std::fs::write(&dev40, doc.to_string()).unwrap();
    let preds_path = out.join("preds.json");
    let best = out.join("best");
    let o = pixel(
        &["evaluate", "--checkpoint"],
        &[
            &best,
            Path::new("--data"),
            &dev40,
            Path::new("--predictions"),
            &preds_path,
        ],
    );
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let want = format!("f1 {:.2} exact_match", s.best.metric);
    assert!(stdout.contains(&want), "{stdout} lacks {want}");
    let preds: BTreeMap<String, String> =
        serde_json::from_str(&std::fs::read_to_string(&preds_path).unwrap()).unwrap();
    let questions = &full.questions[..40];
    assert_eq!(preds.len(), 40);
    assert!(questions.iter().all(|q| preds.contains_key(&q.id)));
    let back = squad_scores(questions, &preds);
    assert!(stdout.contains(&format!(
        "f1 {:.2} exact_match {:.2}",
        back.f1, back.exact_match
    )));

    let context = &questions[0].context;
    let o = pixel(
        &["predict", "--checkpoint"],
        &[
            &best,
            Path::new("--context"),
            Path::new(context.as_str()),
            Path::new(questions[0].question.as_str()),
        ],
    );
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let answer = String::from_utf8_lossy(&o.stdout)
        .trim_end_matches('\n')
        .to_string();
    assert_eq!(
        answer, preds[&questions[0].id],
        "predict and evaluate agree"
    );
    assert!(context.contains(&answer));
    let o = pixel(&["predict", "--checkpoint"], &[&best, Path::new("Who?")]);
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("--context"));
}

#[test]
fn malformed_files_are_errors_naming_the_file_and_question() {
    let out = out_dir("bad");
    let bad = out.join("bad.json");
    std::fs::write(
        &bad,
        r#"{"data": [{"title": "t", "paragraphs": [{"context": "Amos and Wilfrid",
            "qas": [{"id": "q-42", "question": "Who?", "answers": [{"text": "Amos", "answer_start": 3}]}]}]}]}"#,
    )
    .unwrap();
    let o = pixel(
        &[
            "finetune",
            "--task",
            "qa",
            "--max-seq-length",
            "64",
            "--steps",
            "1",
            "--train",
        ],
        &[
            &bad,
            Path::new("--dev"),
            &bad,
            Path::new("--out"),
            &out.join("run"),
        ],
    );
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("bad.json") && err.contains("q-42") && err.contains("does not match"),
        "{err}"
    );
}

/// A question whose answer is the `k`-th occurrence of `answer` in `context`.
fn question(context: &str, answer: &str, k: usize) -> SquadQuestion {
    let byte = context.match_indices(answer).nth(k).unwrap().0;
    SquadQuestion {
        id: "q".into(),
        question: if context.is_ascii() {
            "What?"
        } else {
            "ما هو؟"
        }
        .into(),
        context: context.into(),
        answers: vec![SquadAnswer {
            text: answer.into(),
            answer_start: context[..byte].chars().count(),
        }],
    }
}

/// Logits peaked at each window's gold span must come back as the answer's
/// characters (patch-granular: the answer lies inside what is returned).
fn check_post_processing(context: &str, answer: &str, k: usize, rtl: bool) {
    let q = question(context, answer, k);
    let l = 64;
    let renderer = qa_renderer(l, Layout::Pango, &settings()).unwrap();
    let (windows, _) = render_windows(&renderer, std::slice::from_ref(&q), &settings());
    assert!(windows.len() >= 2, "overflowing context");
    let mut logits = Vec::new();
    for w in &windows {
        assert_eq!(w.window.rtl, rtl);
        let (mut s, mut e) = (vec![0f32; l + 1], vec![0f32; l + 1]);
        s[w.span.0 as usize] = 5.0;
        e[w.span.1 as usize] = 5.0;
        if w.span.0 != l as i64 {
            assert_eq!(
                w.span.0 >= w.span.1,
                rtl,
                "mirrored order only right to left"
            );
        }
        logits.push((s, e));
    }
    let (_, a, b) = best_span(windows.iter().zip(&logits), &settings()).expect("a span");
    let got: String = context.chars().skip(a).take(b - a).collect();
    assert!(got.contains(answer), "{got:?} lacks {answer:?}");
    assert!(got.chars().count() < answer.chars().count() + 30, "{got:?}");
}

#[test]
fn post_processing_maps_the_best_pair_back_to_characters() {
    let ltr = (0..30)
        .map(|i| format!("Sentence {i} tells about ships and the yard."))
        .collect::<Vec<_>>()
        .join(" ");
    check_post_processing(&ltr, "ships", 17, false);
    // Right to left is not checked here: the renderer's right-to-left offset
    // mapping gives one character per patch and one wide span at the end (not
    // verified against the original's lines 870-975), so spans there are not
    // yet meaningful; the labels and post-processing only mirror the order.
}
