//! `pixel finetune`, `pixel evaluate`, `pixel predict`: task heads on the encoder.

use std::path::{Path, PathBuf};

use pixel::finetune::data::{
    check_pairs, example_from_text, holds_pairs, load_dataset, render_examples, Example, Target,
};
use pixel::finetune::eval::{majority_predictions, predict, rendered_words, score};
use pixel::finetune::predictions::{
    complete_predictions, placeholder_label, prediction_text, write_atomically,
};
use pixel::finetune::qa::{self, QaSettings};
use pixel::finetune::run::{
    load_finetuned, run_finetuning, task_renderer, FinetuneOptions, FinetunedModel,
};
use pixel::finetune::tree::predict_trees;
use pixel::finetune::{parse_pooling, Task};
use pixel::train_loop::DeviceArg;

use super::parallel::ParallelArgs;
use pixel_render::{Layout, Rendering, RenderingStrategy};

/// Arguments of `pixel finetune`. Unset options take the task's recipe from
/// the PIXEL paper's finetuning scripts (SPEC 6.2).
#[derive(clap::Args, Debug)]
pub struct FinetuneArgs {
    /// pos (UPOS tagging, CoNLL-U), ner (CoNLL-style `token tag`), parse
    /// (dependency parsing, CoNLL-U), classify (GLUE TSV `sentence<TAB>label`,
    /// or `sentence1<TAB>sentence2<TAB>label` for pairs) or qa (extractive
    /// question answering, SQuAD v1.1 JSON, e.g. TyDi QA GoldP).
    #[arg(long)]
    pub task: Task,
    /// Training file.
    #[arg(long)]
    pub train: PathBuf,
    /// Development file: evaluated every --eval-every steps; the best checkpoint is kept.
    #[arg(long)]
    pub dev: PathBuf,
    /// Pretrained checkpoint (directory or weights file) to start from; without it the
    /// model is trained from scratch (--config). Its position table must have at least
    /// L + 1 rows: it is truncated to L + 1.
    #[arg(long)]
    pub init: Option<PathBuf>,
    /// Model preset (tiny, mini, small, base: `pixel info --presets`) or config.json for training from scratch.
    #[arg(long, default_value = "tiny")]
    pub config: String,
    /// Output directory: log.csv and best/ (config.json + model.safetensors).
    #[arg(long)]
    pub out: PathBuf,
    /// Patches per strip (default: 256 for pos/parse/classify, 196 for ner, 400 for qa).
    #[arg(long)]
    pub max_seq_length: Option<usize>,
    /// Examples per micro-batch (default: 64; qa 32 windows).
    #[arg(long)]
    pub batch_size: Option<usize>,
    /// Micro-batches per optimizer step (default: 4 for classify, else 1).
    #[arg(long)]
    pub grad_accum: Option<usize>,
    /// Peak learning rate (default: pos/ner 5e-5, parse 8e-5, classify 3e-5, qa 7e-5).
    #[arg(long)]
    pub lr: Option<f32>,
    /// Optimizer steps (linear decay to 0 at the last) (default: 15000; qa 20000).
    #[arg(long)]
    pub steps: Option<u64>,
    /// Linear warmup steps [default: 100].
    #[arg(long)]
    pub warmup_steps: Option<u64>,
    /// AdamW weight decay (HF Trainer default 0).
    #[arg(long, default_value_t = 0.0)]
    pub weight_decay: f32,
    /// Global gradient-norm clip.
    #[arg(long, default_value_t = 1.0)]
    pub max_grad_norm: f32,
    /// Hidden/attention/head dropout (default: the checkpoint's config; PIXEL 0.1).
    #[arg(long)]
    pub dropout: Option<f64>,
    /// Keep the encoder fixed and train only the head (a probe of pretrained features).
    #[arg(long)]
    pub freeze_encoder: bool,
    /// Evaluate on --dev every N steps.
    #[arg(long, default_value_t = 500)]
    pub eval_every: u64,
    /// Stop after this many evaluations without a better dev score (0: never).
    #[arg(long, default_value_t = 5)]
    pub patience: usize,
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    /// Renderer layout (default: pygame for classify as the GLUE recipe, else pango).
    #[arg(long)]
    pub layout: Option<Layout>,
    /// Rendering strategy: continuous, bigrams, mono or words (default: the --init
    /// checkpoint's, from its config.json; continuous from scratch).
    #[arg(long)]
    pub rendering: Option<RenderingStrategy>,
    /// Finetune with --rendering although the --init checkpoint was pretrained with another
    /// rendering (a warning is printed).
    #[arg(long)]
    pub allow_rendering_mismatch: bool,
    /// Sequence classification pooling: mean, max, cls or pma1..pma8.
    #[arg(long, default_value = "mean", value_parser = parse_pooling)]
    pub pooling: pixel_model::heads::Pooling,
    /// Classification labels in order, comma-separated (default: the sorted
    /// distinct values of the train file's label column).
    #[arg(long, value_delimiter = ',')]
    pub labels: Option<Vec<String>>,
    /// Use only the first N training examples.
    #[arg(long)]
    pub max_train_examples: Option<usize>,
    /// Use only the first N dev examples.
    #[arg(long)]
    pub max_dev_examples: Option<usize>,
    /// Where training and dev evaluation run: cpu, or cuda (GPU 0: the model's
    /// parameters and every batch live there; needs a build with --features
    /// cuda and an NVIDIA driver). Checkpoints are read back to the host.
    #[arg(long, value_enum, default_value_t = DeviceArg::Cpu)]
    pub device: DeviceArg,
    /// QA: overlap of consecutive context windows in patches (default: 160 at
    /// L = 400, the original's recipe; scaled to other L).
    #[arg(long)]
    pub doc_stride: Option<usize>,
    /// QA: most patches of the question (default: 128 at L = 400; scaled to other L).
    #[arg(long)]
    pub question_max_length: Option<usize>,
    #[command(flatten)]
    pub parallel: ParallelArgs,
}

