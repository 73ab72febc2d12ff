//! What every kernel module's `cuda.rs` launcher uses: the `launch!` macro,
//! launch configurations and buffer checks. Each launcher checks buffer
//! lengths (the kernels do not), then queues its kernel on the device's stream.
//!
//! Buffers are passed to kernels as raw device addresses: several kernels run
//! in place (out aliases an input), which borrowed slices cannot express. All
//! work is on one stream, so a buffer freed after a launch is freed in stream
//! order, after the kernel ran.

use std::sync::Arc;

use cudarc::driver::{DevicePtr, LaunchConfig};

use super::context::{DeviceBuffer, GpuDevice};

/// Threads per block of every kernel (a multiple of 32, as the block reductions need).
pub(crate) const BLOCK: u32 = 256;
/// Blocks of a grid-stride launch are capped here; the loop covers the rest.
pub(crate) const MAX_GRID: usize = 1 << 16;
/// Partial sums of a reduction (one per block).
pub(crate) const REDUCE_BLOCKS: usize = 512;

/// Queue kernel `$name` with `$cfg` and the given argument references.
macro_rules! launch {
    ($dev:expr, $name:literal, $cfg:expr, [$($arg:expr),* $(,)?]) => {{
        let dev: &$crate::cuda::GpuDevice = &$dev;
        let mut builder = dev.stream.launch_builder(dev.function($name));
        $( builder.arg($arg); )*
        // SAFETY: the argument list matches the kernel's signature in
        // its .cu source (count, order, C types) and the wrapper checked every
        // buffer's length against the sizes the kernel indexes.
        unsafe { builder.launch($cfg) }.unwrap_or_else(|e| {
            panic!("cuda:{}: kernel {} failed to launch: {e}", dev.ordinal, $name)
        });
    }};
}
pub(crate) use launch;

/// Device address of `b`'s first value plus `offset` values.
pub(crate) fn ptr(b: &DeviceBuffer, offset: usize) -> u64 {
    let (p, _sync) = b.slice.device_ptr(&b.device.stream);
    p + 4 * offset as u64
}

pub(crate) fn int(op: &str, v: usize) -> i32 {
    i32::try_from(v).unwrap_or_else(|_| panic!("{op}: size {v} does not fit the kernels' i32"))
}

pub(crate) fn check(op: &str, b: &DeviceBuffer, need: usize) {
    assert!(
        b.capacity() >= need,
        "{op}: device buffer of {} values, kernel needs {need}",
        b.capacity()
    );
}

/// All buffers on one device; returns it.
pub(crate) fn same_device(op: &str, bufs: &[&DeviceBuffer]) -> Arc<GpuDevice> {
    let d = &bufs[0].device;
    for b in bufs {
        assert!(
            b.device.ordinal == d.ordinal,
            "{op}: buffers on cuda:{} and cuda:{}",
            d.ordinal,
            b.device.ordinal
        );
    }
    d.clone()
}

/// Grid-stride launch over n elements.
pub(crate) fn grid(n: usize) -> LaunchConfig {
    let blocks = n.div_ceil(BLOCK as usize).clamp(1, MAX_GRID);
    LaunchConfig {
        grid_dim: (blocks as u32, 1, 1),
        block_dim: (BLOCK, 1, 1),
        shared_mem_bytes: 0,
    }
}

/// One block per row; fewer threads for short rows.
pub(crate) fn per_row(rows: usize, cols: usize) -> LaunchConfig {
    let threads = cols.next_multiple_of(32).clamp(32, BLOCK as usize) as u32;
    LaunchConfig {
        grid_dim: (rows.max(1) as u32, 1, 1),
        block_dim: (threads, 1, 1),
        shared_mem_bytes: 0,
    }
}

/// Column blocks x row chunks for column sums; returns (config, rows per block).
pub(crate) fn column_chunks(rows: usize, cols: usize) -> (LaunchConfig, i32) {
    let rows_per_block = rows.div_ceil(65535).max(64);
    let cfg = LaunchConfig {
        grid_dim: (
            cols.div_ceil(BLOCK as usize).max(1) as u32,
            rows.div_ceil(rows_per_block).max(1) as u32,
            1,
        ),
        block_dim: (BLOCK, 1, 1),
        shared_mem_bytes: 0,
    };
    (cfg, rows_per_block as i32)
}
