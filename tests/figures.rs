//! Loss-curve and reconstruction figures: files written, sizes, de-normalisation, patch order.

use std::path::PathBuf;

use pixel::figures::{
    denormalize_patch, patch_rcc, reconstruction_figure_size, reconstruction_panels,
    write_loss_curve_png, write_reconstruction_png, ReconstructionRow, LOSS_CURVE_HEIGHT,
    LOSS_CURVE_WIDTH,
};
use pixel_render::{RenderConfig, Renderer};

const PATCH_DIM: usize = 768;

/// (step, loss) pairs as the training loop logs them.
type LossPoints = Vec<(u64, f32)>;

/// A file under the test scratch folder of the target dir (kept after the run for a look).
fn out_path(name: &str) -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("figures");
    std::fs::create_dir_all(&dir).unwrap();
    dir.join(name)
}

/// (width, height) of a PNG file, decoding the whole image to be sure it is valid.
fn png_size(path: &PathBuf) -> (usize, usize) {
    let decoder = png::Decoder::new(std::fs::File::open(path).unwrap());
    let mut reader = decoder.read_info().unwrap();
    let mut buf = vec![0; reader.output_buffer_size()];
    let info = reader.next_frame(&mut buf).unwrap();
    (info.width as usize, info.height as usize)
}

/// SPEC 3.5's norm_pix_loss target for one patch, in f32 like the reference.
fn normalize_patch(patch: &[f32]) -> Vec<f32> {
    let n = patch.len() as f32;
    let mean = patch.iter().sum::<f32>() / n;
    let var = patch.iter().map(|v| (v - mean).powi(2)).sum::<f32>() / (n - 1.0);
    patch
        .iter()
        .map(|v| (v - mean) / (var + 1e-6).sqrt())
        .collect()
}

/// Deterministic pseudo-random values in [0, 1).
fn noise(seed: u64, n: usize) -> Vec<f32> {
    let mut state = seed
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    (0..n)
        .map(|_| {
            state = state
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (state >> 40) as f32 / (1u64 << 24) as f32
        })
        .collect()
}

/// A rendered sentence with every fourth text patch and one padding patch removed, and a
/// prediction equal to the normalised target (garbage in the patches the figure must ignore).
fn example_row(text: &str, num_patches: usize) -> ReconstructionRow {
    let mut renderer = Renderer::new(RenderConfig {
        max_seq_length: num_patches,
        ..Default::default()
    })
    .unwrap();
    let rendering = renderer.render_text(text);
    let pixel_values = rendering.pixel_values();
    let attention_mask = rendering.attention_mask();
    let mut mask = vec![0.0; num_patches];
    for k in (1..rendering.attention_len()).step_by(4) {
        mask[k] = 1.0;
    }
    mask[num_patches - 1] = 1.0; // padding: removed but not attended
    let mut prediction = noise(7, num_patches * PATCH_DIM);
    for k in 0..num_patches {
        if mask[k] > 0.5 && attention_mask[k] > 0.5 {
            let target = normalize_patch(&patch_rcc(&pixel_values, num_patches, k));
            prediction[k * PATCH_DIM..(k + 1) * PATCH_DIM].copy_from_slice(&target);
        }
    }
    ReconstructionRow {
        pixel_values,
        mask,
        attention_mask,
        prediction,
        label: format!("\"{text}\" (prediction = normalised original)"),
    }
}

#[test]
fn loss_curve_png_has_the_expected_size() {
    let train: Vec<(u64, f32)> = (0..2000u64)
        .map(|s| {
            let decay = 0.45 * (-(s as f32) / 300.0).exp() + 0.6 - 0.05 * (s as f32 / 2000.0);
            (s, decay + 0.08 * (noise(s, 1)[0] - 0.5))
        })
        .collect();
    let eval: Vec<(u64, f32)> = (0..=2000u64)
        .step_by(250)
        .map(|s| {
            (
                s,
                0.47 * (-(s as f32) / 300.0).exp() + 0.62 - 0.05 * (s as f32 / 2000.0),
            )
        })
        .collect();
    let path = out_path("loss_curve.png");
    write_loss_curve_png(&path, &train, &eval, "pretraining loss, tiny preset").unwrap();
    assert_eq!(png_size(&path), (LOSS_CURVE_WIDTH, LOSS_CURVE_HEIGHT));
}

#[test]
fn loss_curve_survives_empty_nan_and_flat_input() {
    let cases: Vec<(&str, LossPoints, LossPoints)> = vec![
        ("empty", vec![], vec![]),
        (
            "all_nan",
            vec![(0, f32::NAN), (1, f32::NAN)],
            vec![(1, f32::NAN)],
        ),
        (
            "some_nan",
            vec![
                (0, 1.0),
                (1, f32::NAN),
                (2, 0.8),
                (3, f32::INFINITY),
                (4, 0.7),
            ],
            vec![],
        ),
        ("one_point", vec![(5, 0.5)], vec![]),
        ("flat", vec![(0, 0.7), (10, 0.7)], vec![(10, 0.7)]),
        ("eval_only", vec![], vec![(100, 0.9), (200, 0.8)]),
    ];
    for (name, train, eval) in cases {
        let path = out_path(&format!("loss_curve_{name}.png"));
        write_loss_curve_png(&path, &train, &eval, name).unwrap();
        assert_eq!(
            png_size(&path),
            (LOSS_CURVE_WIDTH, LOSS_CURVE_HEIGHT),
            "{name}"
        );
    }
}