pub fn run_finetune(args: FinetuneArgs) -> anyhow::Result<()> {
    let device = args.device.open()?;
    // Under `mpirun -np N` the N processes share every global batch.
    let parallel = args.parallel.open(args.device)?;
    let lead = parallel.rank() == 0;
    let d = args.task.defaults();
    let opts = FinetuneOptions {
        task: args.task,
        train: args.train,
        dev: args.dev,
        init: args.init,
        scratch_config: args.config,
        out: args.out,
        max_seq_length: args.max_seq_length.unwrap_or(d.max_seq_length),
        batch_size: args.batch_size.unwrap_or(d.batch_size),
        grad_accum: args.grad_accum.unwrap_or(d.grad_accum),
        lr: args.lr.unwrap_or(d.lr),
        steps: args.steps.unwrap_or(d.max_steps),
        warmup_steps: args.warmup_steps.unwrap_or(d.warmup_steps),
        weight_decay: args.weight_decay,
        max_grad_norm: args.max_grad_norm,
        dropout: args.dropout,
        freeze_encoder: args.freeze_encoder,
        eval_every: args.eval_every,
        patience: args.patience,
        seed: args.seed,
        layout: args.layout.unwrap_or(d.layout),
        rendering: args.rendering,
        allow_rendering_mismatch: args.allow_rendering_mismatch,
        pooling: args.pooling,
        labels: args.labels,
        max_train_examples: args.max_train_examples,
        max_dev_examples: args.max_dev_examples,
        progress: lead,
        device,
        check_every: args.parallel.check_every,
        parallel,
        qa: QaSettings {
            doc_stride: args.doc_stride,
            question_max_length: args.question_max_length,
            ..QaSettings::default()
        },
    };
    let stop = super::stop_on_signal("finishing this step, evaluating and stopping")?;
    let s = run_finetuning(&opts, stop)?;
    // Rank 0 reports for the run (the others trained the same model).
    if !lead {
        return Ok(());
    }
    println!(
        "{} on {}: best dev {} at step {} of {}{} ({:.0} s); {} baseline {}",
        opts.task.name(),
        opts.dev.display(),
        s.best.summary,
        s.best_step,
        s.steps,
        if s.stopped_early {
            ", stopped early"
        } else {
            ""
        },
        s.seconds,
        if opts.task == Task::Qa {
            "first-words"
        } else {
            "majority"
        },
        s.baseline.summary
    );
    println!("best checkpoint: {}", s.best_dir.display());
    super::exit_if_stopped_by_signal(&format!(
        "stopped after step {}; the best checkpoint so far is {}",
        s.steps,
        s.best_dir.display()
    ));
    Ok(())
}

