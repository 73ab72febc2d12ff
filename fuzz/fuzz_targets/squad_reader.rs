//! Arbitrary text as a SQuAD v1.1 JSON file: an error is fine, a panic is a bug.
#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let _ = pixel_tasks::squad::parse_squad(text, Path::new("fuzz.json"));
});
