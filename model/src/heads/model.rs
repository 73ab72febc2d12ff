//! [`PixelForFinetuning`]: parameter names and shapes per head (SPEC 4.2),
//! initialisation, loading from a pretraining or finetuned state dict, and the
//! forward pass (encoder, then the head).

use std::collections::BTreeMap;

use pixel_engine::{ops, Rng, Tape, Tensor, Var};

use super::{parser, pooling, qa, token};
use super::{FinetuneBatch, FinetuneLabels, FinetuneOutput, HeadKind, PixelForFinetuning, Pooling};
use crate::config::PixelConfig;
use crate::embeddings::POSITION_TABLE;
use crate::encoder::{encode, Patches};
use crate::params::{LoadReport, ParamStore, ParamVars};
use crate::pretraining::{init_param, pretraining_param_shapes};
use crate::ForwardMode;

/// Names and shapes of every parameter of the encoder plus `head`, with the
/// trainable flag (all trainable, the position table included; SPEC 3.8, 4.2).
pub fn finetune_param_shapes(cfg: &PixelConfig, head: HeadKind) -> Vec<(String, Vec<usize>, bool)> {
    let d = cfg.hidden_size;
    let mut v: Vec<(String, Vec<usize>, bool)> = pretraining_param_shapes(cfg)
        .into_iter()
        .filter(|(name, _, _)| name.starts_with("vit."))
        .map(|(name, shape, _)| (name, shape, true))
        .collect();
    let linear = |v: &mut Vec<(String, Vec<usize>, bool)>, prefix: &str, out: usize, inp: usize| {
        v.push((format!("{prefix}.weight"), vec![out, inp], true));
        v.push((format!("{prefix}.bias"), vec![out], true));
    };
    match head {
        HeadKind::TokenClassification { num_labels } => {
            linear(&mut v, "classifier", num_labels, d);
        }
        HeadKind::BiaffineParsing { num_rels } => {
            linear(&mut v, "vit.pooler.dense", d, d);
            v.push(("biaffine_arcs.weight".into(), vec![1, d + 1, d], true));
            v.push((
                "biaffine_rels.weight".into(),
                vec![num_rels, d + 1, d + 1],
                true,
            ));
            // Left over from ViTForImageClassification's constructor; never used.
            linear(&mut v, "classifier", num_rels, d);
        }
        HeadKind::SequenceClassification {
            num_labels,
            pooling,
        } => {
            if pooling == Pooling::Cls {
                linear(&mut v, "vit.pooler.dense", d, d);
            }
            // The pooling head always creates its transform, used or not.
            linear(&mut v, "pooler.linear", d, d);
            v.push(("pooler.ln.weight".into(), vec![d], true));
            v.push(("pooler.ln.bias".into(), vec![d], true));
            if let Pooling::Pma(_) = pooling {
                v.push(("pooler.pooling.pooler.S".into(), vec![1, 1, d], true));
                for fc in ["fc_q", "fc_k", "fc_v", "fc_o"] {
                    linear(&mut v, &format!("pooler.pooling.pooler.mab.{fc}"), d, d);
                }
            }
            linear(&mut v, "classifier", num_labels, d);
        }
        HeadKind::QuestionAnswering => {
            linear(&mut v, "qa_outputs", 2, d);
            // Left over from ViTForImageClassification's constructor (num_labels 2); never used.
            linear(&mut v, "classifier", 2, d);
        }
    }
    v
}

/// Number of outputs of the head (stored as the config's num_labels).
fn head_num_labels(head: HeadKind) -> usize {
    match head {
        HeadKind::TokenClassification { num_labels } => num_labels,
        HeadKind::BiaffineParsing { num_rels } => num_rels,
        HeadKind::SequenceClassification { num_labels, .. } => num_labels,
        HeadKind::QuestionAnswering => 2,
    }
}

