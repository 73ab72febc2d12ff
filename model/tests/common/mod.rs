//! Helpers shared by the integration tests.
#![allow(dead_code)]

use std::path::PathBuf;

use pixel_engine::Tensor;

/// The fixture directory: `PIXEL_FIXTURES` (relative paths from the workspace root),
/// default `../shared/fixtures/pixel-tiny` beside the workspace.
pub fn fixture_dir() -> PathBuf {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    let dir = match std::env::var_os("PIXEL_FIXTURES") {
        Some(d) => root.join(d),
        None => root.join("../shared/fixtures/pixel-tiny"),
    };
    assert!(
        dir.join("config.json").is_file(),
        "fixture directory {} not found (set PIXEL_FIXTURES)",
        dir.display()
    );
    dir
}

/// A fresh empty scratch directory under the system temp dir.
pub fn scratch_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("pixel-model-{}-{name}", std::process::id()));
    // Left over from an earlier run with the same pid: start empty.
    if dir.exists() {
        std::fs::remove_dir_all(&dir).unwrap();
    }
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Bitwise equality of shape and values.
pub fn same_tensor(a: &Tensor, b: &Tensor) -> bool {
    a.shape() == b.shape()
        && a.data().len() == b.data().len()
        && a.data()
            .iter()
            .zip(b.data())
            .all(|(x, y)| x.to_bits() == y.to_bits())
}

pub mod torch;
