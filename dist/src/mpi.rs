//! The MPI backend: Open MPI (or any MPI) through rsmpi. The processes are
//! started by `mpirun -np N`; world size and rank come from MPI.
//!
//! Before each collective the ranks exchange two rounds of tiny non-blocking
//! arrival messages (on a duplicate of the world communicator, so they never
//! mix with the collectives' traffic), polled rather than waited for: while a
//! rank waits there, [`Arrivals`] says which ranks have not arrived, and the
//! watchdog names them when the timeout strikes. Two rounds, because a rank
//! that hangs while waiting for the others has already sent its first
//! message; it never sends its second. The messages carry the collective's
//! sequence number, so ranks that drifted apart (calling different
//! collectives) are an error, not a wrong sum.

use ::mpi::collective::SystemOperation;
use ::mpi::environment::Universe;
use ::mpi::topology::SimpleCommunicator;
use ::mpi::traits::Communicator as _;
use ::mpi::traits::*;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use crate::{Arrivals, CommError, Communicator};

/// MPI_COMM_WORLD. Dropping it finalizes MPI.
pub struct MpiComm {
    world: SimpleCommunicator,
    /// A duplicate of `world` for the arrival messages.
    arrive: SimpleCommunicator,
    /// Collectives started so far (the arrival messages' content).
    sequence: AtomicU64,
    arrivals: Arc<Arrivals>,
    // Last: finalizes after `world` is gone.
    _universe: Universe,
}

// SAFETY: MPI is initialized with MPI_THREAD_SERIALIZED at least (checked in
// `init`), and the trainer calls the collectives from one thread at a time
// (the watchdog never calls MPI).
unsafe impl Send for MpiComm {}
unsafe impl Sync for MpiComm {}

impl MpiComm {
    /// Initializes MPI (once per process).
    pub fn init() -> Result<MpiComm, CommError> {
        let (universe, threading) = ::mpi::initialize_with_threading(::mpi::Threading::Serialized)
            .ok_or_else(|| CommError("MPI was already initialized in this process".into()))?;
        if !matches!(
            threading,
            ::mpi::Threading::Serialized | ::mpi::Threading::Multiple
        ) {
            return Err(CommError(format!(
                "this MPI library offers thread level {threading:?}; pixel needs at least Serialized"
            )));
        }
        let world = universe.world();
        Ok(MpiComm {
            arrive: world.duplicate(),
            world,
            sequence: AtomicU64::new(0),
            arrivals: Arc::new(Arrivals::default()),
            _universe: universe,
        })
    }

    /// Waits, polling, until every other rank has sent this collective's
    /// arrival messages of both rounds; [`Arrivals`] holds the missing ranks
    /// meanwhile and "none" once they all came (the collective itself runs).
    fn arrive_everyone(&self) -> Result<(), CommError> {
        let sequence = self.sequence.fetch_add(1, Ordering::SeqCst);
        for round in [1, 2] {
            self.arrival_round(round, sequence)?;
        }
        self.arrivals.set(Some(Vec::new()));
        Ok(())
    }

    fn arrival_round(&self, tag: i32, sequence: u64) -> Result<(), CommError> {
        let me = self.rank();
        let others: Vec<usize> = (0..self.world_size()).filter(|&r| r != me).collect();
        self.arrivals.set(Some(others.clone()));
        let mut got = vec![u64::MAX; others.len()];
        ::mpi::request::scope(|scope| {
            let sends: Vec<_> = others
                .iter()
                .map(|&r| {
                    self.arrive
                        .process_at_rank(r as i32)
                        .immediate_send_with_tag(scope, &sequence, tag)
                })
                .collect();
            let mut receives: Vec<Option<_>> = others
                .iter()
                .zip(got.iter_mut())
                .map(|(&r, buf)| {
                    Some(
                        self.arrive
                            .process_at_rank(r as i32)
                            .immediate_receive_into_with_tag(scope, buf, tag),
                    )
                })
                .collect();
            loop {
                let mut arrived = false;
                for slot in receives.iter_mut() {
                    if let Some(request) = slot.take() {
                        match request.test() {
                            Ok(_) => arrived = true,
                            Err(request) => *slot = Some(request),
                        }
                    }
                }
                let missing: Vec<usize> = others
                    .iter()
                    .zip(&receives)
                    .filter(|(_, r)| r.is_some())
                    .map(|(&rank, _)| rank)
                    .collect();
                if missing.is_empty() {
                    break;
                }
                if arrived {
                    self.arrivals.set(Some(missing));
                }
                // Polling, not waiting: the watchdog reads who is missing.
                std::thread::yield_now();
            }
            for send in sends {
                send.wait();
            }
        });
        for (&rank, &theirs) in others.iter().zip(&got) {
            if theirs != sequence {
                return Err(CommError(format!(
                    "rank {rank} is at collective number {theirs} while rank {me} is at {sequence}: the ranks no longer call the same collectives"
                )));
            }
        }
        Ok(())
    }

    /// Runs collective `f` after every rank arrived.
    fn collective<T>(&self, f: impl FnOnce() -> T) -> Result<T, CommError> {
        self.arrive_everyone()?;
        let out = f();
        self.arrivals.set(None);
        Ok(out)
    }

    /// A byte broadcast from `root` (the NCCL unique id).
    pub fn broadcast_bytes(&self, buf: &mut [u8], root: usize) {
        self.world.process_at_rank(root as i32).broadcast_into(buf);
    }
}

impl Communicator for MpiComm {
    fn rank(&self) -> usize {
        self.world.rank() as usize
    }
    fn world_size(&self) -> usize {
        self.world.size() as usize
    }
    fn backend(&self) -> &'static str {
        "MPI"
    }
    fn arrivals(&self) -> Option<Arc<Arrivals>> {
        Some(self.arrivals.clone())
    }
    fn all_reduce_sum_scale(&self, buf: &mut [f32], scale: f32) -> Result<(), CommError> {
        let send = buf.to_vec();
        // MPI counts are i32: reduce in pieces of at most 2^30 floats.
        self.collective(|| {
            for (s, r) in send.chunks(1 << 30).zip(buf.chunks_mut(1 << 30)) {
                self.world.all_reduce_into(s, r, SystemOperation::sum());
            }
        })?;
        if scale != 1.0 {
            buf.iter_mut().for_each(|x| *x *= scale);
        }
        Ok(())
    }
    fn broadcast(&self, buf: &mut [f32], root: usize) -> Result<(), CommError> {
        if root >= self.world_size() {
            return Err(CommError(format!(
                "broadcast from rank {root}: the world has {} ranks",
                self.world_size()
            )));
        }
        self.collective(|| {
            for piece in buf.chunks_mut(1 << 30) {
                self.world
                    .process_at_rank(root as i32)
                    .broadcast_into(piece);
            }
        })
    }
    fn all_gather_u64(&self, value: u64) -> Result<Vec<u64>, CommError> {
        let mut all = vec![0u64; self.world_size()];
        self.collective(|| self.world.all_gather_into(&value, &mut all[..]))?;
        Ok(all)
    }
    fn barrier(&self) -> Result<(), CommError> {
        self.collective(|| self.world.barrier())
    }
}
