//! `.npy` arrays, one file per state-dict key (`<prefix><key>.npy`).
//!
//! Reading parses the small header ourselves: npyz's reader multiplies the shape
//! without overflow checks and trusts the header length, which a corrupt file can
//! turn into a panic or a huge allocation. Writing uses npyz.

use std::path::Path;

use pixel_engine::Tensor;

use super::dtype::{checked_numel, FloatType};
use super::{CheckpointError, StateDict};

/// What the header of a `.npy` file says.
struct NpyHeader {
    float: FloatType,
    shape: Vec<usize>,
    /// Offset of the first data byte.
    data_start: usize,
}

/// A value in the header's Python dict literal.
#[derive(Debug, PartialEq)]
enum Literal {
    Str(String),
    Bool(bool),
    Int(usize),
    Tuple(Vec<Literal>),
}

/// A minimal parser for the dict literal numpy writes, e.g.
/// `{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }`.
struct LiteralParser<'a> {
    text: &'a [u8],
    pos: usize,
}

impl LiteralParser<'_> {
    fn skip_space(&mut self) {
        while self.pos < self.text.len() && self.text[self.pos].is_ascii_whitespace() {
            self.pos += 1;
        }
    }

    fn peek(&mut self) -> Option<u8> {
        self.skip_space();
        self.text.get(self.pos).copied()
    }

    fn expect(&mut self, c: u8) -> Result<(), String> {
        if self.peek() == Some(c) {
            self.pos += 1;
            Ok(())
        } else {
            Err(format!(
                "expected '{}' at byte {} of the header",
                c as char, self.pos
            ))
        }
    }

    fn value(&mut self, depth: usize) -> Result<Literal, String> {
        if depth > 8 {
            return Err("header nests too deeply".into());
        }
        match self.peek() {
            Some(q @ (b'\'' | b'"')) => {
                let start = self.pos + 1;
                let len = self.text[start..]
                    .iter()
                    .position(|&c| c == q)
                    .ok_or("unterminated string in header")?;
                self.pos = start + len + 1;
                let s = std::str::from_utf8(&self.text[start..start + len])
                    .map_err(|_| "header string is not UTF-8")?;
                Ok(Literal::Str(s.to_string()))
            }
            Some(b'(') | Some(b'[') => {
                let close = if self.text[self.pos] == b'(' {
                    b')'
                } else {
                    b']'
                };
                self.pos += 1;
                let mut items = Vec::new();
                loop {
                    if self.peek() == Some(close) {
                        self.pos += 1;
                        return Ok(Literal::Tuple(items));
                    }
                    items.push(self.value(depth + 1)?);
                    match self.peek() {
                        Some(b',') => self.pos += 1,
                        Some(c) if c == close => {}
                        _ => return Err("malformed tuple in header".into()),
                    }
                }
            }
            Some(c) if c.is_ascii_alphanumeric() => {
                let start = self.pos;
                while self.pos < self.text.len() && self.text[self.pos].is_ascii_alphanumeric() {
                    self.pos += 1;
                }
                let word = std::str::from_utf8(&self.text[start..self.pos]).unwrap_or("");
                match word {
                    "True" => Ok(Literal::Bool(true)),
                    "False" => Ok(Literal::Bool(false)),
                    _ => word
                        .trim_end_matches('L')
                        .parse()
                        .map(Literal::Int)
                        .map_err(|_| format!("unexpected `{word}` in header")),
                }
            }
            _ => Err(format!("unexpected byte at {} of the header", self.pos)),
        }
    }

    fn dict(&mut self) -> Result<Vec<(String, Literal)>, String> {
        self.expect(b'{')?;
        let mut entries = Vec::new();
        loop {
            if self.peek() == Some(b'}') {
                return Ok(entries);
            }
            let key = match self.value(0)? {
                Literal::Str(s) => s,
                _ => return Err("header dict key is not a string".into()),
            };
            self.expect(b':')?;
            entries.push((key, self.value(0)?));
            match self.peek() {
                Some(b',') => self.pos += 1,
                Some(b'}') => {}
                _ => return Err("malformed header dict".into()),
            }
        }
    }
}

