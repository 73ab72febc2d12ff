//! `pixel.load` and `pixel.Model`: a checkpoint directory (ours or a HuggingFace PIXEL one)
//! as an encoder, a pretraining model (encoder + decoder) or a finetuned task model.

use std::path::{Path, PathBuf};

use pixel::features::{last_hidden_state, load_pretrained};
use pixel::figures::{reconstruction_panels, ReconstructionRow};
use pixel::finetune::task_model::{load_finetuned, FinetunedModel};
use pixel::finetune::Task;
use pixel_engine::{Rng, Tape, Tensor};
use pixel_model::heads::{FinetuneBatch, FinetuneLabels, HeadKind, IGNORE_INDEX};
use pixel_model::{ForwardMode, ParamStore, PatchMasking, PixelConfig, PixelForPreTraining};
use pixel_render::Layout;
use pyo3::prelude::*;
use pyo3::types::PyDict;

use crate::arrays::{model_images, patch_mask, to_numpy};
use crate::errors::{checkpoint_error, os_error, value_error};
use crate::render::PyRenderer;

/// Architectures of checkpoints without a task head.
const BASE_ARCHITECTURES: &[&str] = &[
    "PIXELForPreTraining",
    "PIXELModel",
    "ViTModel",
    "ViTMAEForPreTraining",
];

enum Loaded {
    /// Encoder weights, with the decoder when `has_decoder`.
    Pretraining {
        model: PixelForPreTraining,
        has_decoder: bool,
    },
    Finetuned(FinetunedModel),
}

/// A loaded PIXEL checkpoint (see `pixel.load`).
///
/// `encode(pixel_values, attention_mask)` gives the encoder's last hidden state (every
/// model); `reconstruct(...)` needs a pretraining checkpoint (with the decoder) and
/// `predict(...)` a finetuned one. `pixel_values` are float32 (B, 3, 16, 16 * L) as
/// `Encoding.to_model_input()` makes them (or one image without the batch axis), masks
/// (B, L) of 0/1. Calls release the GIL.
#[pyclass(module = "pixel", name = "Model", frozen)]
pub struct PyModel {
    loaded: Loaded,
    path: PathBuf,
}

/// config.json of a checkpoint directory, or beside a weights file, if there is one.
fn config_beside(path: &Path) -> PyResult<Option<PixelConfig>> {
    let dir = if path.is_dir() {
        path
    } else {
        path.parent().unwrap_or(Path::new("."))
    };
    let file = dir.join("config.json");
    if !file.is_file() {
        return Ok(None);
    }
    PixelConfig::from_file(&file)
        .map(Some)
        .map_err(checkpoint_error)
}

/// Loads a checkpoint: a directory with config.json and model.safetensors,
/// pytorch_model.bin or .npy files, or one weights file. A finetuned checkpoint (written by
/// `pixel finetune`, or a HuggingFace one with `task=` naming its task: pos, ner, parse,
/// classify or qa) gets its head; any other loads as encoder (+ decoder when present).
/// Missing or malformed files raise OSError.
#[pyfunction]
#[pyo3(signature = (path, task = None))]
pub fn load(py: Python<'_>, path: PathBuf, task: Option<&str>) -> PyResult<PyModel> {
    let task: Option<Task> = task.map(str::parse).transpose().map_err(value_error)?;
    if !path.exists() {
        return Err(os_error(format!(
            "{}: no such checkpoint directory or file",
            path.display()
        )));
    }
    let config = config_beside(&path)?;
    let stored_task = config
        .as_ref()
        .is_some_and(|c| c.extra.contains_key("finetuning_task"));
    let head_architecture = config.as_ref().and_then(|c| {
        c.architectures.as_ref().and_then(|a| {
            a.iter()
                .find(|name| !BASE_ARCHITECTURES.contains(&name.as_str()))
                .cloned()
        })
    });
    if let (Some(arch), None, false) = (&head_architecture, task, stored_task) {
        return Err(value_error(format!(
            "{}: config.json names the head {arch} but not the task it was finetuned for; \
             pass task= (pos, ner, parse, classify or qa)",
            path.display()
        )));
    }
    let finetuned = task.is_some() || stored_task || head_architecture.is_some();
    let loaded = py.detach(|| -> PyResult<Loaded> {
        if finetuned {
            let model = load_finetuned(&path, task).map_err(checkpoint_error)?;
            return Ok(Loaded::Finetuned(model));
        }
        let p = load_pretrained(&path).map_err(checkpoint_error)?;
        Ok(Loaded::Pretraining {
            model: p.model,
            has_decoder: p.has_decoder,
        })
    })?;
    Ok(PyModel { loaded, path })
}

