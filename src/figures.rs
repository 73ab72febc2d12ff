//! Pictures for people: the training loss curve and reconstruction figures like the paper's
//! Figures 3 and 6 (SPEC 8). Everything is drawn on a small RGB canvas of our own and written
//! with the `png` crate; text labels are drawn with the project's own renderer.

mod loss_curve;
mod reconstruction;
mod run_curves;

use std::io::BufWriter;
use std::path::Path;

use anyhow::Context;
use pixel_render::{RenderConfig, Renderer, PATCH};

pub use loss_curve::{write_loss_curve_png, LOSS_CURVE_HEIGHT, LOSS_CURVE_WIDTH};
pub use reconstruction::{
    denormalize_patch, patch_rcc, reconstruction_figure_size, reconstruction_panels,
    write_reconstruction_png, ReconstructionPanels, ReconstructionRow,
};
pub use run_curves::{write_run_curves_png, RunCurve};

/// An RGB colour, 8 bits per channel.
pub(crate) type Rgb = [u8; 3];

pub(crate) const WHITE: Rgb = [255, 255, 255];
pub(crate) const BLACK: Rgb = [0, 0, 0];

/// An RGB image being drawn; coordinates outside it are ignored (clipping for free).
pub(crate) struct Canvas {
    pub width: usize,
    pub height: usize,
    /// (height, width, 3) row-major.
    pub pixels: Vec<u8>,
}

impl Canvas {
    pub fn new(width: usize, height: usize, background: Rgb) -> Self {
        let mut pixels = Vec::with_capacity(width * height * 3);
        for _ in 0..width * height {
            pixels.extend_from_slice(&background);
        }
        Canvas {
            width,
            height,
            pixels,
        }
    }

    pub fn set(&mut self, x: i64, y: i64, color: Rgb) {
        if x >= 0 && y >= 0 && (x as usize) < self.width && (y as usize) < self.height {
            let i = (y as usize * self.width + x as usize) * 3;
            self.pixels[i..i + 3].copy_from_slice(&color);
        }
    }

    /// Mixes `color` over the pixel with weight `alpha` in [0, 1] (used for anti-aliased text).
    pub fn blend(&mut self, x: i64, y: i64, color: Rgb, alpha: f32) {
        if x >= 0 && y >= 0 && (x as usize) < self.width && (y as usize) < self.height {
            let i = (y as usize * self.width + x as usize) * 3;
            for (channel, &target) in self.pixels[i..i + 3].iter_mut().zip(&color) {
                let old = *channel as f32;
                *channel = (old + (target as f32 - old) * alpha).round() as u8;
            }
        }
    }

    pub fn fill_rect(&mut self, x: i64, y: i64, w: usize, h: usize, color: Rgb) {
        for yy in y..y + h as i64 {
            for xx in x..x + w as i64 {
                self.set(xx, yy, color);
            }
        }
    }

    /// One-pixel rectangle outline.
    pub fn outline_rect(&mut self, x: i64, y: i64, w: usize, h: usize, color: Rgb) {
        if w == 0 || h == 0 {
            return;
        }
        let (right, bottom) = (x + w as i64 - 1, y + h as i64 - 1);
        for xx in x..=right {
            self.set(xx, y, color);
            self.set(xx, bottom, color);
        }
        for yy in y..=bottom {
            self.set(x, yy, color);
            self.set(right, yy, color);
        }
    }

    /// Bresenham line between two pixel positions, both ends included.
    pub fn line(&mut self, (x0, y0): (i64, i64), (x1, y1): (i64, i64), color: Rgb) {
        let (dx, dy) = ((x1 - x0).abs(), -(y1 - y0).abs());
        let (sx, sy) = (if x0 < x1 { 1 } else { -1 }, if y0 < y1 { 1 } else { -1 });
        let (mut x, mut y, mut err) = (x0, y0, dx + dy);
        loop {
            self.set(x, y, color);
            if x == x1 && y == y1 {
                break;
            }
            let e2 = 2 * err;
            if e2 >= dy {
                err += dy;
                x += sx;
            }
            if e2 <= dx {
                err += dx;
                y += sy;
            }
        }
    }

