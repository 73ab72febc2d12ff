//! `summary.json` of a pretraining run and `pixel compare` on it: the table
//! reads the run's own numbers, the figure is written, a malformed log is an
//! error naming the file and line.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::AtomicBool;

use pixel::model::PixelConfig;
use pixel::pretrain::run::{run_pretraining, PretrainOptions};
use pixel::pretrain::summary::RunSummary;
use pixel::render::Layout;

fn options(out: PathBuf) -> PretrainOptions {
    PretrainOptions {
        config: PixelConfig::tiny(32),
        corpus: None,
        out,
        steps: 10,
        batch_size: 4,
        grad_accum: 1,
        lr: 2e-3,
        min_lr: 1e-5,
        warmup_steps: 2,
        weight_decay: 0.05,
        max_grad_norm: 1.0,
        seed: 3,
        layout: Layout::Pygame,
        eval_every: 5,
        save_every: 1000,
        recon_every: 1000,
        resume: false,
        progress: false,
        device: pixel::engine::Device::Cpu,
        stop_at: None,
        parallel: Default::default(),
        check_every: 100,
    }
}

fn compare(args: &[&str], dir: &Path) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_pixel"))
        .arg("compare")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("start pixel")
}

#[test]
fn summary_json_and_compare_table_and_figure() {
    let dir = std::env::temp_dir().join(format!("pixel-test-compare-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let run = dir.join("run");
    let s = run_pretraining(&options(run.clone()), &AtomicBool::new(false)).expect("run");

    let summary = RunSummary::read(&run).expect("summary.json");
    assert_eq!(summary.status, "done");
    assert_eq!(summary.steps_done, Some(10));
    assert_eq!(summary.constant_baseline, s.constant_baseline);
    let (last_step, last_eval) = *s.eval_losses.last().expect("evaluations");
    assert_eq!(last_step, 10);
    assert_eq!(summary.final_eval_loss, Some(last_eval));
    assert_eq!(summary.rendering, "continuous");
    assert_eq!(
        (summary.max_seq_length, summary.batch_size, summary.ranks),
        (32, 4, 1)
    );

    let o = compare(&["mine=run", "--x", "steps", "-o", "c.png"], &dir);
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let row = stdout
        .lines()
        .find(|l| l.starts_with("| mine |"))
        .unwrap_or_else(|| panic!("no row for the run:\n{stdout}"));
    let fraction = format!("| {:.3} |", last_eval / s.constant_baseline);
    assert!(row.contains(&fraction), "{row} lacks {fraction}");
    assert!(row.contains("| 10 / 10 |"), "{row}");
    assert!(std::fs::metadata(dir.join("c.png")).unwrap().len() > 1000);

    // A malformed row names the file and its line.
    let log = run.join("log.csv");
    let mut text = std::fs::read_to_string(&log).unwrap();
    text.push_str("11,0.5,oops,0.001,0.1,3.0\n");
    std::fs::write(&log, text).unwrap();
    let o = compare(&["run"], &dir);
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success());
    assert!(
        stderr.contains("log.csv line 12") && stderr.contains("bad eval_loss"),
        "{stderr}"
    );
    // A directory that is not a run.
    let o = compare(&["nothing-here"], &dir);
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("summary.json"));
    let _ = std::fs::remove_dir_all(&dir);
}
