//! A model's rendering strategy: the `"rendering"` field of its config.json (absent =
//! continuous, so configs from before the strategies and Hugging Face ones read as they always
//! did). Pretraining writes it, finetuning carries it into the finetuned checkpoint, and every
//! command that draws strips for a checkpoint reads it.

use pixel_model::PixelConfig;
use pixel_render::RenderingStrategy;
use serde_json::Value;

/// The config.json field naming the rendering strategy.
pub const RENDERING_FIELD: &str = "rendering";

/// The rendering `config` was trained with; `source` names the config in errors.
pub fn config_rendering(config: &PixelConfig, source: &str) -> anyhow::Result<RenderingStrategy> {
    match config.extra.get(RENDERING_FIELD) {
        None => Ok(RenderingStrategy::Continuous),
        Some(Value::String(name)) => name.parse().map_err(|e: String| {
            anyhow::anyhow!("{source}: config.json field \"{RENDERING_FIELD}\": {e}")
        }),
        Some(other) => anyhow::bail!(
            "{source}: config.json field \"{RENDERING_FIELD}\" is {other}, not a name (expected one of: {})",
            RenderingStrategy::allowed_names()
        ),
    }
}

/// Records `rendering` in `config`: the field for bigrams, mono and words; none for continuous
/// (so a continuous config is written exactly as before the field existed).
pub fn set_config_rendering(config: &mut PixelConfig, rendering: RenderingStrategy) {
    match rendering {
        RenderingStrategy::Continuous => {
            config.extra.remove(RENDERING_FIELD);
        }
        r => {
            config
                .extra
                .insert(RENDERING_FIELD.into(), Value::String(r.name().into()));
        }
    }
}

/// The rendering to draw a checkpoint's strips with: its own unless `requested` differs, which
/// needs `allow_mismatch` (then a warning is printed). `what` names the checkpoint.
pub fn checkpoint_rendering(
    stored: RenderingStrategy,
    requested: Option<RenderingStrategy>,
    allow_mismatch: bool,
    what: &str,
) -> anyhow::Result<RenderingStrategy> {
    match requested {
        None => Ok(stored),
        Some(r) if r == stored => Ok(r),
        Some(r) if allow_mismatch => {
            eprintln!(
                "warning: {what} was trained with the {stored} rendering; drawing strips with {r} \
                 instead (--allow-rendering-mismatch): its patch embeddings have not seen this layout"
            );
            Ok(r)
        }
        Some(r) => anyhow::bail!(
            "{what} was trained with the {stored} rendering, not {r}: drop --rendering to use \
             {stored}, or pass --allow-rendering-mismatch to use {r} anyway"
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn absent_means_continuous_and_continuous_is_never_written() {
        let mut c = PixelConfig::tiny(8);
        assert_eq!(
            config_rendering(&c, "x").unwrap(),
            RenderingStrategy::Continuous
        );
        let before = c.to_json_string();
        set_config_rendering(&mut c, RenderingStrategy::Continuous);
        assert_eq!(c.to_json_string(), before);
        set_config_rendering(&mut c, RenderingStrategy::Bigrams);
        assert!(c.to_json_string().contains("\"rendering\": \"bigrams\""));
        let back = PixelConfig::from_json_str(&c.to_json_string(), "c").unwrap();
        assert_eq!(
            config_rendering(&back, "c").unwrap(),
            RenderingStrategy::Bigrams
        );
        set_config_rendering(&mut c, RenderingStrategy::Continuous);
        assert_eq!(c.to_json_string(), before);
    }

    #[test]
    fn malformed_fields_name_the_value_and_the_allowed_names() {
        for (value, shown) in [
            (Value::String("bigram".into()), "\"bigram\""),
            (Value::from(3), "3"),
            (Value::Null, "null"),
        ] {
            let mut c = PixelConfig::tiny(8);
            c.extra.insert(RENDERING_FIELD.into(), value);
            let err = config_rendering(&c, "ckpt/config.json")
                .unwrap_err()
                .to_string();
            assert!(err.contains("ckpt/config.json"), "{err}");
            assert!(err.contains(shown), "{err}");
            assert!(err.contains("continuous, bigrams, mono, words"), "{err}");
        }
    }

    #[test]
    fn a_different_rendering_needs_the_flag() {
        use RenderingStrategy::*;
        assert_eq!(
            checkpoint_rendering(Bigrams, None, false, "c").unwrap(),
            Bigrams
        );
        assert_eq!(
            checkpoint_rendering(Bigrams, Some(Bigrams), false, "c").unwrap(),
            Bigrams
        );
        let err = checkpoint_rendering(Bigrams, Some(Continuous), false, "ckpt")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("ckpt") && err.contains("--allow-rendering-mismatch"),
            "{err}"
        );
        assert_eq!(
            checkpoint_rendering(Bigrams, Some(Words), true, "c").unwrap(),
            Words
        );
    }
}
