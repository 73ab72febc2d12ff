//! A timeout around every collective: a thread watches the one in flight and,
//! when it has waited longer than the timeout (a rank died or hangs), prints
//! which operation of which step waited and ends the process. The launcher
//! (mpirun) then stops the other ranks; nobody hangs silently.

use std::io::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::{CommError, Communicator};

/// Exit status of a process whose collective timed out.
pub const TIMEOUT_EXIT_CODE: i32 = 75;

struct InFlight {
    /// (operation, when it started) of the collective in progress.
    op: Mutex<Option<(&'static str, Instant)>>,
    step: AtomicU64,
}

/// A communicator whose collectives end the process after `timeout`.
pub struct Watched {
    inner: Box<dyn Communicator + Send + Sync>,
    in_flight: Arc<InFlight>,
}

impl Watched {
    pub fn new(inner: Box<dyn Communicator + Send + Sync>, timeout: Duration) -> Watched {
        let in_flight = Arc::new(InFlight {
            op: Mutex::new(None),
            step: AtomicU64::new(0),
        });
        if inner.world_size() > 1 {
            let watched = in_flight.clone();
            let (rank, world, backend) = (inner.rank(), inner.world_size(), inner.backend());
            let poll = (timeout / 10).clamp(Duration::from_millis(20), Duration::from_secs(1));
            std::thread::Builder::new()
                .name("pixel-comm-watchdog".into())
                .spawn(move || loop {
                    std::thread::sleep(poll);
                    let late = watched
                        .op
                        .lock()
                        .map(|g| g.filter(|(_, since)| since.elapsed() > timeout))
                        .unwrap_or(None);
                    if let Some((op, since)) = late {
                        let step = watched.step.load(Ordering::SeqCst);
                        eprintln!(
                            "error: rank {rank} of {world} ({backend}): the {op} of step {step} has waited {:.1} s, more than --comm-timeout {} s, for the other ranks: one of them died or hangs; stopping",
                            since.elapsed().as_secs_f64(),
                            timeout.as_secs_f64()
                        );
                        let _ = std::io::stderr().flush();
                        // Not exit(): atexit handlers could wait on the
                        // collective this process is stuck in.
                        unsafe { libc::_exit(TIMEOUT_EXIT_CODE) };
                    }
                })
                .expect("spawn the communicator watchdog");
        }
        Watched { inner, in_flight }
    }

    fn watch<T>(&self, op: &'static str, f: impl FnOnce() -> T) -> T {
        if self.inner.world_size() == 1 {
            return f();
        }
        if let Ok(mut g) = self.in_flight.op.lock() {
            *g = Some((op, Instant::now()));
        }
        let out = f();
        if let Ok(mut g) = self.in_flight.op.lock() {
            *g = None;
        }
        out
    }
}

impl Communicator for Watched {
    fn rank(&self) -> usize {
        self.inner.rank()
    }
    fn world_size(&self) -> usize {
        self.inner.world_size()
    }
    fn backend(&self) -> &'static str {
        self.inner.backend()
    }
    fn all_reduce_sum_scale(&self, buf: &mut [f32], scale: f32) -> Result<(), CommError> {
        self.watch("all-reduce", || self.inner.all_reduce_sum_scale(buf, scale))
    }
    fn broadcast(&self, buf: &mut [f32], root: usize) -> Result<(), CommError> {
        self.watch("broadcast", || self.inner.broadcast(buf, root))
    }
    fn all_gather_u64(&self, value: u64) -> Result<Vec<u64>, CommError> {
        self.watch("checksum all-gather", || self.inner.all_gather_u64(value))
    }
    fn barrier(&self) -> Result<(), CommError> {
        self.watch("barrier", || self.inner.barrier())
    }
    fn set_step(&self, step: u64) {
        self.in_flight.step.store(step, Ordering::SeqCst);
    }
}
