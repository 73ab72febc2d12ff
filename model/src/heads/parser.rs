//! Biaffine dependency parsing (SPEC 5, `PIXELForBiaffineParsing`).
//!
//! Word j is the mean of its patch states; head candidates are [ROOT = tanh
//! pooler on CLS] + the L word slots. Arc scores are x̃ᵀ W y with x̃ = [word, 1]
//! (bias_x only). Relation scores x̃ᵀ W_r ỹ (both biased) are computed at ONE
//! head per word (the gold head, or the argmax arc head without labels), which
//! is what the original computes over every head and then indexes.

use pixel_engine::{ops, Tape, Tensor, Var};

use super::model::rows;
use super::{FinetuneOutput, IGNORE_INDEX};
use crate::params::ParamVars;
use crate::ForwardMode;

/// The parsing inputs beyond the pixels: word starts always, gold arcs and
/// relations (B * L each) when training or evaluating.
pub(crate) struct ParseLabels<'a> {
    pub word_starts: &'a [i64],
    pub arcs: Option<(&'a [i64], &'a [i64])>,
}

/// The constant (B, L, L) matrix that averages patch states into word states:
/// row j of example b holds 1 / n over word j's n patches `[starts[j], starts[j+1])`
/// (1 at `starts[j]` when the two are equal); rows of absent words are zero.
/// `word_starts` (B * (L + 1)) as in [`super::FinetuneLabels::Parsing`]:
/// IGNORE_INDEX entries are dropped first, and the list ends at the first
/// non-positive next start (as the original's `_merge_subword_tokens`).
pub fn word_average_matrix(word_starts: &[i64], batch: usize, num_patches: usize) -> Tensor {
    let l = num_patches;
    assert_eq!(
        word_starts.len(),
        batch * (l + 1),
        "word_starts: {} values, need B * (L + 1) = {}",
        word_starts.len(),
        batch * (l + 1)
    );
    let mut m = Tensor::zeros(&[batch, l, l]);
    let data = m.data_mut();
    for (b, row) in word_starts.chunks(l + 1).enumerate() {
        let starts: Vec<i64> = row.iter().copied().filter(|&s| s != IGNORE_INDEX).collect();
        for j in 0..starts.len().saturating_sub(1) {
            let (start, end) = (starts[j], starts[j + 1]);
            if end <= 0 {
                break;
            }
            assert!(
                0 <= start && start < l as i64 && start <= end && end <= l as i64,
                "word_starts of example {b}: word {j} spans patches [{start}, {end}), \
                 outside 0..{l} or reversed"
            );
            let (start, end) = (start as usize, (end as usize).max(start as usize + 1));
            let weight = 1.0 / (end - start) as f32;
            let out = &mut data[(b * l + j) * l..(b * l + j + 1) * l];
            out[start..end].iter_mut().for_each(|v| *v = weight);
        }
    }
    m
}

