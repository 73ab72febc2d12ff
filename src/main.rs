//! The `pixel` command line.

mod cli;

use clap::{Parser, Subcommand};

/// PIXEL (Pixel-based Encoder of Language) in Rust: render text, pretrain, finetune, benchmark.
#[derive(Parser)]
#[command(name = "pixel", version, about)]
struct Cli {
    /// Instruction set of the CPU kernels: scalar, avx2 or avx512 (default: the
    /// best this CPU has, or PIXEL_ISA). For A/B runs of the same job.
    #[arg(long, global = true, value_name = "ISA")]
    isa: Option<String>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Describe and measure this machine (CPU, caches, ISA in use, FMA ceilings, memory
    /// bandwidth), or list the model presets with their parameter counts (--presets).
    Info(cli::info::InfoArgs),
    /// Render text into a PIXEL strip (PNG) and print its patch layout.
    Render(cli::render::RenderArgs),
    /// Pretrain PIXEL on rendered text (defaults: a tiny model on the bundled corpus, ~10 min).
    Pretrain(cli::pretrain::PretrainArgs),
    /// Pretraining runs side by side: a markdown table and a figure of each run's eval loss
    /// against its best constant prediction over time.
    Compare(cli::compare::CompareArgs),
    /// Reconstruct masked patches of a rendered text with a pretrained checkpoint.
    Reconstruct(cli::reconstruct::ReconstructArgs),
    /// Write a checkpoint's encoder output (last hidden state, .npy) for a text or model inputs.
    Encode(cli::encode::EncodeArgs),
    /// Time the encoder forward and a pretraining step: ms, GFLOP/s, peak memory.
    Bench(cli::bench::BenchArgs),
    /// Describe a checkpoint: config, parameter counts, missing/unexpected keys.
    Inspect(cli::inspect::InspectArgs),
    /// Finetune a task head (pos, ner, parse, classify) on the encoder; keeps the best dev checkpoint.
    Finetune(cli::finetune::FinetuneArgs),
    /// Score a finetuned checkpoint on a labelled file (metric and per-label table).
    Evaluate(cli::finetune::EvaluateArgs),
    /// Label raw text with a finetuned checkpoint (tags, heads and relations, or the class).
    Predict(cli::finetune::PredictArgs),
}

fn main() {
    pixel::keep_freed_memory();
    let cli = Cli::parse();
    if let Err(e) = run(cli) {
        // The error chain, one cause per line, without a backtrace.
        eprintln!("error: {e:#}");
        std::process::exit(1);
    }
}

/// Fixes the kernels' ISA before any kernel runs: `--isa`, else `PIXEL_ISA`,
/// else the best the CPU has. Unknown names and ISAs the CPU lacks are errors.
fn choose_isa(flag: Option<&str>) -> anyhow::Result<()> {
    use pixel_kernels::cpu::{isa_from_env, set_isa};
    use pixel_kernels::Isa;
    let isa = match flag {
        Some(name) => {
            let isa = Isa::parse(name).map_err(|e| anyhow::anyhow!("--isa: {e}"))?;
            set_isa(isa).map_err(|e| anyhow::anyhow!("--isa: {e}"))?;
            isa
        }
        None => isa_from_env().map_err(|e| anyhow::anyhow!(e))?,
    };
    set_isa(isa).map_err(|e| anyhow::anyhow!(e))
}

fn run(cli: Cli) -> anyhow::Result<()> {
    choose_isa(cli.isa.as_deref())?;
    match cli.command {
        Command::Info(args) => cli::info::run(args),
        Command::Render(args) => cli::render::run(args),
        Command::Inspect(args) => cli::inspect::run(args),
        Command::Bench(args) => cli::bench::run(args),
        Command::Pretrain(args) => cli::pretrain::run(args),
        Command::Compare(args) => cli::compare::run(args),
        Command::Reconstruct(args) => cli::reconstruct::run(args),
        Command::Encode(args) => cli::encode::run(args),
        Command::Finetune(args) => cli::finetune::run_finetune(args),
        Command::Evaluate(args) => cli::finetune::run_evaluate(args),
        Command::Predict(args) => cli::finetune::run_predict(args),
    }
}