#[test]
fn denormalize_undoes_the_norm_pix_target() {
    let patches = [
        noise(1, PATCH_DIM),
        noise(2, PATCH_DIM)
            .iter()
            .map(|v| (v * 4.0).floor() / 3.0)
            .collect(),
        vec![1.0; PATCH_DIM], // white padding: target 0, mean back
        vec![0.0; PATCH_DIM], // black EOS
    ];
    for patch in &patches {
        let back = denormalize_patch(&normalize_patch(patch), patch);
        for (a, b) in back.iter().zip(patch) {
            assert!((a - b).abs() < 1e-5, "{a} vs {b}");
        }
    }
}

#[test]
fn patch_rcc_is_row_col_channel_order() {
    let num_patches = 3;
    let width = 16 * num_patches;
    // Each value encodes where it came from: channel, row, column of the strip.
    let mut image = vec![0.0f32; 3 * 16 * width]; // (3, 16, 48)
    for c in 0..3 {
        for y in 0..16 {
            for x in 0..width {
                image[c * 16 * width + y * width + x] = (c * 100_000 + y * 1_000 + x) as f32;
            }
        }
    }
    for k in 0..num_patches {
        let patch = patch_rcc(&image, num_patches, k);
        assert_eq!(patch.len(), PATCH_DIM);
        for p in 0..16 {
            for q in 0..16 {
                for c in 0..3 {
                    let expected = (c * 100_000 + p * 1_000 + k * 16 + q) as f32;
                    assert_eq!(
                        patch[(p * 16 + q) * 3 + c],
                        expected,
                        "k {k} p {p} q {q} c {c}"
                    );
                }
            }
        }
    }
}

#[test]
fn perfect_prediction_reconstructs_the_original() {
    let num_patches = 32;
    let row = example_row("The quick brown fox jumps.", num_patches);
    let panels = reconstruction_panels(&row, num_patches, true).unwrap();
    let loss_patches: Vec<usize> = (0..num_patches)
        .filter(|&k| panels.loss_patches[k])
        .collect();
    assert!(loss_patches.len() >= 3, "{loss_patches:?}");
    assert!(
        !panels.loss_patches[num_patches - 1],
        "padding is not a loss patch"
    );
    for (i, (a, b)) in panels
        .reconstruction
        .iter()
        .zip(&row.pixel_values)
        .enumerate()
    {
        assert!((a - b).abs() <= 1.0 / 255.0, "value {i}: {a} vs {b}");
    }
    for &k in &loss_patches {
        let predicted = patch_rcc(&panels.prediction, num_patches, k);
        let original = patch_rcc(&row.pixel_values, num_patches, k);
        for (a, b) in predicted.iter().zip(&original) {
            assert!((a - b).abs() <= 1.0 / 255.0);
        }
        assert!(patch_rcc(&panels.masked, num_patches, k)
            .iter()
            .all(|&v| v == 0.5));
    }
    // Kept patches are untouched in the masked panel.
    assert_eq!(
        patch_rcc(&panels.masked, num_patches, 0),
        patch_rcc(&row.pixel_values, num_patches, 0)
    );
}

#[test]
fn raw_predictions_are_clipped_without_norm_pix_loss() {
    let num_patches = 8;
    let mut row = example_row("Hi", num_patches);
    row.prediction = vec![3.0; num_patches * PATCH_DIM];
    let panels = reconstruction_panels(&row, num_patches, false).unwrap();
    let k = (0..num_patches).find(|&k| panels.loss_patches[k]).unwrap();
    assert!(patch_rcc(&panels.reconstruction, num_patches, k)
        .iter()
        .all(|&v| v == 1.0));
}

#[test]
fn reconstruction_pngs_strip_and_square() {
    let num_patches = 32;
    let rows = vec![
        example_row("The quick brown fox jumps.", num_patches),
        example_row("Pixels, not tokens.", num_patches),
    ];
    for (square, name) in [
        (false, "reconstruction_strip.png"),
        (true, "reconstruction_square.png"),
    ] {
        let path = out_path(name);
        write_reconstruction_png(&path, &rows, num_patches, true, square).unwrap();
        let size = png_size(&path);
        assert_eq!(
            size,
            reconstruction_figure_size(rows.len(), num_patches, square)
        );
        if square {
            // 6 x 6 grid of 16 px patches, zoomed 2x, four panels side by side.
            assert!(size.0 >= 4 * 6 * 32 && size.1 >= 2 * 6 * 32, "{size:?}");
        } else {
            // Strips zoomed 2x, four panels per example.
            assert!(size.0 >= 16 * 32 * 2 && size.1 >= 2 * 4 * 32, "{size:?}");
        }
    }
}

#[test]
fn square_view_of_a_full_strip_is_23_by_23() {
    let num_patches = 529;
    let rows = vec![example_row("A full-length pretraining strip.", num_patches)];
    let path = out_path("reconstruction_square_529.png");
    write_reconstruction_png(&path, &rows, num_patches, true, true).unwrap();
    let (width, height) = png_size(&path);
    assert_eq!(
        (width, height),
        reconstruction_figure_size(1, num_patches, true)
    );
    assert!(width >= 4 * 368 && height >= 368);
}

#[test]
fn bad_input_is_an_error() {
    let num_patches = 8;
    let path = out_path("never_written.png");
    assert!(write_reconstruction_png(&path, &[], num_patches, true, false).is_err());
    let mut row = example_row("Hi", num_patches);
    row.prediction.pop();
    assert!(write_reconstruction_png(&path, &[row], num_patches, true, false).is_err());
    let row = example_row("Hi", num_patches);
    assert!(write_reconstruction_png(&path, &[row], num_patches + 1, true, false).is_err());
}
