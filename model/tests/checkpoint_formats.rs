//! Checkpoint formats: the fixture's three copies of the weights, round trips,
//! hand-built torch archives, key reports and clear errors.

mod common;

use std::collections::{BTreeMap, HashMap};

use common::torch::{rezip, state_dict_pickle, torch_zip, unzip, TensorSpec};
use pixel_engine::Tensor;
use pixel_model::checkpoint::*;
use pixel_model::config::PixelConfig;

fn same_dict(a: &StateDict, b: &StateDict) -> bool {
    a.len() == b.len()
        && a.iter()
            .zip(b)
            .all(|((ka, ta), (kb, tb))| ka == kb && common::same_tensor(ta, tb))
}

fn fixture_safetensors() -> StateDict {
    read_safetensors(common::fixture_dir().join("model.safetensors")).unwrap()
}

#[test]
fn the_three_fixture_formats_hold_identical_tensors() {
    let dir = common::fixture_dir();
    let config = PixelConfig::from_file(dir.join("config.json")).unwrap();
    let st = fixture_safetensors();
    let pt = read_pytorch(dir.join("pytorch_model.bin")).unwrap();
    let npy_all = read_npy_dir(&dir, None).unwrap();
    let npy: StateDict = st.keys().map(|k| (k.clone(), npy_all[k].clone())).collect();
    assert!(same_dict(&st, &pt), "safetensors != pytorch_model.bin");
    assert!(same_dict(&st, &npy), "safetensors != .npy files");

    let report = compare_keys(&st, &expected_pretraining_keys(&config));
    assert!(report.is_exact(), "{report}");
    let counts = ParamCounts::of_state_dict(&st);
    if std::env::var_os("PIXEL_FIXTURES").is_none() {
        assert_eq!(st.len(), 78);
        assert_eq!(counts.total, 163_360);
    }
    assert_eq!(
        counts,
        ParamCounts::of_keys(&expected_pretraining_keys(&config))
    );
}

#[test]
fn load_checkpoint_autodetects_directories_and_files() {
    let dir = common::fixture_dir();
    let from_dir = load_checkpoint(&dir).unwrap();
    assert_eq!(from_dir.format, CheckpointFormat::Safetensors);
    assert!(from_dir.config.is_some());
    let from_bin = load_checkpoint(dir.join("pytorch_model.bin")).unwrap();
    assert_eq!(from_bin.format, CheckpointFormat::PytorchZip);
    assert_eq!(from_bin.config, from_dir.config);
    assert!(same_dict(&from_dir.weights, &from_bin.weights));
    let one = load_checkpoint(dir.join("vit.layernorm.bias.npy")).unwrap();
    assert_eq!(one.format, CheckpointFormat::NpyDir);
    assert!(common::same_tensor(
        &one.weights["vit.layernorm.bias"],
        &from_dir.weights["vit.layernorm.bias"]
    ));

    // A directory with only .npy files and a config.
    let scratch = common::scratch_dir("npy-only");
    std::fs::copy(dir.join("config.json"), scratch.join("config.json")).unwrap();
    write_npy_dir(&scratch, &from_dir.weights, "").unwrap();
    let npy = load_checkpoint(&scratch).unwrap();
    assert_eq!(npy.format, CheckpointFormat::NpyDir);
    assert!(same_dict(&npy.weights, &from_dir.weights));
    std::fs::remove_dir_all(&scratch).unwrap();
}

