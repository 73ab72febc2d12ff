//! `pixel render`: draw text into a PIXEL strip (placeholder until the renderer lands).

/// Arguments of `pixel render`.
#[derive(clap::Args, Debug)]
pub struct RenderArgs {}

pub fn run(_args: RenderArgs) -> anyhow::Result<()> {
    anyhow::bail!("pixel render is not implemented yet")
}