fn parse_header(bytes: &[u8]) -> Result<NpyHeader, String> {
    if !bytes.starts_with(b"\x93NUMPY") {
        return Err("not a .npy file (no \\x93NUMPY magic)".into());
    }
    let (len, start): (usize, usize) = match bytes.get(6) {
        Some(1) if bytes.len() >= 10 => (u16::from_le_bytes([bytes[8], bytes[9]]) as usize, 10),
        Some(2 | 3) if bytes.len() >= 12 => {
            let n = u32::from_le_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]);
            (n as usize, 12)
        }
        Some(v @ (1..=3)) => return Err(format!("truncated .npy header (version {v})")),
        Some(v) => return Err(format!("unsupported .npy version {v}")),
        None => return Err("truncated .npy header".into()),
    };
    let end = start
        .checked_add(len)
        .filter(|&e| e <= bytes.len())
        .ok_or("truncated .npy header")?;
    let mut parser = LiteralParser {
        text: &bytes[start..end],
        pos: 0,
    };
    let entries = parser.dict()?;
    let get = |k: &str| entries.iter().find(|(key, _)| key == k).map(|(_, v)| v);
    let descr = match get("descr") {
        Some(Literal::Str(s)) => s.as_str(),
        Some(_) => return Err("structured .npy arrays are not supported".into()),
        None => return Err(".npy header has no 'descr'".into()),
    };
    let float = match descr {
        "<f4" => FloatType::F32,
        "<f2" => FloatType::F16,
        "<f8" => FloatType::F64,
        other => {
            return Err(format!(
                "unsupported dtype {other:?} (only little-endian float32/16/64)"
            ))
        }
    };
    let shape: Vec<usize> = match get("shape") {
        Some(Literal::Tuple(items)) => items
            .iter()
            .map(|v| match v {
                Literal::Int(n) => Ok(*n),
                _ => Err("shape holds a non-integer".to_string()),
            })
            .collect::<Result<_, _>>()?,
        _ => return Err(".npy header has no shape tuple".into()),
    };
    match get("fortran_order") {
        Some(Literal::Bool(false)) => {}
        Some(Literal::Bool(true)) if shape.iter().filter(|&&d| d > 1).count() > 1 => {
            return Err("Fortran-order arrays are not supported".into())
        }
        Some(Literal::Bool(true)) => {}
        _ => return Err(".npy header has no fortran_order flag".into()),
    }
    Ok(NpyHeader {
        float,
        shape,
        data_start: end,
    })
}

/// Parses one `.npy` array held in memory; `file` names it in errors.
pub fn read_npy_bytes(bytes: &[u8], file: &str) -> Result<Tensor, CheckpointError> {
    let header = parse_header(bytes).map_err(|m| CheckpointError::format(file, m))?;
    let numel = checked_numel(&header.shape)
        .filter(|n| n.checked_mul(header.float.size()).is_some())
        .ok_or_else(|| CheckpointError::format(file, "shape is too large"))?;
    let data = &bytes[header.data_start..];
    let needed = numel * header.float.size();
    if data.len() < needed {
        return Err(CheckpointError::format(
            file,
            format!(
                "truncated: shape {:?} needs {needed} data bytes, the file has {}",
                header.shape,
                data.len()
            ),
        ));
    }
    let values = header.float.to_f32(&data[..needed]);
    Ok(Tensor::new(&header.shape, values))
}

/// Reads one `.npy` file.
pub fn read_npy(path: impl AsRef<Path>) -> Result<Tensor, CheckpointError> {
    let path = path.as_ref();
    crate::files::regular_file_check(path).map_err(|e| CheckpointError::io(path, e))?;
    let bytes = std::fs::read(path).map_err(|e| CheckpointError::io(path, e))?;
    read_npy_bytes(&bytes, &path.display().to_string())
}

pub(crate) fn has_npy_files(dir: &Path) -> Result<bool, CheckpointError> {
    let entries = std::fs::read_dir(dir).map_err(|e| CheckpointError::io(dir, e))?;
    Ok(entries
        .flatten()
        .any(|e| e.path().extension().is_some_and(|x| x == "npy")))
}

