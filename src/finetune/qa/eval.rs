//! QA predictions as the original post-processes them
//! (`postprocess_qa_predictions`): per window the `n_best` highest start and
//! end logits, pairs with both ends on context patches, end not before start
//! and at most `max_answer_length` patches, scored start + end; the best pair
//! across all windows of a question, mapped back to characters of its context.

use std::collections::BTreeMap;

use pixel_engine::{Rng, Tape};
use pixel_model::heads::PixelForFinetuning;
use pixel_model::ForwardMode;
use pixel_tasks::squad::{squad_scores, SquadQuestion};

use super::{make_qa_batch, QaSettings, QaWindow};
use crate::finetune::eval::EvalReport;
use crate::train_loop::to_device;

/// Start and end logits of every window, (L + 1) each (CLS last).
pub fn window_logits(
    model: &PixelForFinetuning,
    windows: &[QaWindow],
    batch_size: usize,
) -> anyhow::Result<Vec<(Vec<f32>, Vec<f32>)>> {
    let device = model.params.device();
    let mut rng = Rng::new(0); // unused: no dropout at evaluation
    let mut out = Vec::with_capacity(windows.len());
    for chunk in windows.chunks(batch_size.max(1)) {
        let refs: Vec<&QaWindow> = chunk.iter().collect();
        let mut batch = make_qa_batch(&refs, false);
        batch.pixel_values = to_device(batch.pixel_values, device)?;
        let mut tape = Tape::no_grad();
        let params = model.params.vars(&mut tape);
        let mode = ForwardMode {
            training: false,
            rng: &mut rng,
        };
        let logits = model
            .forward(&mut tape, &params, &batch, mode)
            .logits
            .value()
            .to_host();
        let positions = logits.shape()[1]; // (B, L + 1, 2)
        for row in logits.data().chunks(positions * 2) {
            let start = row.iter().step_by(2).copied().collect();
            let end = row.iter().skip(1).step_by(2).copied().collect();
            out.push((start, end));
        }
    }
    Ok(out)
}

/// Indices of the `n` largest values, largest first.
fn top_n(v: &[f32], n: usize) -> Vec<usize> {
    let mut idx: Vec<usize> = (0..v.len()).collect();
    idx.sort_by(|&a, &b| v[b].total_cmp(&v[a]));
    idx.truncate(n);
    idx
}

/// The best answer of one question: (score, first char, end char) over its windows.
pub fn best_span<'a>(
    windows: impl Iterator<Item = (&'a QaWindow, &'a (Vec<f32>, Vec<f32>))>,
    settings: &QaSettings,
) -> Option<(f32, usize, usize)> {
    let mut best: Option<(f32, usize, usize)> = None;
    for (w, (start_logits, end_logits)) in windows {
        let offsets = &w.window.context_offsets;
        let span = |i: usize| offsets.get(i).copied().flatten();
        for &s in &top_n(start_logits, settings.n_best) {
            for &e in &top_n(end_logits, settings.n_best) {
                let (Some(a), Some(b)) = (span(s), span(e)) else {
                    continue; // CLS, question, separator or padding
                };
                // Right-to-left windows are mirrored: the end patch lies left of the start.
                let (lo, hi) = if w.window.rtl { (e, s) } else { (s, e) };
                if hi < lo || hi - lo + 1 > settings.max_answer_length {
                    continue;
                }
                let score = start_logits[s] + end_logits[e];
                if best.is_none_or(|(bs, _, _)| score > bs) {
                    best = Some((score, a.0, b.1.max(a.0)));
                }
            }
        }
    }
    best
}

/// `{question id: answer text}` for every question (an empty answer where no
/// window gave a valid span).
pub fn qa_predictions(
    model: &PixelForFinetuning,
    questions: &[SquadQuestion],
    windows: &[QaWindow],
    settings: &QaSettings,
    batch_size: usize,
) -> anyhow::Result<BTreeMap<String, String>> {
    let logits = window_logits(model, windows, batch_size)?;
    let mut by_question: Vec<Vec<usize>> = vec![Vec::new(); questions.len()];
    for (i, w) in windows.iter().enumerate() {
        by_question[w.question].push(i);
    }
    Ok(questions
        .iter()
        .zip(&by_question)
        .map(|(q, idx)| {
            let best = best_span(idx.iter().map(|&i| (&windows[i], &logits[i])), settings);
            let text = best.map_or(String::new(), |(_, a, b)| {
                q.context.chars().skip(a).take(b - a).collect()
            });
            (q.id.clone(), text)
        })
        .collect())
}

/// The official SQuAD v1.1 scores as a report (metric: F1).
pub fn qa_report(
    questions: &[SquadQuestion],
    predictions: &BTreeMap<String, String>,
) -> EvalReport {
    let s = squad_scores(questions, predictions);
    EvalReport {
        metric: s.f1,
        summary: format!(
            "f1 {:.2} exact_match {:.2} ({} questions{})",
            s.f1,
            s.exact_match,
            s.questions,
            if s.unanswered > 0 {
                format!(", {} without a prediction", s.unanswered)
            } else {
                String::new()
            }
        ),
        table: Vec::new(),
        unscored_words: 0,
    }
}

/// The baseline QA results are compared with: the first words of the context,
/// as many as the mean gold answer of `train` has.
pub fn first_words_baseline(
    train: &[SquadQuestion],
    eval: &[SquadQuestion],
) -> BTreeMap<String, String> {
    let words: usize = train
        .iter()
        .filter_map(|q| q.answers.first())
        .map(|a| a.text.split_whitespace().count())
        .sum();
    let n = (words as f64 / train.len().max(1) as f64).round().max(1.0) as usize;
    eval.iter()
        .map(|q| {
            let first: Vec<&str> = q.context.split_whitespace().take(n).collect();
            (q.id.clone(), first.join(" "))
        })
        .collect()
}
