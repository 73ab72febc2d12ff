//! Finetuning over several ranks (`mpirun -np N pixel finetune ...`), with
//! pretraining's semantics: the global batch of step s is the same examples
//! for any N (every rank draws all N x grad_accum micro-batches of the step
//! from the same shuffled order and keeps its own grad_accum of them, from
//! r x grad_accum on), and a micro-batch's dropout depends only on the seed
//! and its index in the run. So N ranks x batch b train exactly what 1 rank x
//! batch b x `--grad-accum N` does.

use pixel_engine::Rng;
use pixel_model::heads::PixelForFinetuning;
use pixel_model::train::Trainer;

use super::data::BatchOrder;
use super::run::FinetuneOptions;
use crate::pretrain::data::derive_seed;
use crate::train_loop::check_same_parameters;

/// The seed stream of finetuning's dropout (see [`derive_seed`]).
const DROPOUT_STREAM: u64 = 6;

/// This rank's micro-batches of each step, and their dropout streams.
pub(crate) struct RankBatches {
    order: BatchOrder,
    rank: usize,
    world: usize,
    accum: usize,
    seed: u64,
    /// Run-wide indices of the current step's micro-batches on this rank,
    /// and how many of them a loss has used.
    ids: Vec<u64>,
    used: usize,
}

impl RankBatches {
    /// Over `examples` training examples in batches of `opts.batch_size`.
    pub(crate) fn new(examples: usize, opts: &FinetuneOptions) -> RankBatches {
        RankBatches {
            order: BatchOrder::new(examples, opts.batch_size, opts.seed ^ 0x5eed),
            rank: opts.parallel.rank(),
            world: opts.parallel.world_size(),
            accum: opts.grad_accum,
            seed: opts.seed,
            ids: Vec::new(),
            used: 0,
        }
    }

    /// The example indices of this rank's micro-batches of step `step`
    /// (counted from 0; steps are asked for in order).
    pub(crate) fn step(&mut self, step: u64) -> Vec<Vec<usize>> {
        let per_step = self.world * self.accum;
        self.ids.clear();
        self.used = 0;
        let mut mine = Vec::with_capacity(self.accum);
        for j in 0..per_step {
            let batch = self.order.next_batch();
            if j / self.accum == self.rank {
                self.ids.push(step * per_step as u64 + j as u64);
                mine.push(batch);
            }
        }
        mine
    }

    /// The dropout RNG of the next micro-batch's loss.
    pub(crate) fn dropout_rng(&mut self) -> Rng {
        let id = self.ids.get(self.used).copied().unwrap_or(u64::MAX);
        self.used += 1;
        Rng::new(derive_seed(self.seed, DROPOUT_STREAM, id))
    }
}

/// Puts `trainer` on the run's ranks: their communicator, rank 0's
/// parameters on every rank, checked identical.
pub(crate) fn join_ranks(
    trainer: &mut Trainer<PixelForFinetuning>,
    opts: &FinetuneOptions,
) -> anyhow::Result<()> {
    trainer.parallel = opts.parallel.clone();
    trainer
        .parallel
        .broadcast_state(&mut trainer.model.params, &mut trainer.optimizer)
        .map_err(|e| anyhow::anyhow!("sharing rank 0's parameters: {e}"))?;
    check_same_parameters(trainer, 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The union of the ranks' micro-batches of a step, in rank order, is
    /// what one rank with N times the accumulation draws.
    #[test]
    fn ranks_share_out_the_one_rank_sequence() {
        let draw = |rank: usize, world: usize, accum: usize| {
            let mut r = RankBatches {
                order: BatchOrder::new(10, 3, 7),
                rank,
                world,
                accum,
                seed: 1,
                ids: Vec::new(),
                used: 0,
            };
            let batches: Vec<Vec<Vec<usize>>> = (0..3).map(|s| r.step(s)).collect();
            (batches, r.ids.clone())
        };
        let (one, one_ids) = draw(0, 1, 4);
        for (step, whole) in one.iter().enumerate() {
            let mut joined = Vec::new();
            for rank in 0..2 {
                joined.extend(draw(rank, 2, 2).0[step].clone());
            }
            assert_eq!(&joined, whole, "step {step}");
        }
        let (_, ids) = draw(1, 2, 2);
        assert_eq!(ids, one_ids[2..].to_vec());
    }
}
