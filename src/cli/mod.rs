//! Subcommands of the `pixel` command line, one module each.

pub mod bench;
pub mod bench_cuda;
pub mod bench_gemm;
pub mod finetune;
pub mod info;
pub mod inspect;
pub mod mem;
pub mod parallel;
pub mod pretrain;
pub mod profile;
pub mod reconstruct;
pub mod render;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

/// A flag the first Ctrl-C sets (printing `what_happens`, e.g. "finishing this
/// step and saving a checkpoint"); a second Ctrl-C exits at once.
pub fn stop_on_ctrl_c(what_happens: &'static str) -> anyhow::Result<Arc<AtomicBool>> {
    let stop = Arc::new(AtomicBool::new(false));
    let flag = stop.clone();
    ctrlc::set_handler(move || {
        if flag.swap(true, Ordering::SeqCst) {
            std::process::exit(130); // second Ctrl-C: leave now
        }
        eprintln!("\nCtrl-C: {what_happens} (press again to quit at once)");
    })?;
    Ok(stop)
}
