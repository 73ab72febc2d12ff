//! Text renderer: the input layer of PIXEL.
//!
//! Text becomes a 16-pixel-high strip of L patches of 16x16 (SPEC section 1): text from x = 2,
//! a black end-of-sequence patch after it, grayscale glyph coverage on white. Shaping is
//! rustybuzz, rasterization lives in [`raster`] (rusttype), fonts are embedded Noto fonts or
//! user files, tried per character. Two layouts: [`Layout::Pango`] (the finetuning renderer,
//! default) and [`Layout::Pygame`] (the pretraining renderer). Four rendering strategies
//! ([`RenderingStrategy`], Lotz et al. 2023): `continuous` (PIXEL's, the default), `bigrams`,
//! `mono` and `words`.
//!
//! ```no_run
//! let mut renderer = pixel_render::Renderer::new(pixel_render::RenderConfig::default()).unwrap();
//! let r = renderer.render_text("Hello");
//! assert_eq!(r.num_text_patches, 3);
//! let pixel_values = r.pixel_values(); // (3, 16, 8464) in [0, 1]
//! # let _ = pixel_values;
//! ```

mod bigrams;
mod canvas;
mod fonts;
mod modes;
mod mono;
mod offsets;
mod output;
mod raster;
mod shape;
mod strategy;
mod windows;
mod words;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;

use rayon::prelude::*;

pub use canvas::PATCH;
pub use fonts::{FontConfig, FontSet, LineMetrics};
pub use output::{write_gray_png, Rendering};
pub use strategy::RenderingStrategy;
pub use windows::PairWindow;

/// How glyph rows are placed, after the two PIXEL renderers (SPEC 1.3, 1.4).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Layout {
    /// PangoCairo: logical advances with kerning, logical line box centred then raised 2 px.
    #[default]
    Pango,
    /// PyGame/FreeType: no kerning, ink-box widths, ink box centred on row 8 (words: baseline 11).
    Pygame,
}

impl std::str::FromStr for Layout {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "pango" | "pangocairo" => Ok(Layout::Pango),
            "pygame" => Ok(Layout::Pygame),
            other => Err(format!(
                "unknown layout {other:?} (expected pango or pygame)"
            )),
        }
    }
}

/// Renderer settings; the defaults are PIXEL's (8 pt at 120 DPI, 529 patches, Pango layout,
/// continuous rendering).
#[derive(Clone, Debug)]
pub struct RenderConfig {
    /// Patches per strip (L); the strip is 16 * L pixels wide.
    pub max_seq_length: usize,
    pub font_size_pt: f32,
    pub dpi: f32,
    /// Glyph placement of the continuous and words strategies (bigrams and mono place each
    /// character with Pango's metrics, as the original bigrams renderer).
    pub layout: Layout,
    pub rendering: RenderingStrategy,
    pub fonts: FontConfig,
}

impl Default for RenderConfig {
    fn default() -> Self {
        RenderConfig {
            max_seq_length: 529,
            font_size_pt: 8.0,
            dpi: 120.0,
            layout: Layout::Pango,
            rendering: RenderingStrategy::Continuous,
            fonts: FontConfig::default(),
        }
    }
}

impl RenderConfig {
    /// Em size in pixels, kept at Pango's 1/1024 precision (13.3330078125 for the defaults).
    pub fn px_per_em(&self) -> f32 {
        let px = self.dpi as f64 / 72.0 * self.font_size_pt as f64;
        ((px * 1024.0).round() / 1024.0) as f32
    }
}

/// Errors: all of them are about files or settings; rendering text itself cannot fail.
#[derive(Debug)]
pub enum RenderError {
    /// A font file is missing, unreadable or not a font.
    Font { path: PathBuf, reason: String },
    /// A fallback font directory could not be read.
    FontDir { path: PathBuf, reason: String },
    /// An output file could not be written.
    Output { path: PathBuf, reason: String },
    /// A setting is out of range.
    Config(String),
}

impl std::fmt::Display for RenderError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RenderError::Font { path, reason } => {
                write!(f, "font file {}: {reason}", path.display())
            }
            RenderError::FontDir { path, reason } => {
                write!(f, "fallback font directory {}: {reason}", path.display())
            }
            RenderError::Output { path, reason } => {
                write!(f, "cannot write {}: {reason}", path.display())
            }
            RenderError::Config(msg) => write!(f, "invalid render setting: {msg}"),
        }
    }
}

impl std::error::Error for RenderError {}

/// One thing to render.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Input {
    /// A sentence or paragraph.
    Text(String),
    /// A sentence pair (GLUE/NLI/QA): text A, black separator, text B.
    Pair(String, String),
    /// Words for token classification, each starting on a patch boundary.
    Words(Vec<String>),
}

/// Per-thread drawing state: one strip buffer, the glyph cache and the shaping buffer.
struct Scratch {
    canvas: canvas::Canvas,
    cache: raster::GlyphCache,
    shaper: shape::Shaper,
    /// Characters shaped on their own (bigrams, mono).
    alone: HashMap<char, shape::ShapedLine>,
}