    /// Writes the canvas as an 8-bit RGB PNG.
    pub fn write_png(&self, path: &Path) -> anyhow::Result<()> {
        let file = std::fs::File::create(path)
            .with_context(|| format!("cannot create {}", path.display()))?;
        let mut encoder =
            png::Encoder::new(BufWriter::new(file), self.width as u32, self.height as u32);
        encoder.set_color(png::ColorType::Rgb);
        encoder.set_depth(png::BitDepth::Eight);
        let mut writer = encoder
            .write_header()
            .with_context(|| format!("cannot write {}", path.display()))?;
        writer
            .write_image_data(&self.pixels)
            .with_context(|| format!("cannot write {}", path.display()))?;
        writer
            .finish()
            .with_context(|| format!("cannot write {}", path.display()))
    }
}

/// Text labels, drawn with the PIXEL renderer itself: one 16-pixel-high line per label.
/// Kept to this one type so a change in the renderer's API touches only this code.
pub(crate) struct TextPainter {
    renderer: Renderer,
}

/// A rendered label: grayscale coverage, 255 = paper.
pub(crate) struct TextStrip {
    pub width: usize,
    /// (16, width) row-major, 255 = white.
    pub gray: Vec<u8>,
}

impl TextPainter {
    /// Patches per label line: 64 x 16 = 1024 px, longer labels are cut.
    const LABEL_PATCHES: usize = 64;

    pub fn new() -> anyhow::Result<Self> {
        let renderer = Renderer::new(RenderConfig {
            max_seq_length: Self::LABEL_PATCHES,
            ..Default::default()
        })
        .context("cannot load the fonts for figure labels")?;
        Ok(TextPainter { renderer })
    }

    /// Renders `text` and trims it to its ink (the black EOS patch and white padding dropped).
    pub fn strip(&mut self, text: &str) -> TextStrip {
        let rendering = self.renderer.render_text(text);
        // Only the columns left of the EOS patch hold text.
        let text_width = (rendering.num_text_patches * PATCH).min(rendering.width());
        let inked = (0..text_width)
            .rev()
            .find(|&x| (0..PATCH).any(|y| rendering.pixel(y, x) < 255))
            .map_or(0, |x| x + 1);
        let mut gray = Vec::with_capacity(PATCH * inked); // (16, inked)
        for y in 0..PATCH {
            gray.extend((0..inked).map(|x| rendering.pixel(y, x)));
        }
        TextStrip { width: inked, gray }
    }

    /// Draws `text` with its top-left corner at (x, y) in `color`; returns its width.
    pub fn draw(&mut self, canvas: &mut Canvas, x: i64, y: i64, text: &str, color: Rgb) -> usize {
        let strip = self.strip(text);
        blit_text(canvas, &strip, x, y, color, usize::MAX);
        strip.width
    }
}

/// Mixes a text strip's ink over the canvas, at most `max_width` columns of it.
pub(crate) fn blit_text(
    canvas: &mut Canvas,
    strip: &TextStrip,
    x: i64,
    y: i64,
    color: Rgb,
    max_width: usize,
) {
    for row in 0..PATCH {
        for col in 0..strip.width.min(max_width) {
            let ink = 1.0 - strip.gray[row * strip.width + col] as f32 / 255.0;
            if ink > 0.0 {
                canvas.blend(x + col as i64, y + row as i64, color, ink);
            }
        }
    }
}

/// A value in [0, 1] as an 8-bit level; NaN shows as mid grey rather than black.
pub(crate) fn unit_to_u8(v: f32) -> u8 {
    if v.is_nan() {
        128
    } else {
        (v.clamp(0.0, 1.0) * 255.0).round() as u8
    }
}
