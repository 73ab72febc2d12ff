//! PyTorch's `torch.save` zip format (`pytorch_model.bin`), read without Python.
//!
//! The archive holds `<top>/data.pkl` (the state dict, pickled) and one raw
//! little-endian storage per tensor under `<top>/data/<key>`; `<top>` is the file
//! stem when torch wrote it and something else (e.g. `archive`) for other tools.

use std::collections::HashMap;
use std::io::{Read, Seek};
use std::path::Path;
use std::rc::Rc;

use pixel_engine::Tensor;

use super::dtype::{checked_numel, FloatType};
use super::pickle::{unpickle, Value};
use super::{CheckpointError, StateDict};

/// A storage as the persistent id describes it.
struct StorageRef {
    key: String,
    float: FloatType,
    /// Elements (of `float`) in the storage.
    numel: usize,
}

/// What `_rebuild_tensor_v2(storage, offset, size, stride, ...)` describes.
struct TensorRef {
    storage: StorageRef,
    offset: usize,
    shape: Vec<usize>,
    stride: Vec<usize>,
}

fn float_of_storage(type_name: &str) -> Result<FloatType, String> {
    match type_name {
        "torch.FloatStorage" => Ok(FloatType::F32),
        "torch.HalfStorage" => Ok(FloatType::F16),
        "torch.BFloat16Storage" => Ok(FloatType::BF16),
        "torch.DoubleStorage" => Ok(FloatType::F64),
        other => Err(format!(
            "unsupported dtype {other} (only float32, float16, bfloat16 and float64 are read)"
        )),
    }
}

fn usize_of(v: &Value, what: &str) -> Result<usize, String> {
    v.as_int()
        .and_then(|i| usize::try_from(i).ok())
        .ok_or_else(|| format!("{what} is {}, expected a non-negative int", v.kind()))
}

fn usizes_of(v: &Value, what: &str) -> Result<Vec<usize>, String> {
    match v {
        Value::Tuple(items) => items.iter().map(|x| usize_of(x, what)).collect(),
        other => Err(format!("{what} is {}, expected a tuple", other.kind())),
    }
}

/// `('storage', storage_type, key, location, numel)`.
fn storage_of(pid: &Value) -> Result<StorageRef, String> {
    let Value::PersistentId(inner) = pid else {
        return Err(format!(
            "tensor storage is {}, expected a persistent id",
            pid.kind()
        ));
    };
    let Value::Tuple(fields) = &**inner else {
        return Err("persistent id is not a tuple".into());
    };
    if fields.len() < 5 || fields[0].as_str() != Some("storage") {
        return Err("persistent id is not ('storage', type, key, location, numel)".into());
    }
    let float = match &fields[1] {
        Value::Global(name) => float_of_storage(name)?,
        other => return Err(format!("storage type is {}", other.kind())),
    };
    let key = fields[2]
        .as_str()
        .ok_or("storage key is not a string")?
        .to_string();
    let numel = usize_of(&fields[4], "storage size")?;
    Ok(StorageRef { key, float, numel })
}

/// Interprets a state-dict value: a rebuilt tensor (or a Parameter wrapping one).
fn tensor_of(value: &Value) -> Result<TensorRef, String> {
    let Value::Call(call) = value else {
        return Err(format!("value is {}, not a tensor", value.kind()));
    };
    let (func, args) = &**call;
    let name = match func {
        Value::Global(name) => &**name,
        other => return Err(format!("value is built by {}, not a tensor", other.kind())),
    };
    let Value::Tuple(args) = args else {
        return Err(format!("{name} arguments are not a tuple"));
    };
    match name {
        "torch._utils._rebuild_tensor_v2" | "torch._utils._rebuild_tensor" => {
            if args.len() < 4 {
                return Err(format!(
                    "{name} has {} arguments, expected >= 4",
                    args.len()
                ));
            }
            Ok(TensorRef {
                storage: storage_of(&args[0])?,
                offset: usize_of(&args[1], "storage offset")?,
                shape: usizes_of(&args[2], "size")?,
                stride: usizes_of(&args[3], "stride")?,
            })
        }
        // A saved nn.Parameter: (tensor, requires_grad, hooks).
        "torch._utils._rebuild_parameter" | "torch._utils._rebuild_parameter_with_state" => {
            let inner = args.first().ok_or("empty _rebuild_parameter")?;
            match inner {
                Value::Call(_) => tensor_of(inner),
                other => Err(format!("parameter wraps {}", other.kind())),
            }
        }
        other => Err(format!("value is built by {other}, not a tensor")),
    }
}

