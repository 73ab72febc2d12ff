//! Corrupted and truncated checkpoints give errors, never panics: a quick
//! deterministic mutation loop over the fixture's files plus proptest over
//! arbitrary bytes. (`fuzz/` at the workspace root holds the cargo-fuzz harnesses for longer runs.)

mod common;

use std::panic::{catch_unwind, AssertUnwindSafe};

use common::torch::{rezip, unzip};
use pixel_engine::Rng;
use pixel_model::checkpoint::{read_npy_bytes, read_pytorch_bytes, read_safetensors_bytes};
use proptest::prelude::*;

/// Runs a reader and fails the test with the input's description if it panics.
fn no_panic<T, E>(what: &str, bytes: &[u8], read: impl Fn(&[u8]) -> Result<T, E>) -> bool {
    match catch_unwind(AssertUnwindSafe(|| read(bytes).is_ok())) {
        Ok(ok) => ok,
        Err(_) => {
            let path = std::env::temp_dir().join("pixel-model-fuzz-crash.bin");
            // Saving the input is best effort: the panic below is the failure.
            let saved = match std::fs::write(&path, bytes) {
                Ok(()) => format!("input saved to {}", path.display()),
                Err(e) => format!("input not saved ({e})"),
            };
            panic!("{what}: reader panicked; {saved}");
        }
    }
}

/// Flips 1-4 random bits, biased towards `hot` (the header or pickle region).
fn flip_bits(bytes: &mut [u8], hot: std::ops::Range<usize>, rng: &mut Rng) {
    for _ in 0..rng.int_inclusive(1, 4) {
        let i = if rng.uniform() < 0.8 && !hot.is_empty() {
            rng.int_inclusive(hot.start, hot.end - 1)
        } else {
            rng.int_inclusive(0, bytes.len() - 1)
        };
        bytes[i] ^= 1 << rng.int_inclusive(0, 7);
    }
}

/// Truncation points: every one below `dense_below`, then `extra` random ones.
fn cut_points(len: usize, dense_below: usize, extra: usize, rng: &mut Rng) -> Vec<usize> {
    let mut cuts: Vec<usize> = (0..dense_below.min(len)).collect();
    cuts.extend((0..extra).map(|_| rng.int_inclusive(0, len - 1)));
    cuts
}

#[test]
fn truncated_and_flipped_safetensors() {
    let bytes = std::fs::read(common::fixture_dir().join("model.safetensors")).unwrap();
    let header_end = 8 + u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    let mut rng = Rng::new(1);
    for cut in cut_points(bytes.len(), 600, 200, &mut rng) {
        let ok = no_panic("safetensors truncated", &bytes[..cut], |b| {
            read_safetensors_bytes(b, "t")
        });
        assert!(!ok, "a safetensors file cut at {cut} bytes was accepted");
    }
    let mut accepted = 0;
    for _ in 0..1500 {
        let mut m = bytes.clone();
        flip_bits(&mut m, 0..header_end, &mut rng);
        accepted += usize::from(no_panic("safetensors flipped", &m, |b| {
            read_safetensors_bytes(b, "f")
        }));
    }
    // Flips in tensor data are undetectable; flips in the header mostly are not.
    assert!(accepted < 1500, "every corrupted header was accepted");
}

#[test]
fn truncated_and_flipped_npy() {
    let dir = common::fixture_dir();
    let bytes = std::fs::read(dir.join("vit.embeddings.position_embeddings.npy")).unwrap();
    let mut rng = Rng::new(2);
    for cut in 0..bytes.len() {
        let ok = no_panic("npy truncated", &bytes[..cut], |b| read_npy_bytes(b, "t"));
        assert!(!ok, "an .npy file cut at {cut} bytes was accepted");
    }
    for _ in 0..3000 {
        let mut m = bytes.clone();
        flip_bits(&mut m, 0..128, &mut rng);
        no_panic("npy flipped", &m, |b| read_npy_bytes(b, "f"));
    }
}

