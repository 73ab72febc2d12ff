//! Kernel sources and their run-time compilation with NVRTC.
//!
//! Each kernel module's `.cu` file (`src/<op>/<op>.cu`) is compiled once per process (per target
//! architecture) with `common.cuh` prepended, and the result is cached: PTX
//! for a virtual architecture (`compute_90`), or CUBIN machine code for a real
//! one (`sm_90`). A device loads CUBIN first: PTX from an NVRTC newer than the
//! driver is rejected, machine code of the same CUDA major version is not.

use std::collections::HashMap;
use std::sync::{Mutex, OnceLock};

use cudarc::nvrtc::{compile_ptx_with_opts, CompileError, CompileOptions, Ptx};

use super::CudaError;

/// Helpers prepended to every source.
pub const COMMON: &str = include_str!("common.cuh");

/// Every kernel source: (module name, source text).
pub const SOURCES: &[(&str, &str)] = &[
    ("elementwise", include_str!("../elementwise/elementwise.cu")),
    ("layer_norm", include_str!("../layer_norm/layer_norm.cu")),
    ("softmax", include_str!("../softmax/softmax.cu")),
    ("gelu", include_str!("../gelu/gelu.cu")),
    ("dropout", include_str!("../dropout/dropout.cu")),
    ("layout", include_str!("../layout/layout.cu")),
    ("loss", include_str!("../loss/loss.cu")),
    ("adamw", include_str!("../adamw/adamw.cu")),
    ("reduce", include_str!("../reduce/reduce.cu")),
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

/// The source of one kernel module with the shared helpers prepended.
fn full_source(name: &str) -> Result<String, CudaError> {
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
    Ok(format!("{COMMON}\n{source}"))
}

/// The options of every compilation: exact division and sqrt, no
/// flush-to-zero (parity with the CPU path).
fn options(arch: Option<&str>) -> Vec<String> {
    let mut o = vec![
        "--ftz=false".to_string(),
        "--prec-sqrt=true".to_string(),
        "--prec-div=true".to_string(),
    ];
    if let Some(arch) = arch {
        o.push(format!("--gpu-architecture={arch}"));
    }
    o
}

/// Compiled CUBIN by (source name, architecture).
type CubinCache = HashMap<(String, String), Vec<u8>>;

/// CUBIN of one source for a real architecture such as `sm_90`, compiled on
/// first request and cached for the process.
pub fn compile_cubin(name: &str, arch: &str) -> Result<Vec<u8>, CudaError> {
    use cudarc::nvrtc::{result, sys};
    static CACHE: OnceLock<Mutex<CubinCache>> = OnceLock::new();
    let cache = CACHE.get_or_init(|| Mutex::new(HashMap::new()));
    let key = (name.to_string(), arch.to_string());
    if let Some(bin) = cache.lock().expect("CUBIN cache poisoned").get(&key) {
        return Ok(bin.clone());
    }
    let src = std::ffi::CString::new(full_source(name)?).expect("kernel source has no NUL");
    let fail = |what: &str, e: &dyn std::fmt::Debug| {
        CudaError(format!(
            "NVRTC {what} of kernels/src/{name}/{name}.cu for {arch}: {e:?}"
        ))
    };
    let prog = result::create_program(&src, None).map_err(|e| fail("create", &e))?;
    // SAFETY: `prog` is a live program until destroy_program below; the
    // buffer handed to nvrtcGetCUBIN has the size NVRTC reported.
    let bin = unsafe {
        let compiled = result::compile_program(prog, &options(Some(arch)));
        let bin = match compiled {
            Err(e) => {
                let log = result::get_program_log(prog)
                    .map(|l| {
                        std::ffi::CStr::from_ptr(l.as_ptr())
                            .to_string_lossy()
                            .into_owned()
                    })
                    .unwrap_or_default();
                Err(CudaError(format!(
                    "NVRTC failed on kernels/src/{name}/{name}.cu for {arch} ({e:?}):\n{log}"
                )))
            }
            Ok(()) => {
                let mut size = 0usize;
                sys::nvrtcGetCUBINSize(prog, &mut size)
                    .result()
                    .map_err(|e| fail("CUBIN size", &e))
                    .and_then(|()| {
                        let mut bin = vec![0u8; size];
                        sys::nvrtcGetCUBIN(prog, bin.as_mut_ptr() as *mut std::ffi::c_char)
                            .result()
                            .map_err(|e| fail("CUBIN", &e))
                            .map(|()| bin)
                    })
            }
        };
        result::destroy_program(prog).map_err(|e| fail("destroy", &e))?;
        bin?
    };
    cache
        .lock()
        .expect("CUBIN cache poisoned")
        .insert(key, bin.clone());
    Ok(bin)
}

/// PTX of one source for a virtual architecture such as `compute_80` (None:
/// NVRTC's default), compiled on first request and cached for the process.
pub fn compile(name: &str, arch: Option<&'static str>) -> Result<Ptx, CudaError> {
    static CACHE: OnceLock<Mutex<PtxCache>> = OnceLock::new();
    let cache = CACHE.get_or_init(|| Mutex::new(HashMap::new()));
    let key = (name.to_string(), arch);
    if let Some(ptx) = cache.lock().expect("PTX cache poisoned").get(&key) {
        return Ok(ptx.clone());
    }
    let source = full_source(name)?;
    let opts = CompileOptions {
        options: options(arch),
        name: Some(format!("{name}.cu")),
        ..Default::default()
    };
    let ptx = compile_ptx_with_opts(source, opts).map_err(|e| {
        let detail = match e {
            CompileError::CompileError { log, .. } => log.to_string_lossy().into_owned(),
            other => other.to_string(),
        };
        CudaError(format!(
            "NVRTC failed on kernels/src/{name}/{name}.cu:\n{detail}"
        ))
    })?;
    cache
        .lock()
        .expect("PTX cache poisoned")
        .insert(key, ptx.clone());
    Ok(ptx)
}