/// Initial value of one head parameter: Linear weights Normal(0, initializer_range)
/// and biases 0 (HF `_init_weights`), LayerNorm 1/0, biaffine weights 0 (the
/// Biaffine module's own init), PMA seed Xavier-uniform (Set Transformer).
fn init_head_param(cfg: &PixelConfig, name: &str, shape: &[usize], rng: &mut Rng) -> Tensor {
    let mut t = Tensor::zeros(shape);
    if name.starts_with("biaffine_") || name.ends_with(".bias") {
        // zeros
    } else if name == "pooler.ln.weight" {
        t.data_mut().iter_mut().for_each(|v| *v = 1.0);
    } else if name == "pooler.pooling.pooler.S" {
        // Xavier-uniform on [1, 1, d]: fan_in = fan_out = d.
        let d = shape[2];
        let bound = (6.0 / (2 * d) as f64).sqrt() as f32;
        rng.fill_uniform(t.data_mut(), -bound, bound);
    } else {
        rng.fill_normal(t.data_mut(), 0.0, cfg.initializer_range as f32);
    }
    t
}

/// Whether a parameter belongs to the encoder (`vit.*` except the pooler, which
/// belongs to the head; initialised like pretraining).
pub fn is_encoder_param(name: &str) -> bool {
    name.starts_with("vit.") && !name.starts_with("vit.pooler.")
}

impl PixelForFinetuning {
    /// A freshly initialised model for `config`'s L (encoder as pretraining
    /// initialises it, sin-cos position table; head as described at
    /// [`finetune_param_shapes`]). Sets `config.num_labels`.
    pub fn new(mut config: PixelConfig, head: HeadKind, rng: &mut Rng) -> PixelForFinetuning {
        check_head(&config, head);
        config.num_labels = Some(head_num_labels(head));
        let mut params = ParamStore::new();
        for (name, shape, trainable) in finetune_param_shapes(&config, head) {
            let value = if is_encoder_param(&name) {
                init_param(&config, &name, &shape, rng)
            } else {
                init_head_param(&config, &name, &shape, rng)
            };
            params.insert(&name, value, trainable);
        }
        PixelForFinetuning {
            config,
            head,
            params,
        }
    }

    /// The model at L = `num_patches` (image_size [P, P * L]) with every key of
    /// `state_dict` it has loaded. The checkpoint's position table is truncated
    /// to its first L + 1 rows (SPEC 3.8); fewer rows is an error naming both
    /// sizes, as is any other shape mismatch (naming the key). Keys the model
    /// has and the state dict lacks keep their fresh initialisation and are
    /// listed in `missing` (e.g. the head, from a pretraining checkpoint); keys
    /// the model does not use (e.g. `decoder.*`) are listed in `unexpected`.
    pub fn from_state_dict(
        config: PixelConfig,
        head: HeadKind,
        num_patches: usize,
        state_dict: &BTreeMap<String, Tensor>,
        rng: &mut Rng,
    ) -> Result<(PixelForFinetuning, LoadReport), String> {
        if num_patches == 0 {
            return Err("finetuning model: num_patches must be at least 1".into());
        }
        if let Some(problem) = head_problem(&config, head) {
            return Err(problem);
        }
        let config = config.with_num_patches(num_patches);
        let mut model = PixelForFinetuning::new(config, head, rng);
        let mut sd = state_dict.clone();
        if let Some(table) = sd.get(POSITION_TABLE) {
            let truncated = truncate_position_table(table, num_patches)?;
            sd.insert(POSITION_TABLE.to_string(), truncated);
        }
        let report = model.params.load_state_dict(&sd)?;
        Ok((model, report))
    }

    /// Every parameter under its HuggingFace name (for the checkpoint writer).
    pub fn state_dict(&self) -> BTreeMap<String, Tensor> {
        self.params.state_dict()
    }

    /// L: the number of patches the model is built for.
    pub fn num_patches(&self) -> usize {
        self.config.num_patches()
    }