/// Arguments of `pixel evaluate`.
#[derive(clap::Args, Debug)]
pub struct EvaluateArgs {
    /// Finetuned checkpoint directory (OUT/best of `pixel finetune`).
    #[arg(long)]
    pub checkpoint: PathBuf,
    /// Labelled file in the task's format.
    #[arg(long)]
    pub data: PathBuf,
    /// Task; must match the checkpoint's. Needed for checkpoints not written by
    /// `pixel finetune` (e.g. HuggingFace PIXEL ones), whose config does not say.
    #[arg(long)]
    pub task: Option<Task>,
    /// Training file, to print the majority baseline next to the score.
    #[arg(long)]
    pub train: Option<PathBuf>,
    #[arg(long, default_value_t = 64)]
    pub batch_size: usize,
    /// Also write the predictions to this file, in the input's own format for
    /// the standard scorers: CoNLL-U with UPOS (pos) or HEAD and DEPREL (parse)
    /// replaced, the NER file with the predicted tags, the TSV with a
    /// `prediction` column; every other byte as in --data. Parse files hold one
    /// tree per sentence (the greedy heads, repaired where they are not a tree)
    /// with the relation predicted at the predicted head, the CoNLL 2018 way;
    /// the printed LAS reads the relation at the gold head, as the original.
    /// Words that did not fit the strip get X / O / dep (attached to the root word).
    /// QA models write `{question id: answer text}` JSON, what the SQuAD v1.1
    /// evaluation script reads.
    #[arg(long)]
    pub predictions: Option<PathBuf>,
    #[command(flatten)]
    pub rendering: RenderingArgs,
}

/// Which rendering a finetuned checkpoint's inputs are drawn with.
#[derive(clap::Args, Debug)]
pub struct RenderingArgs {
    /// Rendering strategy (default: the checkpoint's, from its config.json; another one needs
    /// --allow-rendering-mismatch).
    #[arg(long)]
    pub rendering: Option<RenderingStrategy>,
    /// Draw with --rendering although the checkpoint was finetuned with another rendering.
    #[arg(long)]
    pub allow_rendering_mismatch: bool,
}

impl RenderingArgs {
    /// The rendering for `m`, loaded from `checkpoint`.
    fn resolve(&self, m: &FinetunedModel, checkpoint: &Path) -> anyhow::Result<RenderingStrategy> {
        m.rendering_for(
            self.rendering,
            self.allow_rendering_mismatch,
            &checkpoint.display().to_string(),
        )
    }
}

pub fn run_evaluate(args: EvaluateArgs) -> anyhow::Result<()> {
    if let Some(out) = &args.predictions {
        check_predictions_path(out, &args.data)?;
    }
    let m = load_finetuned(&args.checkpoint, args.task)?;
    let rendering = args.rendering.resolve(&m, &args.checkpoint)?;
    if m.task == Task::Qa {
        ensure_qa_rendering(rendering)?;
        return evaluate_qa(&args, &m);
    }
    let ds = load_dataset(m.task, &args.data, &m.labels)?;
    check_pairs(
        m.pairs,
        holds_pairs(&ds.examples),
        &format!("--data {}", args.data.display()),
    )?;
    let renderer = task_renderer(m.model.config.num_patches(), m.layout, rendering)?;
    let (rs, stats) = render_examples(&renderer, &ds.examples, true, "data");
    eprintln!("{}: {stats}", args.data.display());
    let preds = predict(&m.model, m.task, &ds.examples, &rs, args.batch_size)?;
    let report = score(m.task, &m.labels, &ds.examples, &preds);
    println!(
        "{} {}: {}",
        m.task.name(),
        args.data.display(),
        report.summary
    );
    if report.unscored_words > 0 {
        println!(
            "({} words did not fit the strip and are not scored)",
            report.unscored_words
        );
    }
    for row in &report.table {
        println!("  {row}");
    }
    if let Some(train) = &args.train {
        let train = load_dataset(m.task, train, &m.labels)?;
        let base = score(
            m.task,
            &m.labels,
            &ds.examples,
            &majority_predictions(m.task, &train.examples, &ds.examples, &rendered_words(&rs)),
        );
        println!("majority baseline: {}", base.summary);
    }
    if let Some(out) = &args.predictions {
        write_predictions(&m, &ds.examples, &rs, &preds, &args, out)?;
    }
    Ok(())
}

