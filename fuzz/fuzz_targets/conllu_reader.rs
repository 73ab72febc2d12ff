//! Arbitrary text as a CoNLL-U file: an error is fine, a panic is a bug. A
//! file that parses is also rewritten (the prediction-file path).
#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;
use pixel_tasks::conllu::{parse_conllu, rewrite_conllu};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let path = Path::new("fuzz.conllu");
    if parse_conllu(text, path).is_ok() {
        let out = rewrite_conllu(text, path, |_, _, cols| cols[3] = "X".into());
        assert!(out.is_ok(), "a parsed file does not rewrite: {out:?}");
    }
});