/// Renders texts into strips. Cheap to use repeatedly (glyphs are cached); not shared between
/// threads: use [`Renderer::render_batch`] for parallel work.
pub struct Renderer {
    fonts: Arc<FontSet>,
    max_seq_length: usize,
    layout: Layout,
    rendering: RenderingStrategy,
    /// Pango layout: baseline row of every line.
    pango_baseline: i32,
    scratch: Scratch,
    /// Pair mode: maximum patches of text A (QA's question_max_length); `None` = no limit.
    pub text_a_max_patches: Option<usize>,
}

impl Renderer {
    /// Loads the fonts and prepares a renderer.
    pub fn new(config: RenderConfig) -> Result<Self, RenderError> {
        if config.max_seq_length == 0 {
            return Err(RenderError::Config(
                "max_seq_length must be at least 1".into(),
            ));
        }
        let px = config.px_per_em();
        if !(px.is_finite() && px > 0.0 && px < 1000.0) {
            return Err(RenderError::Config(format!(
                "font size {} pt at {} dpi is not a usable pixel size",
                config.font_size_pt, config.dpi
            )));
        }
        let fonts = Arc::new(FontSet::load(&config.fonts, px)?);
        Ok(Self::with_fonts(
            fonts,
            config.max_seq_length,
            config.layout,
            config.rendering,
        ))
    }

    fn with_fonts(
        fonts: Arc<FontSet>,
        max_seq_length: usize,
        layout: Layout,
        rendering: RenderingStrategy,
    ) -> Self {
        let m = fonts.line_metrics();
        // Pango: layout top at 16/2 - height/2 - 2; cairo rounds the glyph origins (halves up).
        let top = PATCH as f32 / 2.0 - (m.ascent + m.descent) as f32 / 2.0 - 2.0;
        let pango_baseline = (top + m.ascent as f32 + 0.5).floor() as i32;
        Renderer {
            max_seq_length,
            layout,
            rendering,
            pango_baseline,
            scratch: Scratch {
                canvas: canvas::Canvas::new(PATCH * max_seq_length),
                cache: raster::GlyphCache::default(),
                shaper: shape::Shaper::default(),
                alone: HashMap::new(),
            },
            text_a_max_patches: None,
            fonts,
        }
    }

    /// A renderer with the same fonts and settings and its own scratch state.
    pub fn fork(&self) -> Renderer {
        let mut r = Self::with_fonts(
            self.fonts.clone(),
            self.max_seq_length,
            self.layout,
            self.rendering,
        );
        r.text_a_max_patches = self.text_a_max_patches;
        r
    }

    /// The loaded fonts, main font first.
    pub fn fonts(&self) -> &FontSet {
        &self.fonts
    }

    pub fn max_seq_length(&self) -> usize {
        self.max_seq_length
    }

    pub fn layout(&self) -> Layout {
        self.layout
    }

    pub fn rendering(&self) -> RenderingStrategy {
        self.rendering
    }

    /// Row of the baseline in the Pango layout (12 for Noto Sans at the defaults).
    pub fn pango_baseline(&self) -> i32 {
        self.pango_baseline
    }

    /// Renders one text (a sentence or paragraph) with this renderer's strategy.
    pub fn render_text(&mut self, text: &str) -> Rendering {
        match self.rendering {
            RenderingStrategy::Continuous => self.continuous_text(text),
            RenderingStrategy::Bigrams => self.bigrams_text(text),
            RenderingStrategy::Mono => self.mono_text(text),
            RenderingStrategy::Words => self.words_text(text),
        }
    }

    /// Renders a sentence pair: text A, a black separator patch, text B, the EOS.
    pub fn render_pair(&mut self, text_a: &str, text_b: &str) -> Rendering {
        match self.rendering {
            RenderingStrategy::Continuous => self.continuous_pair(text_a, text_b),
            RenderingStrategy::Bigrams => self.bigrams_pair(text_a, text_b),
            RenderingStrategy::Mono => self.mono_pair(text_a, text_b),
            RenderingStrategy::Words => self.words_pair(text_a, text_b),
        }
    }

    /// Renders words for token classification, each starting on a patch boundary;
    /// `word_starts` gives their patches. Words that do not fit are dropped.
    pub fn render_words<S: AsRef<str>>(&mut self, words: &[S]) -> Rendering {
        match self.rendering {
            // The words strategy draws word lists as the continuous one does.
            RenderingStrategy::Continuous | RenderingStrategy::Words => {
                self.continuous_words(words)
            }
            RenderingStrategy::Bigrams => self.bigrams_words(words),
            RenderingStrategy::Mono => self.mono_words(words),
        }
    }

    /// Renders any [`Input`].
    pub fn render(&mut self, input: &Input) -> Rendering {
        match input {
            Input::Text(t) => self.render_text(t),
            Input::Pair(a, b) => self.render_pair(a, b),
            Input::Words(w) => self.render_words(w),
        }
    }

    /// Renders `inputs` in parallel (rayon); results are in input order.
    pub fn render_batch(&self, inputs: &[Input]) -> Vec<Rendering> {
        // One chunk per worker: each chunk starts with cold glyph and word caches.
        let workers = rayon::current_num_threads().max(1);
        let chunk = inputs.len().div_ceil(workers).max(16);
        let per_chunk: Vec<Vec<Rendering>> = inputs
            .par_chunks(chunk)
            .map(|chunk| {
                let mut r = self.fork();
                chunk.iter().map(|input| r.render(input)).collect()
            })
            .collect();
        per_chunk.into_iter().flatten().collect()
    }
}
