//! Arbitrary text as a CoNLL-style NER file: an error is fine, a panic is a
//! bug. A file that parses is also rewritten (the prediction-file path).
#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;
use pixel_tasks::ner::{parse_ner, rewrite_ner, NER_LABELS};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let path = Path::new("fuzz.ner");
    if parse_ner(text, path, &NER_LABELS).is_ok() {
        let out = rewrite_ner(text, path, &NER_LABELS, |_, _| "O".into());
        assert!(out.is_ok(), "a parsed file does not rewrite: {out:?}");
    }
});