/// QA draws with the continuous rendering only (answers are found through its offsets).
fn ensure_qa_rendering(rendering: RenderingStrategy) -> anyhow::Result<()> {
    anyhow::ensure!(
        rendering == RenderingStrategy::Continuous,
        "qa models draw with the continuous rendering, not {rendering}"
    );
    Ok(())
}

/// Fails before the evaluation when `out` cannot be a new predictions file:
/// its directory is missing, it is a directory, or it is the data file itself.
fn check_predictions_path(out: &Path, data: &Path) -> anyhow::Result<()> {
    let dir = out.parent().filter(|d| !d.as_os_str().is_empty());
    if let Some(dir) = dir {
        anyhow::ensure!(
            dir.is_dir(),
            "--predictions {}: directory {} does not exist",
            out.display(),
            dir.display()
        );
    }
    anyhow::ensure!(
        !out.is_dir(),
        "--predictions {} is a directory",
        out.display()
    );
    let same = match (out.canonicalize(), data.canonicalize()) {
        (Ok(a), Ok(b)) => a == b,
        _ => false,
    };
    anyhow::ensure!(
        !same,
        "--predictions {} is the --data file: it would be overwritten",
        out.display()
    );
    Ok(())
}

/// Writes the prediction file and prints its scores over every word.
fn write_predictions(
    m: &FinetunedModel,
    examples: &[Example],
    rs: &[Rendering],
    preds: &[Target],
    args: &EvaluateArgs,
    out: &Path,
) -> anyhow::Result<()> {
    let (preds, repaired) = match m.task {
        Task::Parse => predict_trees(&m.model, examples, rs, args.batch_size)?,
        _ => (preds.to_vec(), 0),
    };
    let file = complete_predictions(m.task, &m.labels, examples, &preds)?;
    let text = prediction_text(m.task, &m.labels, &args.data, &file.targets)?;
    write_atomically(out, &text)?;
    let report = score(m.task, &m.labels, examples, &file.targets);
    let mut notes = Vec::new();
    if file.placeholders > 0 {
        notes.push(format!(
            "{} words that did not fit the strip written as {}",
            file.placeholders,
            placeholder_label(m.task)
        ));
    }
    if m.task == Task::Parse {
        notes.push(format!(
            "relation at the predicted head; {repaired} of {} sentences' greedy heads repaired into a tree",
            examples.len()
        ));
    }
    println!(
        "predictions {}: {}{}",
        out.display(),
        report.summary,
        if notes.is_empty() {
            String::new()
        } else {
            format!(" ({})", notes.join("; "))
        }
    );
    Ok(())
}

/// `pixel evaluate` of a QA model: official SQuAD v1.1 F1 / exact match.
fn evaluate_qa(args: &EvaluateArgs, m: &FinetunedModel) -> anyhow::Result<()> {
    let settings = qa::stored_settings(&m.model.config.extra);
    let questions = qa::load_questions(&args.data, None)?;
    let renderer = qa::qa_renderer(m.model.config.num_patches(), m.layout, &settings)?;
    let (windows, stats) = qa::render_windows(&renderer, &questions, &settings);
    eprintln!("{}: {stats}", args.data.display());
    let preds =
        qa::eval::qa_predictions(&m.model, &questions, &windows, &settings, args.batch_size)?;
    let report = qa::eval::qa_report(&questions, &preds);
    println!("qa {}: {}", args.data.display(), report.summary);
    if let Some(train) = &args.train {
        let train = qa::load_questions(train, None)?;
        let base = qa::eval::first_words_baseline(&train, &questions);
        println!(
            "first-words baseline: {}",
            qa::eval::qa_report(&questions, &base).summary
        );
    }
    if let Some(out) = &args.predictions {
        qa::write_predictions(out, &preds)?;
        eprintln!("predictions: {} ({} questions)", out.display(), preds.len());
    }
    Ok(())
}

