//! Compares our strips with the PangoCairo reference strips (anchors/render): patch counts,
//! word starts, ink boxes and mean absolute pixel difference.
//! Run: cargo run -p pixel-render --release --example calibrate -- ../shared/anchors/render
use pixel_render::{Input, RenderConfig, Renderer};

fn read_png(path: &str) -> (usize, usize, Vec<u8>) {
    let decoder = png::Decoder::new(std::fs::File::open(path).unwrap());
    let mut reader = decoder.read_info().unwrap();
    let mut buf = vec![0; reader.output_buffer_size()];
    let info = reader.next_frame(&mut buf).unwrap();
    let ch = info.color_type.samples();
    let gray = buf[..info.buffer_size()].chunks(ch).map(|p| p[0]).collect();
    (info.width as usize, info.height as usize, gray)
}

fn ink_bbox(
    w: usize,
    h: usize,
    px: impl Fn(usize, usize) -> u8,
    limit: usize,
) -> (usize, usize, usize, usize) {
    let (mut r0, mut r1, mut c0, mut c1) = (h, 0, w, 0);
    for y in 0..h {
        for x in 0..limit.min(w) {
            if px(y, x) < 255 {
                r0 = r0.min(y);
                r1 = r1.max(y);
                c0 = c0.min(x);
                c1 = c1.max(x);
            }
        }
    }
    (r0, r1, c0, c1)
}

fn main() {
    let dir = std::env::args()
        .nth(1)
        .unwrap_or("../shared/anchors/render".into());
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(format!("{dir}/reference.json")).unwrap())
            .unwrap();
    let mut r = Renderer::new(RenderConfig::default()).unwrap();
    for inp in json["inputs"].as_array().unwrap() {
        let key = inp["key"].as_str().unwrap();
        let input = match inp["kind"].as_str().unwrap() {
            "sentence" => Input::Text(inp["text"].as_str().unwrap().into()),
            "pair" => Input::Pair(
                inp["text"][0].as_str().unwrap().into(),
                inp["text"][1].as_str().unwrap().into(),
            ),
            _ => Input::Words(
                inp["text"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|w| w.as_str().unwrap().to_string())
                    .collect(),
            ),
        };
        let out = r.render(&input);
        let want = inp["num_text_patches"].as_u64().unwrap() as usize;
        let (w, h, ref_px) = read_png(&format!("{dir}/{}", inp["png"].as_str().unwrap()));
        // Ink only left of the first black patch.
        let limit = out.black_patches[0] * 16;
        let ours = ink_bbox(w, h, |y, x| out.pixel(y, x), limit);
        let theirs = ink_bbox(w, h, |y, x| ref_px[y * w + x], limit);
        let mut diff = 0u64;
        for y in 0..h {
            for x in 0..w {
                diff += (out.pixel(y, x) as i64 - ref_px[y * w + x] as i64).unsigned_abs();
            }
        }
        let ws_ok = match (&out.word_starts, inp.get("word_starts")) {
            (Some(a), Some(b)) => (a.iter().map(|&v| v as u64).collect::<Vec<_>>()
                == b.as_array()
                    .unwrap()
                    .iter()
                    .map(|v| v.as_u64().unwrap())
                    .collect::<Vec<_>>())
            .to_string(),
            _ => "-".into(),
        };
        println!("{key:18} patches {:4}/{:4} {} ws_eq {ws_ok:5} missing {:2} ink ours {:?} ref {:?} mad {:.1}",
            out.num_text_patches, want, if out.num_text_patches == want { "==" } else { "!!" },
            out.missing_glyphs, ours, theirs, diff as f64 / (w * h) as f64);
    }
}
