//! `pixel compare`: pretraining runs side by side: a markdown table of each run's
//! settings and eval loss against its best constant prediction, and one figure of
//! those fractions over time.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use pixel::figures::{write_run_curves_png, RunCurve};
use pixel::pretrain::summary::{RunSummary, SUMMARY_FILE};

/// Arguments of `pixel compare`.
#[derive(clap::Args, Debug)]
pub struct CompareArgs {
    /// Output directories of `pixel pretrain` (each with log.csv and summary.json; a run
    /// in progress works too). LABEL=DIR names the run's line (default: the directory name).
    #[arg(required = true)]
    pub runs: Vec<String>,
    /// Where the figure goes (PNG).
    #[arg(long, short, default_value = "compare.png")]
    pub out: PathBuf,
    /// x axis of the figure: minutes (the sum of log.csv's ms per step: the run's own
    /// compute time, whatever else the machine did between steps) or steps.
    #[arg(long, value_enum, default_value_t = XAxis::Minutes)]
    pub x: XAxis,
}

#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq)]
pub enum XAxis {
    Minutes,
    Steps,
}

/// One evaluation of a run: step, minutes of training before it, eval loss.
struct Evaluation {
    step: u64,
    minutes: f64,
    loss: f32,
}

pub fn run(args: CompareArgs) -> anyhow::Result<()> {
    let mut curves = Vec::new();
    println!("| run | model | rendering | L | batch | mask | lr | steps | minutes | eval loss | / constant | best / constant (step) |");
    println!("|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    for spec in &args.runs {
        let (label, dir) = match spec.split_once('=') {
            Some((label, dir)) => (label.to_string(), PathBuf::from(dir)),
            None => {
                let dir = PathBuf::from(spec);
                let name = dir
                    .file_name()
                    .map_or(spec.clone(), |n| n.to_string_lossy().into());
                (name, dir)
            }
        };
        let s = RunSummary::read(&dir)?;
        if !(s.constant_baseline.is_finite() && s.constant_baseline > 0.0) {
            bail!(
                "{}: constant_baseline {} is not a positive number",
                dir.join(SUMMARY_FILE).display(),
                s.constant_baseline
            );
        }
        let evals = read_evaluations(&dir.join("log.csv"))?;
        // The run's settings: the first cells of its row.
        let settings = format!(
            "| {label} | {} | {} | {} | {} | {} | {} |",
            s.model,
            s.rendering,
            s.max_seq_length,
            s.strips_per_step(),
            s.mask_ratio,
            s.lr
        );
        let Some(last) = evals.last() else {
            println!("{settings} 0 / {} | | | | |", s.steps);
            continue;
        };
        let best = evals
            .iter()
            .min_by(|a, b| a.loss.total_cmp(&b.loss))
            .expect("at least one evaluation");
        let c = s.constant_baseline;
        println!(
            "{settings} {} / {} | {:.1} | {:.4} | {:.3} | {:.3} ({}) |",
            last.step,
            s.steps,
            last.minutes,
            last.loss,
            last.loss / c,
            best.loss / c,
            best.step
        );
        let points = evals
            .iter()
            .map(|e| {
                let x = match args.x {
                    XAxis::Minutes => e.minutes,
                    XAxis::Steps => e.step as f64,
                };
                (x, e.loss / c)
            })
            .collect();
        curves.push(RunCurve { label, points });
    }
    let x_label = match args.x {
        XAxis::Minutes => "minutes of training",
        XAxis::Steps => "step",
    };
    write_run_curves_png(
        &args.out,
        &curves,
        "eval loss / eval loss of the best constant prediction (dashed: 1, the plateau)",
        x_label,
    )?;
    eprintln!("wrote {}", args.out.display());
    Ok(())
}

/// The evaluations of a pretraining log.csv (columns found by name in its
/// header), with the minutes of training up to each (the running sum of
/// ms_per_step). A resumed run's repeated steps keep their last row.
fn read_evaluations(path: &Path) -> anyhow::Result<Vec<Evaluation>> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    let mut lines = text.lines();
    let header: Vec<&str> = lines.next().unwrap_or("").split(',').collect();
    let column = |name: &str| {
        header.iter().position(|h| *h == name).with_context(|| {
            format!(
                "{}: no `{name}` column in the header {header:?}",
                path.display()
            )
        })
    };
    let (step_col, eval_col, ms_col) = (
        column("step")?,
        column("eval_loss")?,
        column("ms_per_step")?,
    );
    // (step, ms, eval loss) per row, by step.
    let mut rows: Vec<(u64, f64, Option<f32>)> = Vec::new();
    for (i, line) in lines.enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let cols: Vec<&str> = line.split(',').collect();
        let field = |c: usize| cols.get(c).copied().unwrap_or("");
        let bad = |what: &str| format!("{} line {}: {what} in {line:?}", path.display(), i + 2);
        let step: u64 = field(step_col).parse().with_context(|| bad("bad step"))?;
        let ms: f64 = field(ms_col)
            .parse()
            .with_context(|| bad("bad ms_per_step"))?;
        let eval = match field(eval_col) {
            "" => None,
            v => Some(v.parse::<f32>().with_context(|| bad("bad eval_loss"))?),
        };
        rows.push((step, ms, eval));
    }
    // Stable: of repeated steps (a resume redoes none, but a crash may leave one) the last wins.
    rows.sort_by_key(|r| r.0);
    rows.reverse();
    rows.dedup_by_key(|r| r.0);
    rows.reverse();
    let mut minutes = 0.0;
    let mut evals = Vec::new();
    for (step, ms, eval) in rows {
        minutes += ms / 60_000.0;
        if let Some(loss) = eval {
            evals.push(Evaluation {
                step,
                minutes,
                loss,
            });
        }
    }
    Ok(evals)
}