#[test]
fn save_and_load_roundtrip() {
    let weights = fixture_safetensors();
    let bytes = safetensors_to_bytes(&weights).unwrap();
    let (_, meta) = safetensors::SafeTensors::read_metadata(&bytes).unwrap();
    let expected_meta = HashMap::from([("format".to_string(), "pt".to_string())]);
    assert_eq!(meta.metadata(), &Some(expected_meta));
    assert!(same_dict(
        &read_safetensors_bytes(&bytes, "mem").unwrap(),
        &weights
    ));

    let dir = common::scratch_dir("roundtrip");
    let config = PixelConfig::tiny(24);
    save_checkpoint(dir.join("out"), &config, &weights).unwrap();
    let loaded = load_checkpoint(dir.join("out")).unwrap();
    assert_eq!(loaded.config.as_ref(), Some(&config));
    assert!(same_dict(&loaded.weights, &weights));

    // .npy with a prefix: only matching files are read, the prefix is stripped.
    write_npy_dir(dir.join("npy"), &weights, "final.").unwrap();
    std::fs::write(dir.join("npy/other.npy"), b"not read").unwrap();
    let back = read_npy_dir(dir.join("npy"), Some("final.")).unwrap();
    assert!(same_dict(&back, &weights));
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn half_precision_safetensors_are_converted() {
    use safetensors::{tensor::TensorView, Dtype};
    let f16: Vec<u8> = [1.5f32, -2.0]
        .iter()
        .flat_map(|&v| half::f16::from_f32(v).to_le_bytes())
        .collect();
    let bf16: Vec<u8> = [0.25f32, 3.0, 4.0]
        .iter()
        .flat_map(|&v| half::bf16::from_f32(v).to_le_bytes())
        .collect();
    let views = vec![
        ("a", TensorView::new(Dtype::F16, vec![2], &f16).unwrap()),
        (
            "b",
            TensorView::new(Dtype::BF16, vec![3, 1], &bf16).unwrap(),
        ),
    ];
    let bytes = safetensors::serialize(views, &None).unwrap();
    let dict = read_safetensors_bytes(&bytes, "half.safetensors").unwrap();
    assert_eq!(dict["a"].data(), &[1.5, -2.0]);
    assert_eq!(dict["b"].shape(), &[3, 1]);
    assert_eq!(dict["b"].data(), &[0.25, 3.0, 4.0]);

    let ints = [0u8; 16];
    let views = vec![("step", TensorView::new(Dtype::I64, vec![2], &ints).unwrap())];
    let bytes = safetensors::serialize(views, &None).unwrap();
    let err = read_safetensors_bytes(&bytes, "int.safetensors")
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("int.safetensors") && err.contains("step") && err.contains("I64"),
        "{err}"
    );
}

#[test]
fn pytorch_top_folder_name_does_not_matter() {
    let bytes = std::fs::read(common::fixture_dir().join("pytorch_model.bin")).unwrap();
    let entries = unzip(&bytes);
    assert!(entries.iter().any(|(n, _)| n == "pytorch_model/data.pkl"));
    let renamed = rezip(&entries, "archive", None);
    let a = read_pytorch_bytes(&bytes, "orig").unwrap();
    let b = read_pytorch_bytes(&renamed, "renamed").unwrap();
    assert!(same_dict(&a, &b));
}

fn f32_bytes(values: impl IntoIterator<Item = f32>) -> Vec<u8> {
    values.into_iter().flat_map(f32::to_le_bytes).collect()
}

fn spec<'a>(
    key: &'a str,
    storage_key: &'a str,
    shape: &'a [usize],
    stride: &'a [usize],
) -> TensorSpec<'a> {
    TensorSpec {
        key,
        storage_type: "FloatStorage",
        storage_key,
        storage_numel: 12,
        offset: 0,
        shape,
        stride,
        parameter: false,
    }
}

