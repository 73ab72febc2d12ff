//! Arbitrary bytes as a config.json: an error is fine, a panic is a bug. A
//! config that parses is written back and read again, and its size arithmetic run.
#![no_main]

use libfuzzer_sys::fuzz_target;
use pixel_model::PixelConfig;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(cfg) = PixelConfig::from_json_str(text, "fuzz.json") {
        let _ = cfg.pretraining_parameters();
        let _ = cfg.num_patches();
        let again = PixelConfig::from_json_str(&cfg.to_json_string(), "again.json");
        assert!(
            again.is_ok(),
            "a valid config does not read back: {again:?}"
        );
    }
});
