//! `pixel.Renderer` and `pixel.Encoding`: pixel-render's strips as NumPy arrays.

use std::path::PathBuf;
use std::sync::{Mutex, OnceLock};

use numpy::PyArrayDyn;
use pixel_render::{
    FontConfig, Input, Layout, RenderConfig, Renderer, Rendering, RenderingStrategy, PATCH,
};
use pyo3::exceptions::PyTypeError;
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyList, PyString, PyTuple};

use crate::arrays::to_numpy;
use crate::errors::{render_error, value_error};

/// The values `rendering=` accepts: pixel-render's strategies ("continuous" is PIXEL's
/// running text; "bigrams", "mono", "words" as Lotz et al. 2023; see README).
pub const RENDERINGS: &[&str] = &["continuous", "bigrams", "mono", "words"];

/// `name` if it is one of [`RENDERINGS`], else a ValueError listing them.
fn check_rendering(name: &str) -> PyResult<&'static str> {
    RENDERINGS
        .iter()
        .copied()
        .find(|&r| r == name)
        .ok_or_else(|| {
            value_error(format!(
                "rendering {name:?} is not supported; allowed values: {}",
                RENDERINGS.join(", ")
            ))
        })
}

/// Text to PIXEL strips: 16 px high, 16 * max_seq_length wide, black text on white, a black
/// end-of-sequence patch after the text. Fonts are embedded (Noto Sans and script fallbacks)
/// unless `font` (a .ttf/.otf file) and `fallback_fonts` (a directory of them, tried in file
/// name order before the embedded ones) say otherwise; no system fonts are ever read.
///
/// `layout` is "pango" (PIXEL's finetuning renderer, the default) or "pygame" (its
/// pretraining renderer); `font_size` (points) and `dpi` give the em size (8 pt at 120 dpi).
/// Rendering releases the GIL; `render_batch` renders on all cores.
#[pyclass(module = "pixel", name = "Renderer", frozen)]
pub struct PyRenderer {
    /// Glyph caches and the strip buffer live in the renderer, hence one caller at a time.
    inner: Mutex<Renderer>,
    rendering: &'static str,
    font: Option<PathBuf>,
    fallback_fonts: Option<PathBuf>,
    layout: Layout,
    font_size: f32,
    dpi: f32,
}

impl PyRenderer {
    /// A renderer with the given settings.
    #[allow(clippy::too_many_arguments)]
    pub fn build(
        rendering: &str,
        max_seq_length: i64,
        font: Option<PathBuf>,
        fallback_fonts: Option<PathBuf>,
        layout: &str,
        font_size: f32,
        dpi: f32,
    ) -> PyResult<PyRenderer> {
        let rendering = check_rendering(rendering)?;
        let layout: Layout = layout.parse().map_err(value_error)?;
        if max_seq_length < 1 {
            return Err(value_error(format!(
                "max_seq_length must be at least 1 patch, got {max_seq_length}"
            )));
        }
        let config = RenderConfig {
            max_seq_length: max_seq_length as usize,
            font_size_pt: font_size,
            dpi,
            layout,
            rendering: rendering
                .parse::<RenderingStrategy>()
                .map_err(value_error)?,
            fonts: FontConfig {
                main_font: font.clone(),
                fallback_dir: fallback_fonts.clone(),
                no_default_fallbacks: false,
            },
        };
        let renderer = Renderer::new(config).map_err(render_error)?;
        Ok(PyRenderer {
            inner: Mutex::new(renderer),
            rendering,
            font,
            fallback_fonts,
            layout,
            font_size,
            dpi,
        })
    }

    fn renderer(&self) -> std::sync::MutexGuard<'_, Renderer> {
        // A panic while rendering leaves no broken state behind (the strip is cleared per call).
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Renders one input with the GIL released.
    fn render_one(
        &self,
        py: Python<'_>,
        input: Input,
        text_a_max_patches: Option<usize>,
    ) -> PyEncoding {
        let rendering = py.detach(|| {
            let mut r = self.renderer();
            r.text_a_max_patches = text_a_max_patches; // pairs only; per call
            let out = r.render(&input);
            r.text_a_max_patches = None;
            out
        });
        PyEncoding::new(rendering)
    }
}