/// Reads every `<prefix><key>.npy` in `dir` as `key` (all `.npy` files when `prefix` is None).
pub fn read_npy_dir(
    dir: impl AsRef<Path>,
    prefix: Option<&str>,
) -> Result<StateDict, CheckpointError> {
    let dir = dir.as_ref();
    let entries = std::fs::read_dir(dir).map_err(|e| CheckpointError::io(dir, e))?;
    let mut out = StateDict::new();
    for entry in entries {
        let path = entry.map_err(|e| CheckpointError::io(dir, e))?.path();
        let Some(name) = path.file_name().and_then(|n| n.to_str()) else {
            continue;
        };
        let Some(stem) = name.strip_suffix(".npy") else {
            continue;
        };
        let key = match prefix {
            Some(p) => match stem.strip_prefix(p) {
                Some(k) => k,
                None => continue,
            },
            None => stem,
        };
        out.insert(key.to_string(), read_npy(&path)?);
    }
    Ok(out)
}

/// Writes one tensor as a little-endian float32 `.npy` file.
pub fn write_npy(path: impl AsRef<Path>, tensor: &Tensor) -> Result<(), CheckpointError> {
    use npyz::WriterBuilder;
    let path = path.as_ref();
    let io = |e| CheckpointError::io(path, e);
    let file = std::io::BufWriter::new(std::fs::File::create(path).map_err(io)?);
    let shape: Vec<u64> = tensor.shape().iter().map(|&d| d as u64).collect();
    let mut writer = npyz::WriteOptions::new()
        .default_dtype()
        .shape(&shape)
        .writer(file)
        .begin_nd()
        .map_err(io)?;
    writer.extend(tensor.data().iter().copied()).map_err(io)?;
    writer.finish().map_err(io)
}

/// Writes every tensor as `<dir>/<prefix><key>.npy` (the directory is created if needed).
pub fn write_npy_dir(
    dir: impl AsRef<Path>,
    weights: &StateDict,
    prefix: &str,
) -> Result<(), CheckpointError> {
    let dir = dir.as_ref();
    std::fs::create_dir_all(dir).map_err(|e| CheckpointError::io(dir, e))?;
    for (key, tensor) in weights {
        write_npy(dir.join(format!("{prefix}{key}.npy")), tensor)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn npy(header: &str, data: &[u8]) -> Vec<u8> {
        let mut out = b"\x93NUMPY\x01\x00".to_vec();
        out.extend((header.len() as u16).to_le_bytes());
        out.extend(header.as_bytes());
        out.extend(data);
        out
    }

    #[test]
    fn parses_numpy_headers() {
        let bytes = npy(
            "{'descr': '<f4', 'fortran_order': False, 'shape': (2,), }\n",
            &[0, 0, 128, 63, 0, 0, 0, 64],
        );
        let t = read_npy_bytes(&bytes, "x.npy").unwrap();
        assert_eq!(t.shape(), &[2]);
        assert_eq!(t.data(), &[1.0, 2.0]);
        let scalar = npy(
            "{'descr': '<f8', 'fortran_order': False, 'shape': (), }",
            &1.5f64.to_le_bytes(),
        );
        assert_eq!(read_npy_bytes(&scalar, "s.npy").unwrap().data(), &[1.5]);
    }

    #[test]
    fn rejects_bad_headers_with_messages() {
        let cases = [
            ("{'descr': '<i8', 'fortran_order': False, 'shape': (1,), }", "unsupported dtype"),
            ("{'descr': '<f4', 'fortran_order': True, 'shape': (2, 2), }", "Fortran"),
            ("{'descr': '<f4', 'fortran_order': False, 'shape': (99999999999, 99999999999, 9999), }", "too large"),
            ("{'descr': '<f4', 'fortran_order': False, 'shape': (3,), }", "truncated"),
            ("{'descr': '<f4', 'shape': (1,)", "malformed"),
        ];
        for (header, needle) in cases {
            let err = read_npy_bytes(&npy(header, &[0; 8]), "bad.npy")
                .unwrap_err()
                .to_string();
            assert!(
                err.contains(needle) && err.contains("bad.npy"),
                "{header}: {err}"
            );
        }
    }
}
