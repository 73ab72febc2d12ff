//! Reconstruction figures like the paper's Figures 3 and 6: original, masked input, predicted
//! patches and the reconstruction, as strips or as the square grid of SPEC 8.

use std::path::Path;

use anyhow::{bail, ensure};
use pixel_render::PATCH;

use super::{blit_text, unit_to_u8, Canvas, Rgb, TextPainter, BLACK, WHITE};

/// Values per flattened patch: 16 x 16 pixels x 3 channels.
const PATCH_DIM: usize = PATCH * PATCH * 3;
/// Shade of the removed patches in the masked panel.
const REMOVED_GREY: f32 = 0.5;
/// Shade of the patches without a prediction in the prediction panel.
const NO_PREDICTION_GREY: f32 = 0.9;
const SEPARATOR_COLOR: Rgb = [70, 130, 180];
const LOSS_PATCH_OUTLINE: Rgb = [255, 140, 0];
const NAME_COLOR: Rgb = [60, 60, 60];
const PANEL_NAMES: [&str; 4] = ["original", "masked", "predicted", "reconstructed"];

const MARGIN: usize = 8;
/// Thickness of the coloured lines between panels.
const SEPARATOR: usize = 2;
/// Height of a text line (16 px) plus the space under it.
const TEXT_LINE: usize = 20;
/// Strip view: column of panel names left of the strips.
const NAME_GUTTER: usize = 110;
const ROW_GAP: usize = 12;

/// One example for the figure: the model input, its masks and the decoder output.
#[derive(Clone, Debug)]
pub struct ReconstructionRow {
    /// (3, 16, 16 L) channel-first in [0, 1].
    pub pixel_values: Vec<f32>,
    /// (L) 1 = patch removed from the encoder input.
    pub mask: Vec<f32>,
    /// (L) 1 = text or EOS patch.
    pub attention_mask: Vec<f32>,
    /// (L, 768) decoder output, each patch in (row, col, channel) order (SPEC 1.5 `patchify`).
    pub prediction: Vec<f32>,
    /// Shown above the example.
    pub label: String,
}

/// The four images of one example, each (3, 16, 16 L) channel-first in [0, 1] (NaN where the
/// model predicted NaN).
#[derive(Clone, Debug)]
pub struct ReconstructionPanels {
    pub original: Vec<f32>,
    /// Removed patches replaced by grey.
    pub masked: Vec<f32>,
    /// De-normalised, clipped prediction in the loss patches; light grey elsewhere.
    pub prediction: Vec<f32>,
    /// Original, with the prediction pasted into the loss patches.
    pub reconstruction: Vec<f32>,
    /// (L) removed and attended: the patches the loss (SPEC 3.5) and the figure use.
    pub loss_patches: Vec<bool>,
}

/// Patch `k` of a (3, 16, 16 L) channel-first image, flattened in (row, col, channel) order:
/// element `(p * 16 + q) * 3 + c` is pixel (p, q) of channel c (SPEC 1.5).
pub fn patch_rcc(pixel_values: &[f32], num_patches: usize, k: usize) -> Vec<f32> {
    let width = PATCH * num_patches;
    assert_eq!(
        pixel_values.len(),
        3 * PATCH * width,
        "pixel_values must be (3, 16, 16 L)"
    );
    assert!(k < num_patches, "patch {k} out of {num_patches}");
    let mut out = Vec::with_capacity(PATCH_DIM); // (16, 16, 3)
    for p in 0..PATCH {
        for q in 0..PATCH {
            for c in 0..3 {
                out.push(pixel_values[c * PATCH * width + p * width + k * PATCH + q]);
            }
        }
    }
    out
}

/// Undoes the norm_pix_loss target of SPEC 3.5: `pred * sqrt(var + 1e-6) + mean`, with the
/// mean and unbiased variance of `original_patch`. Not clipped. Both slices hold one patch in
/// the same element order (768 values in (row, col, channel) order).
pub fn denormalize_patch(pred: &[f32], original_patch: &[f32]) -> Vec<f32> {
    assert_eq!(
        pred.len(),
        original_patch.len(),
        "prediction and patch differ in length"
    );
    let n = original_patch.len();
    if n == 0 {
        return Vec::new();
    }
    // f64 so the round trip with the f32 normalisation is exact to well under 1e-5.
    let mean = original_patch.iter().map(|&v| v as f64).sum::<f64>() / n as f64;
    let var = if n > 1 {
        original_patch
            .iter()
            .map(|&v| (v as f64 - mean).powi(2))
            .sum::<f64>()
            / (n - 1) as f64
    } else {
        0.0
    };
    let std = (var + 1e-6).sqrt();
    pred.iter()
        .map(|&v| (v as f64 * std + mean) as f32)
        .collect()
}

