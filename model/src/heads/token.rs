//! Token classification (POS, NER; SPEC 5): Linear(Dropout(H[:, 1:])) per
//! patch, cross-entropy over the patches whose label is not IGNORE_INDEX.

use pixel_engine::{ops, Tape, Var};

use super::model::rows;
use super::{FinetuneOutput, IGNORE_INDEX};
use crate::params::ParamVars;
use crate::ForwardMode;

/// hidden_states (B, 1 + L, hidden); labels (B * L) or None.
pub(crate) fn forward(
    t: &mut Tape,
    params: &ParamVars<'_>,
    hidden_states: &Var,
    labels: Option<&[i64]>,
    num_labels: usize,
    dropout: f32,
    mode: ForwardMode<'_>,
) -> FinetuneOutput {
    let s = hidden_states.shape();
    let (b, l) = (s[0], s[1] - 1);
    let ForwardMode { training, rng } = mode;
    let patches = rows(t, hidden_states, 1, l); // (B, L, hidden)
    let patches = ops::dropout(t, &patches, dropout, training, rng);
    let logits = ops::linear(
        t,
        &patches,
        params.get("classifier.weight"),
        Some(params.get("classifier.bias")),
    ); // (B, L, num_labels)
    let loss = labels.map(|labels| {
        assert_eq!(
            labels.len(),
            b * l,
            "token labels: {} values, need B * L = {}",
            labels.len(),
            b * l
        );
        for &y in labels {
            assert!(
                y == IGNORE_INDEX || (0..num_labels as i64).contains(&y),
                "token label {y} out of range for {num_labels} labels"
            );
        }
        ops::cross_entropy(t, &logits, labels)
    });
    FinetuneOutput {
        loss,
        logits,
        rel_logits: None,
    }
}
