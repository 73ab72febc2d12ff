//! `PixelConfig` (SPEC 3.1) and the sin-cos position tables (SPEC 3.2) against the fixture.

mod common;

use pixel_model::checkpoint::read_npy;
use pixel_model::config::{ConfigError, PixelConfig};
use pixel_model::embeddings::{decoder_pos_embed, encoder_pos_embed, sincos_pos_embed};

#[test]
fn fixture_config_parses_and_matches_the_tiny_preset() {
    let dir = common::fixture_dir();
    let cfg = PixelConfig::from_file(dir.join("config.json")).unwrap();
    assert_eq!(cfg.patch_size, 16);
    assert_eq!(cfg.num_patches() * 16, cfg.image_size[1]);
    if std::env::var_os("PIXEL_FIXTURES").is_none() {
        let mut tiny = PixelConfig::tiny(24);
        tiny.torch_dtype = Some("float32".into());
        assert_eq!(cfg, tiny);
        assert_eq!(cfg.num_patches(), 24);
        assert_eq!(cfg.head_dim(), 16);
        assert_eq!(cfg.num_masked_patches(), 6);
    }
}

#[test]
fn pixel_base_json_roundtrips_and_defaults_apply() {
    let base = PixelConfig::base(529);
    assert_eq!(base.image_size, [16, 8464]);
    assert_eq!(base.num_patches(), 529);
    assert_eq!(base.head_dim(), 64);
    assert_eq!(base.decoder_head_dim(), 32);
    assert_eq!(base.num_masked_patches(), 133);
    base.validate().unwrap();
    let text = base.to_json_string();
    assert_eq!(PixelConfig::from_json_str(&text, "x").unwrap(), base);

    // Only the required fields: every other field takes its pixel-base default.
    let minimal = r#"{"hidden_size": 768, "num_hidden_layers": 12, "num_attention_heads": 12,
        "intermediate_size": 3072, "image_size": [16, 8464], "patch_size": 16}"#;
    let mut parsed = PixelConfig::from_json_str(minimal, "min.json").unwrap();
    parsed.architectures = base.architectures.clone();
    assert_eq!(parsed, base);
}

#[test]
fn unknown_fields_are_kept_and_vit_mae_is_accepted() {
    let text = r#"{"model_type": "vit_mae", "hidden_size": 64, "num_hidden_layers": 2,
        "num_attention_heads": 4, "intermediate_size": 128, "image_size": 32, "patch_size": 16,
        "transformers_version": "4.17.0", "pad_token_id": -100, "num_labels": 3,
        "id2label": {"0": "A", "1": "B", "2": "C"}, "something_new": [1, 2]}"#;
    let cfg = PixelConfig::from_json_str(text, "c.json").unwrap();
    assert_eq!(cfg.image_size, [32, 32]);
    assert_eq!(cfg.num_patches(), 4);
    assert_eq!(cfg.pad_token_id, Some(-100));
    assert_eq!(cfg.num_labels, Some(3));
    assert_eq!(cfg.extra["transformers_version"], "4.17.0");
    let back = PixelConfig::from_json_str(&cfg.to_json_string(), "back.json").unwrap();
    assert_eq!(back, cfg);
    assert!(cfg.to_json_string().contains("something_new"));
}

#[test]
fn missing_and_invalid_fields_are_named() {
    let missing = r#"{"num_hidden_layers": 2, "num_attention_heads": 4, "intermediate_size": 8,
        "image_size": [16, 64], "patch_size": 16}"#;
    let err = PixelConfig::from_json_str(missing, "cfg.json").unwrap_err();
    assert!(matches!(err, ConfigError::Parse { .. }));
    let msg = err.to_string();
    assert!(
        msg.contains("hidden_size") && msg.contains("cfg.json"),
        "{msg}"
    );

    let cases = [
        (
            "num_attention_heads",
            serde_json::json!(5),
            "not divisible by num_attention_heads",
        ),
        (
            "image_size",
            serde_json::json!([16, 70]),
            "not divisible by patch_size",
        ),
        ("hidden_act", serde_json::json!("gelu_new"), "hidden_act"),
        ("model_type", serde_json::json!("bert"), "model_type"),
        ("mask_ratio", serde_json::json!(1.5), "mask_ratio"),
        ("image_size", serde_json::json!("wide"), "image_size"),
        ("hidden_size", serde_json::json!(-3), "hidden_size"),
    ];
    for (field, value, needle) in cases {
        let mut json = serde_json::json!({"hidden_size": 64, "num_hidden_layers": 2,
            "num_attention_heads": 4, "intermediate_size": 8, "image_size": [16, 64],
            "patch_size": 16});
        json[field] = value;
        let msg = PixelConfig::from_json_str(&json.to_string(), "cfg.json")
            .unwrap_err()
            .to_string();
        assert!(
            msg.contains(needle) && msg.contains("cfg.json"),
            "{field}: {msg}"
        );
    }
    let io = PixelConfig::from_file("/nonexistent/config.json").unwrap_err();
    assert!(io.to_string().contains("/nonexistent/config.json"));
}

