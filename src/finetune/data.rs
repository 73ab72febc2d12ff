//! Finetuning datasets: reading the task's file, rendering each example once,
//! and assembling batches (pixels, attention mask, labels on patches).

use std::path::{Path, PathBuf};

use anyhow::Context;
use indicatif::{ProgressBar, ProgressStyle};
use pixel_engine::{Rng, Tensor};
use pixel_model::heads::{FinetuneBatch, FinetuneLabels, IGNORE_INDEX as IGNORE};
use pixel_render::{Input, Renderer, Rendering, PATCH};
use pixel_tasks::conllu::read_conllu;
use pixel_tasks::glue::read_glue_single_with_labels;
use pixel_tasks::ner::read_ner_with_labels;

use super::text::detokenize;
use super::Task;

/// What a model should predict for one example (label indices).
#[derive(Clone, Debug, PartialEq)]
pub enum Target {
    /// One tag per word (POS, NER).
    Tags(Vec<usize>),
    /// Head (0 = ROOT, else 1-based word index) and relation per word.
    Tree { heads: Vec<usize>, rels: Vec<usize> },
    /// One class for the sentence.
    Class(usize),
    /// Unlabelled input (prediction).
    Unknown,
}

/// One example: what to render and its gold answer.
#[derive(Clone, Debug)]
pub struct Example {
    pub input: Input,
    pub target: Target,
}

impl Example {
    /// Words of a word-list input (empty for sentences).
    pub fn words(&self) -> &[String] {
        match &self.input {
            Input::Words(w) => w,
            _ => &[],
        }
    }
}

/// Whether a classification file holds sentence pairs (`Some(true)`), single
/// sentences (`Some(false)`) or neither (no sentence examples).
pub fn holds_pairs(examples: &[Example]) -> Option<bool> {
    examples.iter().find_map(|e| match e.input {
        Input::Pair(..) => Some(true),
        Input::Text(_) => Some(false),
        Input::Words(_) => None,
    })
}

/// The config.json field saying whether a classifier was trained on
/// sentence pairs.
pub const PAIRS_FIELD: &str = "sentence_pairs";

/// Refuses data whose kind (pairs or single sentences) is not the one the
/// model was trained on (`trained`; `None`: not recorded, accepted).
pub fn check_pairs(trained: Option<bool>, data: Option<bool>, what: &str) -> anyhow::Result<()> {
    let kind = |pairs: bool| {
        if pairs {
            "sentence pairs"
        } else {
            "single sentences"
        }
    };
    if let (Some(t), Some(d)) = (trained, data) {
        anyhow::ensure!(
            t == d,
            "{what} holds {} but the model was trained on {}",
            kind(d),
            kind(t)
        );
    }
    Ok(())
}

/// A task's examples read from one file.
pub struct Dataset {
    pub task: Task,
    pub path: PathBuf,
    pub examples: Vec<Example>,
}

/// Reads `path` for `task`; `labels` is the label list (tags, relations or classes).
pub fn load_dataset(task: Task, path: &Path, labels: &[String]) -> anyhow::Result<Dataset> {
    anyhow::ensure!(
        task != Task::Qa,
        "{}: QA files are read by finetune::qa::load_questions",
        path.display()
    );
    let label_refs: Vec<&str> = labels.iter().map(String::as_str).collect();
    let examples: Vec<Example> = match task {
        Task::Pos | Task::Parse => read_conllu(path)?
            .into_iter()
            .map(|s| {
                let words = s.forms().iter().map(|w| w.to_string()).collect();
                let target = if task == Task::Pos {
                    Target::Tags(s.upos_ids())
                } else {
                    Target::Tree {
                        heads: s.heads(),
                        rels: s.deprel_ids(),
                    }
                };
                Example {
                    input: Input::Words(words),
                    target,
                }
            })
            .collect(),
        Task::Ner => read_ner_with_labels(path, &label_refs)?
            .into_iter()
            .map(|s| Example {
                input: Input::Words(s.tokens),
                target: Target::Tags(s.tag_ids),
            })
            .collect(),
        Task::Classify => read_glue_single_with_labels(path, &label_refs)?
            .into_iter()
            .map(|e| Example {
                input: match &e.sentence_b {
                    None => Input::Text(detokenize(&e.sentence)),
                    Some(b) => Input::Pair(detokenize(&e.sentence), detokenize(b)),
                },
                target: Target::Class(e.label),
            })
            .collect(),
        Task::Qa => unreachable!("checked above"),
    };
    anyhow::ensure!(
        !examples.is_empty(),
        "{}: no examples found for task {}",
        path.display(),
        task.name()
    );
    Ok(Dataset {
        task,
        path: path.to_path_buf(),
        examples,
    })
}

