//! `pixel reconstruct`: render text, mask it, run a pretrained PIXEL in
//! inference mode and draw the reconstruction figure (SPEC 8).

use std::path::PathBuf;

use anyhow::bail;
use pixel::features::load_pretrained_allowing;
use pixel::figures::write_reconstruction_png;
use pixel::model::masking::SpanMaskingGenerator;
use pixel::model::train::PretrainBatch;
use pixel::pretrain::run::reconstruction_rows;
use pixel::rendering::{checkpoint_rendering, config_rendering};
use pixel_engine::{Rng, Tensor};
use pixel_model::PatchMasking;
use pixel_render::{Layout, RenderConfig, Renderer, RenderingStrategy};

/// Arguments of `pixel reconstruct`.
#[derive(clap::Args, Debug)]
pub struct ReconstructArgs {
    /// Checkpoint directory (ours or a HuggingFace PIXEL one: config.json +
    /// model.safetensors or pytorch_model.bin).
    #[arg(long)]
    pub checkpoint: PathBuf,
    /// The text to render and reconstruct.
    pub text: String,
    /// Fraction of patches to mask (random masking unless --span-mask or --manual-mask).
    #[arg(long)]
    pub mask_ratio: Option<f64>,
    /// Span masking as in pretraining (SPEC 2).
    #[arg(long)]
    pub span_mask: bool,
    /// Explicit patch indices to mask.
    #[arg(long, num_args = 1..)]
    pub manual_mask: Vec<usize>,
    /// Renderer layout of the continuous and words renderings (default: pygame as in
    /// pretraining for continuous, else pango).
    #[arg(long)]
    pub layout: Option<Layout>,
    /// Rendering strategy (default: the checkpoint's, from its config.json; another one needs
    /// --allow-rendering-mismatch).
    #[arg(long)]
    pub rendering: Option<RenderingStrategy>,
    /// Draw with --rendering although the checkpoint was pretrained with another rendering.
    #[arg(long)]
    pub allow_rendering_mismatch: bool,
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Also write the square (grid) view next to the strip view.
    #[arg(long)]
    pub square: bool,
    /// Output PNG.
    #[arg(short, long, default_value = "reconstruction.png")]
    pub output: PathBuf,
    /// Run even if a weight is NaN or infinite (to look at what a broken
    /// checkpoint does; `pixel inspect` lists such tensors).
    #[arg(long)]
    pub allow_non_finite: bool,
}

pub fn run(args: ReconstructArgs) -> anyhow::Result<()> {
    let loaded = load_pretrained_allowing(&args.checkpoint, args.allow_non_finite)?;
    if !loaded.has_decoder {
        bail!(
            "{} lacks the decoder weights the reconstruction needs (a finetuned or encoder-only checkpoint?)",
            args.checkpoint.display()
        );
    }
    let mut model = loaded.model;
    let mut config = model.config.clone();
    if let Some(r) = args.mask_ratio {
        if !(0.0..1.0).contains(&r) {
            bail!("--mask-ratio must be in [0, 1), got {r}");
        }
        config.mask_ratio = r;
    }
    pixel::check_renderer_patches(&config)?;
    pixel::memory::check_inference_fits(
        &config,
        1,
        true,
        &format!("the model in {}", args.checkpoint.display()),
    )?;
    let l = config.num_patches();
    if !args.manual_mask.is_empty() {
        if let Some(bad) = args.manual_mask.iter().find(|&&i| i >= l) {
            bail!("--manual-mask index {bad} is outside the strip's {l} patches");
        }
        config.mask_ratio = args.manual_mask.len() as f64 / l as f64;
    }
    let what = args.checkpoint.display().to_string();
    let rendering = checkpoint_rendering(
        config_rendering(&config, &what)?,
        args.rendering,
        args.allow_rendering_mismatch,
        &what,
    )?;
    let layout = args.layout.unwrap_or(match rendering {
        RenderingStrategy::Continuous => Layout::Pygame,
        _ => Layout::Pango,
    });
    model.config = config.clone();
    let mut renderer = Renderer::new(RenderConfig {
        max_seq_length: l,
        layout,
        rendering,
        ..Default::default()
    })
    .map_err(|e| anyhow::anyhow!("{e}"))?;
    let r = renderer.render_text(&args.text);
    let attention = r.attention_mask();
    let mut rng = Rng::new(args.seed);
    let masking = if !args.manual_mask.is_empty() {
        let mut m = vec![0.0f32; l];
        for &i in &args.manual_mask {
            m[i] = 1.0;
        }
        PatchMasking::explicit(&m, 1, l).map_err(|e| anyhow::anyhow!("{e}"))?
    } else if args.span_mask {
        let gen = SpanMaskingGenerator::new(l, config.mask_ratio);
        let pm = gen.generate(r.num_text_patches + 1, &mut rng);
        PatchMasking::controlled(&pm, 1, l, config.mask_ratio, &mut rng)
    } else {
        PatchMasking::random(&attention, 1, l, config.mask_ratio, &mut rng)
    };
    let batch = PretrainBatch {
        pixel_values: std::sync::Arc::new(Tensor::new(&[1, 3, 16, 16 * l], r.pixel_values())),
        attention_mask: attention,
        masking,
    };
    let (loss, logits) = model.infer(&batch.pixel_values, &batch.attention_mask, &batch.masking);
    let mut rows = reconstruction_rows(&model, &batch, logits.data(), 1);
    rows[0].label = args.text.chars().take(80).collect();
    write_reconstruction_png(&args.output, &rows, l, config.norm_pix_loss, false)?;
    println!(
        "{}: {} text patches, {} masked, loss {:.4}",
        args.output.display(),
        r.num_text_patches,
        batch.masking.len_removed(),
        loss
    );
    if args.square {
        let sq = args.output.with_extension("square.png");
        write_reconstruction_png(&sq, &rows, l, config.norm_pix_loss, true)?;
        println!("{}", sq.display());
    }
    Ok(())
}
