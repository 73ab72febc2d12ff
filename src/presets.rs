//! The model presets side by side with their parameter counts, as `pixel info --presets` prints
//! them and README.md shows them (a test keeps the two equal).

use pixel_model::checkpoint::expected_pretraining_keys;
use pixel_model::PixelConfig;

/// What each preset is for, by name.
fn purpose(name: &str) -> &'static str {
    match name {
        "tiny" => {
            "the pixel-tiny fixture's shape, no dropout; the default `pixel pretrain` (2-core CPU)"
        }
        "mini" => "a CPU model of BERT-Mini's shape",
        "small" => "Team-PIXEL's pixel-small (-bigrams), Lotz et al. 2023",
        "base" => "PIXEL-base (SPEC 3.1)",
        _ => "",
    }
}

/// 112334080 -> "112,334,080".
pub fn thousands(n: usize) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// Trainable parameters of a pretraining model of `cfg`, (encoder, encoder + decoder): the
/// fixed sin-cos position tables are left out, so neither depends on L.
pub fn trainable_parameters(cfg: &PixelConfig) -> (usize, usize) {
    let (mut encoder, mut total) = (0, 0);
    for (name, shape) in expected_pretraining_keys(cfg) {
        if name == "vit.embeddings.position_embeddings" || name == "decoder.decoder_pos_embed" {
            continue;
        }
        let n: usize = shape.iter().product();
        total += n;
        if name.starts_with("vit.") {
            encoder += n;
        }
    }
    (encoder, total)
}

/// The presets as a Markdown table, smallest first.
pub fn presets_markdown() -> String {
    let mut out = String::from(
        "| preset | encoder: hidden x layers, heads, MLP | decoder: hidden x layers, heads, MLP \
         | encoder parameters | with the decoder (pretraining) | what it is |\n\
         | --- | --- | --- | ---: | ---: | --- |\n",
    );
    for name in PixelConfig::PRESET_NAMES {
        let c = PixelConfig::preset(name, 529).expect("preset names are presets");
        let (encoder, total) = trainable_parameters(&c);
        out += &format!(
            "| `{name}` | {} x {}, {}, {} | {} x {}, {}, {} | {} | {} | {} |\n",
            c.hidden_size,
            c.num_hidden_layers,
            c.num_attention_heads,
            c.intermediate_size,
            c.decoder_hidden_size,
            c.decoder_num_hidden_layers,
            c.decoder_num_attention_heads,
            c.decoder_intermediate_size,
            thousands(encoder),
            thousands(total),
            purpose(name)
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thousands_separators() {
        assert_eq!(thousands(0), "0");
        assert_eq!(thousands(999), "999");
        assert_eq!(thousands(1000), "1,000");
        assert_eq!(thousands(112_334_080), "112,334,080");
    }

    #[test]
    fn counts_match_the_known_models() {
        // PIXEL-base: 86M encoder parameters (Rust et al. 2023), pixel-small 22M (Lotz et al.).
        let (base, _) = trainable_parameters(&PixelConfig::base(529));
        assert!((85_000_000..87_000_000).contains(&base), "{base}");
        let (small, _) = trainable_parameters(&PixelConfig::small(529));
        assert!((21_000_000..23_000_000).contains(&small), "{small}");
        // Not L-dependent.
        assert_eq!(
            trainable_parameters(&PixelConfig::tiny(32)),
            trainable_parameters(&PixelConfig::tiny(529))
        );
    }
}