/// hidden_states (B, 1 + L, hidden). Returns arc scores (B, L, L + 1) as
/// `logits` and relation scores (B, L, num_rels) as `rel_logits`.
pub(crate) fn forward(
    t: &mut Tape,
    params: &ParamVars<'_>,
    hidden_states: &Var,
    labels: &ParseLabels<'_>,
    num_rels: usize,
    dropout: f32,
    mode: ForwardMode<'_>,
) -> FinetuneOutput {
    let s = hidden_states.shape();
    let (b, l, d) = (s[0], s[1] - 1, s[2]);
    let ForwardMode { training, rng } = mode;

    // Word states: dropout on patch states, then the per-word mean.
    let patches = rows(t, hidden_states, 1, l);
    let patches = ops::dropout(t, &patches, dropout, training, rng); // (B, L, d)
    let average = Var::constant(word_average_matrix(labels.word_starts, b, l));
    let words = ops::matmul(t, &average, &patches, false, false); // (B, L, d)

    // Head candidates: ROOT (tanh pooler on CLS, no dropout), then the words.
    let cls = rows(t, hidden_states, 0, 1); // (B, 1, d)
    let root = ops::linear(
        t,
        &cls,
        params.get("vit.pooler.dense.weight"),
        Some(params.get("vit.pooler.dense.bias")),
    );
    let root = ops::tanh(t, &root);
    let candidates = ops::concat(t, &[&root, &words], 1); // (B, L + 1, d)

    // Arc scores: [word, 1] W_arc candidate.
    let words_1 = append_one(t, &words); // (B, L, d + 1)
    let w_arc = ops::reshape(t, params.get("biaffine_arcs.weight"), &[d + 1, d]);
    let words_w = ops::matmul(t, &words_1, &w_arc, false, false); // (B, L, d)
    let arc_scores = ops::matmul(t, &words_w, &candidates, false, true); // (B, L, L + 1)

    // One head per word: gold where given, else the highest-scoring candidate.
    let gold = labels
        .arcs
        .map(|(arcs, rels)| check_parse_labels(arcs, rels, b, l, num_rels));
    let argmax = argmax_rows(arc_scores.value());
    let heads: Vec<usize> = match gold {
        Some((arcs, _)) => arcs
            .iter()
            .zip(&argmax)
            .map(|(&a, &best)| if a == IGNORE_INDEX { best } else { a as usize })
            .collect(),
        None => argmax,
    };

    // Relation scores at that head: [word, 1] W_r [head, 1] for every r.
    let candidates_1 = append_one(t, &candidates); // (B, L + 1, d + 1)
    let chosen = ops::gather_rows(t, &candidates_1, &heads, l); // (B, L, d + 1)
    let w_rel = ops::permute(t, params.get("biaffine_rels.weight"), &[1, 0, 2]); // (d+1, R, d+1)
    let w_rel = ops::reshape(t, &w_rel, &[d + 1, num_rels * (d + 1)]);
    let words_w = ops::matmul(t, &words_1, &w_rel, false, false); // (B, L, R * (d + 1))
    let words_w = ops::reshape(t, &words_w, &[b * l, num_rels, d + 1]);
    let chosen = ops::reshape(t, &chosen, &[b * l, d + 1, 1]);
    let rel_scores = ops::matmul(t, &words_w, &chosen, false, false); // (B * L, R, 1)
    let rel_scores = ops::reshape(t, &rel_scores, &[b, l, num_rels]);

    // Loss: arc CE over all L + 1 candidates for words with a gold head, plus
    // relation CE at the gold head for the same words (original `_get_loss`).
    let loss = gold.map(|(arcs, rels)| {
        let rel_targets: Vec<i64> = arcs
            .iter()
            .zip(rels)
            .map(|(&a, &r)| if a == IGNORE_INDEX { IGNORE_INDEX } else { r })
            .collect();
        let arc_loss = ops::cross_entropy(t, &arc_scores, arcs);
        let rel_loss = ops::cross_entropy(t, &rel_scores, &rel_targets);
        ops::add(t, &arc_loss, &rel_loss)
    });
    FinetuneOutput {
        loss,
        logits: arc_scores,
        rel_logits: Some(rel_scores),
    }
}

/// x (B, N, C) -> [x, 1] (B, N, C + 1): the constant feature of a biased biaffine side.
fn append_one(t: &mut Tape, x: &Var) -> Var {
    let s = x.shape();
    let ones = Var::constant(Tensor::full(&[s[0], s[1], 1], 1.0));
    ops::concat(t, &[x, &ones], 2)
}

/// Index of the largest value of every row of (..., K) (first one on ties).
fn argmax_rows(x: &Tensor) -> Vec<usize> {
    let k = *x.shape().last().expect("argmax_rows: rank >= 1");
    x.data()
        .chunks(k)
        .map(|row| {
            row.iter()
                .enumerate()
                .fold((0, f32::NEG_INFINITY), |(bi, bv), (i, &v)| {
                    if v > bv {
                        (i, v)
                    } else {
                        (bi, bv)
                    }
                })
                .0
        })
        .collect()
}

fn check_parse_labels<'a>(
    arcs: &'a [i64],
    rels: &'a [i64],
    b: usize,
    l: usize,
    num_rels: usize,
) -> (&'a [i64], &'a [i64]) {
    assert!(
        arcs.len() == b * l && rels.len() == b * l,
        "parsing labels: {} arcs and {} relations, need B * L = {} each",
        arcs.len(),
        rels.len(),
        b * l
    );
    for &a in arcs {
        assert!(
            a == IGNORE_INDEX || (0..=l as i64).contains(&a),
            "arc label {a} out of range 0..={l}"
        );
    }
    for &r in rels {
        assert!(
            r == IGNORE_INDEX || (0..num_rels as i64).contains(&r),
            "relation label {r} out of range for {num_rels} relations"
        );
    }
    (arcs, rels)
}
