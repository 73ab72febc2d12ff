//! Extractive question answering (SPEC 5, `run_qa.py`): SQuAD v1.1 files,
//! (question, context) pairs rendered into overflow windows with per-patch
//! character offsets, span labels on patches (CLS = L when the answer is not in
//! the window), batches, and the settings of the original recipe.
//!
//! `eval.rs` predicts and post-processes (n-best, best across windows) and
//! scores with the official SQuAD v1.1 metric; `run.rs` is the training task.

pub mod eval;
pub mod run;

use std::path::Path;

use anyhow::Context;
use pixel_engine::Tensor;
use pixel_model::heads::{FinetuneBatch, FinetuneLabels};
use pixel_render::{Layout, PairWindow, Renderer, RenderingStrategy, PATCH};
use pixel_tasks::squad::{read_squad, SquadQuestion};
use rayon::prelude::*;

use super::task_model::task_renderer;

/// QA settings beyond the common finetuning ones. `None` scales the original's
/// value at L = 400 to the run's L.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct QaSettings {
    /// Overlap of consecutive windows in patches (original: 160 at L = 400).
    pub doc_stride: Option<usize>,
    /// Most patches of the question (original: 128 at L = 400).
    pub question_max_length: Option<usize>,
    /// Start and end candidates per window.
    pub n_best: usize,
    /// Longest answer in patches.
    pub max_answer_length: usize,
}

impl Default for QaSettings {
    fn default() -> Self {
        QaSettings {
            doc_stride: None,
            question_max_length: None,
            n_best: 20,
            max_answer_length: 30,
        }
    }
}

impl QaSettings {
    /// The stride in patches at L (160 at 400, scaled otherwise).
    pub fn doc_stride(&self, l: usize) -> usize {
        self.doc_stride.unwrap_or((160 * l / 400).max(1))
    }

    /// The question's patch limit at L (128 at 400, scaled otherwise).
    pub fn question_max_length(&self, l: usize) -> usize {
        self.question_max_length.unwrap_or((128 * l / 400).max(1))
    }
}

/// One rendered window of one question.
#[derive(Clone, Debug)]
pub struct QaWindow {
    /// Index of the question in its list.
    pub question: usize,
    pub window: PairWindow,
    /// Gold (start, end) patch of the first answer; (L, L) when it is not in the window.
    pub span: (i64, i64),
}

/// Counts of what windowing did, printed with every dataset.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct WindowStats {
    pub questions: usize,
    pub windows: usize,
    /// Windows whose gold answer is elsewhere (label CLS).
    pub answer_outside: usize,
    /// Questions so long that no context fits beside them.
    pub no_context: usize,
    /// Questions cut to the question patch limit.
    pub truncated_questions: usize,
}

impl std::fmt::Display for WindowStats {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} questions in {} windows ({} windows without the answer, {} questions \
             truncated, {} questions leaving no room for the context)",
            self.questions,
            self.windows,
            self.answer_outside,
            self.truncated_questions,
            self.no_context
        )
    }
}

/// Reads a SQuAD v1.1 file, printing how many questions were skipped and why.
pub fn load_questions(path: &Path, max: Option<usize>) -> anyhow::Result<Vec<SquadQuestion>> {
    let file = read_squad(path)?;
    if !file.skipped.is_empty() {
        let mut reasons: std::collections::BTreeMap<&str, Vec<&str>> = Default::default();
        for (id, why) in &file.skipped {
            reasons.entry(why.as_str()).or_default().push(id.as_str());
        }
        for (why, ids) in reasons {
            eprintln!(
                "{}: skipped {} questions ({why}), e.g. {}",
                path.display(),
                ids.len(),
                ids[0]
            );
        }
    }
    let mut questions = file.questions;
    if let Some(n) = max {
        questions.truncate(n);
    }
    anyhow::ensure!(
        !questions.is_empty(),
        "{}: no questions with an answer",
        path.display()
    );
    Ok(questions)
}

/// The pair renderer of QA: L patches, the question cut to its patch limit. Always the
/// continuous rendering: answers are found through its per-patch character offsets.
pub fn qa_renderer(l: usize, layout: Layout, settings: &QaSettings) -> anyhow::Result<Renderer> {
    let mut r = task_renderer(l, layout, RenderingStrategy::Continuous)?;
    r.text_a_max_patches = Some(settings.question_max_length(l));
    Ok(r)
}

/// Renders every question's windows (in parallel) with their gold spans.
pub fn render_windows(
    renderer: &Renderer,
    questions: &[SquadQuestion],
    settings: &QaSettings,
) -> (Vec<QaWindow>, WindowStats) {
    let l = renderer.max_seq_length();
    let stride = settings.doc_stride(l);
    let chunk = questions
        .len()
        .div_ceil(rayon::current_num_threads().max(1))
        .max(8);
    let per_chunk: Vec<Vec<(QaWindow, bool)>> = questions
        .par_chunks(chunk)
        .enumerate()
        .map(|(c, qs)| {
            let mut r = renderer.fork();
            let mut out = Vec::new();
            for (k, q) in qs.iter().enumerate() {
                for window in r.render_pair_windows(&q.question, &q.context, stride) {
                    let truncated_q = q_truncated(&window, l, settings);
                    let span = gold_span(&window, q, l);
                    out.push((
                        QaWindow {
                            question: c * chunk + k,
                            window,
                            span,
                        },
                        truncated_q,
                    ));
                }
            }
            out
        })
        .collect();
    let mut stats = WindowStats {
        questions: questions.len(),
        ..Default::default()
    };
    let mut windows = Vec::new();
    let mut last_q = usize::MAX;
    for (w, truncated_q) in per_chunk.into_iter().flatten() {
        stats.windows += 1;
        stats.answer_outside += (w.span.0 == l as i64) as usize;
        if w.question != last_q {
            stats.no_context += (w.window.context_patches().count() == 0) as usize;
            stats.truncated_questions += truncated_q as usize;
            last_q = w.question;
        }
        windows.push(w);
    }
    (windows, stats)
}

