//! The MPI backend: Open MPI (or any MPI) through rsmpi. The processes are
//! started by `mpirun -np N`; world size and rank come from MPI.

use ::mpi::collective::SystemOperation;
use ::mpi::environment::Universe;
use ::mpi::topology::SimpleCommunicator;
use ::mpi::traits::Communicator as _;
use ::mpi::traits::*;

use crate::{CommError, Communicator};

/// MPI_COMM_WORLD. Dropping it finalizes MPI.
pub struct MpiComm {
    world: SimpleCommunicator,
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
        Ok(MpiComm {
            world: universe.world(),
            _universe: universe,
        })
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
    fn all_reduce_sum_scale(&self, buf: &mut [f32], scale: f32) -> Result<(), CommError> {
        let send = buf.to_vec();
        // MPI counts are i32: reduce in pieces of at most 2^30 floats.
        for (s, r) in send.chunks(1 << 30).zip(buf.chunks_mut(1 << 30)) {
            self.world.all_reduce_into(s, r, SystemOperation::sum());
        }
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
        for piece in buf.chunks_mut(1 << 30) {
            self.world
                .process_at_rank(root as i32)
                .broadcast_into(piece);
        }
        Ok(())
    }
    fn all_gather_u64(&self, value: u64) -> Result<Vec<u64>, CommError> {
        let mut all = vec![0u64; self.world_size()];
        self.world.all_gather_into(&value, &mut all[..]);
        Ok(all)
    }
    fn barrier(&self) -> Result<(), CommError> {
        self.world.barrier();
        Ok(())
    }
}