    /// Encoder on every patch (embedding dropout when training), then the head.
    pub fn forward(
        &self,
        t: &mut Tape,
        params: &ParamVars<'_>,
        batch: &FinetuneBatch,
        mut mode: ForwardMode<'_>,
    ) -> FinetuneOutput {
        let l = self.num_patches();
        let s = batch.pixel_values.shape();
        assert!(
            s.len() == 4 && s[3] == self.config.patch_size * l,
            "finetuning forward: pixel_values {s:?} do not match the model's L = {l} (width {})",
            self.config.patch_size * l
        );
        let pixels = Var::constant(batch.pixel_values.clone());
        let all = Patches::All {
            embedding_dropout: self.config.hidden_dropout_prob as f32,
        };
        let hidden_states = encode(
            t,
            params,
            &self.config,
            &pixels,
            &batch.attention_mask,
            all,
            mode.reborrow(),
        ); // (B, 1 + L, hidden)
        self.forward_head(
            t,
            params,
            &hidden_states,
            &batch.attention_mask,
            &batch.labels,
            mode,
        )
    }

    /// The head alone on encoder output `hidden_states` (B, 1 + L, hidden);
    /// `attention_mask` (B * L). Public so that tests can check its gradients.
    pub fn forward_head(
        &self,
        t: &mut Tape,
        params: &ParamVars<'_>,
        hidden_states: &Var,
        attention_mask: &[f32],
        labels: &FinetuneLabels,
        mode: ForwardMode<'_>,
    ) -> FinetuneOutput {
        let (b, l) = self.check_hidden(hidden_states, attention_mask);
        let dropout = self.config.hidden_dropout_prob as f32;
        t.set_scope("head");
        match self.head {
            HeadKind::TokenClassification { num_labels } => {
                let labels = match labels {
                    FinetuneLabels::Tokens(v) => Some(v.as_slice()),
                    FinetuneLabels::None => None,
                    other => panic!("token classification got {} labels", label_kind(other)),
                };
                token::forward(t, params, hidden_states, labels, num_labels, dropout, mode)
            }
            HeadKind::BiaffineParsing { num_rels } => {
                let parse = match labels {
                    FinetuneLabels::Parsing {
                        word_starts,
                        arc_labels,
                        rel_labels,
                    } => parser::ParseLabels {
                        word_starts,
                        // Empty arc and relation lists: prediction, no loss.
                        arcs: (!(arc_labels.is_empty() && rel_labels.is_empty()))
                            .then_some((arc_labels.as_slice(), rel_labels.as_slice())),
                    },
                    other => panic!(
                        "biaffine parsing needs Parsing labels (word_starts at least), got {}",
                        label_kind(other)
                    ),
                };
                parser::forward(t, params, hidden_states, &parse, num_rels, dropout, mode)
            }
            HeadKind::SequenceClassification {
                num_labels,
                pooling,
            } => {
                let labels = match labels {
                    FinetuneLabels::Sequence(v) => Some(v.as_slice()),
                    FinetuneLabels::None => None,
                    other => panic!("sequence classification got {} labels", label_kind(other)),
                };
                let settings = pooling::PoolSettings {
                    pooling,
                    add_layer_norm: pooler_add_layer_norm(&self.config),
                    dropout,
                };
                pooling::forward(
                    t,
                    params,
                    hidden_states,
                    attention_mask,
                    labels,
                    num_labels,
                    settings,
                    mode,
                )
            }
            HeadKind::QuestionAnswering => {
                let spans = match labels {
                    FinetuneLabels::Spans { start, end } => {
                        Some((start.as_slice(), end.as_slice()))
                    }
                    FinetuneLabels::None => None,
                    other => panic!("question answering got {} labels", label_kind(other)),
                };
                qa::forward(t, params, hidden_states, spans)
            }
        }
        .check_shapes(b, l)
    }

