//! Loading and saving weights by their Hugging Face state-dict names (SPEC 4).
//!
//! Formats: safetensors, a directory of `.npy` files, and PyTorch's zip
//! `pytorch_model.bin` (read with our own small pickle machine, no Python).
//! Every reader takes bytes as well as a path, and bad input is an error, never a panic.

mod dtype;
mod keys;
mod npy_dir;
mod pickle;
mod safetensors_file;
mod torch_zip;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use pixel_engine::Tensor;

use crate::config::{ConfigError, PixelConfig};

pub use keys::{
    compare_keys, expected_encoder_keys, expected_pretraining_keys, infer_config, shapes_of,
    KeyReport, ParamCounts, ShapeMismatch,
};
pub use npy_dir::{read_npy, read_npy_bytes, read_npy_dir, write_npy, write_npy_dir};
pub use safetensors_file::{
    read_safetensors, read_safetensors_bytes, safetensors_to_bytes, write_safetensors,
};
pub use torch_zip::{read_pytorch, read_pytorch_bytes};

/// Weights by state-dict name, sorted by name.
pub type StateDict = BTreeMap<String, Tensor>;

/// Why a checkpoint could not be read or used. Each variant names the file.
#[derive(Debug, thiserror::Error)]
pub enum CheckpointError {
    // The io error is part of the message rather than a `source`, so error chains
    // (anyhow) do not print it twice.
    #[error("{file}: {error}")]
    Io { file: String, error: std::io::Error },
    /// Not a checkpoint of the expected format, truncated or corrupt.
    #[error("{file}: {message}")]
    Format { file: String, message: String },
    /// One tensor cannot be used (unsupported dtype, not contiguous, data too short).
    #[error("{file}: tensor `{key}`: {message}")]
    Tensor {
        file: String,
        key: String,
        message: String,
    },
    #[error("{file}: tensor `{key}` has shape {found:?}, the model expects {expected:?}")]
    ShapeMismatch {
        file: String,
        key: String,
        expected: Vec<usize>,
        found: Vec<usize>,
    },
    #[error(transparent)]
    Config(#[from] ConfigError),
}

impl CheckpointError {
    pub(crate) fn format(file: &str, message: impl Into<String>) -> CheckpointError {
        CheckpointError::Format {
            file: file.to_string(),
            message: message.into(),
        }
    }

    pub(crate) fn tensor(file: &str, key: &str, message: impl Into<String>) -> CheckpointError {
        CheckpointError::Tensor {
            file: file.to_string(),
            key: key.to_string(),
            message: message.into(),
        }
    }

    pub(crate) fn io(path: &Path, error: std::io::Error) -> CheckpointError {
        CheckpointError::Io {
            file: path.display().to_string(),
            error,
        }
    }
}

/// The on-disk format a checkpoint was read from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CheckpointFormat {
    Safetensors,
    PytorchZip,
    NpyDir,
}

impl std::fmt::Display for CheckpointFormat {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            CheckpointFormat::Safetensors => "safetensors",
            CheckpointFormat::PytorchZip => "pytorch zip (torch.save)",
            CheckpointFormat::NpyDir => "directory of .npy files",
        })
    }
}

/// A loaded checkpoint: weights, where they came from, and the config if one was found.
#[derive(Debug)]
pub struct Checkpoint {
    pub config: Option<PixelConfig>,
    pub weights: StateDict,
    pub format: CheckpointFormat,
    /// The weights file (or the directory, for `.npy` files).
    pub weights_path: PathBuf,
}

/// Reads weights from one file, choosing the reader by content: a zip archive is
/// a PyTorch checkpoint, a `.npy` magic a single array, anything else safetensors.
pub fn read_weights_file(
    path: impl AsRef<Path>,
) -> Result<(StateDict, CheckpointFormat), CheckpointError> {
    let path = path.as_ref();
    let mut head = [0u8; 6];
    let n = {
        use std::io::Read;
        crate::files::regular_file_check(path).map_err(|e| CheckpointError::io(path, e))?;
        let mut f = std::fs::File::open(path).map_err(|e| CheckpointError::io(path, e))?;
        let mut n = 0;
        while n < head.len() {
            match f.read(&mut head[n..]) {
                Ok(0) => break,
                Ok(k) => n += k,
                Err(e) => return Err(CheckpointError::io(path, e)),
            }
        }
        n
    };
    let head = &head[..n];
    // A pickle opcode first means a legacy torch.save file: the torch reader explains.
    if head.starts_with(b"PK") || head.first() == Some(&0x80) {
        Ok((read_pytorch(path)?, CheckpointFormat::PytorchZip))
    } else if head.starts_with(b"\x93NUMPY") {
        let key = path
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default();
        let tensor = read_npy(path)?;
        Ok((BTreeMap::from([(key, tensor)]), CheckpointFormat::NpyDir))
    } else {
        Ok((read_safetensors(path)?, CheckpointFormat::Safetensors))
    }
}

