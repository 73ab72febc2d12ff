//! Data parallelism as the trainer sees it: a [`Communicator`] (single
//! process, MPI or NCCL, from `pixel-dist`) and the size of the gradient
//! buckets. Each rank runs forward and backward on its share of the global
//! batch; [`DataParallel::start_reduction`] and
//! [`DataParallel::finish_reduction`] average the gradients (in buckets,
//! overlapped with backward: `grad_buckets`) and the loss over every rank, so every rank takes the same AdamW update.
//! Parameters are broadcast from rank 0 at the start and checked identical
//! (a checksum) at intervals.

use std::sync::Arc;
use std::time::Instant;

use pixel_dist::{checksum, CommError, Communicator, Single, CHECKSUM_START};
use pixel_engine::optim::AdamW;
use pixel_engine::Tensor;

use crate::grad_buckets::StepReduction;
use crate::params::ParamStore;

/// The communicator and the gradient bucket size.
#[derive(Clone)]
pub struct DataParallel {
    pub comm: Arc<dyn Communicator + Send + Sync>,
    /// Floats per all-reduce call (the gradients are reduced in buckets of
    /// this many, in parameter order).
    pub bucket_elems: usize,
    /// All-reduce each bucket while the rest of backward runs (see
    /// `grad_buckets`); off: after backward, same buckets, same results.
    pub overlap: bool,
}

impl std::fmt::Debug for DataParallel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "DataParallel {{ {} rank {} of {}, buckets of {} floats, overlap {} }}",
            self.comm.backend(),
            self.rank(),
            self.world_size(),
            self.bucket_elems,
            self.overlap
        )
    }
}

impl Default for DataParallel {
    fn default() -> Self {
        DataParallel {
            comm: Arc::new(Single),
            bucket_elems: DEFAULT_BUCKET_ELEMS,
            overlap: true,
        }
    }
}

/// 25 MB of f32 (PyTorch DDP's default bucket).
pub const DEFAULT_BUCKET_ELEMS: usize = 25 * (1 << 20) / 4;

/// What the reduction of one step found.
pub struct Reduced {
    /// The loss averaged over every rank's micro-batches.
    pub loss: f64,
    /// Ranks whose loss was not finite (their own error says why).
    pub failed_ranks: usize,
    /// Seconds inside the all-reduce calls (on the communication thread
    /// with overlap), and of them those the step waited for after backward.
    pub reduce_s: f64,
    pub exposed_s: f64,
    /// Bytes this rank sent to the all-reduce.
    pub bytes: usize,
}

impl DataParallel {
    pub fn world_size(&self) -> usize {
        self.comm.world_size()
    }

    pub fn rank(&self) -> usize {
        self.comm.rank()
    }

    /// The gradient all-reduce of one step, ready for the gradients of
    /// `params` to become final (None on one process: nothing to reduce).
    pub fn start_reduction(&self, params: &ParamStore) -> Option<StepReduction> {
        (self.world_size() > 1).then(|| {
            StepReduction::start(params, self.bucket_elems, self.comm.clone(), self.overlap)
        })
    }

    /// Averages this rank's `grads` (already averaged over its micro-batches)
    /// and `loss` over the world: the gradient of the global batch. `failed`:
    /// this rank's forward gave a non-finite loss (every rank then refuses the
    /// step). One process (`reduction` None): nothing to do.
    pub fn finish_reduction(
        &self,
        reduction: Option<StepReduction>,
        grads: &mut [Option<Tensor>],
        loss: f64,
        failed: bool,
    ) -> Result<Reduced, CommError> {
        let Some(reduction) = reduction else {
            return Ok(Reduced {
                loss,
                failed_ranks: failed as usize,
                reduce_s: 0.0,
                exposed_s: 0.0,
                bytes: 0,
            });
        };
        let world = self.world_size();
        let times = reduction.finish(grads)?;
        // (mean loss, failed ranks / world) after the gradient buckets.
        let started = Instant::now();
        let mut tail = [loss as f32, failed as u8 as f32];
        self.comm
            .all_reduce_sum_scale(&mut tail, 1.0 / world as f32)?;
        let tail_s = started.elapsed().as_secs_f64();
        Ok(Reduced {
            loss: tail[0] as f64,
            failed_ranks: (tail[1] * world as f32).round() as usize,
            reduce_s: times.reduce_s + tail_s,
            exposed_s: times.exposed_s + tail_s,
            bytes: (times.floats + tail.len()) * 4,
        })
    }

    /// Rank 0's parameters and AdamW moments on every rank (at the start, and
    /// after a resume, so that every rank starts from bit-identical state).
    pub fn broadcast_state(
        &self,
        params: &mut ParamStore,
        optimizer: &mut AdamW,
    ) -> Result<(), CommError> {
        if self.world_size() == 1 {
            return Ok(());
        }
        let names: Vec<String> = params.iter().map(|p| p.name.clone()).collect();
        for name in names {
            let t = params.get(&name);
            let mut host = t.to_host().into_vec();
            self.comm.broadcast(&mut host, 0)?;
            let value = Tensor::new(t.shape(), host)
                .to_device(t.device())
                .map_err(|e| CommError(format!("{name} back to the device: {e}")))?;
            params.set(&name, value).map_err(CommError)?;
        }
        // The moment count (0 before the first update) must agree too.
        let counts = self.comm.all_gather_u64(optimizer.m.len() as u64)?;
        if counts.iter().any(|&c| c != counts[0]) {
            return Err(CommError(format!(
                "the ranks hold different optimizer states (moment tensors per rank: {counts:?})"
            )));
        }
        for t in optimizer.m.iter_mut().chain(optimizer.v.iter_mut()) {
            let mut host = t.to_host().into_vec();
            self.comm.broadcast(&mut host, 0)?;
            *t = Tensor::new(t.shape(), host)
                .to_device(t.device())
                .map_err(|e| CommError(format!("AdamW moment back to the device: {e}")))?;
        }
        Ok(())
    }

    /// Checks every rank holds bit-identical parameters. The error names the
    /// step (`done` updates taken) and the ranks that differ from rank 0.
    pub fn check_identical(&self, params: &ParamStore, done: u64) -> Result<(), String> {
        if self.world_size() == 1 {
            return Ok(());
        }
        let sum = params_checksum(params);
        let all = self
            .comm
            .all_gather_u64(sum)
            .map_err(|e| format!("step {done}: parameter checksum: {e}"))?;
        let differ: Vec<usize> = (0..all.len()).filter(|&r| all[r] != all[0]).collect();
        if differ.is_empty() {
            return Ok(());
        }
        Err(format!(
            "step {done}: the parameters of rank(s) {differ:?} differ from rank 0's (checksums {all:016x?}); the ranks no longer train the same model"
        ))
    }
}

/// FNV-1a over every parameter's bits, in store order.
pub fn params_checksum(params: &ParamStore) -> u64 {
    params
        .iter()
        .fold(CHECKSUM_START, |h, p| checksum(h, p.value.to_host().data()))
}
