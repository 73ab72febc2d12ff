//! Evaluation: predictions from a finetuned model, the task's metric, and the
//! majority baseline every result is compared with.

use std::collections::BTreeMap;

use pixel_engine::{Rng, Tape, Var};
use pixel_model::heads::PixelForFinetuning;
use pixel_model::ForwardMode;
use pixel_render::Rendering;
use pixel_tasks::metrics::{entity_scores, AttachmentCounter};

use crate::train_loop::to_device;

use super::data::{make_batch, word_starts, Example, Target};
use super::Task;

/// Index of the largest value (first one on ties).
pub(crate) fn argmax(v: &[f32]) -> usize {
    let mut best = 0;
    for (i, &x) in v.iter().enumerate() {
        if x > v[best] {
            best = i;
        }
    }
    best
}

/// Predicts every example, `batch_size` at a time, without dropout. For
/// parsing with gold trees the relation is read at the gold head (SPEC 5),
/// otherwise at the predicted head. Word-level predictions cover the rendered
/// words only (words that did not fit the strip get none). Runs where the
/// model's parameters are (batches moved there, outputs read back).
pub fn predict(
    model: &PixelForFinetuning,
    task: Task,
    examples: &[Example],
    renderings: &[Rendering],
    batch_size: usize,
) -> anyhow::Result<Vec<Target>> {
    let device = model.params.device();
    let mut rng = Rng::new(0); // unused: no dropout at evaluation
    let mut out = Vec::with_capacity(examples.len());
    for (ex, rs) in examples
        .chunks(batch_size.max(1))
        .zip(renderings.chunks(batch_size.max(1)))
    {
        let ex: Vec<&Example> = ex.iter().collect();
        let rs: Vec<&Rendering> = rs.iter().collect();
        let gold = ex.iter().all(|e| e.target != Target::Unknown);
        // Only the parser reads labels at evaluation (relations at the gold head).
        let mut batch = make_batch(task, &ex, &rs, gold && task == Task::Parse);
        batch.pixel_values = to_device(batch.pixel_values, device)?;
        let mut tape = Tape::no_grad();
        let param_vars = model.params.vars(&mut tape);
        let mode = ForwardMode {
            training: false,
            rng: &mut rng,
        };
        let output = model.forward(&mut tape, &param_vars, &batch, mode);
        out.extend(decode(
            task,
            &rs,
            &output.logits,
            output.rel_logits.as_ref(),
        ));
    }
    Ok(out)
}

/// Turns one batch of outputs into per-example predictions.
fn decode(task: Task, rs: &[&Rendering], logits: &Var, rel_logits: Option<&Var>) -> Vec<Target> {
    let logits = logits.value().to_host();
    let data = logits.data();
    let shape = logits.shape();
    match task {
        Task::Pos | Task::Ner => {
            let (l, n) = (shape[1], shape[2]); // (B, L, labels)
            rs.iter()
                .enumerate()
                .map(|(b, r)| {
                    let starts = word_starts(r);
                    let tags = starts[..starts.len() - 1]
                        .iter()
                        .map(|&p| argmax(&data[(b * l + p) * n..][..n]))
                        .collect();
                    Target::Tags(tags)
                })
                .collect()
        }
        Task::Parse => {
            let (l, cands) = (shape[1], shape[2]); // (B, L, L + 1)
            let rel = rel_logits
                .expect("parser output without relation scores")
                .value()
                .to_host();
            let nr = rel.shape()[2]; // (B, L, rels)
            rs.iter()
                .enumerate()
                .map(|(b, r)| {
                    let words = word_starts(r).len() - 1;
                    let heads = (0..words)
                        .map(|j| argmax(&data[(b * l + j) * cands..][..cands]))
                        .collect();
                    let rels = (0..words)
                        .map(|j| argmax(&rel.data()[(b * l + j) * nr..][..nr]))
                        .collect();
                    Target::Tree { heads, rels }
                })
                .collect()
        }
        Task::Qa => panic!("QA is decoded by finetune::qa::eval"),
        Task::Classify => {
            let n = shape[1]; // (B, labels)
            (0..rs.len())
                .map(|b| Target::Class(argmax(&data[b * n..][..n])))
                .collect()
        }
    }
}

