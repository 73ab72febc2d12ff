//! safetensors (`model.safetensors`): F32 read as is, F16/BF16/F64 converted to f32.

use std::collections::HashMap;
use std::path::Path;

use pixel_engine::Tensor;
use safetensors::{Dtype, SafeTensors};

use super::dtype::{f32_bytes, FloatType};
use super::{CheckpointError, StateDict};

/// Parses a safetensors file held in memory; `file` names it in errors.
pub fn read_safetensors_bytes(bytes: &[u8], file: &str) -> Result<StateDict, CheckpointError> {
    let tensors = SafeTensors::deserialize(bytes).map_err(|e| {
        CheckpointError::format(file, format!("not a valid safetensors file: {e:?}"))
    })?;
    let mut out = StateDict::new();
    for (name, view) in tensors.iter() {
        let float = match view.dtype() {
            Dtype::F32 => FloatType::F32,
            Dtype::F16 => FloatType::F16,
            Dtype::BF16 => FloatType::BF16,
            Dtype::F64 => FloatType::F64,
            other => {
                return Err(CheckpointError::tensor(
                    file,
                    name,
                    format!("unsupported dtype {other:?} (only F32, F16, BF16 and F64 are read)"),
                ))
            }
        };
        // The crate has checked that data length = numel * element size.
        let shape = view.shape().to_vec();
        let values = float.to_f32(view.data());
        if values.len() != shape.iter().product::<usize>() {
            return Err(CheckpointError::tensor(
                file,
                name,
                "data length does not match the shape",
            ));
        }
        out.insert(name.to_string(), Tensor::new(&shape, values));
    }
    Ok(out)
}

/// Reads a `.safetensors` file.
pub fn read_safetensors(path: impl AsRef<Path>) -> Result<StateDict, CheckpointError> {
    let path = path.as_ref();
    crate::files::regular_file_check(path).map_err(|e| CheckpointError::io(path, e))?;
    let bytes = std::fs::read(path).map_err(|e| CheckpointError::io(path, e))?;
    read_safetensors_bytes(&bytes, &path.display().to_string())
}

/// Serialises F32 tensors with the metadata Hugging Face writes (`{"format": "pt"}`).
pub fn safetensors_to_bytes(weights: &StateDict) -> Result<Vec<u8>, CheckpointError> {
    let buffers: Vec<(&String, Vec<u8>, &[usize])> = weights
        .iter()
        .map(|(name, t)| (name, f32_bytes(t.data()), t.shape()))
        .collect();
    let mut views = Vec::with_capacity(buffers.len());
    for (name, bytes, shape) in &buffers {
        let view = safetensors::tensor::TensorView::new(Dtype::F32, shape.to_vec(), bytes)
            .map_err(|e| CheckpointError::tensor("<memory>", name, format!("{e:?}")))?;
        views.push((name.as_str(), view));
    }
    let metadata = Some(HashMap::from([("format".to_string(), "pt".to_string())]));
    safetensors::serialize(views, &metadata)
        .map_err(|e| CheckpointError::format("<memory>", format!("safetensors: {e:?}")))
}

/// Writes a `.safetensors` file.
pub fn write_safetensors(
    path: impl AsRef<Path>,
    weights: &StateDict,
) -> Result<(), CheckpointError> {
    let path = path.as_ref();
    let bytes = safetensors_to_bytes(weights)?;
    std::fs::write(path, bytes).map_err(|e| CheckpointError::io(path, e))
}