#[test]
fn pytorch_views_offsets_parameters_and_half_storages() {
    let storage = f32_bytes((0..12).map(|i| i as f32));
    let halves: Vec<u8> = [1.0f32, 0.5, -4.0]
        .iter()
        .flat_map(|&v| half::f16::from_f32(v).to_le_bytes())
        .collect();
    let tensors = [
        spec("whole", "0", &[3, 4], &[4, 1]),
        // A view into the same storage: elements 4..8 as [2, 2].
        TensorSpec {
            offset: 4,
            ..spec("view", "0", &[2, 2], &[2, 1])
        },
        TensorSpec {
            parameter: true,
            ..spec("param", "0", &[1, 12], &[12, 1])
        },
        TensorSpec {
            storage_type: "HalfStorage",
            storage_numel: 3,
            ..spec("half", "1", &[3], &[1])
        },
        spec("scalar", "0", &[], &[]),
    ];
    let pickle = state_dict_pickle(&tensors);
    let zip = torch_zip("archive", &pickle, &[("0", storage), ("1", halves)]);
    let dict = read_pytorch_bytes(&zip, "views.bin").unwrap();
    assert_eq!(dict["whole"].shape(), &[3, 4]);
    assert_eq!(dict["whole"].data()[11], 11.0);
    assert_eq!(dict["view"].data(), &[4.0, 5.0, 6.0, 7.0]);
    assert_eq!(dict["param"].shape(), &[1, 12]);
    assert_eq!(dict["half"].data(), &[1.0, 0.5, -4.0]);
    assert_eq!(dict["scalar"].data(), &[0.0]);
}

#[test]
fn pytorch_errors_name_the_file_and_the_key() {
    let storage = || vec![("0", f32_bytes((0..12).map(|i| i as f32)))];
    let cases: Vec<(TensorSpec, &str)> = vec![
        (spec("transposed", "0", &[4, 3], &[1, 4]), "not contiguous"),
        (
            TensorSpec {
                storage_type: "LongStorage",
                ..spec("step", "0", &[1], &[1])
            },
            "LongStorage",
        ),
        (
            TensorSpec {
                offset: 10,
                ..spec("past_end", "0", &[4], &[1])
            },
            "exceeds its storage",
        ),
        (spec("no_file", "7", &[2], &[1]), "data/7"),
        (
            TensorSpec {
                storage_numel: 100,
                ..spec("short", "0", &[100], &[1])
            },
            "holds 48 bytes",
        ),
    ];
    for (tensor, needle) in cases {
        let key = tensor.key.to_string();
        let zip = torch_zip("m", &state_dict_pickle(&[tensor]), &storage());
        let err = read_pytorch_bytes(&zip, "bad.bin").unwrap_err().to_string();
        assert!(
            err.contains("bad.bin") && err.contains(&key) && err.contains(needle),
            "{key}: {err}"
        );
    }
    // Not a zip at all, a legacy pickle, a zip without data.pkl.
    let err = read_pytorch_bytes(b"hello", "x.bin")
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("x.bin") && err.contains("not a PyTorch zip"),
        "{err}"
    );
    let err = read_pytorch_bytes(b"\x80\x02}q\x00.", "old.bin")
        .unwrap_err()
        .to_string();
    assert!(err.contains("legacy"), "{err}");
    let zip = rezip(&[("a/readme".into(), b"x".to_vec())], "a", None);
    let err = read_pytorch_bytes(&zip, "z.bin").unwrap_err().to_string();
    assert!(err.contains("no <folder>/data.pkl"), "{err}");
}