/// Builds the four panels of one example; errors when a buffer has the wrong length.
pub fn reconstruction_panels(
    row: &ReconstructionRow,
    num_patches: usize,
    norm_pix_loss: bool,
) -> anyhow::Result<ReconstructionPanels> {
    let width = PATCH * num_patches;
    let image_len = 3 * PATCH * width;
    ensure!(num_patches > 0, "num_patches must be at least 1");
    ensure!(
        row.pixel_values.len() == image_len,
        "pixel_values has {} values, expected 3 x 16 x {width}",
        row.pixel_values.len()
    );
    ensure!(
        row.mask.len() == num_patches,
        "mask has {} values, expected {num_patches}",
        row.mask.len()
    );
    ensure!(
        row.attention_mask.len() == num_patches,
        "attention_mask has {} values, expected {num_patches}",
        row.attention_mask.len()
    );
    ensure!(
        row.prediction.len() == num_patches * PATCH_DIM,
        "prediction has {} values, expected {num_patches} x {PATCH_DIM}",
        row.prediction.len()
    );

    let mut panels = ReconstructionPanels {
        original: row.pixel_values.clone(),
        masked: row.pixel_values.clone(),
        prediction: vec![NO_PREDICTION_GREY; image_len],
        reconstruction: row.pixel_values.clone(),
        loss_patches: Vec::with_capacity(num_patches),
    };
    for k in 0..num_patches {
        let removed = row.mask[k] > 0.5;
        let in_loss = removed && row.attention_mask[k] > 0.5;
        panels.loss_patches.push(in_loss);
        let predicted: Vec<f32> = if in_loss {
            let raw = &row.prediction[k * PATCH_DIM..(k + 1) * PATCH_DIM];
            let values = if norm_pix_loss {
                denormalize_patch(raw, &patch_rcc(&row.pixel_values, num_patches, k))
            } else {
                raw.to_vec()
            };
            values.into_iter().map(|v| v.clamp(0.0, 1.0)).collect() // (16, 16, 3)
        } else {
            Vec::new()
        };
        for p in 0..PATCH {
            for q in 0..PATCH {
                for c in 0..3 {
                    let at = c * PATCH * width + p * width + k * PATCH + q;
                    if removed {
                        panels.masked[at] = REMOVED_GREY;
                    }
                    if in_loss {
                        let v = predicted[(p * PATCH + q) * 3 + c];
                        panels.prediction[at] = v;
                        panels.reconstruction[at] = v;
                    }
                }
            }
        }
    }
    Ok(panels)
}

/// Geometry shared by the size computation and the drawing.
struct Layout {
    num_patches: usize,
    square: bool,
    /// Nearest-neighbour zoom: 2 for strips of at most 128 patches.
    scale: usize,
    /// Patches per grid row in the square view.
    grid: usize,
    panel_width: usize,
    panel_height: usize,
    block_height: usize,
    width: usize,
}

impl Layout {
    fn new(num_patches: usize, square: bool) -> Self {
        let scale = if num_patches <= 128 { 2 } else { 1 };
        let grid = (1..).find(|g| g * g >= num_patches).unwrap_or(1);
        if square {
            let side = grid * PATCH * scale;
            Layout {
                num_patches,
                square,
                scale,
                grid,
                panel_width: side,
                panel_height: side,
                block_height: 2 * TEXT_LINE + side + 2 * SEPARATOR,
                width: 2 * MARGIN + 4 * side + 5 * SEPARATOR,
            }
        } else {
            let panel_height = PATCH * scale;
            let panel_width = PATCH * num_patches * scale;
            Layout {
                num_patches,
                square,
                scale,
                grid,
                panel_width,
                panel_height,
                block_height: TEXT_LINE + 4 * panel_height + 5 * SEPARATOR,
                width: 2 * MARGIN + NAME_GUTTER + panel_width,
            }
        }
    }

    fn height(&self, rows: usize) -> usize {
        2 * MARGIN + rows * self.block_height + rows.saturating_sub(1) * ROW_GAP
    }

    /// Top-left corner of panel `i` (0 = original .. 3 = reconstruction) in a block at `top`.
    fn panel_origin(&self, top: usize, i: usize) -> (usize, usize) {
        if self.square {
            let x = MARGIN + SEPARATOR + i * (self.panel_width + SEPARATOR);
            (x, top + 2 * TEXT_LINE + SEPARATOR)
        } else {
            let y = top + TEXT_LINE + SEPARATOR + i * (self.panel_height + SEPARATOR);
            (MARGIN + NAME_GUTTER, y)
        }
    }

    /// Top-left corner of patch `k` inside a panel at `origin`; side PATCH * scale.
    fn patch_origin(&self, origin: (usize, usize), k: usize) -> (usize, usize) {
        let side = PATCH * self.scale;
        if self.square {
            (
                origin.0 + k % self.grid * side,
                origin.1 + k / self.grid * side,
            )
        } else {
            (origin.0 + k * side, origin.1)
        }
    }
}

/// Size in pixels (width, height) of the figure `write_reconstruction_png` draws.
pub fn reconstruction_figure_size(rows: usize, num_patches: usize, square: bool) -> (usize, usize) {
    let layout = Layout::new(num_patches, square);
    (layout.width, layout.height(rows))
}

