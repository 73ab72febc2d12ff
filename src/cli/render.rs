//! `pixel render`: draw text into a PIXEL strip, write a PNG and print the patch layout.

use std::io::{BufRead, BufWriter, Write};
use std::path::PathBuf;

use anyhow::{bail, Context};
use pixel_render::{
    FontConfig, Input, Layout, RenderConfig, Renderer, Rendering, RenderingStrategy,
};

/// Arguments of `pixel render`.
#[derive(clap::Args, Debug)]
pub struct RenderArgs {
    /// Text to render (omit with --pair, --words or --batch).
    pub text: Option<String>,
    /// Render a sentence pair: text A, black separator patch, text B.
    #[arg(long, num_args = 2, value_names = ["A", "B"])]
    pub pair: Option<Vec<String>>,
    /// Render a word list (token classification); with --batch, lines are split on spaces.
    #[arg(long, num_args = 0.., value_name = "WORD")]
    pub words: Option<Vec<String>>,
    /// Output PNG of the strip (16 x 16*L), or of the square grid with --square.
    #[arg(short, long, default_value = "strip.png")]
    pub output: PathBuf,
    /// Write the square grid view (23x23 patches for L = 529) instead of the strip.
    #[arg(long)]
    pub square: bool,
    /// Rendering strategy: continuous (PIXEL's), bigrams, mono or words.
    #[arg(long, default_value = "continuous")]
    pub rendering: RenderingStrategy,
    /// Layout: pango (finetuning renderer, default) or pygame (pretraining renderer); for the
    /// continuous and words renderings (bigrams and mono place characters as Pango does).
    #[arg(long, default_value = "pango")]
    pub layout: Layout,
    /// Main font file (e.g. GoNotoCurrent.ttf); default: embedded Noto Sans.
    #[arg(long, value_name = "FILE")]
    pub font: Option<PathBuf>,
    /// Directory of fallback fonts (*.ttf, *.otf), tried after the main font.
    #[arg(long, value_name = "DIR")]
    pub fallback_dir: Option<PathBuf>,
    /// Patches per strip (L).
    #[arg(long, default_value_t = 529)]
    pub max_seq_length: usize,
    /// Pair mode: cut text A to at most this many patches (QA's question_max_length).
    #[arg(long, value_name = "PATCHES")]
    pub text_a_max_patches: Option<usize>,
    /// Render every line of FILE (pairs as A<TAB>B with --pair) and print one JSON object per line.
    #[arg(long, value_name = "FILE")]
    pub batch: Option<PathBuf>,
    /// With --batch: also write each strip as DIR/NNNNNN.png (line number, from 0).
    #[arg(long, value_name = "DIR")]
    pub out_dir: Option<PathBuf>,
}

pub fn run(args: RenderArgs) -> anyhow::Result<()> {
    pixel::memory::check_strip_fits(args.max_seq_length, "--max-seq-length")?;
    let config = RenderConfig {
        max_seq_length: args.max_seq_length,
        layout: args.layout,
        rendering: args.rendering,
        fonts: FontConfig {
            main_font: args.font.clone(),
            fallback_dir: args.fallback_dir.clone(),
            no_default_fallbacks: false,
        },
        ..RenderConfig::default()
    };
    let mut renderer = Renderer::new(config)?;
    renderer.text_a_max_patches = args.text_a_max_patches;
    if let Some(batch) = &args.batch {
        return run_batch(&renderer, &args, batch);
    }
    let input = if let Some(pair) = &args.pair {
        Input::Pair(pair[0].clone(), pair[1].clone())
    } else if let Some(words) = &args.words {
        let mut words = words.clone();
        if words.is_empty() {
            if let Some(text) = &args.text {
                words = text.split(' ').map(str::to_string).collect();
            }
        }
        Input::Words(words)
    } else if let Some(text) = &args.text {
        Input::Text(text.clone())
    } else {
        bail!("nothing to render: give TEXT, --pair A B, --words W1 W2 ... or --batch FILE");
    };
    let rendering = renderer.render(&input);
    write_image(&rendering, &args.output, args.square)?;
    println!("wrote {}", args.output.display());
    println!("num_text_patches: {}", rendering.num_text_patches);
    println!("attention_len: {}", rendering.attention_len());
    if let Some(starts) = &rendering.word_starts {
        println!("word_starts: {starts:?}");
        if rendering.dropped_words > 0 {
            println!("dropped_words: {}", rendering.dropped_words);
        }
    }
    if rendering.truncated {
        println!("truncated: true (the text did not fit; EOS forced into the last patch)");
    }
    if rendering.missing_glyphs > 0 {
        println!(
            "missing_glyphs: {} (drawn as .notdef; try --fallback-dir)",
            rendering.missing_glyphs
        );
    }
    Ok(())
}

fn write_image(rendering: &Rendering, path: &std::path::Path, square: bool) -> anyhow::Result<()> {
    if square {
        rendering.write_square_png(path)?;
    } else {
        rendering.write_png(path)?;
    }
    Ok(())
}

/// Renders every line of `batch` in parallel and prints JSON lines in input order.
fn run_batch(renderer: &Renderer, args: &RenderArgs, batch: &PathBuf) -> anyhow::Result<()> {
    let file = std::fs::File::open(batch)
        .with_context(|| format!("cannot open batch file {}", batch.display()))?;
    let mut inputs = Vec::new();
    for (n, line) in std::io::BufReader::new(file).lines().enumerate() {
        let line = line.with_context(|| format!("{}: line {}", batch.display(), n + 1))?;
        let input = if args.pair.is_some() {
            let (a, b) = line.split_once('\t').unwrap_or((line.as_str(), ""));
            Input::Pair(a.to_string(), b.to_string())
        } else if args.words.is_some() {
            Input::Words(line.split(' ').map(str::to_string).collect())
        } else {
            Input::Text(line)
        };
        inputs.push(input);
    }
    if let Some(dir) = &args.out_dir {
        std::fs::create_dir_all(dir)
            .with_context(|| format!("cannot create output directory {}", dir.display()))?;
    }
    let renderings = renderer.render_batch(&inputs);
    let stdout = std::io::stdout();
    let mut out = BufWriter::new(stdout.lock());
    for (i, r) in renderings.iter().enumerate() {
        let mut obj = serde_json::json!({
            "num_text_patches": r.num_text_patches,
            "attention_len": r.attention_len(),
            "truncated": r.truncated,
            "missing_glyphs": r.missing_glyphs,
        });
        if let Some(starts) = &r.word_starts {
            obj["word_starts"] = serde_json::json!(starts);
        }
        writeln!(out, "{obj}")?;
        if let Some(dir) = &args.out_dir {
            write_image(r, &dir.join(format!("{i:06}.png")), args.square)?;
        }
    }
    out.flush()?;
    Ok(())
}
