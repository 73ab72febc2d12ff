//! `pixel encode`: a checkpoint's encoder on a rendered text or on given model inputs, written
//! as the `last_hidden_state` .npy (B, 1 + L, hidden), CLS first (feature extraction).

use std::path::PathBuf;

use anyhow::{bail, Context};
use pixel::features::{check_model_input, last_hidden_state, load_pretrained};
use pixel_engine::Tensor;
use pixel_model::checkpoint::{read_npy, write_npy};
use pixel_render::{Layout, RenderConfig, Renderer};

/// Arguments of `pixel encode`.
#[derive(clap::Args, Debug)]
pub struct EncodeArgs {
    /// Checkpoint directory or weights file (ours or a HuggingFace PIXEL one).
    #[arg(long)]
    pub checkpoint: PathBuf,
    /// Text to render at the model's L and encode (or --pixel-values).
    pub text: Option<String>,
    /// Model inputs instead of text: float32 .npy (B, 3, 16, 16 * L) in [0, 1].
    #[arg(
        long,
        value_name = "NPY",
        requires = "attention_mask",
        conflicts_with = "text"
    )]
    pub pixel_values: Option<PathBuf>,
    /// With --pixel-values: .npy (B, L) of 0/1.
    #[arg(long, value_name = "NPY", requires = "pixel_values")]
    pub attention_mask: Option<PathBuf>,
    /// Renderer layout for TEXT: pango (finetuning renderer, default) or pygame (pretraining).
    #[arg(long, default_value = "pango")]
    pub layout: Layout,
    /// Output .npy of the last hidden state.
    #[arg(short, long, default_value = "last_hidden_state.npy")]
    pub output: PathBuf,
}

pub fn run(args: EncodeArgs) -> anyhow::Result<()> {
    let loaded = load_pretrained(&args.checkpoint)?;
    let cfg = &loaded.model.config;
    let l = cfg.num_patches();
    let (pixel_values, attention_mask) = match (&args.text, &args.pixel_values) {
        (Some(text), None) => {
            let mut renderer = Renderer::new(RenderConfig {
                max_seq_length: l,
                layout: args.layout,
                ..RenderConfig::default()
            })?;
            let r = renderer.render_text(text);
            let pixels = Tensor::new(&[1, 3, 16, 16 * l], r.pixel_values()); // (1, 3, 16, 16 L)
            (pixels, r.attention_mask())
        }
        (None, Some(pixels)) => {
            let mask_path = args.attention_mask.as_ref().expect("clap requires it");
            let pixels = read_npy(pixels)?;
            let mask = read_npy(mask_path)?;
            (pixels, mask.data().to_vec())
        }
        _ => bail!("nothing to encode: give TEXT or --pixel-values X.npy --attention-mask M.npy"),
    };
    check_model_input(cfg, pixel_values.shape(), &attention_mask)
        .with_context(|| format!("model input for {}", args.checkpoint.display()))?;
    let hidden = last_hidden_state(&loaded.model.params, cfg, pixel_values, &attention_mask);
    write_npy(&args.output, &hidden)?;
    println!("wrote {} {:?}", args.output.display(), hidden.shape());
    Ok(())
}
