//! Plain f64 reference of every head, written from SPEC 5 and the original
//! Python, independent of the tape ops; the model's values must match it.

use pixel_engine::Tensor;
use pixel_model::heads::{FinetuneLabels, HeadKind, Pooling, IGNORE_INDEX};
use pixel_model::{ParamStore, PixelConfig};

use super::{B, L};

// Python, independent of the tape ops; the model's values must match it.

/// y = W x + b with W [out, in] row-major.
fn ref_linear(w: &[f32], b: &[f32], x: &[f64]) -> Vec<f64> {
    let n_in = x.len();
    b.iter()
        .enumerate()
        .map(|(o, &bias)| {
            bias as f64
                + (0..n_in)
                    .map(|i| w[o * n_in + i] as f64 * x[i])
                    .sum::<f64>()
        })
        .collect()
}

fn ref_layer_norm(x: &[f64], w: &[f32], b: &[f32], eps: f64) -> Vec<f64> {
    let n = x.len() as f64;
    let mean = x.iter().sum::<f64>() / n;
    let var = x.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / n;
    x.iter()
        .zip(w.iter().zip(b))
        .map(|(v, (&w, &b))| (v - mean) / (var + eps).sqrt() * w as f64 + b as f64)
        .collect()
}

/// erf by Abramowitz-Stegun 7.1.26 (|error| < 1.5e-7: enough for these tolerances).
fn ref_erf(x: f64) -> f64 {
    let t = 1.0 / (1.0 + 0.3275911 * x.abs());
    let poly = t
        * (0.254829592
            + t * (-0.284496736 + t * (1.421413741 + t * (-1.453152027 + t * 1.061405429))));
    let y = 1.0 - poly * (-x * x).exp();
    if x >= 0.0 {
        y
    } else {
        -y
    }
}

fn ref_gelu(x: f64) -> f64 {
    0.5 * x * (1.0 + ref_erf(x / std::f64::consts::SQRT_2))
}

fn ref_softmax(s: &[f64]) -> Vec<f64> {
    let m = s.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
    let e: Vec<f64> = s.iter().map(|v| (v - m).exp()).collect();
    let z: f64 = e.iter().sum();
    e.iter().map(|v| v / z).collect()
}

/// Mean CE over rows whose label is not IGNORE_INDEX.
fn ref_cross_entropy(rows: &[Vec<f64>], labels: &[i64]) -> f64 {
    let mut total = 0.0;
    let mut count = 0;
    for (row, &y) in rows.iter().zip(labels) {
        if y != IGNORE_INDEX {
            let p = ref_softmax(row);
            total -= p[y as usize].ln();
            count += 1;
        }
    }
    total / count as f64
}

pub struct RefOut {
    pub logits: Vec<f64>,
    pub rel_logits: Option<Vec<f64>>,
    pub loss: f64,
}