/// The dict holding the tensors: the top value, or a `state_dict` / `model` entry in it.
fn state_dict_entries(root: &Value) -> Result<Vec<(Value, Value)>, String> {
    let Value::Dict(top) = root else {
        return Err(format!(
            "the pickle holds {}, not a state dict",
            root.kind()
        ));
    };
    let top = top.borrow().clone();
    let has_tensor = top.iter().any(|(_, v)| matches!(v, Value::Call(_)));
    if !has_tensor {
        for (k, v) in &top {
            if matches!(k.as_str(), Some("state_dict" | "model")) {
                if let Value::Dict(inner) = v {
                    return Ok(inner.borrow().clone());
                }
            }
        }
    }
    Ok(top)
}

/// Checks that a (shape, stride) pair is row-major contiguous; size-1 axes may have any stride.
fn is_contiguous(shape: &[usize], stride: &[usize]) -> bool {
    if shape.len() != stride.len() {
        return false;
    }
    let mut expected = 1usize;
    for (&size, &st) in shape.iter().zip(stride).rev() {
        if size > 1 && st != expected {
            return false;
        }
        expected = expected.saturating_mul(size);
    }
    true
}

/// Finds `<top>/data.pkl` and returns `<top>`.
fn top_folder<R: Read + Seek>(archive: &zip::ZipArchive<R>) -> Option<String> {
    let mut tops: Vec<&str> = archive
        .file_names()
        .filter_map(|n| n.strip_suffix("/data.pkl"))
        .filter(|t| !t.contains('/'))
        .collect();
    tops.sort_unstable();
    tops.first().map(|t| t.to_string())
}

fn read_entry<R: Read + Seek>(
    archive: &mut zip::ZipArchive<R>,
    name: &str,
    max_len: u64,
) -> Result<Vec<u8>, String> {
    let entry = archive
        .by_name(name)
        .map_err(|e| format!("cannot open {name} in the archive: {e}"))?;
    // The header's size is only a hint; a corrupt one must not reserve gigabytes.
    let mut out = Vec::with_capacity(entry.size().min(max_len).min(1 << 26) as usize);
    let mut entry = entry;
    let cannot_read = |e: std::io::Error| format!("cannot read {name} in the archive: {e}");
    (&mut entry)
        .take(max_len)
        .read_to_end(&mut out)
        .map_err(cannot_read)?;
    // The zip reader checks an entry's CRC-32 only once it reads to the end:
    // one more read does that for entries that stopped exactly at `max_len`
    // (every tensor storage), and finds entries longer than allowed.
    let mut extra = [0u8; 1];
    match entry.read(&mut extra).map_err(cannot_read)? {
        0 => Ok(out),
        _ => Err(format!(
            "{name} in the archive holds more than the {max_len} bytes expected"
        )),
    }
}

