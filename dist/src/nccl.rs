//! The NCCL backend (cudarc's `nccl` module): one process per GPU, GPU =
//! the process's rank on its node. NCCL's unique id is made by rank 0 and
//! handed to the others through MPI, or, without MPI on a single node,
//! through the file named by `PIXEL_NCCL_ID_FILE` (rank and world size from
//! `PIXEL_RANK` / `PIXEL_WORLD_SIZE`). cudarc loads libnccl at run time, so
//! this builds on a machine without GPU or NCCL.
//!
//! The interface works on host buffers: each collective copies the buffer to
//! the GPU, runs the NCCL collective on the stream and copies it back.

use std::sync::Arc;

use cudarc::driver::{CudaContext, CudaStream};
use cudarc::nccl::safe::{Comm, Id, ReduceOp};

use crate::{CommError, Communicator};

pub struct NcclComm {
    comm: Comm,
    stream: Arc<CudaStream>,
}

// SAFETY: the trainer calls the collectives from one thread at a time; the
// NCCL communicator and the stream are only used from inside those calls.
unsafe impl Send for NcclComm {}
unsafe impl Sync for NcclComm {}

fn nccl_err(what: &str) -> impl Fn(cudarc::nccl::result::NcclError) -> CommError + '_ {
    move |e| CommError(format!("NCCL {what}: {e:?}"))
}

fn driver_err(what: &str) -> impl Fn(cudarc::driver::DriverError) -> CommError + '_ {
    move |e| CommError(format!("CUDA {what}: {e}"))
}

/// A clear error, instead of cudarc's panic, when the CUDA driver or NCCL
/// library cannot be loaded.
fn check_libraries() -> Result<(), CommError> {
    // SAFETY: these only try to load the shared libraries.
    if !unsafe { cudarc::driver::sys::is_culib_present() } {
        return Err(CommError(
            "NCCL: no CUDA driver found (libcuda); --comm nccl needs NVIDIA GPUs".into(),
        ));
    }
    if !unsafe { cudarc::nccl::sys::is_culib_present() } {
        return Err(CommError(
            "NCCL: libnccl not found (install NCCL, e.g. the nvidia-nccl-cu12 package, and put it on LD_LIBRARY_PATH)".into(),
        ));
    }
    Ok(())
}

impl NcclComm {
    fn with_id(rank: usize, world: usize, gpu: usize, id: Id) -> Result<NcclComm, CommError> {
        let ctx = CudaContext::new(gpu).map_err(driver_err("opening the GPU"))?;
        let stream = ctx.default_stream();
        let comm = Comm::from_rank(stream.clone(), rank, world, id)
            .map_err(nccl_err("communicator init"))?;
        Ok(NcclComm { comm, stream })
    }

    /// Rank and world size from `mpi`; the unique id broadcast from rank 0;
    /// GPU `local_rank`.
    #[cfg(feature = "mpi")]
    pub fn init_through(
        mpi: &crate::mpi::MpiComm,
        local_rank: usize,
    ) -> Result<NcclComm, CommError> {
        check_libraries()?;
        let rank = mpi.rank();
        let mut bytes = [0u8; 128];
        if rank == 0 {
            let id = Id::new().map_err(nccl_err("unique id"))?;
            for (b, &c) in bytes.iter_mut().zip(id.internal()) {
                *b = c as u8;
            }
        }
        mpi.broadcast_bytes(&mut bytes, 0);
        NcclComm::with_id(rank, mpi.world_size(), local_rank, id_from_bytes(&bytes))
    }

