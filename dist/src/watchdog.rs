//! A timeout around every collective: a thread watches the one in flight and,
//! when it has waited longer than the timeout (a rank died or hangs), prints
//! which operation of which step waited and ends the process. The launcher
//! (mpirun) then stops the other ranks; nobody hangs silently.

use std::io::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::{Arrivals, CommError, Communicator};

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
            let arrivals = inner.arrivals();
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
                        let waited = since.elapsed().as_secs_f64();
                        let why = late_message(op, step, waited, timeout, arrivals.as_deref());
                        eprintln!("error: rank {rank} of {world} ({backend}): {why}; stopping");
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

/// Why a collective timed out: the ranks that did not reach it when the
/// backend can tell, else how long it waited.
fn late_message(
    op: &str,
    step: u64,
    waited_s: f64,
    timeout: Duration,
    arrivals: Option<&Arrivals>,
) -> String {
    let limit = timeout.as_secs_f64();
    match arrivals.and_then(Arrivals::waiting_for) {
        Some(missing) if !missing.is_empty() => {
            let list: Vec<String> = missing.iter().map(usize::to_string).collect();
            let who = match missing.len() {
                1 => format!("rank {}", list[0]),
                _ => format!("ranks {}", list.join(", ")),
            };
            format!(
                "{who} did not reach the {op} of step {step} within --comm-timeout {limit} s (died or hangs)"
            )
        }
        Some(_) => format!(
            "the {op} of step {step} has waited {waited_s:.1} s, more than --comm-timeout {limit} s: every rank reached it, one of them died or hangs inside it"
        ),
        None => format!(
            "the {op} of step {step} has waited {waited_s:.1} s, more than --comm-timeout {limit} s, for the other ranks: one of them died or hangs"
        ),
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
    fn arrivals(&self) -> Option<std::sync::Arc<Arrivals>> {
        self.inner.arrivals()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_timeout_message_names_the_missing_ranks() {
        let t = Duration::from_secs(2);
        let a = Arrivals::default();
        a.set(Some(vec![1]));
        assert_eq!(
            late_message("all-reduce", 4, 2.3, t, Some(&a)),
            "rank 1 did not reach the all-reduce of step 4 within --comm-timeout 2 s (died or hangs)"
        );
        a.set(Some(vec![1, 3]));
        assert!(late_message("barrier", 9, 2.3, t, Some(&a))
            .starts_with("ranks 1, 3 did not reach the barrier of step 9"));
        a.set(Some(vec![]));
        assert!(late_message("broadcast", 0, 2.3, t, Some(&a)).contains("every rank reached it"));
        assert!(late_message("broadcast", 0, 2.3, t, None)
            .contains("has waited 2.3 s, more than --comm-timeout 2 s"));
    }
}
