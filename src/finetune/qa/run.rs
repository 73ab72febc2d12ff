//! QA finetuning as a [`TrainingTask`]: shuffled batches of windows, the span
//! loss, dev F1 (official SQuAD v1.1) every N steps with the best checkpoint
//! kept and early stopping. Called by [`crate::finetune::run::run_finetuning`]
//! for `--task qa`; OUT/ holds the same files as every other task.

use std::path::PathBuf;
use std::sync::atomic::AtomicBool;

use anyhow::Context;
use pixel_engine::optim::LrSchedule;
use pixel_engine::{Rng, Tape, Var};
use pixel_model::heads::{is_encoder_param, FinetuneBatch, HeadKind, PixelForFinetuning};
use pixel_model::params::ParamVars;
use pixel_model::train::Trainer;
use pixel_model::ForwardMode;
use pixel_render::RenderingStrategy;
use pixel_tasks::squad::SquadQuestion;

use super::eval::{first_words_baseline, qa_predictions, qa_report};
use super::{load_questions, make_qa_batch, qa_renderer, render_windows, store_settings, QaWindow};
use crate::finetune::run::{
    check_not_empty, finish, loop_settings, save_last_good, BestSoFar, FinetuneOptions,
    FinetuneSummary,
};
use crate::finetune::shard::{join_ranks, RankBatches};
use crate::finetune::task_model::{build_model, finetune_rendering, task_metadata};
use crate::train_loop::{run_training, to_device, Evaluation, SaveReason, TrainingTask};

/// Runs QA finetuning (see [`crate::finetune::run::run_finetuning`]).
pub fn run_qa_finetuning(
    opts: &FinetuneOptions,
    stop: &AtomicBool,
) -> anyhow::Result<FinetuneSummary> {
    let l = opts.max_seq_length;
    let settings = opts.qa;
    anyhow::ensure!(
        settings.doc_stride(l) < l,
        "--doc-stride {} must be below the strip length L = {l}",
        settings.doc_stride(l)
    );
    let train = load_questions(&opts.train, opts.max_train_examples)?;
    let dev = load_questions(&opts.dev, opts.max_dev_examples)?;
    check_not_empty(train.len(), &opts.train, "training")?;
    check_not_empty(dev.len(), &opts.dev, "dev")?;

    let mut rng = Rng::new(opts.seed);
    let mut model = build_model(opts, HeadKind::QuestionAnswering, &mut rng)?;
    let rendering = finetune_rendering(opts, &model.config)?;
    anyhow::ensure!(
        rendering == RenderingStrategy::Continuous,
        "qa needs the continuous rendering (answers are located through its per-patch \
         character offsets, which the {rendering} rendering does not give)"
    );
    let labels = opts.task.fixed_labels().expect("QA has fixed labels");
    task_metadata(
        &mut model.config,
        opts.task,
        &labels,
        opts.layout,
        rendering,
        opts.pooling,
    );

    let renderer = qa_renderer(l, opts.layout, &settings)?;
    let (train_w, train_stats) = render_windows(&renderer, &train, &settings);
    let (dev_w, dev_stats) = render_windows(&renderer, &dev, &settings);
    if opts.parallel.rank() == 0 {
        eprintln!("train {}: {train_stats}", opts.train.display());
        eprintln!("dev {}: {dev_stats}", opts.dev.display());
    }
    anyhow::ensure!(
        !train_w.is_empty(),
        "{}: no training windows ({train_stats})",
        opts.train.display()
    );
    store_settings(&mut model.config.extra, l, &settings);
    if opts.freeze_encoder {
        model.params.freeze(is_encoder_param);
    }
    model
        .params
        .to_device(opts.device)
        .map_err(|e| anyhow::anyhow!("moving the model to {:?}: {e}", opts.device))?;
    let schedule = LrSchedule::WarmupLinear {
        max_lr: opts.lr,
        warmup: opts.warmup_steps,
        total: opts.steps,
    };
    let mut trainer = Trainer::new(model, opts.weight_decay, schedule, opts.max_grad_norm);
    join_ranks(&mut trainer, opts)?;
    std::fs::create_dir_all(&opts.out).with_context(|| format!("{}", opts.out.display()))?;

    let eval_batch = opts.batch_size.max(16);
    let baseline = qa_report(&dev, &first_words_baseline(&train, &dev));
    let best = qa_report(
        &dev,
        &qa_predictions(&trainer.model, &dev, &dev_w, &settings, eval_batch)?,
    );
    if opts.parallel.rank() == 0 {
        eprintln!(
            "dev before training: {} | first-words baseline: {}",
            best.summary, baseline.summary
        );
    }
    let best = BestSoFar::start(opts, best, &trainer.model)?;
    let mut run = QaFinetuning {
        opts,
        train_w: &train_w,
        dev: &dev,
        dev_w: &dev_w,
        batches: RankBatches::new(train_w.len(), opts),
        eval_batch,
        best,
    };
    let loop_settings = loop_settings(opts, "windows");
    let outcome = run_training(&mut trainer, &mut run, &loop_settings, stop)?;
    finish(opts, &outcome, run.best, baseline, train.len(), dev.len())
}

struct QaFinetuning<'a> {
    opts: &'a FinetuneOptions,
    train_w: &'a [QaWindow],
    dev: &'a [SquadQuestion],
    dev_w: &'a [QaWindow],
    /// This rank's share of each step's windows, and their dropout.
    batches: RankBatches,
    eval_batch: usize,
    best: BestSoFar,
}

impl TrainingTask for QaFinetuning<'_> {
    type Model = PixelForFinetuning;
    type Batch = FinetuneBatch;

    fn eval_column(&self) -> String {
        "dev_f1".into()
    }

    fn micro_batches(&mut self, step: u64) -> anyhow::Result<Vec<FinetuneBatch>> {
        self.batches
            .step(step)
            .into_iter()
            .map(|idx| {
                let windows: Vec<&QaWindow> = idx.iter().map(|&i| &self.train_w[i]).collect();
                let mut batch = make_qa_batch(&windows, true);
                batch.pixel_values = to_device(batch.pixel_values, self.opts.device)?;
                Ok(batch)
            })
            .collect()
    }

    fn loss(
        &mut self,
        model: &PixelForFinetuning,
        tape: &mut Tape,
        params: &ParamVars<'_>,
        batch: &FinetuneBatch,
    ) -> Var {
        let mut rng = self.batches.dropout_rng();
        let mode = ForwardMode {
            training: true,
            rng: &mut rng,
        };
        let out = model.forward(tape, params, batch, mode);
        out.loss.expect("labelled batch gives a loss")
    }

    fn evaluate(&mut self, model: &PixelForFinetuning, done: u64) -> anyhow::Result<Evaluation> {
        let preds = qa_predictions(model, self.dev, self.dev_w, &self.opts.qa, self.eval_batch)?;
        let report = qa_report(self.dev, &preds);
        self.best.update(report, done, model, self.opts)
    }

    fn save(
        &mut self,
        trainer: &Trainer<PixelForFinetuning>,
        _done: u64,
        _why: SaveReason,
    ) -> anyhow::Result<PathBuf> {
        save_last_good(self.opts, trainer)
    }
}
