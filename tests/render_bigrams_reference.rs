//! Compares `--rendering bigrams` with strips drawn by PIXEL's PangoCairoBigramsRenderer
//! (../shared/anchors/render/bigrams, see NOTES.md there): patch counts, separators and word
//! starts must be equal; pixels must be close. Skipped when that folder is absent.

use std::path::PathBuf;

use pixel_render::{Input, RenderConfig, Renderer, Rendering, RenderingStrategy};
use serde_json::Value;

fn anchors() -> Option<PathBuf> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared/anchors/render/bigrams");
    if dir.join("reference.json").exists() {
        Some(dir)
    } else {
        println!("skipped: {} not found", dir.display());
        None
    }
}

/// Every rendered input (inputs and edge cases; the ones the original fails on are left out).
fn load(dir: &std::path::Path) -> Vec<Value> {
    let text = std::fs::read_to_string(dir.join("reference.json")).expect("reference.json");
    let json: Value = serde_json::from_str(&text).expect("reference.json parses");
    let mut all = json["inputs"].as_array().unwrap().clone();
    all.extend(json["edge_cases"].as_array().unwrap().iter().cloned());
    all.retain(|i| i.get("error").is_none());
    all
}

/// Inputs the reference drew with fonts we do not ship, so their character widths differ:
/// colour emoji, private use and Linear A, and Arabic, for which fontconfig chose DejaVu Sans
/// over Noto Sans Arabic (see `arabic_matches_with_dejavu_sans_as_fallback`).
fn needs_other_fonts(key: &str) -> bool {
    key.starts_with("emoji") || key == "missing_glyphs" || key == "ar_arabic"
}

fn strings(v: &Value) -> Vec<String> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|s| s.as_str().unwrap().to_string())
        .collect()
}

fn input_of(i: &Value) -> Input {
    match i["mode"].as_str().unwrap() {
        "text" => Input::Text(i["text"].as_str().unwrap().to_string()),
        "pair" => {
            let t = strings(&i["text"]);
            Input::Pair(t[0].clone(), t[1].clone())
        }
        _ => Input::Words(strings(&i["words"])),
    }
}

fn usizes(v: &Value) -> Vec<usize> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_u64().unwrap() as usize)
        .collect()
}

fn bigrams() -> Renderer {
    Renderer::new(RenderConfig {
        rendering: RenderingStrategy::Bigrams,
        ..RenderConfig::default()
    })
    .expect("embedded fonts load")
}

#[test]
fn bigrams_patch_counts_separators_and_word_starts_equal_the_reference() {
    let Some(dir) = anchors() else { return };
    let mut renderer = bigrams();
    let mut checked = 0;
    for i in load(&dir) {
        let key = i["key"].as_str().unwrap();
        if needs_other_fonts(key) {
            continue;
        }
        let r = renderer.render(&input_of(&i));
        let want = i["num_text_patches"].as_u64().unwrap() as usize;
        assert_eq!(r.num_text_patches, want, "{key}: num_text_patches");
        assert_eq!(
            r.attention_len(),
            i["attention_len"].as_u64().unwrap() as usize,
            "{key}: attention length"
        );
        assert_eq!(
            r.black_patches,
            usizes(&i["sep_patches"]),
            "{key}: black patches"
        );
        if i["mode"] != "pair" {
            assert_eq!(
                r.word_starts,
                Some(usizes(&i["word_starts"])),
                "{key}: word starts"
            );
        }
        checked += 1;
    }
    println!("{checked} inputs with equal patch counts, separators and word starts");
    assert!(checked >= 27, "only {checked} inputs compared");
}

/// The reference's Arabic came from DejaVu Sans (its 17-px line height in the trace): with that
/// font as a fallback our widths, and so the layout, are the reference's. Skipped without it.
#[test]
fn arabic_matches_with_dejavu_sans_as_fallback() {
    let Some(dir) = anchors() else { return };
    let dejavu = std::path::Path::new("/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf");
    if !dejavu.exists() {
        println!("skipped: {} not found", dejavu.display());
        return;
    }
    let fallback = std::env::temp_dir().join(format!("pixel-dejavu-{}", std::process::id()));
    std::fs::create_dir_all(&fallback).unwrap();
    std::fs::copy(dejavu, fallback.join("DejaVuSans.ttf")).unwrap();
    let mut renderer = Renderer::new(RenderConfig {
        rendering: RenderingStrategy::Bigrams,
        fonts: pixel_render::FontConfig {
            fallback_dir: Some(fallback.clone()),
            ..Default::default()
        },
        ..RenderConfig::default()
    })
    .unwrap();
    let arabic = load(&dir)
        .into_iter()
        .find(|i| i["key"] == "ar_arabic")
        .expect("ar_arabic in the reference");
    let r = renderer.render(&input_of(&arabic));
    std::fs::remove_dir_all(&fallback).ok();
    assert_eq!(r.num_text_patches, 33);
    assert_eq!(r.word_starts, Some(usizes(&arabic["word_starts"])));
}

