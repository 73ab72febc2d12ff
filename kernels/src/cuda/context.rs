//! Driver probe, one device handle per ordinal, and device buffers.

use std::collections::HashMap;
use std::fmt;
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex, OnceLock};

use cudarc::cublas::CudaBlas;
use cudarc::driver::{CudaContext, CudaFunction, CudaSlice, CudaStream, CudaView, CudaViewMut};
use cudarc::nvrtc::Ptx;

use super::nvrtc::{compile, compile_cubin, entry_names, SOURCES};
use super::CudaError;

/// True when the CUDA driver library can be loaded. cudarc panics when it
/// calls into a missing library, so this is checked before any context exists.
pub fn driver_present() -> bool {
    // SAFETY: only tries to dlopen the driver library under its usual names.
    unsafe { cudarc::driver::sys::is_culib_present() }
}

/// One GPU: its context, the stream every op runs on, a cuBLAS handle bound to
/// that stream, and every kernel of `kernels/src/*/*.cu`, loaded by name.
pub struct GpuDevice {
    pub ordinal: usize,
    pub ctx: Arc<CudaContext>,
    pub stream: Arc<CudaStream>,
    pub(crate) blas: CudaBlas,
    /// Whether the cuBLAS handle is currently in TF32 mode.
    pub(crate) tf32_applied: AtomicBool,
    functions: HashMap<String, CudaFunction>,
}

impl fmt::Debug for GpuDevice {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "cuda:{}", self.ordinal)
    }
}

/// The device handle of `ordinal`, created on first use (context, stream,
/// cuBLAS, NVRTC compilation of every kernel) and shared afterwards.
/// Errors, never panics, when there is no driver, no GPU or no NVRTC.
pub fn device(ordinal: usize) -> Result<Arc<GpuDevice>, CudaError> {
    static DEVICES: OnceLock<Mutex<HashMap<usize, Arc<GpuDevice>>>> = OnceLock::new();
    let devices = DEVICES.get_or_init(|| Mutex::new(HashMap::new()));
    let mut devices = devices.lock().expect("CUDA device table poisoned");
    if let Some(d) = devices.get(&ordinal) {
        return Ok(d.clone());
    }
    let d = Arc::new(GpuDevice::open(ordinal)?);
    devices.insert(ordinal, d.clone());
    Ok(d)
}

impl GpuDevice {
    fn open(ordinal: usize) -> Result<GpuDevice, CudaError> {
        if !driver_present() {
            return Err(CudaError("no CUDA driver found".into()));
        }
        let count = CudaContext::device_count()
            .map_err(|e| CudaError(format!("CUDA driver present but unusable: {e}")))?;
        if ordinal >= count.max(0) as usize {
            return Err(CudaError(format!(
                "CUDA device {ordinal} requested, but the driver reports {count} device(s)"
            )));
        }
        let ctx = CudaContext::new(ordinal)
            .map_err(|e| CudaError(format!("cannot open CUDA device {ordinal}: {e}")))?;
        // One stream for everything: no cross-stream events needed per buffer.
        // SAFETY: every buffer is used only on `stream` below.
        unsafe { ctx.disable_event_tracking() };
        let stream = ctx.default_stream();
        // SAFETY: probing only dlopens the library.
        if !unsafe { cudarc::cublas::sys::is_culib_present() } {
            return Err(CudaError(
                "cuBLAS library (libcublas.so) not found on LD_LIBRARY_PATH".into(),
            ));
        }
        let blas = CudaBlas::new(stream.clone())
            .map_err(|e| CudaError(format!("cannot create a cuBLAS handle: {e}")))?;
        // Machine code for the device's own architecture; PTX if that fails to
        // load (then the driver JIT-compiles it, if it is as new as NVRTC).
        let (major, minor) = ctx
            .compute_capability()
            .map_err(|e| CudaError(format!("cannot query CUDA device {ordinal}: {e}")))?;
        let sm = format!("sm_{major}{minor}");
        let compute: &'static str = Box::leak(format!("compute_{major}{minor}").into_boxed_str());
        let mut functions = HashMap::new();
        for (name, source) in SOURCES {
            let cubin = compile_cubin(name, &sm)?;
            let module = match ctx.load_module(Ptx::from_binary(cubin)) {
                Ok(m) => m,
                Err(cubin_err) => ctx.load_module(compile(name, Some(compute))?).map_err(|e| {
                    CudaError(format!(
                        "cannot load kernels/src/{name}/{name}.cu: CUBIN for {sm}: {cubin_err}; PTX: {e} (a driver older than NVRTC rejects its PTX)"
                    ))
                })?,
            };
            for entry in entry_names(source) {
                let f = module
                    .load_function(&entry)
                    .map_err(|e| CudaError(format!("kernel {entry} of {name}.cu: {e}")))?;
                functions.insert(entry, f);
            }
        }
        Ok(GpuDevice {
            ordinal,
            ctx,
            stream,
            blas,
            tf32_applied: AtomicBool::new(false),
            functions,
        })
    }

