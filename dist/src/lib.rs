//! Communicators for data-parallel training. The trainer sees only the
//! [`Communicator`] interface: rank and world size, an all-reduce (sum, then
//! scale) of f32 buffers, a broadcast, an all-gather of one u64 per rank
//! (parameter checksums) and a barrier. Three backends, each in its own file:
//!
//! - [`Single`]: one process, every operation a no-op (the default run);
//! - `mpi` (feature `mpi`): Open MPI through rsmpi, CPU processes on one or
//!   many machines, launched with `mpirun -np N`;
//! - `nccl` (feature `nccl`): NCCL through cudarc, one process per GPU, the
//!   NCCL unique id passed through MPI (or a file on a single node).
//!
//! [`Watched`] wraps any backend with a timeout: a collective that waits
//! longer than `--comm-timeout` (a rank died or hangs) ends the process with
//! an error naming the operation, the step and, when the backend can tell
//! ([`Arrivals`], MPI), the ranks that did not reach it, instead of hanging.

#[cfg(feature = "mpi")]
pub mod mpi;
#[cfg(feature = "nccl")]
pub mod nccl;
mod watchdog;

use std::sync::{Arc, Mutex};

pub use watchdog::Watched;

/// A failed collective or a communicator that could not be set up.
#[derive(Debug, Clone, PartialEq)]
pub struct CommError(pub String);

impl std::fmt::Display for CommError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for CommError {}

/// The operations data-parallel training needs. Every rank calls the same
/// collectives in the same order with buffers of the same length.
pub trait Communicator {
    /// This process's rank, 0 ..= world_size - 1.
    fn rank(&self) -> usize;
    fn world_size(&self) -> usize;
    /// The backend's name for messages ("single process", "MPI", "NCCL").
    fn backend(&self) -> &'static str;
    /// `buf` <- scale * (sum over ranks of `buf`), in place.
    fn all_reduce_sum_scale(&self, buf: &mut [f32], scale: f32) -> Result<(), CommError>;
    /// `buf` <- rank `root`'s `buf`.
    fn broadcast(&self, buf: &mut [f32], root: usize) -> Result<(), CommError>;
    /// Every rank's `value`, in rank order.
    fn all_gather_u64(&self, value: u64) -> Result<Vec<u64>, CommError>;
    fn barrier(&self) -> Result<(), CommError>;
    /// The optimizer step the next collectives belong to (for timeout messages).
    fn set_step(&self, _step: u64) {}
    /// Where the backend says which ranks the collective in progress waits
    /// for (MPI); None when it cannot tell.
    fn arrivals(&self) -> Option<Arc<Arrivals>> {
        None
    }
}

/// Which ranks the collective in progress still waits for: `Some(ranks)`
/// while the ranks announce their arrival (`Some([])` once all have and the
/// collective itself runs), None between collectives. Written by the thread
/// in the collective, read by the watchdog.
#[derive(Debug, Default)]
pub struct Arrivals(Mutex<Option<Vec<usize>>>);

impl Arrivals {
    pub fn set(&self, waiting_for: Option<Vec<usize>>) {
        if let Ok(mut g) = self.0.lock() {
            *g = waiting_for;
        }
    }

    pub fn waiting_for(&self) -> Option<Vec<usize>> {
        self.0.lock().ok().and_then(|g| g.clone())
    }
}

/// One process: world size 1, nothing to exchange.
#[derive(Clone, Copy, Debug, Default)]
pub struct Single;

impl Communicator for Single {
    fn rank(&self) -> usize {
        0
    }
    fn world_size(&self) -> usize {
        1
    }
    fn backend(&self) -> &'static str {
        "single process"
    }
    fn all_reduce_sum_scale(&self, buf: &mut [f32], scale: f32) -> Result<(), CommError> {
        if scale != 1.0 {
            buf.iter_mut().for_each(|x| *x *= scale);
        }
        Ok(())
    }
    fn broadcast(&self, _buf: &mut [f32], _root: usize) -> Result<(), CommError> {
        Ok(())
    }
    fn all_gather_u64(&self, value: u64) -> Result<Vec<u64>, CommError> {
        Ok(vec![value])
    }
    fn barrier(&self) -> Result<(), CommError> {
        Ok(())
    }
}

