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
use std::sync::{Arc, OnceLock};

/// The flag SIGUSR1 sets (see [`stop_on_ctrl_c`]).
static USR1_STOP: OnceLock<Arc<AtomicBool>> = OnceLock::new();

extern "C" fn on_usr1(_: libc::c_int) {
    // Only an atomic store: all a signal handler may safely do here.
    if let Some(flag) = USR1_STOP.get() {
        flag.store(true, Ordering::SeqCst);
    }
}

/// A flag the first Ctrl-C sets (printing `what_happens`, e.g. "finishing this
/// step and saving a checkpoint"); a second Ctrl-C exits at once. SIGUSR1
/// sets it too: under mpirun, Ctrl-C kills every rank at once (Open MPI does
/// not forward SIGINT), while `kill -USR1 <mpirun's pid>` reaches every rank
/// and stops the run after the same step, with rank 0's checkpoint.
pub fn stop_on_ctrl_c(what_happens: &'static str) -> anyhow::Result<Arc<AtomicBool>> {
    let stop = Arc::new(AtomicBool::new(false));
    if USR1_STOP.set(stop.clone()).is_ok() {
        // SAFETY: installs a handler that only does an atomic store.
        unsafe { libc::signal(libc::SIGUSR1, on_usr1 as *const () as libc::sighandler_t) };
    }
    let flag = stop.clone();
    ctrlc::set_handler(move || {
        if flag.swap(true, Ordering::SeqCst) {
            std::process::exit(130); // second Ctrl-C: leave now
        }
        eprintln!("\nCtrl-C: {what_happens} (press again to quit at once)");
    })?;
    Ok(stop)
}