    /// Validates the encoder output and mask against the model; returns (B, L).
    fn check_hidden(&self, hidden_states: &Var, attention_mask: &[f32]) -> (usize, usize) {
        let s = hidden_states.shape();
        let (d, l) = (self.config.hidden_size, self.num_patches());
        assert!(
            s.len() == 3 && s[1] == l + 1 && s[2] == d,
            "finetuning head: hidden states must be (B, {}, {d}), got {s:?}",
            l + 1
        );
        assert_eq!(
            attention_mask.len(),
            s[0] * l,
            "finetuning head: attention_mask has {} values, need B * L = {}",
            attention_mask.len(),
            s[0] * l
        );
        (s[0], l)
    }
}

impl FinetuneOutput {
    /// Consistency check of what a head returns (programming errors only).
    fn check_shapes(self, b: usize, l: usize) -> FinetuneOutput {
        assert_eq!(self.logits.shape()[0], b, "head logits batch size");
        if let Some(r) = &self.rel_logits {
            assert_eq!(&r.shape()[..2], &[b, l], "relation logits (B, L, R)");
        }
        self
    }
}

/// `pooler_add_layer_norm` from the config's extra fields; true when absent (SPEC 5).
fn pooler_add_layer_norm(cfg: &PixelConfig) -> bool {
    cfg.extra
        .get("pooler_add_layer_norm")
        .and_then(|v| v.as_bool())
        .unwrap_or(true)
}

/// First L + 1 rows of a [1, R, hidden] position table; an error when R < L + 1.
fn truncate_position_table(table: &Tensor, num_patches: usize) -> Result<Tensor, String> {
    let s = table.shape();
    if s.len() != 3 || s[0] != 1 {
        return Err(format!(
            "checkpoint key {POSITION_TABLE}: expected shape [1, rows, hidden], found {s:?}"
        ));
    }
    let (rows, d) = (s[1], s[2]);
    let need = num_patches + 1;
    if rows < need {
        return Err(format!(
            "checkpoint key {POSITION_TABLE} has {rows} rows (L = {} patches + CLS) but the \
             finetuning length L = {num_patches} needs {need}; longer sequences than the \
             checkpoint's are not supported",
            rows.saturating_sub(1)
        ));
    }
    Ok(Tensor::new(
        &[1, need, d],
        table.data()[..need * d].to_vec(),
    ))
}

/// Why `head` cannot sit on a model of `cfg`, if it cannot: no labels, or
/// PMA pooling whose heads do not divide the hidden size.
pub fn head_problem(cfg: &PixelConfig, head: HeadKind) -> Option<String> {
    if head_num_labels(head) == 0 {
        return Some(format!(
            "finetuning head {head:?}: needs at least one label"
        ));
    }
    if let HeadKind::SequenceClassification {
        pooling: Pooling::Pma(k),
        ..
    } = head
    {
        if k == 0 || !cfg.hidden_size.is_multiple_of(k) {
            return Some(format!(
                "PMA pooling: hidden size {} is not divisible into {k} heads",
                cfg.hidden_size
            ));
        }
    }
    None
}

/// Panics on a head [`head_problem`] refuses (callers with user input check first).
fn check_head(cfg: &PixelConfig, head: HeadKind) {
    if let Some(problem) = head_problem(cfg, head) {
        panic!("{problem}");
    }
}

fn label_kind(labels: &FinetuneLabels) -> &'static str {
    match labels {
        FinetuneLabels::Tokens(_) => "token",
        FinetuneLabels::Parsing { .. } => "parsing",
        FinetuneLabels::Sequence(_) => "sequence",
        FinetuneLabels::Spans { .. } => "span",
        FinetuneLabels::None => "no",
    }
}

/// `x[:, start..start + len]` of (B, N, C) as its own var (B, len, C).
pub(crate) fn rows(t: &mut Tape, x: &Var, start: usize, len: usize) -> Var {
    ops::narrow(t, x, 1, start, len)
}
