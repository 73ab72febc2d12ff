//! Arbitrary text as a GLUE TSV file (single sentences or pairs): an error is
//! fine, a panic is a bug. A file that parses gets a prediction column.
#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;
use pixel_tasks::glue::{add_glue_column, parse_glue_single};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let path = Path::new("fuzz.tsv");
    let labels = ["0", "1"];
    if let Ok(examples) = parse_glue_single(text, path, &labels) {
        let values = vec!["1".to_string(); examples.len()];
        let out = add_glue_column(text, path, &labels, "prediction", &values);
        assert!(out.is_ok(), "a parsed file takes no column: {out:?}");
    }
});