/// Loads a checkpoint from a directory or a single weights file.
///
/// A directory holds `config.json` (optional here) and `model.safetensors`,
/// `pytorch_model.bin` or `.npy` files, tried in that order. For a single file,
/// a `config.json` beside it is read when present.
pub fn load_checkpoint(path: impl AsRef<Path>) -> Result<Checkpoint, CheckpointError> {
    let path = path.as_ref();
    let meta = std::fs::metadata(path).map_err(|e| CheckpointError::io(path, e))?;
    let dir = if meta.is_dir() {
        path.to_path_buf()
    } else {
        path.parent().map(Path::to_path_buf).unwrap_or_default()
    };
    let config_path = dir.join("config.json");
    let config = if config_path.is_file() {
        Some(PixelConfig::from_file(&config_path)?)
    } else {
        None
    };
    if !meta.is_dir() {
        let (weights, format) = read_weights_file(path)?;
        return Ok(Checkpoint {
            config,
            weights,
            format,
            weights_path: path.to_path_buf(),
        });
    }
    let safetensors = dir.join("model.safetensors");
    let pytorch = dir.join("pytorch_model.bin");
    let (weights, format, weights_path) = if safetensors.is_file() {
        let w = read_safetensors(&safetensors)?;
        (w, CheckpointFormat::Safetensors, safetensors)
    } else if pytorch.is_file() {
        let w = read_pytorch(&pytorch)?;
        (w, CheckpointFormat::PytorchZip, pytorch)
    } else if npy_dir::has_npy_files(&dir)? {
        let w = read_npy_dir(&dir, None)?;
        (w, CheckpointFormat::NpyDir, dir.clone())
    } else {
        return Err(CheckpointError::format(
            &dir.display().to_string(),
            "no checkpoint here: expected model.safetensors, pytorch_model.bin or .npy files",
        ));
    };
    Ok(Checkpoint {
        config,
        weights,
        format,
        weights_path,
    })
}

impl Checkpoint {
    /// Fails on the first tensor holding a NaN or an infinity, naming it (see
    /// [`check_finite`]); `pixel inspect` lists them instead.
    pub fn check_finite(&self) -> Result<(), CheckpointError> {
        check_finite(&self.weights, &self.weights_path.display().to_string())
    }
}

/// Fails on the first tensor (by name) of `weights` that holds a NaN or an
/// infinity: the error names `file`, the tensor, the first bad element and
/// how many there are. Loading such weights would train or predict on
/// garbage; writing them would make a checkpoint nobody can continue from.
pub fn check_finite(weights: &StateDict, file: &str) -> Result<(), CheckpointError> {
    for (key, t) in weights {
        if t.all_finite() {
            continue;
        }
        let host = t.to_host();
        let values = host.data();
        let bad = values.iter().filter(|v| !v.is_finite()).count();
        let (first, value) = values
            .iter()
            .enumerate()
            .find(|(_, v)| !v.is_finite())
            .map_or((0, f32::NAN), |(i, &v)| (i, v));
        return Err(CheckpointError::tensor(
            file,
            key,
            format!(
                "{bad} of {} values are not finite (element {first} is {value})",
                values.len()
            ),
        ));
    }
    Ok(())
}

/// Writes `config.json` and `model.safetensors` into `dir` (created if
/// needed). Refuses, writing nothing, when a weight is not finite.
pub fn save_checkpoint(
    dir: impl AsRef<Path>,
    config: &PixelConfig,
    weights: &StateDict,
) -> Result<(), CheckpointError> {
    let dir = dir.as_ref();
    check_finite(
        weights,
        &dir.join("model.safetensors").display().to_string(),
    )?;
    std::fs::create_dir_all(dir).map_err(|e| CheckpointError::io(dir, e))?;
    config.save(dir.join("config.json"))?;
    write_safetensors(dir.join("model.safetensors"), weights)
}