/// Reads a torch.save zip archive from any seekable reader; `file` names it in errors.
fn read_archive<R: Read + Seek>(
    reader: R,
    file: &str,
    archive_len: u64,
) -> Result<StateDict, CheckpointError> {
    let format = |m: String| CheckpointError::format(file, m);
    let mut archive = zip::ZipArchive::new(reader)
        .map_err(|e| format(format!("not a PyTorch zip checkpoint: {e}")))?;
    let top = top_folder(&archive).ok_or_else(|| {
        format("not a PyTorch checkpoint: no <folder>/data.pkl in the zip".into())
    })?;
    if let Ok(order) = read_entry(&mut archive, &format!("{top}/byteorder"), 16) {
        if order != b"little" {
            return Err(format(format!(
                "byteorder is {:?}; only little-endian checkpoints are read",
                String::from_utf8_lossy(&order)
            )));
        }
    }
    // A pickle cannot be larger than the archive that holds it (deflate aside).
    let pickle = read_entry(
        &mut archive,
        &format!("{top}/data.pkl"),
        archive_len.max(1 << 20),
    )
    .map_err(format)?;
    let unpickled = unpickle(&pickle).map_err(|m| format(format!("{top}/data.pkl: {m}")))?;
    let entries = state_dict_entries(&unpickled.root).map_err(format)?;

    let mut storages: HashMap<String, Rc<Vec<u8>>> = HashMap::new();
    let mut out = StateDict::new();
    for (k, v) in entries {
        let key = k
            .as_str()
            .ok_or_else(|| format(format!("state dict key is {}, not a string", k.kind())))?
            .to_string();
        let bad = |m: String| CheckpointError::tensor(file, &key, m);
        let t = tensor_of(&v).map_err(bad)?;
        let elem = t.storage.float.size();
        let storage_bytes = t
            .storage
            .numel
            .checked_mul(elem)
            .ok_or_else(|| bad("storage size overflows".into()))?;
        if !is_contiguous(&t.shape, &t.stride) {
            return Err(bad(format!(
                "not contiguous (size {:?}, stride {:?}); save it with .contiguous()",
                t.shape, t.stride
            )));
        }
        let numel = checked_numel(&t.shape).ok_or_else(|| bad("shape overflows".into()))?;
        let end = t
            .offset
            .checked_add(numel)
            .filter(|&e| e <= t.storage.numel)
            .ok_or_else(|| {
                bad(format!(
                    "offset {} + {} elements exceeds its storage of {} elements",
                    t.offset, numel, t.storage.numel
                ))
            })?;
        let bytes = match storages.get(&t.storage.key) {
            Some(b) => b.clone(),
            None => {
                let name = format!("{top}/data/{}", t.storage.key);
                let limit = (storage_bytes as u64).min(archive_len.saturating_mul(1024));
                let b = Rc::new(read_entry(&mut archive, &name, limit).map_err(bad)?);
                storages.insert(t.storage.key.clone(), b.clone());
                b
            }
        };
        if bytes.len() < end * elem {
            return Err(bad(format!(
                "storage {} holds {} bytes, the tensor needs {}",
                t.storage.key,
                bytes.len(),
                end * elem
            )));
        }
        let values = t.storage.float.to_f32(&bytes[t.offset * elem..end * elem]);
        out.insert(key, Tensor::new(&t.shape, values));
    }
    Ok(out)
}

fn reject_legacy(head: &[u8], file: &str) -> Result<(), CheckpointError> {
    if head.first() == Some(&0x80) {
        return Err(CheckpointError::format(
            file,
            "legacy (pre-1.6, non-zip) torch.save format is not supported; re-save with a newer PyTorch",
        ));
    }
    Ok(())
}

/// Parses a `pytorch_model.bin` held in memory; `file` names it in errors.
pub fn read_pytorch_bytes(bytes: &[u8], file: &str) -> Result<StateDict, CheckpointError> {
    reject_legacy(bytes, file)?;
    read_archive(std::io::Cursor::new(bytes), file, bytes.len() as u64)
}

/// Reads a `pytorch_model.bin` from disk (streamed, not loaded whole).
pub fn read_pytorch(path: impl AsRef<Path>) -> Result<StateDict, CheckpointError> {
    let path = path.as_ref();
    let file = path.display().to_string();
    crate::files::regular_file_check(path).map_err(|e| CheckpointError::io(path, e))?;
    let mut f = std::fs::File::open(path).map_err(|e| CheckpointError::io(path, e))?;
    let len = f
        .metadata()
        .map_err(|e| CheckpointError::io(path, e))?
        .len();
    let mut head = [0u8; 1];
    if f.read(&mut head)
        .map_err(|e| CheckpointError::io(path, e))?
        == 1
    {
        reject_legacy(&head, &file)?;
    }
    f.rewind().map_err(|e| CheckpointError::io(path, e))?;
    read_archive(std::io::BufReader::new(f), &file, len)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn contiguity_ignores_unit_axes() {
        assert!(is_contiguous(&[1, 1, 64], &[64, 64, 1]));
        assert!(is_contiguous(&[64, 3, 16, 16], &[768, 256, 16, 1]));
        assert!(!is_contiguous(&[4, 8], &[1, 4]));
        assert!(is_contiguous(&[], &[]));
        assert!(!is_contiguous(&[2], &[]));
    }
}