/// An unlabelled example for prediction: raw text split on whitespace for the
/// word-level tasks, the text itself for classification.
pub fn example_from_text(task: Task, text: &str) -> Example {
    let input = match task {
        Task::Classify => Input::Text(text.trim().to_string()),
        _ => Input::Words(text.split_whitespace().map(str::to_string).collect()),
    };
    Example {
        input,
        target: Target::Unknown,
    }
}

/// Counts of what rendering had to drop or could not draw.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RenderStats {
    pub examples: usize,
    /// Examples whose text did not fit the strip.
    pub truncated: usize,
    /// Words left out because the strip was full (word-level tasks).
    pub dropped_words: usize,
    /// Characters no font could draw.
    pub missing_glyphs: usize,
}

impl std::fmt::Display for RenderStats {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} examples, {} truncated, {} words dropped, {} characters without a glyph",
            self.examples, self.truncated, self.dropped_words, self.missing_glyphs
        )
    }
}

/// Renders every example once (in parallel), with a progress bar when `progress`.
pub fn render_examples(
    renderer: &Renderer,
    examples: &[Example],
    progress: bool,
    what: &str,
) -> (Vec<Rendering>, RenderStats) {
    let bar = if progress {
        let bar = ProgressBar::new(examples.len() as u64);
        bar.set_style(
            ProgressStyle::with_template("{msg} [{bar:30}] {pos}/{len}")
                .expect("progress template"),
        );
        bar.set_message(format!("rendering {what}"));
        bar
    } else {
        ProgressBar::hidden()
    };
    let mut out = Vec::with_capacity(examples.len());
    for chunk in examples.chunks(1024) {
        let inputs: Vec<Input> = chunk.iter().map(|e| e.input.clone()).collect();
        out.extend(renderer.render_batch(&inputs));
        bar.inc(chunk.len() as u64);
    }
    bar.finish_and_clear();
    let mut stats = RenderStats {
        examples: out.len(),
        ..Default::default()
    };
    for r in &out {
        stats.truncated += r.truncated as usize;
        stats.dropped_words += r.dropped_words;
        stats.missing_glyphs += r.missing_glyphs;
    }
    (out, stats)
}

/// Patch index of each rendered word, then the EOS patch (word-list renderings).
pub fn word_starts(r: &Rendering) -> &[usize] {
    r.word_starts
        .as_deref()
        .expect("word-level task example was not rendered in word mode")
}