/// Draws each row as its label and four panels (original, masked input, de-normalised prediction
/// in the removed-and-attended patches, reconstruction), separated by thin blue lines, and writes
/// the figure as a PNG. `square = false`: panels are 16 x 16 L strips one under another (2x zoom
/// for L <= 128); `square = true`: each panel is a ceil(sqrt L)-wide grid of patches (SPEC 8),
/// panels side by side. Removed-and-attended patches are outlined in orange in the masked panel.
pub fn write_reconstruction_png(
    path: &Path,
    rows: &[ReconstructionRow],
    num_patches: usize,
    norm_pix_loss: bool,
    square: bool,
) -> anyhow::Result<()> {
    if rows.is_empty() {
        bail!("no examples to draw in {}", path.display());
    }
    let panels: Vec<ReconstructionPanels> = rows
        .iter()
        .map(|row| reconstruction_panels(row, num_patches, norm_pix_loss))
        .collect::<anyhow::Result<_>>()?;
    let layout = Layout::new(num_patches, square);
    let mut canvas = Canvas::new(layout.width, layout.height(rows.len()), WHITE);
    let mut text = TextPainter::new()?;
    let names: Vec<_> = PANEL_NAMES.iter().map(|name| text.strip(name)).collect();

    for (r, (row, panels)) in rows.iter().zip(&panels).enumerate() {
        let top = MARGIN + r * (layout.block_height + ROW_GAP);
        text.draw(&mut canvas, MARGIN as i64, top as i64, &row.label, BLACK);
        draw_separators(&mut canvas, &layout, top);
        let images = [
            &panels.original,
            &panels.masked,
            &panels.prediction,
            &panels.reconstruction,
        ];
        for (i, image) in images.into_iter().enumerate() {
            let origin = layout.panel_origin(top, i);
            draw_panel(&mut canvas, &layout, image, origin);
            let (x, y, max_width) = if square {
                (origin.0, top + TEXT_LINE, layout.panel_width)
            } else {
                let centre = origin.1 + layout.panel_height / 2;
                (MARGIN, centre.saturating_sub(PATCH / 2), NAME_GUTTER - 6)
            };
            blit_text(
                &mut canvas,
                &names[i],
                x as i64,
                y as i64,
                NAME_COLOR,
                max_width,
            );
        }
        let masked_origin = layout.panel_origin(top, 1);
        let side = PATCH * layout.scale;
        for k in (0..num_patches).filter(|&k| panels.loss_patches[k]) {
            let (x, y) = layout.patch_origin(masked_origin, k);
            canvas.outline_rect(x as i64, y as i64, side, side, LOSS_PATCH_OUTLINE);
        }
    }
    canvas.write_png(path)
}

/// The thin coloured lines framing and separating the four panels of one block.
fn draw_separators(canvas: &mut Canvas, layout: &Layout, top: usize) {
    let (x0, y0) = layout.panel_origin(top, 0);
    if layout.square {
        let (y, height) = (y0 - SEPARATOR, layout.panel_height + 2 * SEPARATOR);
        let total_width = 4 * layout.panel_width + 5 * SEPARATOR;
        canvas.fill_rect(
            (x0 - SEPARATOR) as i64,
            y as i64,
            total_width,
            SEPARATOR,
            SEPARATOR_COLOR,
        );
        let bottom = y0 + layout.panel_height;
        canvas.fill_rect(
            (x0 - SEPARATOR) as i64,
            bottom as i64,
            total_width,
            SEPARATOR,
            SEPARATOR_COLOR,
        );
        for i in 0..=4 {
            let x = x0 - SEPARATOR + i * (layout.panel_width + SEPARATOR);
            canvas.fill_rect(x as i64, y as i64, SEPARATOR, height, SEPARATOR_COLOR);
        }
    } else {
        for i in 0..=4 {
            let y = y0 - SEPARATOR + i * (layout.panel_height + SEPARATOR);
            canvas.fill_rect(
                x0 as i64,
                y as i64,
                layout.panel_width,
                SEPARATOR,
                SEPARATOR_COLOR,
            );
        }
    }
}

/// Copies a (3, 16, 16 L) image into the canvas, patch by patch, zoomed by `layout.scale`.
fn draw_panel(canvas: &mut Canvas, layout: &Layout, image: &[f32], origin: (usize, usize)) {
    let width = PATCH * layout.num_patches;
    let scale = layout.scale;
    for k in 0..layout.num_patches {
        let (px, py) = layout.patch_origin(origin, k);
        for p in 0..PATCH {
            for q in 0..PATCH {
                let at = p * width + k * PATCH + q;
                let color = [0, 1, 2].map(|c| unit_to_u8(image[c * PATCH * width + at]));
                let (x, y) = (px + q * scale, py + p * scale);
                canvas.fill_rect(x as i64, y as i64, scale, scale, color);
            }
        }
    }
}
