//! Finetuned checkpoints: the task metadata written into config.json, loading
//! a finetuned model back, and building the model a run starts from.

use std::path::Path;

use anyhow::{bail, Context};
use pixel_engine::Rng;
use pixel_model::checkpoint::{infer_config, load_checkpoint};
use pixel_model::heads::{head_problem, HeadKind, PixelForFinetuning, Pooling};
use pixel_model::PixelConfig;
use pixel_render::{FontConfig, Layout, RenderConfig, Renderer, RenderingStrategy};

use super::run::FinetuneOptions;
use super::{parse_pooling, pooling_name, Task};
use crate::rendering::{checkpoint_rendering, config_rendering, set_config_rendering};

/// Sequence length, labels, layout, rendering and pooling as stored in a finetuned config.
pub(crate) fn task_metadata(
    config: &mut PixelConfig,
    task: Task,
    labels: &[String],
    layout: Layout,
    rendering: RenderingStrategy,
    pooling: Pooling,
) {
    set_config_rendering(config, rendering);
    config.num_labels = Some(labels.len());
    config.id2label = Some(
        labels
            .iter()
            .enumerate()
            .map(|(i, l)| (i.to_string(), l.clone()))
            .collect(),
    );
    config.label2id = Some(
        labels
            .iter()
            .enumerate()
            .map(|(i, l)| (l.clone(), i as i64))
            .collect(),
    );
    let architecture = match task {
        Task::Pos | Task::Ner => "PIXELForTokenClassification",
        Task::Parse => "PIXELForBiaffineParsing",
        Task::Classify => "PIXELForSequenceClassification",
        Task::Qa => "PIXELForQuestionAnswering",
    };
    config.architectures = Some(vec![architecture.into()]);
    let layout_name = match layout {
        Layout::Pango => "pango",
        Layout::Pygame => "pygame",
    };
    let extra = &mut config.extra;
    extra.insert("finetuning_task".into(), task.name().into());
    extra.insert("renderer_layout".into(), layout_name.into());
    extra.insert("pooling_mode".into(), pooling_name(pooling).into());
}

/// The rendering a finetuning run draws with: the `--init` checkpoint's unless
/// `opts.rendering` differs (which needs `opts.allow_rendering_mismatch`); from scratch,
/// `opts.rendering` or the config's.
pub(crate) fn finetune_rendering(
    opts: &FinetuneOptions,
    config: &PixelConfig,
) -> anyhow::Result<RenderingStrategy> {
    match &opts.init {
        Some(init) => {
            let what = format!("--init {}", init.display());
            let stored = config_rendering(config, &what)?;
            checkpoint_rendering(stored, opts.rendering, opts.allow_rendering_mismatch, &what)
        }
        None => match opts.rendering {
            Some(r) => Ok(r),
            None => config_rendering(config, &opts.scratch_config),
        },
    }
}

/// A finetuned checkpoint with what is needed to use it.
pub struct FinetunedModel {
    pub model: PixelForFinetuning,
    pub task: Task,
    pub labels: Vec<String>,
    pub layout: Layout,
    /// The rendering it was finetuned with (config.json's `"rendering"`, absent: continuous).
    pub rendering: RenderingStrategy,
    /// Classifiers: trained on sentence pairs or single sentences (`None`
    /// when the config does not say).
    pub pairs: Option<bool>,
}

impl FinetunedModel {
    /// The rendering to draw its inputs with: its own, or `requested` when allowed to differ.
    pub fn rendering_for(
        &self,
        requested: Option<RenderingStrategy>,
        allow_mismatch: bool,
        what: &str,
    ) -> anyhow::Result<RenderingStrategy> {
        checkpoint_rendering(self.rendering, requested, allow_mismatch, what)
    }
}

