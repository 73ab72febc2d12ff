//! Prediction files (`pixel evaluate --predictions`) on tiny slices of the real
//! datasets in ../shared/data (or $PIXEL_DATA): for every task the file has
//! exactly the input's lines, only the predicted column changed, and scoring
//! it back against the gold input with `pixel_tasks::metrics` reproduces what
//! `evaluate` printed.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::AtomicBool;

use pixel::finetune::data::{load_dataset, render_examples, Target};
use pixel::finetune::eval::predict;
use pixel::finetune::run::{load_finetuned, run_finetuning, task_renderer, FinetuneOptions};
use pixel::finetune::tree::{predict_trees, repair_tree};
use pixel::finetune::Task;
use pixel::model::heads::Pooling;
use pixel::render::RenderingStrategy;
use pixel::tasks::conllu::read_conllu;
use pixel::tasks::metrics::{accuracy, entity_scores, AttachmentCounter};
use pixel::tasks::ner::read_ner;

fn data_dir() -> PathBuf {
    match std::env::var_os("PIXEL_DATA") {
        Some(d) => PathBuf::from(d),
        None => Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/data"),
    }
}

fn out_dir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("pixel-pred-test-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

const L: usize = 64;

/// A briefly trained tiny model (150 steps: it predicts more than one label); returns its best checkpoint directory.
fn train(task: Task, train: PathBuf, dir: &Path) -> PathBuf {
    let o = FinetuneOptions {
        task,
        dev: train.clone(),
        train,
        init: None,
        scratch_config: "tiny".into(),
        out: dir.join("run"),
        max_seq_length: L,
        batch_size: 16,
        grad_accum: 1,
        lr: 2e-3,
        steps: 150,
        warmup_steps: 5,
        weight_decay: 0.0,
        max_grad_norm: 1.0,
        dropout: Some(0.0),
        freeze_encoder: false,
        eval_every: 150,
        patience: 0,
        seed: 3,
        layout: task.defaults().layout,
        rendering: None,
        allow_rendering_mismatch: false,
        pooling: Pooling::Mean,
        labels: None,
        max_train_examples: Some(256),
        max_dev_examples: Some(8),
        progress: false,
        parallel: Default::default(),
        check_every: 100,
        device: pixel::engine::Device::Cpu,
        qa: Default::default(),
    };
    run_finetuning(&o, &AtomicBool::new(false))
        .unwrap()
        .best_dir
}

/// The first `n` blank-line-separated blocks of `path`, plus the first later
/// block with a line whose ID column contains `extra`, written to `out`.
fn slice(path: &Path, n: usize, extra: Option<&str>, out: &Path) -> PathBuf {
    let text = std::fs::read_to_string(path).unwrap();
    let blocks: Vec<&str> = text
        .split("\n\n")
        .filter(|b| !b.trim().is_empty())
        .collect();
    let mut keep: Vec<&str> = blocks[..n].to_vec();
    if let Some(x) = extra {
        let found = blocks[n..]
            .iter()
            .find(|b| {
                b.lines()
                    .any(|l| !l.starts_with('#') && l.split('\t').next().unwrap().contains(x))
            })
            .unwrap();
        keep.push(found);
    }
    std::fs::write(out, keep.join("\n\n") + "\n\n").unwrap();
    out.to_path_buf()
}

/// Runs `pixel evaluate --predictions`; returns the printed summary line and the
/// predictions line.
fn evaluate(best: &Path, data: &Path, pred: &Path) -> (String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_pixel"))
        .args(["evaluate", "--checkpoint"])
        .arg(best)
        .arg("--data")
        .arg(data)
        .arg("--predictions")
        .arg(pred)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    eprintln!("{stdout}");
    let line = |p: &str| {
        stdout
            .lines()
            .find(|l| l.starts_with(p))
            .unwrap()
            .to_string()
    };
    let task = stdout.split(' ').next().unwrap().to_string();
    (line(&format!("{task} ")), line("predictions "))
}

/// The number after `key ` in a printed summary line.
fn value(line: &str, key: &str) -> String {
    let rest = line.split(": ").nth(1).unwrap();
    let at = rest.find(&format!("{key} ")).unwrap() + key.len() + 1;
    rest[at..].split([' ', ')']).next().unwrap().to_string()
}

/// Words of each example the model sees (the rest got placeholders).
fn rendered(task: Task, data: &Path, labels: &[String]) -> Vec<usize> {
    let ds = load_dataset(task, data, labels).unwrap();
    let renderer = task_renderer(L, task.defaults().layout, RenderingStrategy::Continuous).unwrap();
    let (rs, _) = render_examples(&renderer, &ds.examples, false, "data");
    pixel::finetune::eval::rendered_words(&rs)
}

/// Same line count; lines equal except `changed` columns of CoNLL-U word lines.
fn check_conllu_lines(gold: &str, pred: &str, changed: &[usize]) {
    let (g, p): (Vec<&str>, Vec<&str>) = (gold.lines().collect(), pred.lines().collect());
    assert_eq!(g.len(), p.len());
    assert!(pred.ends_with("\n\n"));
    let is_word = |l: &str| l.split('\t').next().unwrap().parse::<usize>().is_ok();
    let (mut mwt, mut empty, mut comments) = (0, 0, 0);
    for (g, p) in g.iter().zip(&p) {
        if !is_word(g) {
            assert_eq!(g, p);
            let id = g.split('\t').next().unwrap();
            mwt += id.contains('-') as usize;
            empty += id.contains('.') as usize;
            comments += g.starts_with('#') as usize;
            continue;
        }
        let (gc, pc): (Vec<&str>, Vec<&str>) = (g.split('\t').collect(), p.split('\t').collect());
        assert_eq!(pc.len(), 10, "{p}");
        for c in 0..10 {
            if !changed.contains(&c) {
                assert_eq!(gc[c], pc[c], "column {c}: {g} / {p}");
            }
        }
    }
    assert!(
        mwt > 0 && empty > 0 && comments > 0,
        "{mwt} {empty} {comments}"
    );
}

fn pct(x: f64) -> String {
    format!("{x:.2}")
}

#[test]
fn pos_predictions_are_conllu_and_score_back() {
    let dir = out_dir("pos");
    let ud = data_dir().join("ud/UD_English-EWT");
    let data = slice(
        &ud.join("en_ewt-ud-dev.conllu"),
        24,
        Some("."),
        &dir.join("gold.conllu"),
    );
    let best = train(Task::Pos, ud.join("en_ewt-ud-train.conllu"), &dir);
    let pred = dir.join("pred.conllu");
    let (summary, file_line) = evaluate(&best, &data, &pred);
    let (gold_text, pred_text) = (
        std::fs::read_to_string(&data).unwrap(),
        std::fs::read_to_string(&pred).unwrap(),
    );
    check_conllu_lines(&gold_text, &pred_text, &[3]);
    let (g, p) = (read_conllu(&data).unwrap(), read_conllu(&pred).unwrap());
    assert_eq!(g.len(), p.len());
    let n = rendered(Task::Pos, &data, &Task::Pos.fixed_labels().unwrap());
    let (mut gs, mut ps, mut ga, mut pa) = (vec![], vec![], vec![], vec![]);
    for ((g, p), &n) in g.iter().zip(&p).zip(&n) {
        gs.extend_from_slice(&g.upos_ids()[..n]);
        ps.extend_from_slice(&p.upos_ids()[..n]);
        ga.extend(g.upos_ids());
        pa.extend(p.upos_ids());
        assert!(p.words[n..].iter().all(|w| w.upos == "X"));
    }
    assert!(ga.len() > gs.len(), "the slice should overflow the strip");
    assert_eq!(
        pct(100.0 * accuracy(&gs, &ps).unwrap()),
        value(&summary, "accuracy")
    );
    assert_eq!(
        pct(100.0 * accuracy(&ga, &pa).unwrap()),
        value(&file_line, "accuracy")
    );
    assert!(file_line.contains(&format!("{} words that did not fit", ga.len() - gs.len())));
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn parse_predictions_are_trees_and_score_back() {
    let dir = out_dir("parse");
    let ud = data_dir().join("ud/UD_English-EWT");
    let data = slice(
        &ud.join("en_ewt-ud-dev.conllu"),
        24,
        Some("."),
        &dir.join("gold.conllu"),
    );
    let best = train(Task::Parse, ud.join("en_ewt-ud-train.conllu"), &dir);
    let pred = dir.join("pred.conllu");
    let (summary, file_line) = evaluate(&best, &data, &pred);
    let gold_text = std::fs::read_to_string(&data).unwrap();
    check_conllu_lines(
        &gold_text,
        &std::fs::read_to_string(&pred).unwrap(),
        &[6, 7],
    );
    let (g, p) = (read_conllu(&data).unwrap(), read_conllu(&pred).unwrap());
    assert_eq!(g.len(), p.len());
    // Every sentence is a tree: one root, no cycle (read_conllu checked the range).
    for s in &p {
        let heads = s.heads();
        assert_eq!(heads.iter().filter(|&&h| h == 0).count(), 1, "{heads:?}");
        for start in 0..heads.len() {
            let (mut x, mut steps) = (start + 1, 0);
            while x != 0 {
                x = heads[x - 1];
                steps += 1;
                assert!(steps <= heads.len(), "cycle in {heads:?}");
            }
        }
    }
    // The CoNLL 2018 way over every word: relation at the predicted head.
    let mut c = AttachmentCounter::new();
    for (g, p) in g.iter().zip(&p) {
        c.add(&g.heads(), &g.deprel_ids(), &p.heads(), &p.deprel_ids())
            .unwrap();
    }
    let s = c.scores();
    assert_eq!(pct(s.uas), value(&file_line, "uas"));
    assert_eq!(pct(s.las), value(&file_line, "las"));
    eprintln!("printed: {summary}\nfile:    {file_line}");
    // Against the printed scores (greedy heads, relation at the gold head):
    // in sentences the repair left alone, the trees are the greedy heads and
    // a word at its gold head has the same relation either way.
    let m = load_finetuned(&best, None).unwrap();
    let ds = load_dataset(Task::Parse, &data, &m.labels).unwrap();
    let renderer = task_renderer(L, m.layout, m.rendering).unwrap();
    let (rs, _) = render_examples(&renderer, &ds.examples, false, "data");
    let greedy = predict(&m.model, Task::Parse, &ds.examples, &rs, 8).unwrap();
    let (trees, repaired) = predict_trees(&m.model, &ds.examples, &rs, 8).unwrap();
    let mut same = 0;
    for ((e, gr), tr) in ds.examples.iter().zip(&greedy).zip(&trees) {
        let (
            Target::Tree {
                heads: gh,
                rels: gl,
            },
            Target::Tree {
                heads: th,
                rels: tl,
            },
            Target::Tree { heads, .. },
        ) = (gr, tr, &e.target)
        else {
            panic!()
        };
        if gh == th {
            same += 1;
            for j in 0..th.len() {
                if th[j] == heads[j] {
                    assert_eq!(gl[j], tl[j]);
                }
            }
        }
    }
    assert_eq!(same + repaired, ds.examples.len());
    assert!(file_line.contains(&format!("{repaired} of {} sentences", ds.examples.len())));
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn ner_predictions_keep_the_lines_and_score_back() {
    let dir = out_dir("ner");
    let pcm = data_dir().join("ner/masakhaner1/pcm");
    let data = slice(&pcm.join("dev.txt"), 40, None, &dir.join("gold.txt"));
    let best = train(Task::Ner, pcm.join("train.txt"), &dir);
    let pred = dir.join("pred.txt");
    let (summary, file_line) = evaluate(&best, &data, &pred);
    let (gt, pt) = (
        std::fs::read_to_string(&data).unwrap(),
        std::fs::read_to_string(&pred).unwrap(),
    );
    let (gl, pl): (Vec<&str>, Vec<&str>) = (gt.lines().collect(), pt.lines().collect());
    assert_eq!(gl.len(), pl.len());
    for (g, p) in gl.iter().zip(&pl) {
        match g.rsplit_once(' ') {
            Some((token, _)) => assert_eq!(p.rsplit_once(' ').unwrap().0, token),
            None => assert_eq!(g, p),
        }
    }
    let (g, p) = (read_ner(&data).unwrap(), read_ner(&pred).unwrap());
    assert_eq!(g.len(), p.len());
    let n = rendered(Task::Ner, &data, &Task::Ner.fixed_labels().unwrap());
    let cut = |s: &[pixel::tasks::ner::NerSentence], all: bool| -> Vec<Vec<String>> {
        s.iter()
            .zip(&n)
            .map(|(s, &n)| s.tags[..if all { s.len() } else { n }].to_vec())
            .collect()
    };
    let f1 = |all: bool| {
        100.0
            * entity_scores(&cut(&g, all), &cut(&p, all))
                .unwrap()
                .micro
                .f1
    };
    assert_eq!(pct(f1(false)), value(&summary, "f1"));
    assert_eq!(pct(f1(true)), value(&file_line, "f1"));
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn classification_predictions_add_a_column_and_score_back() {
    let dir = out_dir("classify");
    let sst = data_dir().join("sst2");
    let text = std::fs::read_to_string(sst.join("dev.tsv")).unwrap();
    let gold: String = text.lines().take(41).map(|l| format!("{l}\n")).collect();
    let data = dir.join("gold.tsv");
    std::fs::write(&data, &gold).unwrap();
    let best = train(Task::Classify, sst.join("train.tsv"), &dir);
    let pred = dir.join("pred.tsv");
    let (summary, file_line) = evaluate(&best, &data, &pred);
    let pt = std::fs::read_to_string(&pred).unwrap();
    let (gl, pl): (Vec<&str>, Vec<&str>) = (gold.lines().collect(), pt.lines().collect());
    assert_eq!(gl.len(), pl.len());
    assert_eq!(pl[0], "sentence\tlabel\tprediction");
    let mut correct = 0;
    for (g, p) in gl[1..].iter().zip(&pl[1..]) {
        let (row, prediction) = p.rsplit_once('\t').unwrap();
        assert_eq!(row, *g);
        assert!(prediction == "0" || prediction == "1", "{p}");
        correct += (g.rsplit_once('\t').unwrap().1.trim() == prediction) as usize;
    }
    let acc = pct(100.0 * correct as f64 / 40.0);
    assert_eq!(acc, value(&summary, "accuracy"));
    assert_eq!(acc, value(&file_line, "accuracy"));
    // An unwritable path is an error naming it, and leaves no file behind.
    let bad = dir.join("no-such-dir/pred.tsv");
    let out = Command::new(env!("CARGO_BIN_EXE_pixel"))
        .args(["evaluate", "--checkpoint"])
        .arg(&best)
        .arg("--data")
        .arg(&data)
        .arg("--predictions")
        .arg(&bad)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains(&bad.display().to_string()), "{err}");
    assert!(!bad.exists() && !dir.join("no-such-dir").exists());
    // So is the data file itself, which stays as it was.
    let out = Command::new(env!("CARGO_BIN_EXE_pixel"))
        .args(["evaluate", "--checkpoint"])
        .arg(&best)
        .arg("--data")
        .arg(&data)
        .arg("--predictions")
        .arg(&data)
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("is the --data file"));
    assert_eq!(std::fs::read_to_string(&data).unwrap(), gold);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn repair_keeps_trees_and_fixes_the_rest() {
    // scores[j][h]: word j (0-based) taking head h (0 = ROOT).
    let run = |scores: &[&[f32]]| repair_tree(scores.len(), |j, h| scores[j][h]);
    // Already a tree: unchanged.
    assert_eq!(
        run(&[&[0., 0., 5., 0.], &[9., 0., 0., 0.], &[0., 0., 5., 0.]]),
        [2, 0, 2]
    );
    // Two roots: the better one stays, the other takes its best word head.
    assert_eq!(
        run(&[&[8., 0., 1., 0.], &[9., 0., 0., 0.], &[0., 0., 5., 0.]]),
        [2, 0, 2]
    );
    // A cycle 1 <-> 2 beside the root 3: the cheaper word moves to the root word.
    assert_eq!(
        run(&[&[0., 0., 5., 4.], &[0., 6., 0., 1.], &[9., 0., 0., 0.]]),
        [3, 1, 0]
    );
    // No root and a self-loop: the best root score becomes the root.
    assert_eq!(run(&[&[1., 9., 2.], &[3., 8., 0.]]), [2, 0]);
    assert_eq!(run(&[&[1., 5.]]), [0]);
    assert!(run(&[]).is_empty());
}
