//! The data-parallel flags of `pixel pretrain`: which communicator, its
//! timeout, the gradient bucket size and the parameter check cadence. With
//! none of them, `mpirun -np N pixel pretrain ...` shares the run over the N
//! processes (MPI) and a plain `pixel pretrain` is one process.

use std::sync::Arc;
use std::time::Duration;

use pixel::train_loop::{DeviceArg, DEFAULT_CHECK_EVERY};
use pixel_dist::Backend;
use pixel_model::data_parallel::DataParallel;

/// `--comm`: how the ranks exchange gradients.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum CommArg {
    /// MPI when started by mpirun with more than one process (NCCL instead
    /// when also --device cuda and the build has --features nccl), else one
    /// process.
    #[default]
    Auto,
    /// One process, whatever the launcher says.
    Single,
    /// MPI (a build with --features mpi).
    Mpi,
    /// NCCL, one process per GPU (a build with --features nccl; MPI hands
    /// out NCCL's id).
    Nccl,
}

#[derive(clap::Args, Debug)]
pub struct ParallelArgs {
    /// Communicator between the processes of a data-parallel run.
    #[arg(long, value_enum, default_value_t = CommArg::Auto)]
    pub comm: CommArg,
    /// Seconds a collective may wait for the other ranks before this rank
    /// stops with an error (a rank died or hangs).
    #[arg(long, default_value_t = 300.0)]
    pub comm_timeout: f64,
    /// Compare a checksum of the parameters across ranks every N steps (and
    /// at every checkpoint); a mismatch stops the run.
    #[arg(long, default_value_t = DEFAULT_CHECK_EVERY)]
    pub check_every: u64,
    /// Megabytes of gradient per all-reduce call.
    #[arg(long, default_value_t = 25.0)]
    pub bucket_mb: f64,
    /// All-reduce each gradient bucket as soon as backward has made it final,
    /// while the rest of backward runs (false: after backward; the results
    /// are bit-identical either way, only the time differs).
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    pub overlap_comm: bool,
}

impl ParallelArgs {
    /// Opens the communicator these flags ask for.
    pub fn open(&self, device: DeviceArg) -> anyhow::Result<DataParallel> {
        anyhow::ensure!(
            self.comm_timeout > 0.0 && self.comm_timeout.is_finite(),
            "--comm-timeout must be a positive number of seconds, got {}",
            self.comm_timeout
        );
        anyhow::ensure!(self.check_every > 0, "--check-every must be at least 1");
        anyhow::ensure!(
            self.bucket_mb > 0.0 && self.bucket_mb.is_finite(),
            "--bucket-mb must be positive, got {}",
            self.bucket_mb
        );
        let launched = pixel_dist::launcher_world_size().unwrap_or(1) > 1;
        let backend = match self.comm {
            CommArg::Auto if launched && device == DeviceArg::Cuda && cfg!(feature = "nccl") => {
                Backend::Nccl
            }
            CommArg::Auto => Backend::Auto,
            CommArg::Single => Backend::Single,
            CommArg::Mpi => Backend::Mpi,
            CommArg::Nccl => Backend::Nccl,
        };
        let comm =
            pixel_dist::open(backend, Duration::from_secs_f64(self.comm_timeout)).map_err(|e| {
                anyhow::anyhow!("--comm {}: {e}", format!("{:?}", self.comm).to_lowercase())
            })?;
        Ok(DataParallel {
            comm: Arc::new(comm),
            bucket_elems: ((self.bucket_mb * 1e6 / 4.0) as usize).max(1),
            overlap: self.overlap_comm,
        })
    }
}