/// Arguments of `pixel predict`.
#[derive(clap::Args, Debug)]
pub struct PredictArgs {
    /// Finetuned checkpoint directory (OUT/best of `pixel finetune`).
    #[arg(long)]
    pub checkpoint: PathBuf,
    /// Task; must match the checkpoint's. Needed for checkpoints not written by
    /// `pixel finetune` (e.g. HuggingFace PIXEL ones), whose config does not say.
    #[arg(long)]
    pub task: Option<Task>,
    /// Text to label; words are split on whitespace for pos, ner and parse; the
    /// question for qa.
    pub text: String,
    /// QA: the context the answer is taken from.
    #[arg(long)]
    pub context: Option<String>,
    /// Second sentence of a pair (classification models trained on pairs).
    #[arg(long)]
    pub pair: Option<String>,
    #[command(flatten)]
    pub rendering: RenderingArgs,
}

pub fn run_predict(args: PredictArgs) -> anyhow::Result<()> {
    let m = load_finetuned(&args.checkpoint, args.task)?;
    let rendering = args.rendering.resolve(&m, &args.checkpoint)?;
    if m.task == Task::Qa {
        ensure_qa_rendering(rendering)?;
        let context = args.context.as_deref().ok_or_else(|| {
            anyhow::anyhow!("a qa model needs --context \"...\" besides the question")
        })?;
        let q = qa::question_from_text(context, &args.text)?;
        let settings = qa::stored_settings(&m.model.config.extra);
        let renderer = qa::qa_renderer(m.model.config.num_patches(), m.layout, &settings)?;
        let questions = std::slice::from_ref(&q);
        let (windows, _) = qa::render_windows(&renderer, questions, &settings);
        let preds = qa::eval::qa_predictions(&m.model, questions, &windows, &settings, 16)?;
        println!("{}", preds.get(&q.id).map_or("", String::as_str));
        return Ok(());
    }
    anyhow::ensure!(
        args.context.is_none(),
        "--context is for qa models, not {}",
        m.task.name()
    );
    let mut example = example_from_text(m.task, &args.text);
    if let Some(b) = &args.pair {
        anyhow::ensure!(
            m.task == Task::Classify,
            "--pair is for sentence-pair classification, not {}",
            m.task.name()
        );
        example.input = pixel_render::Input::Pair(args.text.trim().into(), b.trim().into());
    }
    if m.task == Task::Classify {
        check_pairs(m.pairs, Some(args.pair.is_some()), "the input")?;
    }
    anyhow::ensure!(
        !example.words().is_empty() || m.task == Task::Classify,
        "no words in the text"
    );
    let renderer = task_renderer(m.model.config.num_patches(), m.layout, rendering)?;
    let (rs, stats) = render_examples(&renderer, std::slice::from_ref(&example), false, "text");
    if stats.dropped_words > 0 || stats.missing_glyphs > 0 {
        eprintln!("note: {stats}");
    }
    let pred = predict(&m.model, m.task, std::slice::from_ref(&example), &rs, 1)?;
    let words = example.words();
    match &pred[0] {
        Target::Tags(tags) => {
            for (w, t) in words.iter().zip(tags) {
                println!("{w}\t{}", m.labels[*t]);
            }
        }
        Target::Tree { heads, rels } => {
            // CoNLL-U-like: ID FORM HEAD DEPREL.
            for (j, w) in words.iter().enumerate().take(heads.len()) {
                println!("{}\t{w}\t{}\t{}", j + 1, heads[j], m.labels[rels[j]]);
            }
        }
        Target::Class(c) => println!("{}", m.labels[*c]),
        Target::Unknown => unreachable!("predict always returns a prediction"),
    }
    Ok(())
}
