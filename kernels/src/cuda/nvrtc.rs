//! Kernel sources and their run-time compilation with NVRTC.
//!
//! Each `kernels/cuda/*.cu` file is compiled once per process (per target
//! architecture) with `common.cuh` prepended, and the PTX is cached.

use std::collections::HashMap;
use std::sync::{Mutex, OnceLock};

use cudarc::nvrtc::{compile_ptx_with_opts, CompileError, CompileOptions, Ptx};

use super::CudaError;

/// Helpers prepended to every source.
pub const COMMON: &str = include_str!("../../cuda/common.cuh");

/// Every kernel source: (module name, source text).
pub const SOURCES: &[(&str, &str)] = &[
    ("elementwise", include_str!("../../cuda/elementwise.cu")),
    ("layer_norm", include_str!("../../cuda/layer_norm.cu")),
    ("softmax", include_str!("../../cuda/softmax.cu")),
    ("gelu", include_str!("../../cuda/gelu.cu")),
    ("dropout", include_str!("../../cuda/dropout.cu")),
    ("rows", include_str!("../../cuda/rows.cu")),
    ("loss", include_str!("../../cuda/loss.cu")),
    ("adamw", include_str!("../../cuda/adamw.cu")),
];

/// True when the NVRTC library can be loaded (cudarc panics on first use otherwise).
pub fn nvrtc_present() -> bool {
    // SAFETY: only tries to dlopen the library under its usual names.
    unsafe { cudarc::nvrtc::sys::is_culib_present() }
}

/// The kernel names a source defines (`extern "C" __global__ void NAME(`).
pub fn entry_names(source: &str) -> Vec<String> {
    let marker = "extern \"C\" __global__ void ";
    source
        .match_indices(marker)
        .filter_map(|(at, _)| {
            let rest = &source[at + marker.len()..];
            rest.find('(').map(|end| rest[..end].trim().to_string())
        })
        .collect()
}

/// Compiled PTX by (source name, architecture).
type PtxCache = HashMap<(String, Option<&'static str>), Ptx>;

/// PTX of one source for a virtual architecture such as `compute_80` (None:
/// NVRTC's default), compiled on first request and cached for the process.
pub fn compile(name: &str, arch: Option<&'static str>) -> Result<Ptx, CudaError> {
    static CACHE: OnceLock<Mutex<PtxCache>> = OnceLock::new();
    let cache = CACHE.get_or_init(|| Mutex::new(HashMap::new()));
    let key = (name.to_string(), arch);
    if let Some(ptx) = cache.lock().expect("PTX cache poisoned").get(&key) {
        return Ok(ptx.clone());
    }
    let source = SOURCES
        .iter()
        .find(|(n, _)| *n == name)
        .map(|(_, s)| *s)
        .ok_or_else(|| CudaError(format!("no CUDA kernel source named {name}")))?;
    if !nvrtc_present() {
        return Err(CudaError(
            "NVRTC library (libnvrtc.so) not found: install the CUDA runtime compiler and put it on LD_LIBRARY_PATH"
                .into(),
        ));
    }
    let opts = CompileOptions {
        arch,
        // Exact division and sqrt, no flush-to-zero: parity with the CPU path.
        prec_div: Some(true),
        prec_sqrt: Some(true),
        ftz: Some(false),
        name: Some(format!("{name}.cu")),
        ..Default::default()
    };
    let ptx = compile_ptx_with_opts(format!("{COMMON}\n{source}"), opts).map_err(|e| {
        let detail = match e {
            CompileError::CompileError { log, .. } => log.to_string_lossy().into_owned(),
            other => other.to_string(),
        };
        CudaError(format!("NVRTC failed on kernels/cuda/{name}.cu:\n{detail}"))
    })?;
    cache
        .lock()
        .expect("PTX cache poisoned")
        .insert(key, ptx.clone());
    Ok(ptx)
}
