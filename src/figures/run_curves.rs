//! Several runs on one plot: each run's eval loss as a fraction of its best constant
//! prediction (1 = the plateau), against minutes or steps (`pixel compare`).

use std::path::Path;

use super::loss_curve::{draw_frame, draw_line_through, padded_range, PlotArea};
use super::{Canvas, Rgb, TextPainter, WHITE};
use super::{LOSS_CURVE_HEIGHT, LOSS_CURVE_WIDTH};

/// One run's line: its label and (x, eval loss / constant) points in x order.
pub struct RunCurve {
    pub label: String,
    pub points: Vec<(f64, f32)>,
}

/// Line colours, one per run in order (cycled past ten).
const PALETTE: [Rgb; 10] = [
    [31, 119, 180],
    [214, 39, 40],
    [44, 160, 44],
    [255, 127, 14],
    [148, 103, 189],
    [140, 86, 75],
    [227, 119, 194],
    [127, 127, 127],
    [188, 189, 34],
    [23, 190, 207],
];
const PLATEAU_COLOR: Rgb = [170, 170, 170];
const TEXT_COLOR: Rgb = [20, 20, 20];

/// Draws every run's points joined by a line, a dashed line at 1 (the best constant
/// prediction) and a key listing the runs, to a `LOSS_CURVE_WIDTH` x `LOSS_CURVE_HEIGHT` PNG.
pub fn write_run_curves_png(
    path: &Path,
    curves: &[RunCurve],
    title: &str,
    x_label: &str,
) -> anyhow::Result<()> {
    let mut canvas = Canvas::new(LOSS_CURVE_WIDTH, LOSS_CURVE_HEIGHT, WHITE);
    let mut text = TextPainter::new()?;
    let all = || curves.iter().flat_map(|c| c.points.iter());
    let x_hi = all().map(|p| p.0).fold(0.0, f64::max);
    let ys = padded_range(all().map(|p| p.1).chain([1.0]));
    let area = PlotArea::fit((0.0, x_hi), ys);
    draw_frame(
        &mut canvas,
        &mut text,
        &area,
        title,
        x_label,
        "", // the title says what y is
    );
    // The plateau: dashes at y = 1.
    let y1 = area.y(1.0);
    let (left, right) = (area.xf(0.0), area.xf(x_hi));
    for x in (left..right).step_by(10) {
        canvas.line((x, y1), ((x + 5).min(right), y1), PLATEAU_COLOR);
    }
    for (i, curve) in curves.iter().enumerate() {
        let color = PALETTE[i % PALETTE.len()];
        draw_line_through(
            &mut canvas,
            &area,
            curve.points.iter().copied(),
            color,
            true,
        );
    }
    // The key: one row per run, top right inside the plot.
    let width = curves
        .iter()
        .map(|c| text.strip(&c.label).width as i64)
        .max()
        .unwrap_or(0);
    let x0 = LOSS_CURVE_WIDTH as i64 - 24 - width - 30;
    for (i, curve) in curves.iter().enumerate() {
        let y = 46 + 20 * i as i64;
        canvas.fill_rect(x0 - 4, y - 2, width as usize + 34, 20, WHITE);
        canvas.fill_rect(x0, y + 6, 20, 4, PALETTE[i % PALETTE.len()]);
        text.draw(&mut canvas, x0 + 26, y, &curve.label, TEXT_COLOR);
    }
    canvas.write_png(path)
}
