//! Compares the renderer with strips drawn by PIXEL's PangoCairo renderer with Noto Sans
//! (../shared/anchors/render, see NOTES.md there). Skipped when that folder is absent.

use std::path::PathBuf;

use pixel_render::{Input, RenderConfig, Renderer, Rendering};
use serde_json::Value;

fn anchors() -> Option<PathBuf> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared/anchors/render");
    if dir.join("reference.json").exists() {
        Some(dir)
    } else {
        println!("skipped: {} not found", dir.display());
        None
    }
}

fn load(path: PathBuf) -> Vec<Value> {
    let text = std::fs::read_to_string(&path).expect("reference.json readable");
    let json: Value = serde_json::from_str(&text).expect("reference.json parses");
    json["inputs"].as_array().expect("inputs array").clone()
}

fn strings(v: &Value) -> Vec<String> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|s| s.as_str().unwrap().to_string())
        .collect()
}

fn render(renderer: &mut Renderer, input: &Value) -> Rendering {
    let text = &input["text"];
    let input = match input["kind"].as_str().unwrap() {
        "sentence" => Input::Text(text.as_str().unwrap().to_string()),
        "pair" => {
            let t = strings(text);
            Input::Pair(t[0].clone(), t[1].clone())
        }
        _ => Input::Words(strings(text)),
    };
    renderer.render(&input)
}

fn want_patches(input: &Value) -> usize {
    input["num_text_patches"].as_u64().unwrap() as usize
}

/// (first row, last row, first col, last col) of ink left of `limit`.
fn ink_bbox(r: &Rendering, limit: usize) -> (usize, usize, usize, usize) {
    let (mut r0, mut r1, mut c0, mut c1) = (usize::MAX, 0, usize::MAX, 0);
    for y in 0..16 {
        for x in 0..limit {
            if r.pixel(y, x) < 255 {
                (r0, r1, c0, c1) = (r0.min(y), r1.max(y), c0.min(x), c1.max(x));
            }
        }
    }
    (r0, r1, c0, c1)
}

#[test]
fn english_patch_counts_match_reference() {
    let Some(dir) = anchors() else { return };
    let mut renderer = Renderer::new(RenderConfig::default()).unwrap();
    let english: Vec<Value> = load(dir.join("reference.json"))
        .into_iter()
        .filter(|i| i["key"].as_str().unwrap().starts_with("en_") || i["key"] == "pair_nli")
        .collect();
    assert!(english.len() >= 10);
    let mut equal = 0;
    for input in &english {
        let got = render(&mut renderer, input).num_text_patches;
        let want = want_patches(input);
        assert!(got.abs_diff(want) <= 1, "{}: {got} vs {want}", input["key"]);
        equal += usize::from(got == want);
    }
    let fraction = equal as f64 / english.len() as f64;
    println!("english num_text_patches equal: {equal}/{}", english.len());
    assert!(fraction >= 0.95, "only {equal}/{} equal", english.len());
}

#[test]
fn english_ink_sits_on_the_reference_baseline() {
    let Some(dir) = anchors() else { return };
    let mut renderer = Renderer::new(RenderConfig::default()).unwrap();
    for input in load(dir.join("reference.json")) {
        let key = input["key"].as_str().unwrap();
        if !key.starts_with("en_") || input["kind"] != "sentence" {
            continue;
        }
        let r = render(&mut renderer, &input);
        let (r0, r1, c0, c1) = ink_bbox(&r, 16 * r.num_text_patches);
        let rows = &input["ink_bbox"]["rows"];
        let cols = &input["ink_bbox"]["cols"];
        let (want_r0, want_r1) = (rows[0].as_u64().unwrap(), rows[1].as_u64().unwrap());
        // Same columns (whole-pixel advances with kerning); rows differ by at most the one
        // anti-aliased row that FreeType's slight hinting snaps away.
        assert_eq!(
            c0 as u64,
            cols[0].as_u64().unwrap(),
            "{key}: first ink column"
        );
        assert_eq!(
            c1 as u64,
            cols[1].as_u64().unwrap(),
            "{key}: last ink column"
        );
        assert!(
            (r0 as u64).abs_diff(want_r0) <= 1,
            "{key}: top row {r0} vs {want_r0}"
        );
        assert!(
            (r1 as u64).abs_diff(want_r1) <= 1,
            "{key}: bottom row {r1} vs {want_r1}"
        );
    }
}

#[test]
fn word_starts_and_pair_offsets_match_reference() {
    let Some(dir) = anchors() else { return };
    let mut renderer = Renderer::new(RenderConfig::default()).unwrap();
    for input in load(dir.join("reference.json")) {
        match input["key"].as_str().unwrap() {
            "words_ud_en" => {
                let r = render(&mut renderer, &input);
                let want: Vec<usize> = input["word_starts"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|v| v.as_u64().unwrap() as usize)
                    .collect();
                assert_eq!(r.word_starts, Some(want));
            }
            "pair_nli" => {
                let r = render(&mut renderer, &input);
                let want: Vec<(i32, i32)> = input["offset_mapping_first_n"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|p| (p[0].as_i64().unwrap() as i32, p[1].as_i64().unwrap() as i32))
                    .collect();
                let got = r.offset_mapping.expect("pairs have offsets");
                assert_eq!(got.len(), 529);
                assert_eq!(&got[..want.len()], &want[..]);
                let seps: Vec<usize> = input["sep_patch_index"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|v| v.as_u64().unwrap() as usize)
                    .collect();
                assert_eq!(r.black_patches, seps);
            }
            _ => {}
        }
    }
}

/// Other scripts against stand-in B (one merged font with Noto Sans metrics, like our default
/// set), except the inputs that need fonts we do not ship (emoji, Linear A, private use).
#[test]
fn other_scripts_are_within_one_patch_of_merged_reference() {
    let Some(dir) = anchors() else { return };
    let merged = dir.join("merged/reference.json");
    if !merged.exists() {
        println!("skipped: {} not found", merged.display());
        return;
    }
    let mut renderer = Renderer::new(RenderConfig::default()).unwrap();
    let mut report = Vec::new();
    for input in load(merged) {
        let key = input["key"].as_str().unwrap().to_string();
        if key.starts_with("emoji") || key == "missing_glyphs" {
            continue;
        }
        let r = render(&mut renderer, &input);
        let want = want_patches(&input);
        assert_eq!(r.missing_glyphs, 0, "{key}");
        assert!(
            r.num_text_patches.abs_diff(want) <= 1,
            "{key}: {} vs {want}",
            r.num_text_patches
        );
        report.push(format!("{key} {}/{want}", r.num_text_patches));
    }
    println!("{}", report.join(", "));
}