/// A metric with what a person reads.
#[derive(Clone, Debug)]
pub struct EvalReport {
    /// The task's selection metric in percent (accuracy, entity F1 or LAS).
    pub metric: f64,
    /// One line: all scores.
    pub summary: String,
    /// Per-label rows (POS, NER); empty otherwise.
    pub table: Vec<String>,
    /// Gold words that were not rendered (strip full) and so not scored.
    pub unscored_words: usize,
}

/// Scores predictions against the examples' gold targets. Word-level gold is
/// cut to the predicted (rendered) words, as the original evaluates only
/// labelled patches.
pub fn score(task: Task, labels: &[String], examples: &[Example], preds: &[Target]) -> EvalReport {
    assert_eq!(
        examples.len(),
        preds.len(),
        "score: one prediction per example"
    );
    let mut unscored = 0;
    match task {
        Task::Pos => {
            let (mut correct, mut total) = (0usize, 0usize);
            let mut per_label: BTreeMap<usize, (usize, usize)> = BTreeMap::new();
            for (e, p) in examples.iter().zip(preds) {
                let (Target::Tags(g), Target::Tags(p)) = (&e.target, p) else {
                    panic!("POS scoring needs tags")
                };
                unscored += g.len() - p.len();
                for (gt, pt) in g.iter().zip(p) {
                    let c = per_label.entry(*gt).or_default();
                    c.1 += 1;
                    total += 1;
                    if gt == pt {
                        c.0 += 1;
                        correct += 1;
                    }
                }
            }
            let acc = pct(correct, total);
            let table = per_label
                .iter()
                .map(|(k, (c, n))| format!("{:<8} {:>6.2}  ({c}/{n})", labels[*k], pct(*c, *n)))
                .collect();
            EvalReport {
                metric: acc,
                summary: format!("accuracy {acc:.2} ({correct}/{total} words)"),
                table,
                unscored_words: unscored,
            }
        }
        Task::Ner => {
            let mut gold_tags: Vec<Vec<&str>> = Vec::new();
            let mut pred_tags: Vec<Vec<&str>> = Vec::new();
            for (e, p) in examples.iter().zip(preds) {
                let (Target::Tags(g), Target::Tags(p)) = (&e.target, p) else {
                    panic!("NER scoring needs tags")
                };
                unscored += g.len() - p.len();
                gold_tags.push(g[..p.len()].iter().map(|&i| labels[i].as_str()).collect());
                pred_tags.push(p.iter().map(|&i| labels[i].as_str()).collect());
            }
            let s = entity_scores(&gold_tags, &pred_tags).expect("aligned tag sequences");
            let table = s
                .per_type
                .iter()
                .map(|(ty, m)| {
                    format!(
                        "{ty:<6} P {:>6.2}  R {:>6.2}  F1 {:>6.2}  (gold {}, predicted {})",
                        100.0 * m.precision,
                        100.0 * m.recall,
                        100.0 * m.f1,
                        m.support,
                        m.predicted
                    )
                })
                .collect();
            let m = s.micro;
            EvalReport {
                metric: 100.0 * m.f1,
                summary: format!(
                    "f1 {:.2} precision {:.2} recall {:.2} ({} gold entities, {} predicted)",
                    100.0 * m.f1,
                    100.0 * m.precision,
                    100.0 * m.recall,
                    m.support,
                    m.predicted
                ),
                table,
                unscored_words: unscored,
            }
        }
        Task::Parse => {
            let mut counter = AttachmentCounter::new();
            for (e, p) in examples.iter().zip(preds) {
                let (
                    Target::Tree { heads, rels },
                    Target::Tree {
                        heads: ph,
                        rels: pr,
                    },
                ) = (&e.target, p)
                else {
                    panic!("parse scoring needs trees")
                };
                let n = ph.len();
                unscored += heads.len() - n;
                counter
                    .add(&heads[..n], &rels[..n], ph, pr)
                    .expect("aligned trees");
            }
            let s = counter.scores();
            EvalReport {
                metric: s.las,
                summary: format!("uas {:.2} las {:.2} ({} words)", s.uas, s.las, s.total),
                table: Vec::new(),
                unscored_words: unscored,
            }
        }
        Task::Qa => panic!("QA is scored by finetune::qa::eval::qa_report"),
        Task::Classify => {
            let correct = examples
                .iter()
                .zip(preds)
                .filter(|(e, p)| e.target == **p)
                .count();
            let acc = pct(correct, examples.len());
            EvalReport {
                metric: acc,
                summary: format!("accuracy {acc:.2} ({correct}/{} examples)", examples.len()),
                table: Vec::new(),
                unscored_words: 0,
            }
        }
    }
}