    /// A loaded kernel; panics on an unknown name (a typo in a launch wrapper).
    pub(crate) fn function(&self, name: &str) -> &CudaFunction {
        self.functions
            .get(name)
            .unwrap_or_else(|| panic!("no CUDA kernel named {name} in kernels/src/*/*.cu"))
    }

    /// Wait for all queued work (timing, reading results).
    pub fn synchronize(&self) {
        self.stream
            .synchronize()
            .unwrap_or_else(|e| panic!("cuda:{}: synchronize failed: {e}", self.ordinal));
    }
}

/// An f32 buffer in device memory, tied to its device.
pub struct DeviceBuffer {
    pub(crate) slice: CudaSlice<f32>,
    pub(crate) device: Arc<GpuDevice>,
}

impl DeviceBuffer {
    /// `len` zeros.
    pub fn zeros(device: &Arc<GpuDevice>, len: usize) -> DeviceBuffer {
        let slice = device
            .stream
            .alloc_zeros::<f32>(len.max(1))
            .unwrap_or_else(|e| {
                panic!("cuda:{}: alloc of {len} floats failed: {e}", device.ordinal)
            });
        DeviceBuffer {
            slice,
            device: device.clone(),
        }
    }

    /// A copy of host data.
    pub fn from_host(device: &Arc<GpuDevice>, data: &[f32]) -> DeviceBuffer {
        let mut b = DeviceBuffer::zeros(device, data.len());
        if !data.is_empty() {
            device
                .stream
                .memcpy_htod(data, &mut b.slice)
                .unwrap_or_else(|e| {
                    panic!("cuda:{}: host-to-device copy failed: {e}", device.ordinal)
                });
        }
        b
    }

    /// Copy the first `len` values back to the host (waits for queued work).
    pub fn to_host(&self, len: usize) -> Vec<f32> {
        let mut out = vec![0.0f32; len];
        if len > 0 {
            let s = &self.device.stream;
            s.memcpy_dtoh(&self.slice.slice(..len), &mut out)
                .and_then(|_| s.synchronize())
                .unwrap_or_else(|e| {
                    panic!(
                        "cuda:{}: device-to-host copy failed: {e}",
                        self.device.ordinal
                    )
                });
        }
        out
    }

    pub fn device(&self) -> &Arc<GpuDevice> {
        &self.device
    }

    pub fn ordinal(&self) -> usize {
        self.device.ordinal
    }

    /// Allocated length (at least 1: empty tensors get a one-value buffer).
    pub fn capacity(&self) -> usize {
        self.slice.len()
    }

    pub fn view(&self, range: std::ops::Range<usize>) -> CudaView<'_, f32> {
        self.slice.slice(range)
    }

    pub fn view_mut(&mut self, range: std::ops::Range<usize>) -> CudaViewMut<'_, f32> {
        self.slice.slice_mut(range)
    }
}

impl fmt::Debug for DeviceBuffer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "DeviceBuffer({} floats on cuda:{})",
            self.slice.len(),
            self.device.ordinal
        )
    }
}

impl Clone for DeviceBuffer {
    /// A device-to-device copy.
    fn clone(&self) -> DeviceBuffer {
        let slice = self
            .device
            .stream
            .clone_dtod(&self.slice)
            .unwrap_or_else(|e| panic!("cuda:{}: device copy failed: {e}", self.device.ordinal));
        DeviceBuffer {
            slice,
            device: self.device.clone(),
        }
    }
}

/// Upload a small host array (indices, pointer tables) for one launch.
pub(crate) fn upload<T: cudarc::driver::DeviceRepr>(
    device: &GpuDevice,
    data: &[T],
) -> CudaSlice<T> {
    device
        .stream
        .clone_htod(data)
        .unwrap_or_else(|e| panic!("cuda:{}: upload failed: {e}", device.ordinal))
}
