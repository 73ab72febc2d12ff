//! Glyph rasterization: the only module that touches rusttype.
//!
//! rusttype is unmaintained (RUSTSEC-2021-0140); keeping it behind `RasterFont::rasterize` means
//! a swap to ab_glyph changes this file only. Glyphs are drawn at integer pixel origins (Pango
//! rounds glyph positions when metrics are hinted), so one bitmap per (face, glyph) serves every
//! occurrence and the cache below never misses twice.

use rusttype::{point, Font, GlyphId, Scale};

/// Outlines of one face.
pub(crate) struct RasterFont {
    font: Font<'static>,
}

/// Coverage bitmap of one glyph drawn with its origin at (0, 0), y pointing down.
#[derive(Clone, Debug, Default)]
pub(crate) struct GlyphBitmap {
    /// Column of the bitmap's left edge relative to the pen position.
    pub left: i32,
    /// Row of the bitmap's top edge relative to the baseline (negative = above).
    pub top: i32,
    pub width: usize,
    pub height: usize,
    /// (height, width) row-major coverage, 0 = no ink, 255 = full ink.
    pub coverage: Vec<u8>,
}

impl RasterFont {
    /// Parses face 0 of `data`; `None` if it is not a font rusttype can read.
    pub fn parse(data: &'static [u8]) -> Option<Self> {
        Font::try_from_bytes_and_index(data, 0).map(|font| RasterFont { font })
    }

    /// Rasterizes `glyph` at `px_per_em` pixels per em.
    pub fn rasterize(&self, glyph: u16, px_per_em: f32) -> GlyphBitmap {
        // rusttype's Scale is the ascent-to-descent height, not the em, so convert.
        let v = self.font.v_metrics_unscaled();
        let em_to_height = (v.ascent - v.descent) / self.font.units_per_em() as f32;
        let scale = Scale::uniform(px_per_em * em_to_height);
        let positioned = self
            .font
            .glyph(GlyphId(glyph))
            .scaled(scale)
            .positioned(point(0.0, 0.0));
        let Some(bbox) = positioned.pixel_bounding_box() else {
            return GlyphBitmap::default();
        };
        let width = bbox.width().max(0) as usize;
        let height = bbox.height().max(0) as usize;
        let mut coverage = vec![0u8; width * height]; // (height, width)
        positioned.draw(|x, y, v| {
            let (x, y) = (x as usize, y as usize);
            if x < width && y < height {
                coverage[y * width + x] = (v.clamp(0.0, 1.0) * 255.0).round() as u8;
            }
        });
        GlyphBitmap {
            left: bbox.min.x,
            top: bbox.min.y,
            width,
            height,
            coverage,
        }
    }
}

/// Bitmaps already drawn, per face and glyph id.
#[derive(Default)]
pub(crate) struct GlyphCache {
    /// [face][glyph id] -> bitmap, grown on demand.
    per_face: Vec<Vec<Option<GlyphBitmap>>>,
}

impl GlyphCache {
    /// The bitmap of `glyph` in face `face`, drawing it on first use.
    pub fn get(
        &mut self,
        face: usize,
        glyph: u16,
        font: &RasterFont,
        px_per_em: f32,
    ) -> &GlyphBitmap {
        if self.per_face.len() <= face {
            self.per_face.resize_with(face + 1, Vec::new);
        }
        let slots = &mut self.per_face[face];
        let index = glyph as usize;
        if slots.len() <= index {
            slots.resize_with(index + 1, || None);
        }
        slots[index].get_or_insert_with(|| font.rasterize(glyph, px_per_em))
    }
}