fn read_png(path: &std::path::Path) -> (usize, Vec<u8>) {
    let decoder = png::Decoder::new(std::fs::File::open(path).expect("png"));
    let mut reader = decoder.read_info().expect("png header");
    let mut buf = vec![0; reader.output_buffer_size()];
    let info = reader.next_frame(&mut buf).expect("png frame");
    let samples = info.color_type.samples();
    assert_eq!(info.height, 16);
    let gray = buf[..info.buffer_size()]
        .chunks(samples)
        .map(|p| p[0])
        .collect();
    (info.width as usize, gray)
}

/// Closeness of our strip, moved right by `dx` and down by `dy` pixels (white comes in), to a
/// reference strip (16, width) over its columns: mean absolute difference (0-255) and the
/// intersection over union of dark pixels (< 128).
fn closeness(r: &Rendering, dx: usize, dy: usize, width: usize, reference: &[u8]) -> (f64, f64) {
    let (mut diff, mut both, mut either) = (0u64, 0u64, 0u64);
    for y in 0..16 {
        for x in 0..width {
            let a = if x >= dx && y >= dy {
                r.pixel(y - dy, x - dx)
            } else {
                255
            };
            let b = reference[y * width + x];
            diff += a.abs_diff(b) as u64;
            let (da, db) = (a < 128, b < 128);
            both += (da && db) as u64;
            either += (da || db) as u64;
        }
    }
    let mad = diff as f64 / (16 * width) as f64;
    (mad, both as f64 / either.max(1) as f64)
}

/// Latin, Greek and Cyrillic: drawn with Noto Sans on both sides. Other scripts come from
/// fontconfig's per-script fonts in the reference, each on its own line height (we draw every
/// character on Noto Sans' baseline, as GoNotoCurrent does), so they are printed only.
fn main_font_only(key: &str) -> bool {
    key.starts_with("en_") || key == "ru_cyrillic" || key == "pair_nli" || key == "words_ud_en"
}

/// Per input: mean |diff| and dark IoU against the reference of our bigrams strip, of the
/// same strip one pixel to the right and one row down, and of the continuous layout; the
/// bounds hold for ours and fail for each of the others (wrong layouts).
#[test]
fn bigrams_pixels_are_close_to_the_reference() {
    let Some(dir) = anchors() else { return };
    let mut renderer = bigrams();
    let mut continuous = Renderer::new(RenderConfig::default()).unwrap();
    const VARIANTS: [&str; 4] = ["bigrams", "1 px right", "1 row down", "continuous"];
    let mut main_font: Vec<[(f64, f64); 4]> = Vec::new();
    for i in load(&dir) {
        let key = i["key"].as_str().unwrap().to_string();
        let Some(png) = i["png"].as_str() else {
            continue;
        };
        if needs_other_fonts(&key) {
            continue;
        }
        let (width, reference) = read_png(&dir.join(png));
        let input = input_of(&i);
        let r = renderer.render(&input);
        let c = continuous.render(&input);
        let row = [
            closeness(&r, 0, 0, width, &reference),
            closeness(&r, 1, 0, width, &reference),
            closeness(&r, 0, 1, width, &reference),
            closeness(&c, 0, 0, width, &reference),
        ];
        println!(
            "{key}: {}",
            row.map(|(m, i)| format!("{m:.2} / {i:.3}")).join(" | ")
        );
        if main_font_only(&key) {
            main_font.push(row);
            let (mad, iou) = row[0];
            assert!(mad < 8.0, "{key}: mean |diff| {mad:.2}");
            assert!(iou > 0.82, "{key}: dark IoU {iou:.3}");
        }
    }
    assert!(
        main_font.len() >= 12,
        "{} Noto Sans inputs",
        main_font.len()
    );
    for (v, name) in VARIANTS.iter().enumerate() {
        let n = main_font.len() as f64;
        let mad = main_font.iter().map(|r| r[v].0).sum::<f64>() / n;
        let iou = main_font.iter().map(|r| r[v].1).sum::<f64>() / n;
        let worst_mad = main_font.iter().map(|r| r[v].0).fold(0.0, f64::max);
        let worst_iou = main_font.iter().map(|r| r[v].1).fold(1.0, f64::min);
        println!(
            "{name}: Noto Sans inputs ({n}): mean |diff| {mad:.2} (worst {worst_mad:.2}), dark IoU {iou:.3} (worst {worst_iou:.3})"
        );
        let passes = mad < 5.0 && iou > 0.9;
        assert_eq!(
            passes,
            v == 0,
            "{name}: mean |diff| {mad:.2}, dark IoU {iou:.3}"
        );
    }
}
