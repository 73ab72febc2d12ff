//! Arbitrary bytes as a `pytorch_model.bin` (zip): an error is fine, a panic is a bug.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = pixel_model::checkpoint::read_pytorch_bytes(data, "fuzz.bin");
});
