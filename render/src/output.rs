//! A rendered strip and the views the model and people read: the [3, 16, W] float image, the
//! attention mask, the 23x23 square grid and PNG files.

use std::io::BufWriter;
use std::path::Path;

use crate::canvas::PATCH;
use crate::RenderError;

/// One rendered input (single text, pair or word list).
#[derive(Clone, Debug, PartialEq)]
pub struct Rendering {
    /// (16, drawn_width) grayscale, 255 = white; columns right of it are white.
    drawn: Vec<u8>,
    drawn_width: usize,
    /// Patches in the strip (L).
    pub max_seq_length: usize,
    /// Index of the black end-of-sequence patch = patches of text (plus separators) before it.
    pub num_text_patches: usize,
    /// Patch indices of the black patches: the pair separator (if any), then the EOS.
    pub black_patches: Vec<usize>,
    /// Text did not fit: the EOS was forced into the last patch (or words were dropped).
    pub truncated: bool,
    /// Characters no font had, drawn as the main font's .notdef box.
    pub missing_glyphs: usize,
    /// Word lists, and sentences in the bigrams and words renderings: patch index of each
    /// rendered word, then the patch after the last (the EOS index unless it was clamped).
    pub word_starts: Option<Vec<usize>>,
    /// Words left out because the strip was full (word lists; bigrams and words sentences).
    pub dropped_words: usize,
    /// Single texts and pairs of the continuous rendering: per patch, the (char_start, char_end) span of the source text
    /// drawn there; (0, 0) for separators and padding, (-1, -1) for a blank patch before the EOS.
    pub offset_mapping: Option<Vec<(i32, i32)>>,
}

impl Rendering {
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn new(
        drawn: Vec<u8>,
        drawn_width: usize,
        max_seq_length: usize,
        black_patches_px: &[usize],
        truncated: bool,
        missing_glyphs: usize,
        word_starts: Option<Vec<usize>>,
        dropped_words: usize,
        offset_mapping: Option<Vec<(i32, i32)>>,
    ) -> Self {
        let black_patches: Vec<usize> = black_patches_px.iter().map(|p| p / PATCH).collect();
        Rendering {
            drawn,
            drawn_width,
            max_seq_length,
            num_text_patches: *black_patches.last().unwrap_or(&0),
            black_patches,
            truncated,
            missing_glyphs,
            word_starts,
            dropped_words,
            offset_mapping,
        }
    }

    /// Strip width in pixels (16 * L).
    pub fn width(&self) -> usize {
        PATCH * self.max_seq_length
    }

    /// Patches the model attends to: text plus EOS, min(num_text_patches + 1, L).
    pub fn attention_len(&self) -> usize {
        (self.num_text_patches + 1).min(self.max_seq_length)
    }

    /// Length-L mask: ones for the first `attention_len()` patches.
    pub fn attention_mask(&self) -> Vec<f32> {
        let n = self.attention_len();
        (0..self.max_seq_length)
            .map(|i| if i < n { 1.0 } else { 0.0 })
            .collect()
    }

    /// Grayscale pixel at (row, column) of the full strip.
    pub fn pixel(&self, row: usize, col: usize) -> u8 {
        if col < self.drawn_width {
            self.drawn[row * self.drawn_width + col]
        } else {
            255
        }
    }

    /// The full strip, (16, 16 * L) row-major grayscale (the reference's uint8 pixel_values).
    pub fn gray_strip(&self) -> Vec<u8> {
        let w = self.width();
        let mut out = vec![255u8; PATCH * w]; // (16, W)
        for y in 0..PATCH {
            out[y * w..][..self.drawn_width]
                .copy_from_slice(&self.drawn[y * self.drawn_width..][..self.drawn_width]);
        }
        out
    }

    /// Writes the model input into `out`: (3, 16, 16 * L) channel-first floats in [0, 1], the
    /// grayscale replicated into three channels (PyTorch's ToTensor of the RGB image).
    pub fn write_pixel_values(&self, out: &mut [f32]) {
        let w = self.width();
        assert_eq!(
            out.len(),
            3 * PATCH * w,
            "pixel_values buffer must be 3 * 16 * W"
        );
        let (first, rest) = out.split_at_mut(PATCH * w);
        for y in 0..PATCH {
            let row = &mut first[y * w..][..w];
            for (x, v) in row.iter_mut().enumerate() {
                *v = self.pixel(y, x) as f32 / 255.0;
            }
        }
        rest[..PATCH * w].copy_from_slice(first);
        rest[PATCH * w..].copy_from_slice(first);
    }

    /// The model input as a new (3, 16, 16 * L) buffer.
    pub fn pixel_values(&self) -> Vec<f32> {
        let mut out = vec![0.0; 3 * PATCH * self.width()];
        self.write_pixel_values(&mut out);
        out
    }

    /// The strip folded into a square grid of patches (SPEC 8): patch k goes to grid cell
    /// (k / side, k % side) with side = ceil(sqrt(L)). Returns (side_px, (side_px, side_px) gray).
    pub fn square_image(&self) -> (usize, Vec<u8>) {
        let side = (1..).find(|s| s * s >= self.max_seq_length).unwrap_or(1);
        let side_px = side * PATCH;
        let mut out = vec![255u8; side_px * side_px]; // (side_px, side_px)
        for k in 0..self.max_seq_length {
            let (gy, gx) = (k / side * PATCH, k % side * PATCH);
            for y in 0..PATCH {
                for x in 0..PATCH {
                    out[(gy + y) * side_px + gx + x] = self.pixel(y, k * PATCH + x);
                }
            }
        }
        (side_px, out)
    }

    /// Writes the strip as an 8-bit grayscale PNG, (16, 16 * L).
    pub fn write_png(&self, path: &Path) -> Result<(), RenderError> {
        write_gray_png(path, self.width(), PATCH, &self.gray_strip())
    }

    /// Writes the square grid view as an 8-bit grayscale PNG.
    pub fn write_square_png(&self, path: &Path) -> Result<(), RenderError> {
        let (side, pixels) = self.square_image();
        write_gray_png(path, side, side, &pixels)
    }
}

/// Writes `pixels`, (height, width) row-major, as a grayscale PNG.
pub fn write_gray_png(
    path: &Path,
    width: usize,
    height: usize,
    pixels: &[u8],
) -> Result<(), RenderError> {
    let io_err = |e: String| RenderError::Output {
        path: path.to_path_buf(),
        reason: e,
    };
    let file = std::fs::File::create(path).map_err(|e| io_err(e.to_string()))?;
    let mut encoder = png::Encoder::new(BufWriter::new(file), width as u32, height as u32);
    encoder.set_color(png::ColorType::Grayscale);
    encoder.set_depth(png::BitDepth::Eight);
    let mut writer = encoder.write_header().map_err(|e| io_err(e.to_string()))?;
    writer
        .write_image_data(pixels)
        .map_err(|e| io_err(e.to_string()))?;
    writer.finish().map_err(|e| io_err(e.to_string()))
}
