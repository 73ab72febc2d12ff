//! Prints the first columns of a strip as grey levels (for eyeballing the baseline).
fn main() {
    let text = std::env::args().nth(1).unwrap_or("H".into());
    let mut r = pixel_render::Renderer::new(Default::default()).unwrap();
    let out = r.render_text(&text);
    for y in 0..16 {
        let row: Vec<String> = (0..24).map(|x| format!("{:3}", out.pixel(y, x))).collect();
        println!("{y:2} {}", row.join(""));
    }
}
