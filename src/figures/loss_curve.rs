//! The loss curve: training loss per step (raw and a moving average) and the eval loss.

use std::path::Path;

use super::{Canvas, Rgb, TextPainter, BLACK, WHITE};

/// Size of the loss-curve PNG in pixels.
pub const LOSS_CURVE_WIDTH: usize = 900;
pub const LOSS_CURVE_HEIGHT: usize = 420;

const RAW_COLOR: Rgb = [110, 110, 110];
const SMOOTH_COLOR: Rgb = [31, 119, 180];
const EVAL_COLOR: Rgb = [214, 39, 40];
const GRID_COLOR: Rgb = [228, 228, 228];
const TEXT_COLOR: Rgb = [20, 20, 20];
/// Tick marks per axis, both ends included.
const TICKS: usize = 5;

/// The plot rectangle inside the picture, in pixels (left/top inclusive, right/bottom inclusive).
pub(super) struct PlotArea {
    left: i64,
    top: i64,
    right: i64,
    bottom: i64,
    /// Steps (or another x quantity) at the left and right edges.
    steps: (f64, f64),
    /// Losses at the bottom and top edges.
    losses: (f64, f64),
}

impl PlotArea {
    /// The area of a `LOSS_CURVE_WIDTH` x `LOSS_CURVE_HEIGHT` picture for x in `xs` and
    /// y in `ys` (each lo, hi; an empty range is widened).
    pub(super) fn fit(xs: (f64, f64), ys: (f64, f64)) -> PlotArea {
        let xs = if xs.1 > xs.0 { xs } else { (xs.0, xs.0 + 1.0) };
        let ys = if ys.1 - ys.0 >= 1e-12 {
            ys
        } else {
            let pad = (ys.0.abs() * 0.05).max(0.01);
            (ys.0 - pad, ys.1 + pad)
        };
        PlotArea {
            left: 88,
            top: 40,
            right: LOSS_CURVE_WIDTH as i64 - 24,
            bottom: LOSS_CURVE_HEIGHT as i64 - 62,
            steps: xs,
            losses: ys,
        }
    }

    fn x(&self, step: u64) -> i64 {
        self.xf(step as f64)
    }

    pub(super) fn xf(&self, x: f64) -> i64 {
        self.x_at((x - self.steps.0) / (self.steps.1 - self.steps.0))
    }

    /// Column at fraction `t` of the step range; the first step sits a few pixels right of the
    /// axis so its point stays visible.
    fn x_at(&self, t: f64) -> i64 {
        let first = self.left + 3;
        first + (t * (self.right - first) as f64).round() as i64
    }

    pub(super) fn y(&self, loss: f32) -> i64 {
        let t = (loss as f64 - self.losses.0) / (self.losses.1 - self.losses.0);
        self.bottom - (t * (self.bottom - self.top) as f64).round() as i64
    }
}

/// Draws the training loss per step (thin dark line, plus a moving average in blue) and the eval
/// loss (red points joined by a line) to a `LOSS_CURVE_WIDTH` x `LOSS_CURVE_HEIGHT` PNG.
///
/// Points whose loss is NaN or infinite are left out (they break the line); with no finite point
/// at all the picture still has its axes, title and a "no finite loss values" note.
pub fn write_loss_curve_png(
    path: &Path,
    train: &[(u64, f32)],
    eval: &[(u64, f32)],
    title: &str,
) -> anyhow::Result<()> {
    let mut canvas = Canvas::new(LOSS_CURVE_WIDTH, LOSS_CURVE_HEIGHT, WHITE);
    let mut text = TextPainter::new()?;
    let mut train = train.to_vec();
    let mut eval = eval.to_vec();
    // Callers log in step order, but a resumed run may append out of order.
    train.sort_by_key(|&(step, _)| step);
    eval.sort_by_key(|&(step, _)| step);

    let area = plot_area(&train, &eval);
    draw_frame(&mut canvas, &mut text, &area, title, "step", "loss");

    if !train.iter().chain(&eval).any(|p| p.1.is_finite()) {
        let note = "no finite loss values";
        let width = text.strip(note).width as i64;
        let x = (area.left + area.right - width) / 2;
        text.draw(
            &mut canvas,
            x,
            (area.top + area.bottom) / 2 - 8,
            note,
            TEXT_COLOR,
        );
        return canvas.write_png(path);
    }

    draw_polyline(&mut canvas, &area, &train, RAW_COLOR, false);
    draw_sparse_points(&mut canvas, &area, &train, RAW_COLOR);
    let smooth_window = draw_moving_average(&mut canvas, &area, &train);
    draw_polyline(&mut canvas, &area, &eval, EVAL_COLOR, false);
    for &(step, loss) in eval.iter().filter(|p| p.1.is_finite()) {
        canvas.fill_rect(area.x(step) - 2, area.y(loss) - 2, 5, 5, EVAL_COLOR);
    }
    draw_legend(&mut canvas, &mut text, smooth_window, !eval.is_empty());
    canvas.write_png(path)
}

