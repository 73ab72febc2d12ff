//! `pixel inspect`: describe a checkpoint (placeholder until the model lands).

/// Arguments of `pixel inspect`.
#[derive(clap::Args, Debug)]
pub struct InspectArgs {}

pub fn run(_args: InspectArgs) -> anyhow::Result<()> {
    anyhow::bail!("pixel inspect is not implemented yet")
}