fn pct(c: usize, n: usize) -> f64 {
    if n == 0 {
        0.0
    } else {
        100.0 * c as f64 / n as f64
    }
}

/// Number of words each rendering drew (the scored words of word lists), 0 for renderings
/// without word starts (continuous sentences and pairs).
pub fn rendered_words(renderings: &[Rendering]) -> Vec<usize> {
    renderings
        .iter()
        .map(|r| r.word_starts.as_ref().map_or(0, |s| s.len() - 1))
        .collect()
}

/// The majority baseline on `eval`, from `train` statistics: the most frequent
/// tag for every word (POS, NER: that is all-`O`, F1 0), the most frequent
/// class, and for parsing every word attached at the most frequent signed
/// distance (clamped to the sentence, else ROOT) with the most frequent relation.
/// Word-level predictions cover the first `words[i]` words of example i, the
/// words the model sees, so both are scored on the same words.
pub fn majority_predictions(
    task: Task,
    train: &[Example],
    eval: &[Example],
    words: &[usize],
) -> Vec<Target> {
    assert_eq!(
        eval.len(),
        words.len(),
        "majority_predictions: one word count per example"
    );
    fn most_frequent<I: Iterator<Item = i64>>(items: I) -> i64 {
        let mut counts: BTreeMap<i64, usize> = BTreeMap::new();
        for i in items {
            *counts.entry(i).or_default() += 1;
        }
        counts
            .into_iter()
            .max_by_key(|&(k, c)| (c, std::cmp::Reverse(k)))
            .map(|(k, _)| k)
            .unwrap_or(0)
    }
    match task {
        Task::Pos | Task::Ner => {
            let tag = most_frequent(train.iter().flat_map(|e| match &e.target {
                Target::Tags(t) => t.iter().map(|&x| x as i64).collect(),
                _ => Vec::new(),
            })) as usize;
            words.iter().map(|&n| Target::Tags(vec![tag; n])).collect()
        }
        Task::Parse => {
            let trees = || {
                train.iter().filter_map(|e| match &e.target {
                    Target::Tree { heads, rels } => Some((heads, rels)),
                    _ => None,
                })
            };
            let offset = most_frequent(trees().flat_map(|(h, _)| {
                h.iter()
                    .enumerate()
                    .filter(|(_, &h)| h > 0)
                    .map(|(j, &h)| h as i64 - (j as i64 + 1))
                    .collect::<Vec<_>>()
            }));
            let rel = most_frequent(
                trees().flat_map(|(_, r)| r.iter().map(|&x| x as i64).collect::<Vec<_>>()),
            ) as usize;
            words
                .iter()
                .zip(eval)
                .map(|(&n, e)| {
                    // Clamp to the whole sentence, as a parser could attach there.
                    let len = match &e.target {
                        Target::Tree { heads, .. } => heads.len(),
                        _ => n,
                    };
                    let heads = (0..n)
                        .map(|j| {
                            let h = j as i64 + 1 + offset;
                            if h >= 1 && h <= len as i64 {
                                h as usize
                            } else {
                                0
                            }
                        })
                        .collect();
                    Target::Tree {
                        heads,
                        rels: vec![rel; n],
                    }
                })
                .collect()
        }
        Task::Qa => panic!("QA's baseline is finetune::qa::eval::first_words_baseline"),
        Task::Classify => {
            let class = most_frequent(train.iter().filter_map(|e| match e.target {
                Target::Class(c) => Some(c as i64),
                _ => None,
            })) as usize;
            eval.iter().map(|_| Target::Class(class)).collect()
        }
    }
}
