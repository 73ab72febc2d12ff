//! Extractive question answering (SPEC 5, `PIXELForQuestionAnswering`): the
//! sequence [H[:, 1:] (L patches), H[:, 0] (CLS)], CLS **last** so that index L
//! is "no answer"; Linear(hidden -> 2) (`qa_outputs`, no dropout) gives the
//! start and end logits; the loss is the mean of the start and end
//! cross-entropies.

use pixel_engine::{ops, Tape, Var};

use super::model::rows;
use super::FinetuneOutput;
use crate::params::ParamVars;

/// hidden_states (B, 1 + L, hidden); `spans` the (start, end) patch index per
/// example, each in 0..=L (L = CLS, no answer in this window), or None.
/// Returns logits (B, L + 1, 2): [..., 0] start, [..., 1] end.
pub(crate) fn forward(
    t: &mut Tape,
    params: &ParamVars<'_>,
    hidden_states: &Var,
    spans: Option<(&[i64], &[i64])>,
) -> FinetuneOutput {
    let s = hidden_states.shape();
    let (b, l) = (s[0], s[1] - 1);
    let patches = rows(t, hidden_states, 1, l); // (B, L, hidden)
    let cls = rows(t, hidden_states, 0, 1); // (B, 1, hidden)
    let sequence = ops::concat(t, &[&patches, &cls], 1); // (B, L + 1, hidden)
    let logits = ops::linear(
        t,
        &sequence,
        params.get("qa_outputs.weight"),
        Some(params.get("qa_outputs.bias")),
    ); // (B, L + 1, 2)
    let loss = spans.map(|(start, end)| {
        for (what, v) in [("start", start), ("end", end)] {
            assert_eq!(
                v.len(),
                b,
                "QA {what} positions: {} values, need B = {b}",
                v.len()
            );
            for &p in v {
                assert!(
                    (0..=l as i64).contains(&p),
                    "QA {what} position {p} outside 0..={l} (L = CLS)"
                );
            }
        }
        let start_logits = ops::narrow(t, &logits, 2, 0, 1);
        let start_logits = ops::reshape(t, &start_logits, &[b, l + 1]);
        let end_logits = ops::narrow(t, &logits, 2, 1, 1);
        let end_logits = ops::reshape(t, &end_logits, &[b, l + 1]);
        let start_loss = ops::cross_entropy(t, &start_logits, start);
        let end_loss = ops::cross_entropy(t, &end_logits, end);
        let sum = ops::add(t, &start_loss, &end_loss);
        ops::scale(t, &sum, 0.5)
    });
    FinetuneOutput {
        loss,
        logits,
        rel_logits: None,
    }
}
