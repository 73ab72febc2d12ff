//! Evaluation metrics: accuracy (POS, SST-2), entity-level precision / recall /
//! F1 over BIO tags (NER), and UAS / LAS (dependency parsing).
//!
//! Entity extraction follows the CoNLL-eval chunking rules that seqeval uses in
//! its default (non-strict) mode:
//! * a chunk starts at `B-`/`S-`, at `I-`/`E-` after `O`, `E-` or `S-`, and at
//!   any non-`O` tag whose type differs from the previous tag's type;
//! * a chunk ends before `B-`, `S-` or `O` following `B-`/`I-`, after every
//!   `E-`/`S-`, and whenever the type changes;
//! * sentences are joined with an `O` between them, so an entity at the end
//!   of a sentence is closed there.
//!
//! So an `I-X` without a preceding `B-X` starts a new entity, `B-X I-Y` gives
//! two entities, and `B-X B-X` gives two entities. A tag's prefix is its first
//! character and its type is what follows the first `-` after it (`_` if
//! empty). Scores are micro-averaged over all entities of all sentences; a
//! zero denominator gives 0.

use std::collections::{BTreeMap, HashSet};

/// Error from a metric: the gold and predicted sequences do not line up.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MetricError {
    #[error("length mismatch: {what}: {gold} gold vs {pred} predicted")]
    LengthMismatch {
        what: &'static str,
        gold: usize,
        pred: usize,
    },
}

fn check_len(what: &'static str, gold: usize, pred: usize) -> Result<(), MetricError> {
    if gold == pred {
        Ok(())
    } else {
        Err(MetricError::LengthMismatch { what, gold, pred })
    }
}

/// Fraction (0..=1) of positions where `pred` equals `gold`; 0 when empty.
pub fn accuracy<T: PartialEq>(gold: &[T], pred: &[T]) -> Result<f64, MetricError> {
    check_len("accuracy", gold.len(), pred.len())?;
    if gold.is_empty() {
        return Ok(0.0);
    }
    let correct = gold.iter().zip(pred).filter(|(g, p)| g == p).count();
    Ok(correct as f64 / gold.len() as f64)
}

/// Accuracy over sentences of labels (flattened), as seqeval's
/// `accuracy_score` on lists of lists.
pub fn accuracy_nested<T: PartialEq, S: AsRef<[T]>>(
    gold: &[S],
    pred: &[S],
) -> Result<f64, MetricError> {
    check_len("sentences", gold.len(), pred.len())?;
    let mut total = 0usize;
    let mut correct = 0usize;
    for (g, p) in gold.iter().zip(pred) {
        let (g, p) = (g.as_ref(), p.as_ref());
        check_len("sentence tokens", g.len(), p.len())?;
        total += g.len();
        correct += g.iter().zip(p).filter(|(a, b)| a == b).count();
    }
    Ok(if total == 0 {
        0.0
    } else {
        correct as f64 / total as f64
    })
}

/// One entity: its type and the token span `start..end` (end exclusive) in
/// the sentence-joined sequence (sentence `k` begins at the sum of the
/// lengths of the earlier sentences plus `k`, for the joining `O`s).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Entity {
    pub label: String,
    pub start: usize,
    pub end: usize,
}

fn split_tag(tag: &str) -> (char, &str) {
    let mut chars = tag.chars();
    let prefix = chars.next().unwrap_or('O');
    let rest = chars.as_str();
    let ty = match rest.split_once('-') {
        Some((_, t)) => t,
        None => rest,
    };
    (prefix, if ty.is_empty() { "_" } else { ty })
}

fn chunk_ends(prev: char, tag: char, prev_ty: &str, ty: &str) -> bool {
    matches!(prev, 'E' | 'S')
        || (matches!(prev, 'B' | 'I') && matches!(tag, 'B' | 'S' | 'O'))
        || (prev != 'O' && prev != '.' && prev_ty != ty)
}

fn chunk_starts(prev: char, tag: char, prev_ty: &str, ty: &str) -> bool {
    matches!(tag, 'B' | 'S')
        || (matches!(prev, 'E' | 'S' | 'O') && matches!(tag, 'E' | 'I'))
        || (tag != 'O' && tag != '.' && prev_ty != ty)
}

/// Entities of a list of tag sequences (sentences), positions as in [`Entity`].
pub fn extract_entities<S: AsRef<str>, V: AsRef<[S]>>(sentences: &[V]) -> Vec<Entity> {
    let mut out = Vec::new();
    let mut prev = 'O';
    let mut prev_ty = String::new();
    let mut begin = 0usize;
    let mut pos = 0usize;
    let mut step = |tag: &str, pos: usize, out: &mut Vec<Entity>| {
        let (p, ty) = split_tag(tag);
        if chunk_ends(prev, p, &prev_ty, ty) {
            out.push(Entity {
                label: prev_ty.clone(),
                start: begin,
                end: pos,
            });
        }
        if chunk_starts(prev, p, &prev_ty, ty) {
            begin = pos;
        }
        prev = p;
        prev_ty = ty.to_string();
    };
    for sentence in sentences {
        for tag in sentence.as_ref() {
            step(tag.as_ref(), pos, &mut out);
            pos += 1;
        }
        // Sentence separator: closes any open entity.
        step("O", pos, &mut out);
        pos += 1;
    }
    out
}