/// The world size a launcher announced in the environment (Open MPI's
/// `OMPI_COMM_WORLD_SIZE`, or `PMI_SIZE` / `PMIX_SIZE` of other launchers),
/// if any.
pub fn launcher_world_size() -> Option<usize> {
    ["OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "PMIX_SIZE"]
        .iter()
        .find_map(|k| std::env::var(k).ok()?.parse().ok())
}

/// The rank of this process among those of its node, from the launcher
/// (`OMPI_COMM_WORLD_LOCAL_RANK`, `MPI_LOCALRANKID`); 0 when not announced.
pub fn launcher_local_rank() -> usize {
    [
        "OMPI_COMM_WORLD_LOCAL_RANK",
        "MPI_LOCALRANKID",
        "PMIX_LOCAL_RANK",
    ]
    .iter()
    .find_map(|k| std::env::var(k).ok()?.parse().ok())
    .unwrap_or(0)
}

/// Which backend to open.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    /// MPI when a launcher started this process with more than one rank,
    /// else a single process.
    Auto,
    Single,
    Mpi,
    /// NCCL for the collectives, MPI to hand out NCCL's unique id.
    Nccl,
}

/// Opens the communicator of this process, wrapped in a [`Watched`] with
/// `timeout`. `Auto` under `mpirun -np N` (N > 1) needs a build with the
/// `mpi` feature: without it the error says so, rather than running N
/// independent copies that overwrite each other's files.
pub fn open(backend: Backend, timeout: std::time::Duration) -> Result<Watched, CommError> {
    let launched = launcher_world_size().unwrap_or(1);
    let inner: Box<dyn Communicator + Send + Sync> = match backend {
        Backend::Single => Box::new(Single),
        Backend::Auto if launched <= 1 => Box::new(Single),
        Backend::Auto | Backend::Mpi => open_mpi()?,
        Backend::Nccl => open_nccl()?,
    };
    Ok(Watched::new(inner, timeout))
}

#[cfg(feature = "mpi")]
fn open_mpi() -> Result<Box<dyn Communicator + Send + Sync>, CommError> {
    Ok(Box::new(mpi::MpiComm::init()?))
}

#[cfg(not(feature = "mpi"))]
fn open_mpi() -> Result<Box<dyn Communicator + Send + Sync>, CommError> {
    Err(CommError(format!(
        "started by an MPI launcher with {} ranks, but this build has no MPI support; rebuild with --features mpi",
        launcher_world_size().unwrap_or(1)
    )))
}

#[cfg(all(feature = "nccl", feature = "mpi"))]
fn open_nccl() -> Result<Box<dyn Communicator + Send + Sync>, CommError> {
    let mpi = mpi::MpiComm::init()?;
    Ok(Box::new(nccl::NcclComm::init_through(
        &mpi,
        launcher_local_rank(),
    )?))
}

#[cfg(all(feature = "nccl", not(feature = "mpi")))]
fn open_nccl() -> Result<Box<dyn Communicator + Send + Sync>, CommError> {
    Ok(Box::new(nccl::NcclComm::init_from_env_file()?))
}

#[cfg(not(feature = "nccl"))]
fn open_nccl() -> Result<Box<dyn Communicator + Send + Sync>, CommError> {
    Err(CommError(
        "--comm nccl: this build has no NCCL support; rebuild with --features nccl".into(),
    ))
}

/// FNV-1a over the bit patterns of `values`, continuing from `hash` (start
/// with [`CHECKSUM_START`]): equal only for bit-identical parameters.
pub fn checksum(hash: u64, values: &[f32]) -> u64 {
    values.iter().fold(hash, |h, v| {
        v.to_bits().to_le_bytes().iter().fold(h, |h, &b| {
            (h ^ b as u64).wrapping_mul(0x0000_0100_0000_01B3)
        })
    })
}

/// The FNV-1a offset basis.
pub const CHECKSUM_START: u64 = 0xCBF2_9CE4_8422_2325;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn single_scales_and_keeps_everything_else() {
        let c = Single;
        let mut b = vec![1.0, -2.0, 4.0];
        c.all_reduce_sum_scale(&mut b, 0.5).unwrap();
        assert_eq!(b, [0.5, -1.0, 2.0]);
        c.broadcast(&mut b, 0).unwrap();
        assert_eq!(b, [0.5, -1.0, 2.0]);
        assert_eq!(c.all_gather_u64(7).unwrap(), [7]);
        assert_eq!((c.rank(), c.world_size()), (0, 1));
    }

    #[test]
    fn the_checksum_sees_one_bit() {
        let a = [1.0f32, 2.0, 3.0];
        let mut b = a;
        b[1] = f32::from_bits(b[1].to_bits() ^ 1);
        assert_ne!(checksum(CHECKSUM_START, &a), checksum(CHECKSUM_START, &b));
        assert_eq!(checksum(CHECKSUM_START, &a), checksum(CHECKSUM_START, &a));
        // -0.0 and 0.0 compare equal but are different parameters' bits.
        assert_ne!(
            checksum(CHECKSUM_START, &[0.0]),
            checksum(CHECKSUM_START, &[-0.0])
        );
    }
}