/// Loads a finetuned checkpoint. One written by `pixel finetune` names its task,
/// layout and pooling in config.json; for any other (e.g. a HuggingFace PIXEL
/// checkpoint, SPEC 4.2) pass `task` and the labels come from `id2label`.
/// Keys the model does not use are reported on stderr, not fatal.
pub fn load_finetuned(dir: &Path, task: Option<Task>) -> anyhow::Result<FinetunedModel> {
    let ckpt = load_checkpoint(dir).with_context(|| format!("checkpoint {}", dir.display()))?;
    ckpt.check_finite()
        .with_context(|| format!("checkpoint {}", dir.display()))?;
    let config = ckpt
        .config
        .with_context(|| format!("{}: no config.json beside the weights", dir.display()))?;
    crate::check_renderer_patches(&config)?;
    crate::memory::check_inference_fits(
        &config,
        16,
        false,
        &format!("the model in {}", dir.display()),
    )?;
    let get = |key: &str| {
        config
            .extra
            .get(key)
            .and_then(|v| v.as_str())
            .map(str::to_string)
    };
    let stored: Option<Task> = get("finetuning_task")
        .map(|t| t.parse().map_err(anyhow::Error::msg))
        .transpose()?;
    let task = match (stored, task) {
        (Some(s), Some(t)) if s != t => bail!(
            "--task {} but {} was finetuned for {}",
            t.name(),
            dir.display(),
            s.name()
        ),
        (Some(s), _) => s,
        (None, Some(t)) => t,
        (None, None) => bail!(
            "{}: config.json does not say which task the model was finetuned for \
             (not written by pixel finetune): pass --task",
            dir.display()
        ),
    };
    let layout: Layout = match get("renderer_layout") {
        Some(l) => l.parse().map_err(anyhow::Error::msg)?,
        None => task.defaults().layout,
    };
    let rendering = config_rendering(&config, &dir.display().to_string())?;
    let pooling = parse_pooling(&get("pooling_mode").unwrap_or_else(|| "mean".into()))
        .map_err(anyhow::Error::msg)?;
    let labels =
        labels_of_config(&config).with_context(|| format!("{}: config.json", dir.display()))?;
    let head = task.head(labels.len(), pooling);
    let l = config.num_patches();
    let (model, report) =
        PixelForFinetuning::from_state_dict(config, head, l, &ckpt.weights, &mut Rng::new(0))
            .map_err(anyhow::Error::msg)
            .with_context(|| format!("loading {}", dir.display()))?;
    if !report.unexpected.is_empty() {
        eprintln!(
            "{}: {} unused keys in the checkpoint: {:?}",
            dir.display(),
            report.unexpected.len(),
            report.unexpected
        );
    }
    if !report.missing.is_empty() {
        bail!(
            "{}: the checkpoint lacks {} weights of the {} model, e.g. {}",
            dir.display(),
            report.missing.len(),
            task.name(),
            report.missing[0]
        );
    }
    let pairs = model
        .config
        .extra
        .get(super::data::PAIRS_FIELD)
        .and_then(|v| v.as_bool());
    Ok(FinetunedModel {
        model,
        task,
        labels,
        layout,
        rendering,
        pairs,
    })
}

/// The labels of a finetuned config, from `id2label`, checked against
/// `num_labels` and `label2id` when those are present: every id from 0 to n - 1
/// once, at least one label, `label2id` the inverse of `id2label`.
fn labels_of_config(config: &PixelConfig) -> anyhow::Result<Vec<String>> {
    let id2label = config.id2label.as_ref().context("no id2label")?;
    anyhow::ensure!(!id2label.is_empty(), "id2label is empty: no labels");
    if let Some(n) = config.num_labels {
        anyhow::ensure!(
            n == id2label.len(),
            "num_labels is {n} but id2label has {} labels",
            id2label.len()
        );
    }
    let mut labels: Vec<Option<String>> = vec![None; id2label.len()];
    for (k, v) in id2label {
        let slot = k
            .parse::<usize>()
            .ok()
            .and_then(|i| labels.get_mut(i))
            .with_context(|| {
                format!(
                    "id2label key {k:?} is not an id from 0 to {}",
                    id2label.len() - 1
                )
            })?;
        anyhow::ensure!(slot.is_none(), "id2label gives id {k:?} twice");
        *slot = Some(v.clone());
    }
    let labels: Vec<String> = labels.into_iter().flatten().collect();
    for (i, l) in labels.iter().enumerate() {
        anyhow::ensure!(
            !labels[..i].contains(l),
            "id2label names {l:?} twice (ids {} and {i})",
            labels.iter().position(|x| x == l).unwrap_or(i)
        );
    }
    if let Some(label2id) = &config.label2id {
        for (i, l) in labels.iter().enumerate() {
            let id = label2id.get(l);
            anyhow::ensure!(
                id == Some(&(i as i64)),
                "id2label gives {l:?} id {i} but label2id gives it {}",
                id.map_or("no id".to_string(), |id| id.to_string())
            );
        }
        anyhow::ensure!(
            label2id.len() == labels.len(),
            "label2id has {} labels but id2label {}",
            label2id.len(),
            labels.len()
        );
    }
    Ok(labels)
}

