//! README.md's preset table is what `pixel info --presets` prints.

#[test]
fn readme_preset_table_is_the_commands_output() {
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md"))
        .expect("README.md");
    let start = "<!-- presets: pixel info --presets -->\n";
    let from = readme.find(start).expect("README has the presets marker") + start.len();
    let to = from
        + readme[from..]
            .find("<!-- end presets -->")
            .expect("end marker");
    assert_eq!(
        &readme[from..to],
        pixel::presets::presets_markdown(),
        "README.md's preset table differs from `pixel info --presets`: paste its output"
    );
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_pixel"))
        .args(["info", "--presets"])
        .output()
        .expect("run pixel info --presets");
    assert!(out.status.success());
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        pixel::presets::presets_markdown()
    );
}