impl PyModel {
    fn cfg(&self) -> &PixelConfig {
        match &self.loaded {
            Loaded::Pretraining { model, .. } => &model.config,
            Loaded::Finetuned(f) => &f.model.config,
        }
    }

    fn params(&self) -> &ParamStore {
        match &self.loaded {
            Loaded::Pretraining { model, .. } => &model.params,
            Loaded::Finetuned(f) => &f.model.params,
        }
    }

    fn num_patches(&self) -> usize {
        self.cfg().num_patches()
    }

    /// Images and their attention mask as engine inputs: ((B, C, P, P * L) tensor, (B * L)
    /// mask, B, whether the caller gave a batch axis).
    fn inputs(
        &self,
        pixel_values: &Bound<'_, PyAny>,
        attention_mask: &Bound<'_, PyAny>,
    ) -> PyResult<(Tensor, Vec<f32>, usize, bool)> {
        let cfg = self.cfg();
        let (c, p, l) = (cfg.num_channels, cfg.patch_size, self.num_patches());
        let (data, b, batched) = model_images(pixel_values, c, p, l)?;
        let mask = patch_mask(attention_mask, "attention_mask", b, batched, l)?;
        Ok((Tensor::new(&[b, c, p, p * l], data), mask, b, batched))
    }

    fn model_kind(&self) -> &'static str {
        match &self.loaded {
            Loaded::Pretraining {
                has_decoder: true, ..
            } => "pretraining",
            Loaded::Pretraining { .. } => "encoder",
            Loaded::Finetuned(_) => "finetuned",
        }
    }
}

/// Drops the leading batch axis of `shape` when the caller gave none.
fn out_shape(shape: &[usize], batched: bool) -> Vec<usize> {
    if batched {
        shape.to_vec()
    } else {
        shape[1..].to_vec()
    }
}