/// A renderer for a task at L patches.
pub fn task_renderer(
    max_seq_length: usize,
    layout: Layout,
    rendering: RenderingStrategy,
) -> anyhow::Result<Renderer> {
    Renderer::new(RenderConfig {
        max_seq_length,
        layout,
        rendering,
        fonts: FontConfig::default(),
        ..RenderConfig::default()
    })
    .context("renderer")
}

/// Refuses a finetuning run whose model, at L = --max-seq-length and
/// --batch-size, cannot fit in memory.
pub(crate) fn check_finetuning_fits(
    config: &PixelConfig,
    opts: &FinetuneOptions,
) -> anyhow::Result<()> {
    crate::check_renderer_patches(config)?;
    crate::memory::check_training_fits(config, opts.batch_size, false, "finetuning")
}

/// The model config a run will use, read before any data or weights (the
/// `--init` checkpoint's config.json, else the `--config` preset), at L =
/// --max-seq-length; `None` when the init checkpoint has none (its config is
/// inferred from the weights later, and checked then).
pub(crate) fn planned_config(opts: &FinetuneOptions) -> anyhow::Result<Option<PixelConfig>> {
    let l = opts.max_seq_length;
    let Some(init) = &opts.init else {
        return crate::config_preset(&opts.scratch_config, l).map(Some);
    };
    let dir = if init.is_dir() {
        init.as_path()
    } else {
        init.parent().unwrap_or(Path::new("."))
    };
    let path = dir.join("config.json");
    if !path.is_file() {
        return Ok(None);
    }
    let config =
        PixelConfig::from_file(&path).with_context(|| format!("--init {}", init.display()))?;
    Ok(Some(config.with_num_patches(l)))
}

/// Builds the model: from `init` (encoder weights, position table truncated to
/// L + 1 rows; a new head) or from a preset.
pub(crate) fn build_model(
    opts: &FinetuneOptions,
    head: HeadKind,
    rng: &mut Rng,
) -> anyhow::Result<PixelForFinetuning> {
    let l = opts.max_seq_length;
    let mut model = match &opts.init {
        Some(path) => {
            let ckpt =
                load_checkpoint(path).with_context(|| format!("--init {}", path.display()))?;
            ckpt.check_finite()
                .with_context(|| format!("--init {}", path.display()))?;
            let config = match ckpt.config.clone() {
                Some(c) => c,
                None => infer_config(&ckpt.weights).with_context(|| {
                    format!(
                        "--init {}: no config.json and the weights do not name a PIXEL model",
                        path.display()
                    )
                })?,
            };
            check_finetuning_fits(&config.clone().with_num_patches(l), opts)?;
            let (model, report) =
                PixelForFinetuning::from_state_dict(config, head, l, &ckpt.weights, rng)
                    .map_err(anyhow::Error::msg)
                    .with_context(|| format!("--init {}", path.display()))?;
            let unexpected_decoder = report
                .unexpected
                .iter()
                .filter(|k| k.starts_with("decoder."))
                .count();
            eprintln!(
                "init: {} ({} new head weights; {} decoder weights unused{})",
                path.display(),
                report.missing.len(),
                unexpected_decoder,
                match report.unexpected.len() - unexpected_decoder {
                    0 => String::new(),
                    n => format!(", {n} other unused keys: {:?}", report.unexpected),
                }
            );
            model
        }
        None => {
            let config = crate::config_preset(&opts.scratch_config, l)?;
            if let Some(problem) = head_problem(&config, head) {
                anyhow::bail!("--config {}: {problem}", opts.scratch_config);
            }
            PixelForFinetuning::new(config, head, rng)
        }
    };
    if let Some(p) = opts.dropout {
        model.config.hidden_dropout_prob = p;
        model.config.attention_probs_dropout_prob = p;
    }
    Ok(model)
}
