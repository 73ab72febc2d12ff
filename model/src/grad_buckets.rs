//! The gradient all-reduce of one data-parallel step, in buckets.
//!
//! The trainable parameters are grouped into buckets of about
//! `bucket_elems` floats in reverse store order (backward finishes the last
//! layers first). With overlap on, a communication thread all-reduces each
//! bucket as soon as the last micro-batch's backward has made all of its
//! gradients final, while the rest of backward runs; with overlap off the
//! same buckets are reduced in the same order after backward. Either way
//! every bucket holds the same floats and goes through the same all-reduce
//! call, so the results are bit-identical.
//!
//! Why a thread and not MPI's non-blocking collectives: Open MPI progresses a
//! non-blocking all-reduce only while the process is inside an MPI call
//! (no asynchronous progress by default), so a bucket launched at the start
//! of backward would mostly move when backward is over. A thread that sits
//! in a blocking all-reduce progresses it all along. It is the only thread
//! calling MPI while backward runs; the trainer calls MPI again only after
//! joining it (MPI_THREAD_SERIALIZED is enough).
//!
//! Buckets are launched strictly in bucket order (bucket k waits for bucket
//! k - 1), so every rank issues the same collectives in the same order even
//! if its gradients became final in another order.

use std::sync::mpsc::{channel, Receiver, Sender};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Instant;

use pixel_dist::{CommError, Communicator};
use pixel_engine::Tensor;

use crate::params::ParamStore;

/// Which parameters go together into one all-reduce call.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BucketLayout {
    /// Parameter indices (store order) of each bucket; bucket 0 holds the
    /// last parameters of the store.
    pub buckets: Vec<Vec<usize>>,
    /// Floats of each parameter (its value's numel).
    pub numel: Vec<usize>,
    /// The bucket of each parameter (None: not trainable).
    pub bucket_of: Vec<Option<usize>>,
}

impl BucketLayout {
    /// Trainable parameters in reverse store order, a new bucket once the
    /// current one holds `bucket_elems` floats or more.
    pub fn new(params: &ParamStore, bucket_elems: usize) -> BucketLayout {
        let numel: Vec<usize> = params.iter().map(|p| p.value.numel()).collect();
        let mut bucket_of = vec![None; numel.len()];
        let mut buckets: Vec<Vec<usize>> = Vec::new();
        let mut filled = usize::MAX;
        let trainable: Vec<bool> = params.iter().map(|p| p.trainable).collect();
        for i in (0..numel.len()).rev() {
            if !trainable[i] {
                continue;
            }
            if filled >= bucket_elems.max(1) {
                buckets.push(Vec::new());
                filled = 0;
            }
            buckets.last_mut().expect("a bucket was pushed").push(i);
            bucket_of[i] = Some(buckets.len() - 1);
            filled += numel[i];
        }
        BucketLayout {
            buckets,
            numel,
            bucket_of,
        }
    }

    /// Floats in bucket `k`.
    pub fn bucket_len(&self, k: usize) -> usize {
        self.buckets[k].iter().map(|&i| self.numel[i]).sum()
    }
}

/// One reduced bucket back from the communication thread, with the seconds
/// its all-reduce took.
type Done = Result<(usize, Vec<f32>, f64), CommError>;

/// The communication thread of one step: buckets in, reduced buckets out.
struct CommThread {
    to_comm: Sender<(usize, Vec<f32>)>,
    from_comm: Receiver<Done>,
    handle: JoinHandle<()>,
}

/// The all-reduce of one step's gradient buckets, in flight.
pub struct StepReduction {
    layout: BucketLayout,
    scale: f32,
    comm: Arc<dyn Communicator + Send + Sync>,
    /// Gradients of each bucket still to become final.
    waiting: Vec<usize>,
    /// Buckets handed to the all-reduce so far (0..launched).
    launched: usize,
    /// The communication thread (overlap on).
    thread: Option<CommThread>,
}

/// What the reduction of a step's buckets took.
pub struct BucketTimes {
    /// Seconds inside the all-reduce calls, summed over the buckets.
    pub reduce_s: f64,
    /// Seconds the step waited for them after backward (all of `reduce_s`
    /// with overlap off; what overlap did not hide with it on).
    pub exposed_s: f64,
    /// Floats reduced.
    pub floats: usize,
}

impl StepReduction {
    /// Ready to reduce `params`' gradients, averaged over `comm`'s world.
    /// `overlap`: start a communication thread that reduces buckets as
    /// [`StepReduction::gradient_final`] completes them.
    pub fn start(
        params: &ParamStore,
        bucket_elems: usize,
        comm: Arc<dyn Communicator + Send + Sync>,
        overlap: bool,
    ) -> StepReduction {
        let layout = BucketLayout::new(params, bucket_elems);
        let waiting = layout.buckets.iter().map(Vec::len).collect();
        let scale = 1.0 / comm.world_size() as f32;
        let thread = overlap.then(|| {
            let (to_comm, jobs) = channel::<(usize, Vec<f32>)>();
            let (done, from_comm) = channel::<Done>();
            let comm = comm.clone();
            let handle = std::thread::Builder::new()
                .name("pixel-grad-allreduce".into())
                .spawn(move || {
                    for (k, mut buf) in jobs {
                        let started = Instant::now();
                        let r = comm.all_reduce_sum_scale(&mut buf, scale);
                        let failed = r.is_err();
                        let _ = done.send(r.map(|()| (k, buf, started.elapsed().as_secs_f64())));
                        if failed {
                            return;
                        }
                    }
                })
                .expect("spawn the gradient all-reduce thread");
            CommThread {
                to_comm,
                from_comm,
                handle,
            }
        });
        StepReduction {
            layout,
            scale,
            comm,
            waiting,
            launched: 0,
            thread,
        }
    }