/// What `render_batch` accepts per item: a str, a (str, str) pair or a list of words.
fn input_from(item: &Bound<'_, PyAny>, index: usize) -> PyResult<Input> {
    if let Ok(s) = item.cast::<PyString>() {
        Ok(Input::Text(s.extract::<String>()?))
    } else if let Ok(t) = item.cast::<PyTuple>() {
        let (a, b): (String, String) = t.extract().map_err(|_| {
            value_error(format!(
                "item {index}: a pair must be a tuple of two strings, got a tuple of {}",
                t.len()
            ))
        })?;
        Ok(Input::Pair(a, b))
    } else if let Ok(l) = item.cast::<PyList>() {
        let words: Vec<String> = l.extract().map_err(|_| {
            value_error(format!("item {index}: a word list must hold only strings"))
        })?;
        Ok(Input::Words(words))
    } else {
        Err(PyTypeError::new_err(format!(
            "item {index}: expected a str, a (str, str) tuple or a list of str, got {}",
            item.get_type().name()?
        )))
    }
}

fn layout_name(layout: Layout) -> &'static str {
    match layout {
        Layout::Pango => "pango",
        Layout::Pygame => "pygame",
    }
}

#[pymethods]
impl PyRenderer {
    #[new]
    #[pyo3(signature = (
        rendering = "continuous",
        max_seq_length = 529,
        font = None,
        fallback_fonts = None,
        *,
        layout = "pango",
        font_size = 8.0,
        dpi = 120.0,
    ))]
    #[allow(clippy::too_many_arguments)]
    fn py_new(
        rendering: &str,
        max_seq_length: i64,
        font: Option<PathBuf>,
        fallback_fonts: Option<PathBuf>,
        layout: &str,
        font_size: f32,
        dpi: f32,
    ) -> PyResult<PyRenderer> {
        PyRenderer::build(
            rendering,
            max_seq_length,
            font,
            fallback_fonts,
            layout,
            font_size,
            dpi,
        )
    }

    /// Renders a sentence or paragraph.
    fn render(&self, py: Python<'_>, text: String) -> PyEncoding {
        self.render_one(py, Input::Text(text), None)
    }

    /// Renders words for token classification: each word starts on a patch boundary
    /// (`word_starts`); words that do not fit are dropped (`dropped_words`).
    fn render_words(&self, py: Python<'_>, words: Vec<String>) -> PyEncoding {
        self.render_one(py, Input::Words(words), None)
    }

    /// Renders a sentence pair: a, black separator patch, b. `text_a_max_patches` cuts `a`
    /// to at most that many patches (QA's question length).
    #[pyo3(signature = (a, b, *, text_a_max_patches = None))]
    fn render_pair(
        &self,
        py: Python<'_>,
        a: String,
        b: String,
        text_a_max_patches: Option<usize>,
    ) -> PyEncoding {
        self.render_one(py, Input::Pair(a, b), text_a_max_patches)
    }

    /// Renders a list of inputs on all cores; each item is a str (`render`), a (str, str)
    /// tuple (`render_pair`) or a list of str (`render_words`). Returns encodings in order.
    fn render_batch(&self, py: Python<'_>, texts: &Bound<'_, PyAny>) -> PyResult<Vec<PyEncoding>> {
        if texts.is_instance_of::<PyString>() {
            return Err(PyTypeError::new_err(
                "render_batch takes a list of inputs, not one str (use render)",
            ));
        }
        let inputs = texts
            .try_iter()?
            .enumerate()
            .map(|(i, item)| input_from(&item?, i))
            .collect::<PyResult<Vec<Input>>>()?;
        let renderings = py.detach(|| self.renderer().render_batch(&inputs));
        Ok(renderings.into_iter().map(PyEncoding::new).collect())
    }

    /// Patches per strip (L).
    #[getter]
    fn max_seq_length(&self) -> usize {
        self.renderer().max_seq_length()
    }

    #[getter]
    fn rendering(&self) -> &'static str {
        self.rendering
    }

    #[getter]
    fn layout(&self) -> &'static str {
        layout_name(self.layout)
    }

    /// The loaded font faces in fallback order, main font first.
    #[getter]
    fn font_names(&self) -> Vec<String> {
        let r = self.renderer();
        r.fonts()
            .face_names()
            .iter()
            .map(|s| s.to_string())
            .collect()
    }

    /// Pickling (e.g. into DataLoader workers) rebuilds the renderer from its settings.
    fn __getnewargs_ex__<'py>(
        &self,
        py: Python<'py>,
    ) -> PyResult<(Bound<'py, PyTuple>, Bound<'py, PyDict>)> {
        let args = (
            self.rendering,
            self.max_seq_length(),
            self.font.clone(),
            self.fallback_fonts.clone(),
        )
            .into_pyobject(py)?;
        let kwargs = PyDict::new(py);
        kwargs.set_item("layout", layout_name(self.layout))?;
        kwargs.set_item("font_size", self.font_size)?;
        kwargs.set_item("dpi", self.dpi)?;
        Ok((args, kwargs))
    }

    fn __repr__(&self) -> String {
        format!(
            "Renderer(rendering={:?}, max_seq_length={}, layout={:?}, fonts={})",
            self.rendering,
            self.max_seq_length(),
            layout_name(self.layout),
            self.font_names().len()
        )
    }
}