#[test]
fn key_report_lists_missing_unexpected_and_mismatched_keys() {
    // Expectations follow the fixture's own config, so any fixture works.
    let config = PixelConfig::from_file(common::fixture_dir().join("config.json")).unwrap();
    let (d, l) = (config.hidden_size, config.num_patches());
    let short = (l / 2).max(1) + 1; // a resized (finetuning-length) position table
    let mut weights = fixture_safetensors();
    // A finetuned-style checkpoint: no decoder, a classifier, a resized position table.
    weights.retain(|k, _| !k.starts_with("decoder."));
    weights.insert("classifier.weight".into(), Tensor::zeros(&[3, d]));
    weights.insert(
        "vit.embeddings.position_embeddings".into(),
        Tensor::zeros(&[1, short, d]),
    );
    let report = compare_keys(&weights, &expected_pretraining_keys(&config));
    assert_eq!(report.unexpected, vec!["classifier.weight".to_string()]);
    // decoder_embed (2) + mask_token + pos_embed, 16 per layer, norm (2) + pred (2).
    assert_eq!(
        report.missing.len(),
        4 + 16 * config.decoder_num_hidden_layers + 4
    );
    assert!(report.missing.iter().all(|k| k.starts_with("decoder.")));
    assert_eq!(
        report.mismatched,
        vec![ShapeMismatch {
            key: "vit.embeddings.position_embeddings".into(),
            expected: vec![1, l + 1, d],
            found: vec![1, short, d],
        }]
    );
    let err = report
        .check_shapes("ft.safetensors")
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("ft.safetensors")
            && err.contains("vit.embeddings.position_embeddings")
            && err.contains(&format!("{:?}", [1, short, d]))
            && err.contains(&format!("{:?}", [1, l + 1, d])),
        "{err}"
    );
    let text = report.to_string();
    assert!(
        text.contains("unexpected") && text.contains("missing"),
        "{text}"
    );

    // The encoder-only key set matches a finetuned checkpoint minus its head.
    weights.remove("classifier.weight");
    weights.insert(
        "vit.embeddings.position_embeddings".into(),
        Tensor::zeros(&[1, l + 1, d]),
    );
    assert!(compare_keys(&weights, &expected_encoder_keys(&config)).is_exact());
}

#[test]
fn config_can_be_inferred_from_weights() {
    let dir = common::fixture_dir();
    let config = PixelConfig::from_file(dir.join("config.json")).unwrap();
    let weights = fixture_safetensors();
    let inferred = infer_config(&weights).unwrap();
    assert_eq!(
        expected_pretraining_keys(&inferred),
        expected_pretraining_keys(&config)
    );
    assert!(infer_config(&BTreeMap::new()).is_none());
}

#[test]
fn non_checkpoints_give_clear_errors() {
    let dir = common::scratch_dir("not-a-checkpoint");
    std::fs::write(dir.join("notes.txt"), "hello").unwrap();
    let err = load_checkpoint(&dir).unwrap_err().to_string();
    assert!(err.contains("no checkpoint here"), "{err}");
    let err = load_checkpoint(dir.join("notes.txt"))
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("notes.txt") && err.contains("safetensors"),
        "{err}"
    );
    let err = load_checkpoint(dir.join("missing.bin"))
        .unwrap_err()
        .to_string();
    assert!(err.contains("missing.bin"), "{err}");
    std::fs::write(dir.join("old.bin"), b"\x80\x02}q\x00.").unwrap();
    let err = load_checkpoint(dir.join("old.bin"))
        .unwrap_err()
        .to_string();
    assert!(err.contains("old.bin") && err.contains("legacy"), "{err}");
    std::fs::write(dir.join("config.json"), "{\"hidden_size\": 64}").unwrap();
    std::fs::write(dir.join("model.safetensors"), b"").unwrap();
    let err = load_checkpoint(&dir).unwrap_err().to_string();
    assert!(
        err.contains("config.json") && err.contains("num_hidden_layers"),
        "{err}"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

/// Flipped bytes inside a tensor storage (not data.pkl) are caught by the
/// entry's zip CRC, and the error names the tensor and the entry.
#[test]
fn pytorch_storage_corruption_fails_the_crc() {
    let bytes = std::fs::read(common::fixture_dir().join("pytorch_model.bin")).unwrap();
    let entries = unzip(&bytes);
    let (name, storage) = entries
        .iter()
        .filter(|(n, d)| n.contains("/data/") && d.len() >= 64)
        .max_by_key(|(_, d)| d.len())
        .unwrap();
    // torch stores entries uncompressed: the storage appears verbatim.
    let at = bytes
        .windows(storage.len())
        .position(|w| w == storage.as_slice())
        .unwrap();
    let mut corrupt = bytes.clone();
    for b in &mut corrupt[at + 16..at + 32] {
        *b ^= 0x5a;
    }
    let err = read_pytorch_bytes(&corrupt, "pytorch_model.bin")
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("pytorch_model.bin")
            && err.contains(name.as_str())
            && err.contains("checksum"),
        "{err}"
    );
}