    /// Parameter `param`'s gradient in `grads` is final for this step (the
    /// last micro-batch's backward is done with it): with overlap, every
    /// bucket now complete (in bucket order) goes to the all-reduce.
    pub fn gradient_final(&mut self, param: usize, grads: &[Option<Tensor>]) {
        let Some(k) = self.layout.bucket_of[param] else {
            return;
        };
        self.waiting[k] -= 1;
        if self.thread.is_none() {
            return;
        }
        while self.launched < self.waiting.len() && self.waiting[self.launched] == 0 {
            let buf = self.flatten(self.launched, grads);
            let thread = self.thread.as_ref().expect("overlap has a thread");
            // A send fails only if the thread stopped on an error, which
            // `finish` reports.
            let _ = thread.to_comm.send((self.launched, buf));
            self.launched += 1;
        }
    }

    /// Reduces what is left, waits for every bucket and writes the averaged
    /// gradients back into `grads` (on their devices).
    pub fn finish(mut self, grads: &mut [Option<Tensor>]) -> Result<BucketTimes, CommError> {
        let started = Instant::now();
        let nb = self.layout.buckets.len();
        let mut reduced: Vec<Option<Vec<f32>>> = vec![None; nb];
        let mut reduce_s = 0.0;
        match self.thread.take() {
            Some(CommThread {
                to_comm,
                from_comm,
                handle,
            }) => {
                for k in self.launched..nb {
                    let _ = to_comm.send((k, self.flatten(k, grads)));
                }
                drop(to_comm);
                for _ in 0..nb {
                    let Ok(done) = from_comm.recv() else { break };
                    let (k, buf, s) = done?;
                    reduce_s += s;
                    reduced[k] = Some(buf);
                }
                handle
                    .join()
                    .map_err(|_| CommError("the gradient all-reduce thread panicked".into()))?;
            }
            None => {
                for (k, slot) in reduced.iter_mut().enumerate() {
                    let mut buf = self.flatten(k, grads);
                    let t = Instant::now();
                    self.comm.all_reduce_sum_scale(&mut buf, self.scale)?;
                    reduce_s += t.elapsed().as_secs_f64();
                    *slot = Some(buf);
                }
            }
        }
        let mut floats = 0;
        for (k, buf) in reduced.into_iter().enumerate() {
            let buf = buf
                .ok_or_else(|| CommError(format!("gradient bucket {k} of {nb} never came back")))?;
            floats += buf.len();
            self.unflatten(k, &buf, grads)?;
        }
        Ok(BucketTimes {
            reduce_s,
            exposed_s: started.elapsed().as_secs_f64(),
            floats,
        })
    }

    /// Bucket `k`'s gradients end to end (zeros for a parameter without one).
    fn flatten(&self, k: usize, grads: &[Option<Tensor>]) -> Vec<f32> {
        let mut buf = Vec::with_capacity(self.layout.bucket_len(k));
        for &i in &self.layout.buckets[k] {
            match &grads[i] {
                Some(g) => buf.extend_from_slice(g.to_host().data()),
                None => buf.resize(buf.len() + self.layout.numel[i], 0.0),
            }
        }
        buf
    }

    /// Writes reduced bucket `k` back over the gradients it came from; a
    /// parameter without a gradient keeps none (every rank runs the same
    /// graph, so none got one anywhere).
    fn unflatten(
        &self,
        k: usize,
        buf: &[f32],
        grads: &mut [Option<Tensor>],
    ) -> Result<(), CommError> {
        let mut at = 0;
        for &i in &self.layout.buckets[k] {
            let n = self.layout.numel[i];
            if let Some(g) = &mut grads[i] {
                let host = Tensor::new(g.shape(), buf[at..at + n].to_vec());
                *g = host
                    .to_device(g.device())
                    .map_err(|e| CommError(format!("gradient back to {:?}: {e}", g.device())))?;
            }
            at += n;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_run_backwards_and_skip_frozen_parameters() {
        let mut params = ParamStore::default();
        params.insert("a", Tensor::zeros(&[4]), true);
        params.insert("frozen", Tensor::zeros(&[100]), false);
        params.insert("b", Tensor::zeros(&[3]), true);
        params.insert("c", Tensor::zeros(&[2]), true);
        params.insert("d", Tensor::zeros(&[6]), true);
        let layout = BucketLayout::new(&params, 5);
        // d (6) fills a bucket alone; c + b = 5 fill the next; a the last.
        assert_eq!(layout.buckets, vec![vec![4], vec![3, 2], vec![0]]);
        assert_eq!(layout.bucket_of, [Some(2), None, Some(1), Some(1), Some(0)]);
        assert_eq!(
            (0..3).map(|k| layout.bucket_len(k)).collect::<Vec<_>>(),
            [6, 5, 4]
        );
    }
}
