//! The finetuning heads (SPEC 3.8, 4.2, 5): the unmasked encoder with a task
//! head on top (`model.rs`), one file per head (`token.rs`, `parser.rs`,
//! `pooling.rs`, `qa.rs`).
//!
//! One model type, [`PixelForFinetuning`], carries the encoder parameters
//! (`vit.*`, position table trainable and truncated to L + 1 rows) and the
//! head's parameters under their HuggingFace names. A batch is the rendered
//! strips, their attention mask and the task's labels; the forward pass
//! returns the loss and what evaluation needs (logits or parse scores).

mod model;
mod parser;
mod pooling;
mod qa;
mod token;

pub use model::{finetune_param_shapes, head_problem, is_encoder_param};
pub use parser::word_average_matrix;

use pixel_engine::{Tensor, Var};

use crate::config::PixelConfig;
use crate::params::ParamStore;

/// Label of padding, skipped by the losses (PyTorch's ignore_index): the
/// engine's own, so that heads, batches and `cross_entropy` cannot disagree.
pub use pixel_engine::ops::IGNORE_INDEX;

/// How sequence classification pools the patch states (SPEC 5).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Pooling {
    /// Linear-GELU(-LayerNorm) transform, dropout, masked mean over patches.
    Mean,
    /// Same transform, padding at -1e9, max over patches.
    Max,
    /// tanh(dense(h_CLS)) from `vit.pooler.dense`.
    Cls,
    /// Set-Transformer pooling by multihead attention with this many heads.
    Pma(usize),
}

/// Which head sits on the encoder.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HeadKind {
    /// POS / NER: Linear on dropout of each patch state; `classifier.*`.
    TokenClassification { num_labels: usize },
    /// Biaffine arc and relation scorers over word vectors; ROOT from the
    /// tanh-pooled CLS. `biaffine_arcs.weight`, `biaffine_rels.weight`,
    /// `vit.pooler.dense.*`, and the unused `classifier.*` [num_rels, hidden].
    BiaffineParsing { num_rels: usize },
    /// Pooled sentence (or pair) vector -> `classifier.*`. One label = regression (MSE).
    SequenceClassification { num_labels: usize, pooling: Pooling },
    /// Extractive QA: start/end logits over [L patches, CLS] (CLS last = no
    /// answer); `qa_outputs.*` [2, hidden], and the unused `classifier.*` [2, hidden].
    QuestionAnswering,
}

/// The labels of one batch; every vector is row-major over the batch.
#[derive(Clone, Debug)]
pub enum FinetuneLabels {
    /// (B * L): a word's tag on its first patch, [`IGNORE_INDEX`] elsewhere.
    Tokens(Vec<i64>),
    /// Dependency parsing, SPEC 5.
    Parsing {
        /// (B * (L + 1)): first patch of word j at j, then [`IGNORE_INDEX`] padding.
        /// Word j covers patches `[starts[j], starts[j + 1])`; the list stops at the
        /// first non-positive next start (the end marker is the patch after the
        /// last word, so a sentence of n words has n + 1 entries).
        word_starts: Vec<i64>,
        /// (B * L): head of word j (0 = ROOT, k = word k - 1 ... i.e. the CoNLL-U
        /// HEAD value), [`IGNORE_INDEX`] for padding words and heads beyond L.
        arc_labels: Vec<i64>,
        /// (B * L): index into the relation labels, [`IGNORE_INDEX`] for padding.
        /// A relation counts in the loss only where the arc label is not IGNORE_INDEX.
        /// Both lists empty: prediction (no loss; relations at the argmax head).
        rel_labels: Vec<i64>,
    },
    /// (B): class index (as f32 for regression when num_labels == 1).
    Sequence(Vec<f32>),
    /// QA: (B) start and (B) end patch index of the answer, in 0..=L (L = CLS:
    /// the answer is not in this window).
    Spans { start: Vec<i64>, end: Vec<i64> },
    /// No labels (prediction): the forward returns no loss. Not for parsing,
    /// which always needs `word_starts` (give `Parsing` with empty arc lists).
    None,
}

/// One finetuning batch.
pub struct FinetuneBatch {
    /// (B, C, P, P * L) in [0, 1].
    pub pixel_values: Tensor,
    /// (B * L): 1 for patches to attend (text and the EOS patch), 0 for padding.
    pub attention_mask: Vec<f32>,
    pub labels: FinetuneLabels,
}

/// What a finetuning forward pass returns.
pub struct FinetuneOutput {
    /// Scalar loss; `None` when the batch has no labels.
    pub loss: Option<Var>,
    /// Token classification: (B, L, num_labels). Sequence classification:
    /// (B, num_labels). Parsing: arc scores (B, L, L + 1) (word j x head candidate).
    /// QA: (B, L + 1, 2) start ([..., 0]) and end ([..., 1]) logits, CLS at index L.
    pub logits: Var,
    /// Parsing only: relation scores (B, L, num_rels) taken at the gold head
    /// when labels are given, else at the argmax head (SPEC 5 evaluation).
    pub rel_logits: Option<Var>,
}

/// The encoder plus one task head.
#[derive(Clone)]
pub struct PixelForFinetuning {
    pub config: PixelConfig,
    pub head: HeadKind,
    pub params: ParamStore,
}
