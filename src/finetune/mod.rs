//! Finetuning: task definitions and their defaults (SPEC 6.2), datasets,
//! batches, the training loop with early stopping, evaluation and prediction,
//! prediction files for the standard scorers (`predictions`, `tree`).

pub mod data;
pub mod eval;
pub mod predictions;
pub mod qa;
pub mod run;
pub(crate) mod shard;
pub mod task_model;
pub mod text;
pub mod tree;

use pixel_model::heads::{HeadKind, Pooling};
use pixel_render::Layout;
use pixel_tasks::conllu::{UD_HEAD_LABELS, UPOS_LABELS};
use pixel_tasks::ner::NER_LABELS;

/// The finetuning tasks the command line knows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Task {
    /// UPOS tagging on CoNLL-U (accuracy).
    Pos,
    /// Named entities on CoNLL-style `token tag` files (entity F1).
    Ner,
    /// Dependency parsing on CoNLL-U (UAS / LAS).
    Parse,
    /// Sentence classification on GLUE TSV (accuracy).
    Classify,
    /// Extractive question answering on SQuAD v1.1 JSON (F1, exact match).
    Qa,
}

impl std::str::FromStr for Task {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "pos" => Ok(Task::Pos),
            "ner" => Ok(Task::Ner),
            "parse" | "parsing" | "ud" => Ok(Task::Parse),
            "classify" | "classification" | "glue" | "sst2" => Ok(Task::Classify),
            "qa" | "squad" | "tydiqa" => Ok(Task::Qa),
            other => Err(format!(
                "unknown task {other:?} (expected pos, ner, parse, classify or qa)"
            )),
        }
    }
}

/// The original recipe's settings for a task (SPEC 6.2).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct TaskDefaults {
    pub max_seq_length: usize,
    pub batch_size: usize,
    pub grad_accum: usize,
    pub lr: f32,
    pub max_steps: u64,
    pub warmup_steps: u64,
    pub layout: Layout,
}

impl Task {
    pub fn name(self) -> &'static str {
        match self {
            Task::Pos => "pos",
            Task::Ner => "ner",
            Task::Parse => "parse",
            Task::Classify => "classify",
            Task::Qa => "qa",
        }
    }

    pub fn defaults(self) -> TaskDefaults {
        let common = TaskDefaults {
            max_seq_length: 256,
            batch_size: 64,
            grad_accum: 1,
            lr: 5e-5,
            max_steps: 15_000,
            warmup_steps: 100,
            layout: Layout::Pango,
        };
        match self {
            Task::Pos => common,
            Task::Ner => TaskDefaults {
                max_seq_length: 196,
                ..common
            },
            Task::Parse => TaskDefaults { lr: 8e-5, ..common },
            // The GLUE recipe renders with the PyGame backend and accumulates 4 batches.
            Task::Classify => TaskDefaults {
                grad_accum: 4,
                lr: 3e-5,
                layout: Layout::Pygame,
                ..common
            },
            Task::Qa => TaskDefaults {
                max_seq_length: 400,
                batch_size: 32,
                lr: 7e-5,
                max_steps: 20_000,
                ..common
            },
        }
    }

    /// Name of the dev metric that picks the best checkpoint.
    pub fn metric_name(self) -> &'static str {
        match self {
            Task::Pos | Task::Classify => "accuracy",
            Task::Ner | Task::Qa => "f1",
            Task::Parse => "las",
        }
    }

    /// The fixed label list of the task; `None` for classification, whose
    /// labels come from the data (or the checkpoint).
    pub fn fixed_labels(self) -> Option<Vec<String>> {
        let list: &[&str] = match self {
            Task::Pos => &UPOS_LABELS,
            Task::Ner => &NER_LABELS,
            Task::Parse => &UD_HEAD_LABELS,
            Task::Classify => return None,
            // HF's default num_labels (the unused classifier of the QA checkpoint).
            Task::Qa => &["LABEL_0", "LABEL_1"],
        };
        Some(list.iter().map(|s| s.to_string()).collect())
    }

    /// The head for `num_labels` labels.
    pub fn head(self, num_labels: usize, pooling: Pooling) -> HeadKind {
        match self {
            Task::Pos | Task::Ner => HeadKind::TokenClassification { num_labels },
            Task::Parse => HeadKind::BiaffineParsing {
                num_rels: num_labels,
            },
            Task::Classify => HeadKind::SequenceClassification {
                num_labels,
                pooling,
            },
            Task::Qa => HeadKind::QuestionAnswering,
        }
    }
}

/// Parses a pooling mode name: mean, max, cls, pma1..pma8.
pub fn parse_pooling(s: &str) -> Result<Pooling, String> {
    let s = s.to_ascii_lowercase();
    match s.as_str() {
        "mean" => Ok(Pooling::Mean),
        "max" => Ok(Pooling::Max),
        "cls" => Ok(Pooling::Cls),
        _ => match s.strip_prefix("pma").map(str::parse::<usize>) {
            Some(Ok(k)) if (1..=8).contains(&k) => Ok(Pooling::Pma(k)),
            _ => Err(format!(
                "unknown pooling {s:?} (expected mean, max, cls or pma1..pma8)"
            )),
        },
    }
}

/// The name `parse_pooling` reads back.
pub fn pooling_name(p: Pooling) -> String {
    match p {
        Pooling::Mean => "mean".into(),
        Pooling::Max => "max".into(),
        Pooling::Cls => "cls".into(),
        Pooling::Pma(k) => format!("pma{k}"),
    }
}