/// Entities of a single tag sequence.
pub fn sentence_entities<S: AsRef<str>>(tags: &[S]) -> Vec<Entity> {
    extract_entities(&[tags])
}

/// Precision, recall and F1 (each 0..=1) with their counts.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Prf {
    pub precision: f64,
    pub recall: f64,
    pub f1: f64,
    /// Number of gold entities.
    pub support: usize,
    /// Number of predicted entities.
    pub predicted: usize,
    /// Number of predicted entities that match a gold one exactly.
    pub correct: usize,
}

impl Prf {
    fn from_counts(correct: usize, predicted: usize, support: usize) -> Self {
        let div = |a: usize, b: usize| if b == 0 { 0.0 } else { a as f64 / b as f64 };
        let precision = div(correct, predicted);
        let recall = div(correct, support);
        let denom = precision + recall;
        let f1 = if denom == 0.0 {
            0.0
        } else {
            2.0 * precision * recall / denom
        };
        Prf {
            precision,
            recall,
            f1,
            support,
            predicted,
            correct,
        }
    }
}

/// Entity-level scores: micro average over all entities, and per type.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct EntityScores {
    pub micro: Prf,
    pub per_type: BTreeMap<String, Prf>,
}

/// Entity-level precision / recall / F1 of predicted tag sequences against
/// gold ones (one inner sequence per sentence; lengths must match).
pub fn entity_scores<S: AsRef<str>, V: AsRef<[S]>>(
    gold: &[V],
    pred: &[V],
) -> Result<EntityScores, MetricError> {
    check_len("sentences", gold.len(), pred.len())?;
    for (g, p) in gold.iter().zip(pred) {
        check_len("sentence tags", g.as_ref().len(), p.as_ref().len())?;
    }
    let gold_set: HashSet<Entity> = extract_entities(gold).into_iter().collect();
    let pred_set: HashSet<Entity> = extract_entities(pred).into_iter().collect();
    let mut counts: BTreeMap<String, (usize, usize, usize)> = BTreeMap::new();
    for e in &gold_set {
        counts.entry(e.label.clone()).or_default().2 += 1;
    }
    for e in &pred_set {
        let c = counts.entry(e.label.clone()).or_default();
        c.1 += 1;
        if gold_set.contains(e) {
            c.0 += 1;
        }
    }
    let (mut tp, mut np, mut ng) = (0, 0, 0);
    let mut per_type = BTreeMap::new();
    for (label, (c, p, g)) in counts {
        tp += c;
        np += p;
        ng += g;
        per_type.insert(label, Prf::from_counts(c, p, g));
    }
    Ok(EntityScores {
        micro: Prf::from_counts(tp, np, ng),
        per_type,
    })
}

/// Attachment scores in percent (0..=100) over `total` words.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct AttachmentScores {
    /// Percent of words whose predicted head is the gold head.
    pub uas: f64,
    /// Percent of words whose predicted head and relation are both gold.
    pub las: f64,
    pub total: usize,
}

/// Accumulates UAS / LAS counts over batches or sentences.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct AttachmentCounter {
    pub total: usize,
    pub head_correct: usize,
    pub both_correct: usize,
}

impl AttachmentCounter {
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds words given as parallel gold/predicted head and relation slices.
    pub fn add<H: PartialEq, R: PartialEq>(
        &mut self,
        gold_heads: &[H],
        gold_rels: &[R],
        pred_heads: &[H],
        pred_rels: &[R],
    ) -> Result<(), MetricError> {
        let n = gold_heads.len();
        check_len("gold heads vs gold relations", n, gold_rels.len())?;
        check_len("heads", n, pred_heads.len())?;
        check_len("relations", n, pred_rels.len())?;
        for i in 0..n {
            self.total += 1;
            if gold_heads[i] == pred_heads[i] {
                self.head_correct += 1;
                if gold_rels[i] == pred_rels[i] {
                    self.both_correct += 1;
                }
            }
        }
        Ok(())
    }

    /// UAS and LAS in percent; 0 when no word was added.
    pub fn scores(&self) -> AttachmentScores {
        let pct = |c: usize| {
            if self.total == 0 {
                0.0
            } else {
                100.0 * c as f64 / self.total as f64
            }
        };
        AttachmentScores {
            uas: pct(self.head_correct),
            las: pct(self.both_correct),
            total: self.total,
        }
    }
}

/// UAS and LAS in percent over parallel gold/predicted slices of words.
pub fn attachment_scores<H: PartialEq, R: PartialEq>(
    gold_heads: &[H],
    gold_rels: &[R],
    pred_heads: &[H],
    pred_rels: &[R],
) -> Result<AttachmentScores, MetricError> {
    let mut c = AttachmentCounter::new();
    c.add(gold_heads, gold_rels, pred_heads, pred_rels)?;
    Ok(c.scores())
}
