//! Subcommands of the `pixel` command line, one module each.

pub mod bench;
pub mod bench_cuda;
pub mod bench_gemm;
pub mod compare;
pub mod encode;
pub mod finetune;
pub mod info;
pub mod inspect;
pub mod mem;
pub mod parallel;
pub mod pretrain;
pub mod profile;
pub mod reconstruct;
pub mod render;

use std::sync::atomic::{AtomicBool, AtomicI32, Ordering};
use std::sync::OnceLock;

use pixel_model::layer::RecomputeMlp;

/// `--recompute-mlp` of `pixel pretrain` and `pixel bench`: which MLPs
/// recompute their hidden activation in backward instead of keeping it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum RecomputeArg {
    /// Keep every MLP's activation.
    #[default]
    None,
    /// The decoder's MLPs (its activations are about a third of the step's).
    Decoder,
    /// Every MLP (PIXEL-base step: about 10% more FLOPs, 0.64 GiB less memory).
    All,
}

impl RecomputeArg {
    /// Sets it for the layers built from now on.
    pub fn apply(self) {
        pixel_model::layer::set_recompute_mlp(match self {
            RecomputeArg::None => RecomputeMlp::None,
            RecomputeArg::Decoder => RecomputeMlp::Decoder,
            RecomputeArg::All => RecomputeMlp::All,
        });
    }
}

/// Set by the first SIGINT (Ctrl-C) or SIGTERM (schedulers, `mpirun`,
/// `timeout`): the run finishes its step, saves and stops.
static STOP: AtomicBool = AtomicBool::new(false);
/// The signal that set [`STOP`]; 0 while none came.
static STOP_SIGNAL: AtomicI32 = AtomicI32::new(0);
/// What the handler prints for SIGINT, SIGTERM and SIGUSR1, prepared
/// beforehand (a signal handler may not allocate).
static NOTICES: OnceLock<[Vec<u8>; 3]> = OnceLock::new();

extern "C" fn on_stop_signal(signal: libc::c_int) {
    if STOP_SIGNAL
        .compare_exchange(0, signal, Ordering::SeqCst, Ordering::SeqCst)
        .is_err()
    {
        // A second signal: leave now.
        // SAFETY: _exit is async-signal-safe.
        unsafe { libc::_exit(128 + signal) };
    }
    STOP.store(true, Ordering::SeqCst);
    if let Some(notices) = NOTICES.get() {
        let text = &notices[match signal {
            libc::SIGTERM => 1,
            libc::SIGUSR1 => 2,
            _ => 0,
        }];
        // SAFETY: write(2) is async-signal-safe; the buffer lives forever.
        // Nothing useful can be done if stderr is gone.
        let _ = unsafe { libc::write(2, text.as_ptr().cast(), text.len()) };
    }
}

/// A flag the first SIGINT (Ctrl-C), SIGTERM or SIGUSR1 sets, printing
/// `what_happens` (e.g. "finishing this step and saving a checkpoint"); a
/// second one exits at once. SIGUSR1 is for mpirun: Open MPI kills every rank
/// on Ctrl-C, while `kill -USR1 <mpirun's pid>` reaches every rank and stops
/// the run after the same step, with rank 0's checkpoint. After the run, [`exit_if_stopped_by_signal`] ends the process
/// with the signal's status.
pub fn stop_on_signal(what_happens: &str) -> anyhow::Result<&'static AtomicBool> {
    let notice = |name: &str| {
        format!("\n{name}: {what_happens} (press Ctrl-C again to quit at once)\n").into_bytes()
    };
    // The first call's notices stay (one run per process).
    let _ = NOTICES.set([notice("Ctrl-C"), notice("SIGTERM"), notice("SIGUSR1")]);
    for signal in [libc::SIGINT, libc::SIGTERM, libc::SIGUSR1] {
        // SAFETY: a zeroed sigaction with a handler that only touches atomics,
        // a prepared buffer and async-signal-safe calls.
        let installed = unsafe {
            let mut action: libc::sigaction = std::mem::zeroed();
            action.sa_sigaction = on_stop_signal as extern "C" fn(libc::c_int) as usize;
            action.sa_flags = libc::SA_RESTART;
            libc::sigemptyset(&mut action.sa_mask);
            libc::sigaction(signal, &action, std::ptr::null_mut())
        };
        if installed != 0 {
            anyhow::bail!(
                "cannot install the signal {signal} handler: {}",
                std::io::Error::last_os_error()
            );
        }
    }
    Ok(&STOP)
}

/// After a run that a signal stopped (its state saved): says so and exits
/// with 128 + the signal number (130 for Ctrl-C, 143 for SIGTERM), as a shell
/// reports a process the signal killed, so schedulers see the run did not finish.
pub fn exit_if_stopped_by_signal(saved: &str) {
    let signal = STOP_SIGNAL.load(Ordering::SeqCst);
    if signal == 0 {
        return;
    }
    let name = match signal {
        libc::SIGTERM => "SIGTERM",
        libc::SIGUSR1 => "SIGUSR1",
        _ => "Ctrl-C (SIGINT)",
    };
    eprintln!("error: stopped by {name}; {saved}");
    std::process::exit(128 + signal);
}