/// One rendered input.
///
/// `pixel_values`: uint8 (16, 16 * L), 255 = white, 0 = ink and the black patches (the
/// original renderer's grayscale array). `num_text_patches`: index of the black
/// end-of-sequence patch. `attention_mask`: float32 (L,), ones on the text patches and the
/// EOS. `sep_patches`: patch indices of the black patches (pair separator, then EOS; the
/// original stores pixel offsets, 16 times these). `word_starts` (word lists) and
/// `offset_mapping` (texts and pairs: per patch the (start, end) characters drawn there) are
/// None where they do not apply. `to_model_input()` is the float32 (3, 16, 16 * L) image
/// the model reads.
#[pyclass(module = "pixel", name = "Encoding", frozen)]
pub struct PyEncoding {
    rendering: Rendering,
    /// `pixel_values`, made on first use and then shared (edits to it stay visible).
    strip: OnceLock<Py<PyArrayDyn<u8>>>,
}

impl PyEncoding {
    pub fn new(rendering: Rendering) -> PyEncoding {
        PyEncoding {
            rendering,
            strip: OnceLock::new(),
        }
    }
}

#[pymethods]
impl PyEncoding {
    /// uint8 (16, 16 * L): black text on white, black separator and EOS patches.
    #[getter]
    fn pixel_values<'py>(&self, py: Python<'py>) -> Bound<'py, PyArrayDyn<u8>> {
        self.strip
            .get_or_init(|| {
                let r = &self.rendering;
                to_numpy(py, &[PATCH, r.width()], r.gray_strip()).unbind()
            })
            .bind(py)
            .clone()
    }

    /// The model input: float32 (3, 16, 16 * L) in [0, 1], the grayscale strip / 255 in three
    /// identical channels (PIXEL's ToTensor of the RGB image; SPEC 1.5). Computed from the
    /// rendering, not from later edits of `pixel_values`.
    fn to_model_input<'py>(&self, py: Python<'py>) -> Bound<'py, PyArrayDyn<f32>> {
        let r = &self.rendering;
        let values = py.detach(|| r.pixel_values());
        to_numpy(py, &[3, PATCH, r.width()], values)
    }

    #[getter]
    fn num_text_patches(&self) -> usize {
        self.rendering.num_text_patches
    }

    /// float32 (L,): 1 for min(num_text_patches + 1, L) patches, then 0.
    #[getter]
    fn attention_mask<'py>(&self, py: Python<'py>) -> Bound<'py, PyArrayDyn<f32>> {
        let r = &self.rendering;
        to_numpy(py, &[r.max_seq_length], r.attention_mask())
    }

    /// Patch indices of the black patches: the pair separator (pairs only), then the EOS.
    #[getter]
    fn sep_patches(&self) -> Vec<usize> {
        self.rendering.black_patches.clone()
    }

    /// Word lists: the patch where each rendered word starts, then the EOS patch.
    #[getter]
    fn word_starts(&self) -> Option<Vec<usize>> {
        self.rendering.word_starts.clone()
    }

    /// Texts and pairs: L (start, end) character spans; (0, 0) for separators and padding,
    /// (-1, -1) for a blank patch before the EOS.
    #[getter]
    fn offset_mapping(&self) -> Option<Vec<(i32, i32)>> {
        self.rendering.offset_mapping.clone()
    }

    /// Patches per strip (L).
    #[getter]
    fn max_seq_length(&self) -> usize {
        self.rendering.max_seq_length
    }

    /// The text did not fit: the EOS was forced into the last patch (or words were dropped).
    #[getter]
    fn truncated(&self) -> bool {
        self.rendering.truncated
    }

    /// Characters no font had (drawn as the main font's .notdef box).
    #[getter]
    fn missing_glyphs(&self) -> usize {
        self.rendering.missing_glyphs
    }

    /// Word lists: words left out because the strip was full.
    #[getter]
    fn dropped_words(&self) -> usize {
        self.rendering.dropped_words
    }

    fn __repr__(&self) -> String {
        let r = &self.rendering;
        format!(
            "Encoding(num_text_patches={}, max_seq_length={}, sep_patches={:?}{})",
            r.num_text_patches,
            r.max_seq_length,
            r.black_patches,
            if r.truncated { ", truncated=True" } else { "" }
        )
    }
}
