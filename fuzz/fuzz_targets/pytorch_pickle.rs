//! Arbitrary bytes as the `data.pkl` of an otherwise valid torch archive, so the
//! pickle machine is reached (random zip bytes rarely get past the zip reader).
#![no_main]

use std::io::Write;

use libfuzzer_sys::fuzz_target;

fn archive(pickle: &[u8]) -> Vec<u8> {
    let mut buf = std::io::Cursor::new(Vec::new());
    let mut zip = zip::ZipWriter::new(&mut buf);
    let opts =
        zip::write::SimpleFileOptions::default().compression_method(zip::CompressionMethod::Stored);
    let files: [(&str, &[u8]); 4] = [
        ("archive/data.pkl", pickle),
        ("archive/byteorder", b"little"),
        ("archive/data/0", &[0u8; 256]),
        ("archive/data/1", &[0u8; 64]),
    ];
    for (name, bytes) in files {
        zip.start_file(name, opts).expect("in-memory zip");
        zip.write_all(bytes).expect("in-memory zip");
    }
    zip.finish().expect("in-memory zip");
    buf.into_inner()
}

fuzz_target!(|data: &[u8]| {
    let _ = pixel_model::checkpoint::read_pytorch_bytes(&archive(data), "fuzz.bin");
});