#[test]
fn presets_validate_and_resize() {
    for cfg in [
        PixelConfig::base(256),
        PixelConfig::small(100),
        PixelConfig::mini(100),
        PixelConfig::tiny(7),
    ] {
        cfg.validate().unwrap();
    }
    let cfg = PixelConfig::mini(10).with_num_patches(196);
    assert_eq!(cfg.image_size, [16, 3136]);
    assert_eq!(cfg.num_patches(), 196);
    assert_eq!(cfg.hidden_size, 256);
    for name in PixelConfig::PRESET_NAMES {
        let cfg = PixelConfig::preset(name, 32).unwrap();
        cfg.validate().unwrap();
        assert_eq!(cfg.num_patches(), 32);
    }
    assert!(PixelConfig::preset("large", 32).is_none());
}

/// pixel-small as released by Team-PIXEL (Lotz et al. 2023).
#[test]
fn small_is_team_pixels_pixel_small() {
    let c = PixelConfig::small(529);
    let encoder = (
        c.hidden_size,
        c.num_hidden_layers,
        c.num_attention_heads,
        c.intermediate_size,
    );
    let decoder = (
        c.decoder_hidden_size,
        c.decoder_num_hidden_layers,
        c.decoder_num_attention_heads,
        c.decoder_intermediate_size,
    );
    assert_eq!(encoder, (384, 12, 6, 1536));
    assert_eq!(decoder, (264, 4, 6, 1056));
    assert_eq!((c.head_dim(), c.decoder_head_dim()), (64, 44));
}

/// Distance in units in the last place between two f32 of the same sign region.
fn ulps(a: f32, b: f32) -> u32 {
    let key = |x: f32| {
        let bits = x.to_bits() as i32;
        if bits < 0 {
            i32::MIN - bits
        } else {
            bits
        }
    };
    key(a).abs_diff(key(b))
}

#[test]
fn position_tables_match_the_fixture_within_one_ulp() {
    let dir = common::fixture_dir();
    let cfg = PixelConfig::from_file(dir.join("config.json")).unwrap();
    let cases = [
        (
            encoder_pos_embed(&cfg),
            "vit.embeddings.position_embeddings.npy",
        ),
        (decoder_pos_embed(&cfg), "decoder.decoder_pos_embed.npy"),
    ];
    for (ours, file) in cases {
        let theirs = read_npy(dir.join(file)).unwrap();
        assert_eq!(ours.shape(), theirs.shape(), "{file}");
        let mut worst = 0;
        let mut exact = 0;
        for (a, b) in ours.data().iter().zip(theirs.data()) {
            let d = ulps(*a, *b);
            worst = worst.max(d);
            exact += usize::from(d == 0);
        }
        eprintln!(
            "{file}: {exact} of {} values bit-exact, worst {worst} ulp",
            ours.numel()
        );
        assert!(worst <= 1, "{file}: worst difference {worst} ulp");
        // Nearly every value is bit-exact; a 1-ulp difference comes only from libm sin/cos.
        assert!(
            exact * 100 >= ours.numel() * 99,
            "{file}: only {exact} exact"
        );
    }
}

#[test]
fn perfect_square_table_is_the_original_grid() {
    // L = 529: patch 23 starts row 1 at column 0.
    let t = sincos_pos_embed(529, 8);
    assert_eq!(t.shape(), &[530, 8]);
    let row = |p: usize| t.data()[(p + 1) * 8..(p + 2) * 8].to_vec();
    assert_eq!(row(23)[..4], [0.0, 0.0, 1.0, 1.0]);
    assert_eq!(row(23)[4], 1f64.sin() as f32);
    assert_eq!(row(22)[0], 22f64.sin() as f32);
}

#[test]
fn parameter_count_matches_the_model_and_absurd_sizes_are_refused() {
    use pixel_model::checkpoint::{expected_pretraining_keys, ParamCounts};
    for cfg in [PixelConfig::tiny(32), PixelConfig::base(529)] {
        let exact = ParamCounts::of_keys(&expected_pretraining_keys(&cfg));
        assert_eq!(cfg.pretraining_parameters(), exact.total as f64);
        assert_eq!(cfg.encoder_parameters(), exact.encoder_total as f64);
    }
    let mut cfg = PixelConfig::tiny(32);
    cfg.intermediate_size = 1_000_000_000_000;
    let err = cfg.validate().unwrap_err().to_string();
    assert!(err.contains("intermediate_size 1000000000000"), "{err}");
    let mut cfg = PixelConfig::tiny(32);
    cfg.hidden_size = 1 << 40;
    cfg.num_attention_heads = 1;
    assert!(cfg.validate().is_err());
}