/// Axis ranges from the finite points (with a 5 % margin on the loss axis).
fn plot_area(train: &[(u64, f32)], eval: &[(u64, f32)]) -> PlotArea {
    let all = || train.iter().chain(eval);
    let first = all().map(|p| p.0).min().unwrap_or(0) as f64;
    let last = all().map(|p| p.0).max().unwrap_or(1) as f64;
    PlotArea::fit((first, last), padded_range(all().map(|p| p.1)))
}

/// The range of the finite values with a 5 % margin ((0, 1) when none is finite).
pub(super) fn padded_range(values: impl Iterator<Item = f32>) -> (f64, f64) {
    let (lo, hi) = values
        .filter(|l| l.is_finite())
        .fold((f32::INFINITY, f32::NEG_INFINITY), |(lo, hi), v| {
            (lo.min(v), hi.max(v))
        });
    if lo > hi {
        return (0.0, 1.0); // nothing finite
    }
    let pad = (hi - lo) as f64 * 0.05;
    (lo as f64 - pad, hi as f64 + pad)
}

/// Title, grid, axes, tick marks and their labels (x ticks are whole numbers).
pub(super) fn draw_frame(
    canvas: &mut Canvas,
    text: &mut TextPainter,
    area: &PlotArea,
    title: &str,
    x_label: &str,
    y_label: &str,
) {
    text.draw(canvas, area.left, 10, title, BLACK);
    text.draw(canvas, 8, area.top - 22, y_label, TEXT_COLOR);
    let (lo, hi) = area.losses;
    let loss_step = (hi - lo) / (TICKS - 1) as f64;
    let decimals = (1.0 - loss_step.log10()).ceil().clamp(0.0, 6.0) as usize;
    for i in 0..TICKS {
        let t = i as f64 / (TICKS - 1) as f64;
        // Loss ticks: a light grid line across, a mark left of the axis, the value beside it.
        let y = area.bottom - (t * (area.bottom - area.top) as f64).round() as i64;
        canvas.line((area.left, y), (area.right, y), GRID_COLOR);
        canvas.line((area.left - 5, y), (area.left, y), BLACK);
        let label = format!("{:.*}", decimals, lo + t * (hi - lo));
        let width = text.strip(&label).width as i64;
        text.draw(canvas, area.left - 8 - width, y - 8, &label, TEXT_COLOR);
    }
    // Fewer step ticks over a short run, so no step number is printed twice.
    let span = area.steps.1 - area.steps.0;
    let intervals = ((TICKS - 1) as f64).min(span).max(1.0) as usize;
    for i in 0..=intervals {
        let t = i as f64 / intervals as f64;
        // Step ticks: a mark below the axis and the step number centred under it.
        let x = area.x_at(t);
        canvas.line((x, area.bottom), (x, area.bottom + 5), BLACK);
        let label = format!("{}", (area.steps.0 + t * span).round() as u64);
        let width = text.strip(&label).width as i64;
        text.draw(canvas, x - width / 2, area.bottom + 8, &label, TEXT_COLOR);
    }
    canvas.line((area.left, area.top), (area.left, area.bottom), BLACK);
    canvas.line((area.left, area.bottom), (area.right, area.bottom), BLACK);
    let width = text.strip(x_label).width as i64;
    let x = (area.left + area.right - width) / 2;
    text.draw(canvas, x, area.bottom + 28, x_label, TEXT_COLOR);
}