    /// Rank, world size and id file from `PIXEL_RANK`, `PIXEL_WORLD_SIZE` and
    /// `PIXEL_NCCL_ID_FILE` (one node, no MPI): rank 0 writes the id, the
    /// others wait up to a minute for it.
    pub fn init_from_env_file() -> Result<NcclComm, CommError> {
        check_libraries()?;
        let var = |k: &str| {
            std::env::var(k).map_err(|_| CommError(format!("NCCL without MPI needs {k} set")))
        };
        let parse = |k: &str| -> Result<usize, CommError> {
            var(k)?
                .parse()
                .map_err(|_| CommError(format!("{k} must be a number")))
        };
        let (rank, world) = (parse("PIXEL_RANK")?, parse("PIXEL_WORLD_SIZE")?);
        let path = std::path::PathBuf::from(var("PIXEL_NCCL_ID_FILE")?);
        let bytes = if rank == 0 {
            let id = Id::new().map_err(nccl_err("unique id"))?;
            let bytes: Vec<u8> = id.internal().iter().map(|&c| c as u8).collect();
            let tmp = path.with_extension("tmp");
            std::fs::write(&tmp, &bytes)
                .and_then(|_| std::fs::rename(&tmp, &path))
                .map_err(|e| CommError(format!("writing {}: {e}", path.display())))?;
            bytes
        } else {
            let started = std::time::Instant::now();
            loop {
                match std::fs::read(&path) {
                    Ok(b) if b.len() == 128 => break b,
                    _ if started.elapsed().as_secs() > 60 => {
                        return Err(CommError(format!(
                            "rank {rank}: no NCCL id in {} after 60 s (is rank 0 running?)",
                            path.display()
                        )))
                    }
                    _ => std::thread::sleep(std::time::Duration::from_millis(100)),
                }
            }
        };
        NcclComm::with_id(rank, world, rank, id_from_bytes(&bytes))
    }

    /// Copies `buf` to the GPU, runs `op` on it there and copies it back.
    fn on_device(
        &self,
        buf: &mut [f32],
        op: impl FnOnce(&mut cudarc::driver::CudaSlice<f32>) -> Result<(), CommError>,
    ) -> Result<(), CommError> {
        let mut dev = self
            .stream
            .clone_htod(&*buf)
            .map_err(driver_err("copy to the GPU"))?;
        op(&mut dev)?;
        self.stream
            .memcpy_dtoh(&dev, buf)
            .map_err(driver_err("copy from the GPU"))?;
        self.stream.synchronize().map_err(driver_err("synchronize"))
    }
}

fn id_from_bytes(bytes: &[u8]) -> Id {
    let mut internal = [0 as ::core::ffi::c_char; 128];
    for (c, &b) in internal.iter_mut().zip(bytes) {
        *c = b as ::core::ffi::c_char;
    }
    Id::uninit(internal)
}

impl Communicator for NcclComm {
    fn rank(&self) -> usize {
        self.comm.rank()
    }
    fn world_size(&self) -> usize {
        self.comm.world_size()
    }
    fn backend(&self) -> &'static str {
        "NCCL"
    }
    fn all_reduce_sum_scale(&self, buf: &mut [f32], scale: f32) -> Result<(), CommError> {
        self.on_device(buf, |dev| {
            self.comm
                .all_reduce_in_place(dev, &ReduceOp::Sum)
                .map(|_| ())
                .map_err(nccl_err("all-reduce"))
        })?;
        if scale != 1.0 {
            buf.iter_mut().for_each(|x| *x *= scale);
        }
        Ok(())
    }
    fn broadcast(&self, buf: &mut [f32], root: usize) -> Result<(), CommError> {
        self.on_device(buf, |dev| {
            self.comm
                .broadcast_in_place(dev, root as i32)
                .map(|_| ())
                .map_err(nccl_err("broadcast"))
        })
    }
    fn all_gather_u64(&self, value: u64) -> Result<Vec<u64>, CommError> {
        let n = self.world_size();
        let send = self
            .stream
            .clone_htod(&[value])
            .map_err(driver_err("copy to the GPU"))?;
        let mut recv = self
            .stream
            .alloc_zeros::<u64>(n)
            .map_err(driver_err("alloc"))?;
        self.comm
            .all_gather(&send, &mut recv)
            .map_err(nccl_err("all-gather"))?;
        self.stream
            .clone_dtoh(&recv)
            .map_err(driver_err("copy from the GPU"))
    }
    fn barrier(&self) -> Result<(), CommError> {
        // An all-reduce of one value: NCCL has no barrier of its own.
        let mut one = [0.0f32];
        self.all_reduce_sum_scale(&mut one, 1.0)
    }
}