/// Whether the separator sits beyond the question patch limit (the question was cut).
fn q_truncated(w: &PairWindow, l: usize, settings: &QaSettings) -> bool {
    w.rendering.black_patches.first().copied().unwrap_or(0) > settings.question_max_length(l)
}

/// The original's labels: the patch whose span holds the answer's first
/// character and the one holding its last; (L, L) when the window does not
/// hold the whole answer. Uses the first gold answer, as `run_qa.py`. The
/// comparisons are on character spans, not patch order, so they hold mirrored
/// for right-to-left windows (where the start patch lies right of the end patch).
pub fn gold_span(w: &PairWindow, q: &SquadQuestion, l: usize) -> (i64, i64) {
    let cls = (l as i64, l as i64);
    let Some(answer) = q.answers.first() else {
        return cls;
    };
    let start_char = answer.answer_start;
    let end_char = start_char + answer.text.chars().count();
    let patches: Vec<(usize, (usize, usize))> = w
        .context_offsets
        .iter()
        .enumerate()
        .filter_map(|(i, o)| o.map(|o| (i, o)))
        .collect();
    let lo = patches.iter().map(|p| p.1 .0).min();
    let hi = patches.iter().map(|p| p.1 .1).max();
    let (Some(lo), Some(hi)) = (lo, hi) else {
        return cls;
    };
    if !(lo <= start_char && hi >= end_char) {
        return cls;
    }
    // The last patch starting at or before the first character, the first
    // one ending at or after the end (text order).
    let start = patches
        .iter()
        .filter(|(_, o)| o.0 <= start_char)
        .max_by_key(|(_, o)| o.0)
        .map(|p| p.0);
    let end = patches
        .iter()
        .filter(|(_, o)| o.1 >= end_char)
        .min_by_key(|(_, o)| o.1)
        .map(|p| p.0);
    match (start, end) {
        (Some(s), Some(e)) if w.rtl => (s as i64, e.min(s) as i64),
        (Some(s), Some(e)) => (s as i64, e.max(s) as i64),
        _ => cls,
    }
}

/// One batch of windows; with `with_labels` their gold spans.
pub fn make_qa_batch(windows: &[&QaWindow], with_labels: bool) -> FinetuneBatch {
    assert!(!windows.is_empty(), "make_qa_batch: empty batch");
    let b = windows.len();
    let l = windows[0].window.rendering.max_seq_length;
    let per_example = 3 * PATCH * PATCH * l;
    let mut pixels = vec![0f32; b * per_example];
    let mut attention_mask = Vec::with_capacity(b * l);
    for (w, out) in windows.iter().zip(pixels.chunks_mut(per_example)) {
        w.window.rendering.write_pixel_values(out);
        attention_mask.extend(w.window.rendering.attention_mask());
    }
    let labels = if with_labels {
        FinetuneLabels::Spans {
            start: windows.iter().map(|w| w.span.0).collect(),
            end: windows.iter().map(|w| w.span.1).collect(),
        }
    } else {
        FinetuneLabels::None
    };
    FinetuneBatch {
        pixel_values: Tensor::new(&[b, 3, PATCH, PATCH * l], pixels),
        attention_mask,
        labels,
    }
}

/// The QA settings stored in a finetuned config.json.
pub(crate) fn store_settings(
    extra: &mut serde_json::Map<String, serde_json::Value>,
    l: usize,
    s: &QaSettings,
) {
    extra.insert("doc_stride".into(), s.doc_stride(l).into());
    extra.insert(
        "question_max_length".into(),
        s.question_max_length(l).into(),
    );
    extra.insert("n_best_size".into(), s.n_best.into());
    extra.insert("max_answer_length".into(), s.max_answer_length.into());
}

/// The QA settings of a finetuned config.json (defaults where absent).
pub fn stored_settings(extra: &serde_json::Map<String, serde_json::Value>) -> QaSettings {
    let get = |k: &str| extra.get(k).and_then(|v| v.as_u64()).map(|v| v as usize);
    let d = QaSettings::default();
    QaSettings {
        doc_stride: get("doc_stride"),
        question_max_length: get("question_max_length"),
        n_best: get("n_best_size").unwrap_or(d.n_best),
        max_answer_length: get("max_answer_length").unwrap_or(d.max_answer_length),
    }
}

/// An unlabelled question for `pixel predict`.
pub fn question_from_text(context: &str, question: &str) -> anyhow::Result<SquadQuestion> {
    anyhow::ensure!(!context.trim().is_empty(), "--context is empty");
    anyhow::ensure!(!question.trim().is_empty(), "the question is empty");
    Ok(SquadQuestion {
        id: "question".into(),
        question: question.trim().to_string(),
        context: context.to_string(),
        answers: Vec::new(),
    })
}

/// Writes `{question id: answer text}` JSON (what the SQuAD v1.1 script reads).
pub fn write_predictions(
    path: &Path,
    predictions: &std::collections::BTreeMap<String, String>,
) -> anyhow::Result<()> {
    let text = serde_json::to_string_pretty(predictions)? + "\n";
    std::fs::write(path, text).with_context(|| format!("cannot write {}", path.display()))
}