/// Joins consecutive finite points; a NaN or infinite loss leaves a gap.
fn draw_polyline(
    canvas: &mut Canvas,
    area: &PlotArea,
    points: &[(u64, f32)],
    color: Rgb,
    thick: bool,
) {
    let points = points.iter().map(|&(step, loss)| (step as f64, loss));
    draw_line_through(canvas, area, points, color, thick);
}

/// Joins consecutive (x, y) points whose y is finite; a NaN or infinity leaves a gap.
/// `thick` doubles the line one pixel down.
pub(super) fn draw_line_through(
    canvas: &mut Canvas,
    area: &PlotArea,
    points: impl Iterator<Item = (f64, f32)>,
    color: Rgb,
    thick: bool,
) {
    let mut previous: Option<(i64, i64)> = None;
    for (x, y) in points {
        if !y.is_finite() {
            previous = None;
            continue;
        }
        let here = (area.xf(x), area.y(y));
        let from = previous.unwrap_or(here);
        canvas.line(from, here, color);
        if thick {
            canvas.line((from.0, from.1 + 1), (here.0, here.1 + 1), color);
        }
        previous = Some(here);
    }
}

/// Dots for training points a line alone would hide: all of them in a short run, and any
/// point whose neighbours are both NaN.
fn draw_sparse_points(canvas: &mut Canvas, area: &PlotArea, points: &[(u64, f32)], color: Rgb) {
    let finite = |i: usize| points.get(i).is_some_and(|p| p.1.is_finite());
    let short_run = points.iter().filter(|p| p.1.is_finite()).count() <= 60;
    for (i, &(step, loss)) in points.iter().enumerate() {
        let isolated = (i == 0 || !finite(i - 1)) && !finite(i + 1);
        if loss.is_finite() && (short_run || isolated) {
            canvas.fill_rect(area.x(step) - 1, area.y(loss) - 1, 3, 3, color);
        }
    }
}

/// Centred moving average over the finite training points; returns the window length
/// (1 = too few points, nothing drawn).
fn draw_moving_average(canvas: &mut Canvas, area: &PlotArea, train: &[(u64, f32)]) -> usize {
    let finite: Vec<(u64, f32)> = train.iter().copied().filter(|p| p.1.is_finite()).collect();
    let half = (finite.len() / 50).min(125);
    if half == 0 {
        return 1;
    }
    // prefix[i] = sum of the first i losses, in f64 so long runs do not drift.
    let mut prefix = vec![0.0f64; finite.len() + 1];
    for (i, &(_, loss)) in finite.iter().enumerate() {
        prefix[i + 1] = prefix[i] + loss as f64;
    }
    let smoothed: Vec<(u64, f32)> = (0..finite.len())
        .map(|i| {
            let (a, b) = (i.saturating_sub(half), (i + half + 1).min(finite.len()));
            (
                finite[i].0,
                ((prefix[b] - prefix[a]) / (b - a) as f64) as f32,
            )
        })
        .collect();
    draw_polyline(canvas, area, &smoothed, SMOOTH_COLOR, true);
    2 * half + 1
}

/// Colour key in the top-right corner.
fn draw_legend(canvas: &mut Canvas, text: &mut TextPainter, smooth_window: usize, has_eval: bool) {
    let mut entries = vec![(RAW_COLOR, "train".to_string())];
    if smooth_window > 1 {
        entries.push((SMOOTH_COLOR, format!("train, mean of {smooth_window}")));
    }
    if has_eval {
        entries.push((EVAL_COLOR, "eval".to_string()));
    }
    // Right-aligned: measure first, then draw left to right.
    let widths: Vec<i64> = entries
        .iter()
        .map(|(_, l)| text.strip(l).width as i64)
        .collect();
    let total: i64 = widths.iter().map(|w| w + 20 + 16).sum();
    let mut x = LOSS_CURVE_WIDTH as i64 - 24 - total;
    for ((color, label), width) in entries.iter().zip(widths) {
        canvas.fill_rect(x, 16, 14, 4, *color);
        x += 20;
        text.draw(canvas, x, 10, label, TEXT_COLOR);
        x += width + 16;
    }
}