#[pymethods]
impl PyModel {
    /// The encoder on every patch, no masking, no dropout: float32 (B, 1 + L, hidden), the CLS
    /// state first (`last_hidden_state` of PIXEL's ViT encoder).
    fn encode<'py>(
        &self,
        py: Python<'py>,
        pixel_values: &Bound<'py, PyAny>,
        attention_mask: &Bound<'py, PyAny>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let (pixels, mask, _, batched) = self.inputs(pixel_values, attention_mask)?;
        let hidden = py.detach(|| last_hidden_state(self.params(), self.cfg(), pixels, &mask));
        let shape = out_shape(hidden.shape(), batched);
        Ok(to_numpy(py, &shape, hidden.into_vec()).into_any())
    }

    /// Masked reconstruction with the decoder (pretraining checkpoints). `patch_mask` (B, L),
    /// 1 = patch hidden from the encoder, every row hiding as many; without it, random masking
    /// at `mask_ratio` (default: the config's) drawn from `seed`. Returns a dict: `loss`
    /// (float, mean over hidden text patches), `logits` float32 (B, L, 16 * 16 * 3) (each
    /// patch in row, column, channel order), `patch_mask` float32 (B, L) and `reconstruction`
    /// float32 (B, 3, 16, 16 * L): the input with the de-normalised prediction pasted into the
    /// hidden text patches.
    #[pyo3(signature = (pixel_values, attention_mask, patch_mask = None, *, mask_ratio = None, seed = 0))]
    fn reconstruct<'py>(
        &self,
        py: Python<'py>,
        pixel_values: &Bound<'py, PyAny>,
        attention_mask: &Bound<'py, PyAny>,
        patch_mask: Option<&Bound<'py, PyAny>>,
        mask_ratio: Option<f64>,
        seed: u64,
    ) -> PyResult<Bound<'py, PyDict>> {
        let model = match &self.loaded {
            Loaded::Pretraining {
                model,
                has_decoder: true,
            } => model,
            _ => {
                return Err(value_error(format!(
                    "reconstruct needs a pretraining checkpoint with the decoder; {} is a {} model",
                    self.path.display(),
                    self.model_kind()
                )))
            }
        };
        let (pixels, mask, b, batched) = self.inputs(pixel_values, attention_mask)?;
        let l = self.num_patches();
        let masking = match patch_mask {
            Some(pm) => {
                let flags = crate::arrays::patch_mask(pm, "patch_mask", b, batched, l)?;
                PatchMasking::explicit(&flags, b, l).map_err(|e| value_error(e.to_string()))?
            }
            None => {
                let ratio = mask_ratio.unwrap_or(model.config.mask_ratio);
                if !(0.0..1.0).contains(&ratio) {
                    return Err(value_error(format!(
                        "mask_ratio must be in [0, 1), got {ratio}"
                    )));
                }
                PatchMasking::random(&mask, b, l, ratio, &mut Rng::new(seed))
            }
        };
        let norm_pix_loss = model.config.norm_pix_loss;
        let (loss, logits, images) = py.detach(|| -> PyResult<_> {
            let (loss, logits) = model.infer(&pixels, &mask, &masking);
            let logits = logits.to_host();
            let per_image = pixels.numel() / b;
            let per_logits = logits.numel() / b;
            let mut images = Vec::with_capacity(pixels.numel()); // (B, 3, 16, 16 L)
            for i in 0..b {
                let row = ReconstructionRow {
                    pixel_values: pixels.data()[i * per_image..][..per_image].to_vec(),
                    mask: masking.mask[i * l..][..l].to_vec(),
                    attention_mask: mask[i * l..][..l].to_vec(),
                    prediction: logits.data()[i * per_logits..][..per_logits].to_vec(),
                    label: String::new(),
                };
                let panels = reconstruction_panels(&row, l, norm_pix_loss)
                    .map_err(|e| value_error(format!("{e:#}")))?;
                images.extend(panels.reconstruction);
            }
            Ok((loss, logits, images))
        })?;
        let out = PyDict::new(py);
        out.set_item("loss", loss)?;
        let logits_shape = out_shape(logits.shape(), batched);
        out.set_item("logits", to_numpy(py, &logits_shape, logits.into_vec()))?;
        let mask_shape = out_shape(&[b, l], batched);
        out.set_item(
            "patch_mask",
            to_numpy(py, &mask_shape, masking.mask.clone()),
        )?;
        let image_shape = out_shape(pixels.shape(), batched);
        out.set_item("reconstruction", to_numpy(py, &image_shape, images))?;
        Ok(out)
    }

    /// The task head of a finetuned checkpoint, no dropout. Returns a dict with `logits`:
    /// token tasks (B, L, labels), classification (B, labels), QA (B, L + 1, 2) (start, end;
    /// index L = CLS = no answer), parsing (B, L, L + 1) arc scores, plus `rel_logits` (B, L,
    /// relations) at the best head. Parsing needs `word_starts`: per example the list
    /// `Encoding.word_starts` gives (word start patches, then the EOS patch).
    #[pyo3(signature = (pixel_values, attention_mask, word_starts = None))]
    fn predict<'py>(
        &self,
        py: Python<'py>,
        pixel_values: &Bound<'py, PyAny>,
        attention_mask: &Bound<'py, PyAny>,
        word_starts: Option<Vec<Vec<i64>>>,
    ) -> PyResult<Bound<'py, PyDict>> {
        let Loaded::Finetuned(finetuned) = &self.loaded else {
            return Err(value_error(format!(
                "predict needs a finetuned checkpoint; {} is a {} model without a task head \
                 (pass task= to pixel.load for a HuggingFace finetuned checkpoint)",
                self.path.display(),
                self.model_kind()
            )));
        };
        let (pixels, mask, b, batched) = self.inputs(pixel_values, attention_mask)?;
        let l = self.num_patches();
        let labels = match (finetuned.model.head, word_starts) {
            (HeadKind::BiaffineParsing { .. }, Some(starts)) => FinetuneLabels::Parsing {
                word_starts: parse_word_starts(&starts, b, l)?,
                arc_labels: Vec::new(),
                rel_labels: Vec::new(),
            },
            (HeadKind::BiaffineParsing { .. }, None) => {
                return Err(value_error(
                    "predict on a parsing model needs word_starts (one list per example, as \
                     Encoding.word_starts gives for a word list)",
                ))
            }
            (_, _) => FinetuneLabels::None,
        };
        let batch = FinetuneBatch {
            pixel_values: pixels,
            attention_mask: mask,
            labels,
        };
        let (logits, rel_logits) = py.detach(|| {
            let mut tape = Tape::no_grad();
            let vars = finetuned.model.params.vars(&mut tape);
            let mut rng = Rng::new(0); // unused: no dropout
            let mode = ForwardMode {
                training: false,
                rng: &mut rng,
            };
            let out = finetuned.model.forward(&mut tape, &vars, &batch, mode);
            let rel = out.rel_logits.map(|r| r.value().to_host());
            (out.logits.value().to_host(), rel)
        });
        let out = PyDict::new(py);
        let shape = out_shape(logits.shape(), batched);
        out.set_item("logits", to_numpy(py, &shape, logits.into_vec()))?;
        if let Some(rel) = rel_logits {
            let shape = out_shape(rel.shape(), batched);
            out.set_item("rel_logits", to_numpy(py, &shape, rel.into_vec()))?;
        }
        Ok(out)
    }

    /// A renderer made for this model: its L and, for finetuned checkpoints, the layout it
    /// was trained with (pretraining checkpoints: "pygame", PIXEL's pretraining renderer).
    fn renderer(&self) -> PyResult<PyRenderer> {
        let layout = match &self.loaded {
            Loaded::Finetuned(f) => f.layout,
            Loaded::Pretraining { .. } => Layout::Pygame,
        };
        let layout = match layout {
            Layout::Pango => "pango",
            Layout::Pygame => "pygame",
        };
        let l = self.num_patches() as i64;
        PyRenderer::build("continuous", l, None, None, layout, 8.0, 120.0)
    }

    /// config.json as a dict (HuggingFace PIXELConfig field names).
    #[getter]
    fn config<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        let json = self.cfg().to_json_string();
        py.import("json")?.call_method1("loads", (json,))
    }

    /// "pretraining" (encoder + decoder), "encoder" (no decoder) or "finetuned".
    #[getter]
    fn kind(&self) -> &'static str {
        self.model_kind()
    }

    /// The finetuning task (pos, ner, parse, classify, qa), or None.
    #[getter]
    fn task(&self) -> Option<&'static str> {
        match &self.loaded {
            Loaded::Finetuned(f) => Some(f.task.name()),
            Loaded::Pretraining { .. } => None,
        }
    }

    /// Label names by index (finetuned models), or None.
    #[getter]
    fn labels(&self) -> Option<Vec<String>> {
        match &self.loaded {
            Loaded::Finetuned(f) => Some(f.labels.clone()),
            Loaded::Pretraining { .. } => None,
        }
    }

    /// Patches per image (L).
    #[getter]
    fn max_seq_length(&self) -> usize {
        self.num_patches()
    }

    #[getter]
    fn hidden_size(&self) -> usize {
        self.cfg().hidden_size
    }

    fn __repr__(&self) -> String {
        format!(
            "Model({:?}, kind={:?}{}, max_seq_length={}, hidden_size={})",
            self.path.display().to_string(),
            self.model_kind(),
            self.task()
                .map(|t| format!(", task={t:?}"))
                .unwrap_or_default(),
            self.num_patches(),
            self.cfg().hidden_size
        )
    }
}