pub fn ref_head(
    head: HeadKind,
    cfg: &PixelConfig,
    h: &Tensor,
    p: &ParamStore,
    mask: &[f32],
    labels: &FinetuneLabels,
) -> RefOut {
    let d = cfg.hidden_size;
    let g = |name: &str| p.get(name).data();
    // hidden[b][n]: (1 + L) rows of d values.
    let hidden: Vec<Vec<Vec<f64>>> = (0..B)
        .map(|b| {
            (0..=L)
                .map(|n| {
                    let at = (b * (L + 1) + n) * d;
                    h.data()[at..at + d].iter().map(|&v| v as f64).collect()
                })
                .collect()
        })
        .collect();
    match head {
        HeadKind::QuestionAnswering => {
            // [patches 1..=L, CLS] -> (start, end) per position.
            let rows: Vec<Vec<Vec<f64>>> = (0..B)
                .map(|b| {
                    (1..=L)
                        .chain(std::iter::once(0))
                        .map(|n| {
                            ref_linear(g("qa_outputs.weight"), g("qa_outputs.bias"), &hidden[b][n])
                        })
                        .collect()
                })
                .collect();
            let FinetuneLabels::Spans { start, end } = labels else {
                unreachable!()
            };
            let pick = |k: usize| -> Vec<Vec<f64>> {
                rows.iter()
                    .map(|r| r.iter().map(|se| se[k]).collect())
                    .collect()
            };
            RefOut {
                loss: 0.5 * (ref_cross_entropy(&pick(0), start) + ref_cross_entropy(&pick(1), end)),
                logits: rows.concat().concat(),
                rel_logits: None,
            }
        }
        HeadKind::TokenClassification { .. } => {
            let rows: Vec<Vec<f64>> = (0..B)
                .flat_map(|b| (1..=L).map(move |n| (b, n)))
                .map(|(b, n)| {
                    ref_linear(g("classifier.weight"), g("classifier.bias"), &hidden[b][n])
                })
                .collect();
            let FinetuneLabels::Tokens(y) = labels else {
                unreachable!()
            };
            RefOut {
                loss: ref_cross_entropy(&rows, y),
                logits: rows.concat(),
                rel_logits: None,
            }
        }
        HeadKind::BiaffineParsing { num_rels } => {
            let FinetuneLabels::Parsing {
                word_starts,
                arc_labels,
                rel_labels,
            } = labels
            else {
                unreachable!()
            };
            let (mut arc_rows, mut rel_rows) = (Vec::new(), Vec::new());
            for b in 0..B {
                // Words exactly as `_merge_subword_tokens` builds them.
                let starts: Vec<i64> = word_starts[b * (L + 1)..(b + 1) * (L + 1)]
                    .iter()
                    .copied()
                    .filter(|&s| s != IGNORE_INDEX)
                    .collect();
                let mut words: Vec<Vec<f64>> = Vec::new();
                for j in 0..starts.len() - 1 {
                    if starts[j + 1] <= 0 {
                        break;
                    }
                    let (s, e) = (starts[j] as usize, starts[j + 1] as usize);
                    let span = if s == e { s..s + 1 } else { s..e };
                    let n = span.len() as f64;
                    let mut w = vec![0.0; d];
                    for patch in span {
                        for (k, v) in w.iter_mut().enumerate() {
                            *v += hidden[b][1 + patch][k] / n;
                        }
                    }
                    words.push(w);
                }
                words.resize(L, vec![0.0; d]);
                let root: Vec<f64> = ref_linear(
                    g("vit.pooler.dense.weight"),
                    g("vit.pooler.dense.bias"),
                    &hidden[b][0],
                )
                .into_iter()
                .map(f64::tanh)
                .collect();
                let candidates: Vec<Vec<f64>> =
                    std::iter::once(root).chain(words.clone()).collect();
                let with_one =
                    |v: &Vec<f64>| -> Vec<f64> { v.iter().copied().chain([1.0]).collect() };
                let (wa, wr) = (g("biaffine_arcs.weight"), g("biaffine_rels.weight"));
                for (j, word) in words.iter().enumerate() {
                    let x = with_one(word);
                    let arc: Vec<f64> = candidates
                        .iter()
                        .map(|y| {
                            let mut s = 0.0;
                            for i in 0..=d {
                                for k in 0..d {
                                    s += x[i] * wa[i * d + k] as f64 * y[k];
                                }
                            }
                            s
                        })
                        .collect();
                    // All L + 1 relation score vectors, then the one at the gold head.
                    let all: Vec<Vec<f64>> = candidates
                        .iter()
                        .map(|y| {
                            let y = with_one(y);
                            (0..num_rels)
                                .map(|r| {
                                    let mut s = 0.0;
                                    for i in 0..=d {
                                        for k in 0..=d {
                                            s += x[i]
                                                * wr[(r * (d + 1) + i) * (d + 1) + k] as f64
                                                * y[k];
                                        }
                                    }
                                    s
                                })
                                .collect()
                        })
                        .collect();
                    let gold = arc_labels[b * L + j];
                    let argmax =
                        (0..=L).fold(0, |best, c| if arc[c] > arc[best] { c } else { best });
                    let at = if gold == IGNORE_INDEX {
                        argmax
                    } else {
                        gold as usize
                    };
                    rel_rows.push(all[at].clone());
                    arc_rows.push(arc);
                }
            }
            // `_get_loss`: words with a gold head; relations of those words.
            let rel_targets: Vec<i64> = arc_labels
                .iter()
                .zip(rel_labels)
                .map(|(&a, &r)| if a == IGNORE_INDEX { IGNORE_INDEX } else { r })
                .collect();
            RefOut {
                loss: ref_cross_entropy(&arc_rows, arc_labels)
                    + ref_cross_entropy(&rel_rows, &rel_targets),
                logits: arc_rows.concat(),
                rel_logits: Some(rel_rows.concat()),
            }
        }
        HeadKind::SequenceClassification {
            num_labels,
            pooling,
        } => {
            let mut rows = Vec::new();
            for b in 0..B {
                let m = &mask[b * L..(b + 1) * L];
                let patches: Vec<Vec<f64>> = (1..=L)
                    .map(|n| {
                        let x = if pooling == Pooling::Cls || matches!(pooling, Pooling::Pma(_)) {
                            hidden[b][n].clone()
                        } else {
                            ref_linear(
                                g("pooler.linear.weight"),
                                g("pooler.linear.bias"),
                                &hidden[b][n],
                            )
                            .into_iter()
                            .map(ref_gelu)
                            .collect()
                        };
                        ref_layer_norm(&x, g("pooler.ln.weight"), g("pooler.ln.bias"), 1e-12)
                    })
                    .collect();
                let pooled: Vec<f64> = match pooling {
                    Pooling::Cls => ref_linear(
                        g("vit.pooler.dense.weight"),
                        g("vit.pooler.dense.bias"),
                        &hidden[b][0],
                    )
                    .into_iter()
                    .map(f64::tanh)
                    .collect(),
                    Pooling::Mean => {
                        let count = m.iter().map(|&v| v as f64).sum::<f64>().max(1e-9);
                        (0..d)
                            .map(|k| {
                                (0..L).map(|n| patches[n][k] * m[n] as f64).sum::<f64>() / count
                            })
                            .collect()
                    }
                    Pooling::Max => (0..d)
                        .map(|k| {
                            (0..L)
                                .map(|n| if m[n] == 0.0 { -1e9 } else { patches[n][k] })
                                .fold(f64::NEG_INFINITY, f64::max)
                        })
                        .collect(),
                    Pooling::Pma(heads) => {
                        let pre = "pooler.pooling.pooler.mab";
                        let fc = |name: &str, x: &[f64]| {
                            ref_linear(
                                g(&format!("{pre}.{name}.weight")),
                                g(&format!("{pre}.{name}.bias")),
                                x,
                            )
                        };
                        let seed: Vec<f64> = g("pooler.pooling.pooler.S")
                            .iter()
                            .map(|&v| v as f64)
                            .collect();
                        let q = fc("fc_q", &seed);
                        let keys: Vec<Vec<f64>> = (0..L)
                            .map(|n| {
                                fc("fc_k", &patches[n])
                                    .into_iter()
                                    .map(|v| v * m[n] as f64)
                                    .collect()
                            })
                            .collect();
                        let values: Vec<Vec<f64>> =
                            (0..L).map(|n| fc("fc_v", &patches[n])).collect();
                        let dh = d / heads;
                        let mut o = q.clone();
                        for hd in 0..heads {
                            let dims = hd * dh..(hd + 1) * dh;
                            let scores: Vec<f64> = keys
                                .iter()
                                .map(|k| {
                                    dims.clone().map(|i| q[i] * k[i]).sum::<f64>()
                                        / (d as f64).sqrt()
                                })
                                .collect();
                            let a = ref_softmax(&scores);
                            for i in dims {
                                o[i] += (0..L).map(|n| a[n] * values[n][i]).sum::<f64>();
                            }
                        }
                        let f = fc("fc_o", &o);
                        o.iter().zip(f).map(|(o, f)| o + f.max(0.0)).collect()
                    }
                };
                rows.push(ref_linear(
                    g("classifier.weight"),
                    g("classifier.bias"),
                    &pooled,
                ));
            }
            let FinetuneLabels::Sequence(y) = labels else {
                unreachable!()
            };
            let loss = if num_labels == 1 {
                rows.iter()
                    .zip(y)
                    .map(|(r, &y)| (r[0] - y as f64).powi(2))
                    .sum::<f64>()
                    / B as f64
            } else {
                let classes: Vec<i64> = y.iter().map(|&v| v as i64).collect();
                ref_cross_entropy(&rows, &classes)
            };
            RefOut {
                loss,
                logits: rows.concat(),
                rel_logits: None,
            }
        }
    }
}

pub fn assert_close(what: &str, got: &[f32], want: &[f64]) {
    assert_eq!(got.len(), want.len(), "{what}: length");
    for (i, (&g, &w)) in got.iter().zip(want).enumerate() {
        assert!(
            (g as f64 - w).abs() <= 1e-4 * (1.0 + w.abs()),
            "{what}[{i}]: model {g} vs reference {w}"
        );
    }
}
