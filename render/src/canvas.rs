//! The drawing surface: one reusable coverage buffer the width of the strip.
//!
//! Like cairo's A8 surface, it holds ink coverage (0 = none); glyphs are composited with "over"
//! and the strip is inverted (255 - coverage) when it is copied out, so white is 255.

use crate::fonts::FontSet;
use crate::raster::GlyphCache;
use crate::shape::ShapedLine;

/// Rows of a strip: one patch high.
pub const PATCH: usize = 16;

/// Ink box of a line relative to its origin and baseline (y down); empty when nothing is inked.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct InkBox {
    pub left: i32,
    pub right: i32,
    pub top: i32,
    pub bottom: i32,
}

impl InkBox {
    pub fn is_empty(&self) -> bool {
        self.right <= self.left || self.bottom <= self.top
    }
    pub fn width(&self) -> i32 {
        if self.is_empty() {
            0
        } else {
            self.right - self.left
        }
    }
    pub fn height(&self) -> i32 {
        if self.is_empty() {
            0
        } else {
            self.bottom - self.top
        }
    }
}

pub(crate) struct Canvas {
    /// Strip width in pixels (16 * max_seq_length).
    pub width: usize,
    /// (16, width) row-major coverage, 0 = no ink.
    ink: Vec<u8>,
    /// Columns [0, dirty) may hold ink.
    dirty: usize,
}

impl Canvas {
    pub fn new(width: usize) -> Self {
        Canvas {
            width,
            ink: vec![0; PATCH * width],
            dirty: 0,
        }
    }

    /// Composites `line` with its origin at column `x` and its baseline at row `baseline`.
    pub fn draw_line(
        &mut self,
        line: &ShapedLine,
        x: i32,
        baseline: i32,
        fonts: &FontSet,
        cache: &mut GlyphCache,
    ) {
        let width = self.width as i32;
        for g in &line.glyphs {
            let face = g.face as usize;
            let bitmap = cache.get(face, g.glyph, &fonts.faces[face].raster, fonts.px_per_em);
            let left = x + g.x + bitmap.left;
            let top = baseline + g.dy + bitmap.top;
            if left >= width || left + bitmap.width as i32 <= 0 {
                continue;
            }
            for row in 0..bitmap.height as i32 {
                let y = top + row;
                if !(0..PATCH as i32).contains(&y) {
                    continue;
                }
                let src = &bitmap.coverage[row as usize * bitmap.width..][..bitmap.width];
                let col0 = left.max(0);
                let col1 = (left + bitmap.width as i32).min(width);
                let dst_row = &mut self.ink[y as usize * self.width..][..self.width];
                for col in col0..col1 {
                    let c = src[(col - left) as usize] as u32;
                    if c == 0 {
                        continue;
                    }
                    let d = &mut dst_row[col as usize];
                    // "over" in alpha: a + b * (1 - a), rounded; most pixels have no ink yet.
                    *d = if *d == 0 {
                        c as u8
                    } else {
                        (c + (*d as u32 * (255 - c) + 127) / 255) as u8
                    };
                }
            }
            self.dirty = self.dirty.max(col1_clamped(left, bitmap.width, self.width));
        }
    }

    /// Copies columns [0, used) out as grayscale (255 = white), blacks the patches starting at
    /// the pixel offsets in `black_patches`, and clears the buffer for the next text.
    /// Returns (16, used) row-major pixels and `used`.
    pub fn take_gray(&mut self, black_patches: &[usize]) -> (Vec<u8>, usize) {
        let last_black = black_patches.iter().map(|&p| p + PATCH).max().unwrap_or(0);
        let used = self.dirty.max(last_black).min(self.width);
        let mut gray = vec![255u8; PATCH * used]; // (16, used)
        for y in 0..PATCH {
            let src = &mut self.ink[y * self.width..][..self.dirty];
            let dst = &mut gray[y * used..][..used];
            for (d, s) in dst.iter_mut().zip(src.iter()) {
                *d = 255 - *s;
            }
            src.fill(0);
            for &p in black_patches {
                let end = (p + PATCH).min(used);
                if p < end {
                    dst[p..end].fill(0);
                }
            }
        }
        self.dirty = 0;
        (gray, used)
    }
}

fn col1_clamped(left: i32, width: usize, strip: usize) -> usize {
    (left + width as i32).clamp(0, strip as i32) as usize
}

/// Ink box of `line` (glyph bitmaps united), relative to its origin and baseline.
pub(crate) fn ink_box(line: &ShapedLine, fonts: &FontSet, cache: &mut GlyphCache) -> InkBox {
    let mut b = InkBox {
        left: i32::MAX,
        right: i32::MIN,
        top: i32::MAX,
        bottom: i32::MIN,
    };
    for g in &line.glyphs {
        let face = g.face as usize;
        let bitmap = cache.get(face, g.glyph, &fonts.faces[face].raster, fonts.px_per_em);
        if bitmap.width == 0 || bitmap.height == 0 {
            continue;
        }
        b.left = b.left.min(g.x + bitmap.left);
        b.right = b.right.max(g.x + bitmap.left + bitmap.width as i32);
        b.top = b.top.min(g.dy + bitmap.top);
        b.bottom = b.bottom.max(g.dy + bitmap.top + bitmap.height as i32);
    }
    if b.left > b.right {
        InkBox::default()
    } else {
        b
    }
}