/// (B * (L + 1)): each example's word start patches then its EOS patch, padded with
/// IGNORE_INDEX (the parser's layout, as for rendered word lists).
fn parse_word_starts(starts: &[Vec<i64>], batch: usize, l: usize) -> PyResult<Vec<i64>> {
    if starts.len() != batch {
        return Err(value_error(format!(
            "word_starts has {} lists, pixel_values {batch} examples",
            starts.len()
        )));
    }
    let mut out = vec![IGNORE_INDEX; batch * (l + 1)];
    for (i, row) in starts.iter().enumerate() {
        if row.len() < 2 || row.len() > l + 1 {
            return Err(value_error(format!(
                "word_starts[{i}] has {} entries; expected 2 to {} (word starts, then the EOS patch)",
                row.len(),
                l + 1
            )));
        }
        if let Some(bad) = row.iter().find(|&&s| s < 0 || s >= l as i64) {
            return Err(value_error(format!(
                "word_starts[{i}] has patch {bad}, outside 0..{l}"
            )));
        }
        if row.windows(2).any(|w| w[0] >= w[1]) {
            return Err(value_error(format!(
                "word_starts[{i}] must increase: {row:?}"
            )));
        }
        out[i * (l + 1)..][..row.len()].copy_from_slice(row);
    }
    Ok(out)
}