#[test]
fn truncated_and_flipped_pytorch_zip() {
    let bytes = std::fs::read(common::fixture_dir().join("pytorch_model.bin")).unwrap();
    let mut rng = Rng::new(3);
    for cut in cut_points(bytes.len(), 0, 300, &mut rng) {
        let ok = no_panic("pytorch truncated", &bytes[..cut], |b| {
            read_pytorch_bytes(b, "t")
        });
        assert!(!ok, "a pytorch zip cut at {cut} bytes was accepted");
    }
    // The central directory sits at the end; local headers and data.pkl at the start.
    let tail = bytes.len().saturating_sub(8192)..bytes.len();
    for i in 0..600 {
        let mut m = bytes.clone();
        let hot = if i % 2 == 0 { tail.clone() } else { 0..16384 };
        flip_bits(&mut m, hot, &mut rng);
        no_panic("pytorch flipped", &m, |b| read_pytorch_bytes(b, "f"));
    }
}

#[test]
fn mutated_pickles_inside_valid_archives() {
    // The zip CRC catches flips in data.pkl, so mutate the pickle and re-zip it to
    // reach the pickle machine itself.
    let bytes = std::fs::read(common::fixture_dir().join("pytorch_model.bin")).unwrap();
    let entries = unzip(&bytes);
    let pickle = entries
        .iter()
        .find(|(n, _)| n.ends_with("/data.pkl"))
        .map(|(_, d)| d.clone())
        .unwrap();
    let mut rng = Rng::new(4);
    let mut accepted = 0;
    let trials = 1500;
    for i in 0..trials {
        let mut p = pickle.clone();
        match i % 4 {
            0 => {
                let len = p.len();
                flip_bits(&mut p, 0..len, &mut rng)
            }
            1 => p.truncate(rng.int_inclusive(0, p.len() - 1)),
            2 => {
                // Overwrite a byte with an arbitrary opcode-like value.
                let at = rng.int_inclusive(0, p.len() - 1);
                p[at] = rng.int_inclusive(0, 255) as u8;
            }
            _ => {
                // Delete or duplicate a short run.
                let at = rng.int_inclusive(0, p.len() - 2);
                let n = rng.int_inclusive(1, 8).min(p.len() - at);
                if rng.uniform() < 0.5 {
                    p.drain(at..at + n);
                } else {
                    let run: Vec<u8> = p[at..at + n].to_vec();
                    p.splice(at..at, run);
                }
            }
        }
        let zip = rezip(&entries, "archive", Some(&p));
        accepted += usize::from(no_panic("mutated pickle", &zip, |b| {
            read_pytorch_bytes(b, "m")
        }));
    }
    assert!(
        accepted < trials / 2,
        "{accepted} of {trials} mutated pickles were accepted"
    );
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..2048)) {
        no_panic("safetensors arbitrary", &bytes, |b| read_safetensors_bytes(b, "a"));
        no_panic("npy arbitrary", &bytes, |b| read_npy_bytes(b, "a"));
        no_panic("pytorch arbitrary", &bytes, |b| read_pytorch_bytes(b, "a"));
    }

    #[test]
    fn arbitrary_headers_never_panic(
        header in proptest::collection::vec(any::<u8>(), 0..256),
        tail in proptest::collection::vec(any::<u8>(), 0..64),
    ) {
        // A plausible prefix gets the readers past their magic checks.
        let mut st = (header.len() as u64).to_le_bytes().to_vec();
        st.extend(&header);
        st.extend(&tail);
        no_panic("safetensors header", &st, |b| read_safetensors_bytes(b, "h"));
        let mut npy = b"\x93NUMPY\x01\x00".to_vec();
        npy.extend((header.len() as u16).to_le_bytes());
        npy.extend(&header);
        npy.extend(&tail);
        no_panic("npy header", &npy, |b| read_npy_bytes(b, "h"));
    }

    #[test]
    fn arbitrary_pickles_in_an_archive_never_panic(
        pickle in proptest::collection::vec(any::<u8>(), 0..512),
    ) {
        let zip = common::torch::torch_zip("archive", &pickle, &[("0", vec![0; 64])]);
        no_panic("pickle arbitrary", &zip, |b| read_pytorch_bytes(b, "p"));
    }
}