/// Builds one batch from examples and their renderings (same strip length).
/// With `with_labels` false the batch carries no labels (prediction).
pub fn make_batch(
    task: Task,
    examples: &[&Example],
    renderings: &[&Rendering],
    with_labels: bool,
) -> FinetuneBatch {
    assert_eq!(
        examples.len(),
        renderings.len(),
        "make_batch: lengths differ"
    );
    assert!(!examples.is_empty(), "make_batch: empty batch");
    let b = examples.len();
    let l = renderings[0].max_seq_length;
    let per_example = 3 * PATCH * PATCH * l;
    let mut pixels = vec![0f32; b * per_example]; // (B, 3, 16, 16 L)
    let mut attention_mask = Vec::with_capacity(b * l); // (B * L)
    for (r, out) in renderings.iter().zip(pixels.chunks_mut(per_example)) {
        assert_eq!(
            r.max_seq_length, l,
            "make_batch: strips of different lengths"
        );
        r.write_pixel_values(out);
        attention_mask.extend(r.attention_mask());
    }
    let labels = if with_labels {
        batch_labels(task, examples, renderings, l)
    } else if task == Task::Parse {
        // The parser needs the word layout even without gold trees.
        FinetuneLabels::Parsing {
            word_starts: parse_word_starts(renderings, l),
            arc_labels: Vec::new(),
            rel_labels: Vec::new(),
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

fn batch_labels(
    task: Task,
    examples: &[&Example],
    renderings: &[&Rendering],
    l: usize,
) -> FinetuneLabels {
    let b = examples.len();
    match task {
        Task::Pos | Task::Ner => {
            let mut labels = vec![IGNORE; b * l]; // (B * L)
            for (i, (e, r)) in examples.iter().zip(renderings).enumerate() {
                let Target::Tags(tags) = &e.target else {
                    panic!("token task example without tags")
                };
                let starts = word_starts(r);
                // starts = rendered words then EOS: only rendered words get a label.
                for (w, &start) in starts[..starts.len() - 1].iter().enumerate() {
                    labels[i * l + start] = tags[w] as i64;
                }
            }
            FinetuneLabels::Tokens(labels)
        }
        Task::Parse => {
            let starts_out = parse_word_starts(renderings, l);
            let mut arcs = vec![IGNORE; b * l]; // (B * L)
            let mut rels = vec![IGNORE; b * l]; // (B * L)
            for (i, (e, r)) in examples.iter().zip(renderings).enumerate() {
                let Target::Tree { heads, rels: gold } = &e.target else {
                    panic!("parsing example without a tree")
                };
                let starts = word_starts(r);
                for j in 0..starts.len() - 1 {
                    // As the original: heads beyond the strip cannot be scored.
                    if heads[j] <= l {
                        arcs[i * l + j] = heads[j] as i64;
                    }
                    rels[i * l + j] = gold[j] as i64;
                }
            }
            FinetuneLabels::Parsing {
                word_starts: starts_out,
                arc_labels: arcs,
                rel_labels: rels,
            }
        }
        Task::Classify => FinetuneLabels::Sequence(
            examples
                .iter()
                .map(|e| match e.target {
                    Target::Class(c) => c as f32,
                    _ => panic!("classification example without a class"),
                })
                .collect(),
        ),
        Task::Qa => panic!("QA batches are made by finetune::qa::make_qa_batch"),
    }
}

/// (B * (L + 1)): each example's word starts then its EOS patch, padded with IGNORE.
fn parse_word_starts(renderings: &[&Rendering], l: usize) -> Vec<i64> {
    let mut out = vec![IGNORE; renderings.len() * (l + 1)];
    for (i, r) in renderings.iter().enumerate() {
        for (j, &s) in word_starts(r).iter().enumerate() {
            out[i * (l + 1) + j] = s as i64;
        }
    }
    out
}

/// Seeded shuffled passes over `n` examples, `batch` at a time (the last batch
/// of a pass may be short; a new permutation starts each pass).
pub struct BatchOrder {
    order: Vec<usize>,
    next: usize,
    batch: usize,
    rng: Rng,
    pub epoch: usize,
}

impl BatchOrder {
    pub fn new(n: usize, batch: usize, seed: u64) -> BatchOrder {
        assert!(n > 0 && batch > 0, "BatchOrder: empty dataset or batch");
        let mut s = BatchOrder {
            order: (0..n).collect(),
            next: 0,
            batch,
            rng: Rng::new(seed),
            epoch: 0,
        };
        shuffle(&mut s.rng, &mut s.order);
        s
    }

    /// Indices of the next batch.
    pub fn next_batch(&mut self) -> Vec<usize> {
        if self.next >= self.order.len() {
            shuffle(&mut self.rng, &mut self.order);
            self.next = 0;
            self.epoch += 1;
        }
        let end = (self.next + self.batch).min(self.order.len());
        let out = self.order[self.next..end].to_vec();
        self.next = end;
        out
    }
}

/// Fisher-Yates shuffle.
fn shuffle(rng: &mut Rng, v: &mut [usize]) {
    for i in (1..v.len()).rev() {
        v.swap(i, rng.int_inclusive(0, i));
    }
}

/// Reads the label list of a classification file's second column (sorted, unique).
pub fn classification_labels(path: &Path) -> anyhow::Result<Vec<String>> {
    pixel_tasks::files::regular_file_check(path).with_context(|| format!("{}", path.display()))?;
    let text = std::fs::read_to_string(path).with_context(|| format!("{}", path.display()))?;
    let mut labels: Vec<String> = text
        .lines()
        .skip(1)
        .filter(|l| !l.trim().is_empty())
        .filter_map(|l| l.rsplit('\t').next().map(|s| s.trim().to_string()))
        .collect();
    labels.sort();
    labels.dedup();
    anyhow::ensure!(
        labels.len() >= 2,
        "{}: found {} distinct labels in the label column, need at least 2",
        path.display(),
        labels.len()
    );
    Ok(labels)
}
