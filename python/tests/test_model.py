"""pixel.load and Model on the parity fixture: encode against the Rust CLI's forward
(`pixel encode`) and the PyTorch reference, reconstruct, predict with a finetuned head."""

import json
import subprocess

import numpy as np
import pytest

import pixel
from helpers import write_safetensors


def npy(dir, name):
    return np.load(dir / f"{name}.npy")


def cli_encode(pixel_bin, fixture_dir, tmp_path, *args):
    out = tmp_path / "hidden.npy"
    subprocess.run(
        [str(pixel_bin), "encode", "--checkpoint", str(fixture_dir), "-o", str(out), *args],
        check=True, capture_output=True,
    )
    return np.load(out)


def test_encode_matches_rust_forward(pixel_bin, fixture_dir, tmp_path):
    model = pixel.load(fixture_dir)
    assert model.kind == "pretraining" and model.max_seq_length == 24
    pv, am = npy(fixture_dir, "pixel_values"), npy(fixture_dir, "attention_mask")
    hidden = model.encode(pv, am)
    assert hidden.dtype == np.float32 and hidden.shape == (2, 25, 64)
    rust = cli_encode(
        pixel_bin, fixture_dir, tmp_path,
        "--pixel-values", str(fixture_dir / "pixel_values.npy"),
        "--attention-mask", str(fixture_dir / "attention_mask.npy"),
    )
    assert np.abs(hidden - rust).max() <= 1e-6
    # And the PyTorch reference, at the Rust parity test's tolerance (1e-4 of the largest value).
    reference = npy(fixture_dir, "unmasked_last_hidden_state")
    assert np.abs(hidden - reference).max() <= 1e-4 * np.abs(reference).max()


def test_encode_of_rendered_text_matches_cli(pixel_bin, fixture_dir, tmp_path):
    model = pixel.load(fixture_dir)
    text = "Hello, world: a strip for the tiny model."
    enc = pixel.Renderer(max_seq_length=model.max_seq_length).render(text)
    hidden = model.encode(enc.to_model_input()[None], enc.attention_mask[None])
    rust = cli_encode(pixel_bin, fixture_dir, tmp_path, text)
    assert rust.shape == (1, 25, 64)
    assert np.abs(hidden - rust).max() <= 1e-6


def test_unbatched_inputs_strided_inputs_and_other_formats(fixture_dir):
    model = pixel.load(fixture_dir)
    pv, am = npy(fixture_dir, "pixel_values"), npy(fixture_dir, "attention_mask")
    batched = model.encode(pv, am)
    single = model.encode(pv[1], am[1].astype(bool))
    assert single.shape == (25, 64)
    assert np.abs(single - batched[1]).max() <= 1e-6
    # A non-contiguous view reads the same values.
    flipped = np.ascontiguousarray(pv[::-1])[::-1]
    assert not flipped.flags.c_contiguous
    assert np.abs(model.encode(flipped, am) - batched).max() == 0
    # The same weights from the PyTorch zip file.
    torch_file = pixel.load(fixture_dir / "pytorch_model.bin")
    assert np.abs(torch_file.encode(pv, am) - batched).max() == 0


def test_reconstruct_matches_reference(fixture_dir):
    model = pixel.load(fixture_dir)
    pv, am, pm = (npy(fixture_dir, n) for n in ("pixel_values", "attention_mask", "patch_mask"))
    out = model.reconstruct(pv, am, pm)
    logits, reference = out["logits"], npy(fixture_dir, "logits")
    assert logits.shape == (2, 24, 768)
    assert np.abs(logits - reference).max() <= 1e-4 * np.abs(reference).max()
    assert abs(out["loss"] - float(npy(fixture_dir, "loss")[0])) <= 1e-5
    assert np.array_equal(out["patch_mask"], pm)
    image = out["reconstruction"]
    assert image.shape == pv.shape
    kept = np.repeat(pm == 0, 16, axis=1)[:, None, None, :]  # (B, 1, 1, W)
    assert np.array_equal(np.where(kept, image, 0), np.where(kept, pv, 0))
    # Random masking: seeded, int(L * (1 - ratio)) patches kept per row.
    a = model.reconstruct(pv, am, mask_ratio=0.5, seed=3)
    b = model.reconstruct(pv, am, mask_ratio=0.5, seed=3)
    assert np.array_equal(a["patch_mask"], b["patch_mask"])
    assert (a["patch_mask"].sum(axis=1) == 12).all()


def test_config_is_the_checkpoints(fixture_dir):
    model = pixel.load(fixture_dir)
    with open(fixture_dir / "config.json") as f:
        stored = json.load(f)
    for key in ("hidden_size", "num_hidden_layers", "num_attention_heads", "mask_ratio"):
        assert model.config[key] == stored[key]
    assert model.task is None and model.labels is None
    with pytest.raises(ValueError, match="finetuned"):
        model.predict(npy(fixture_dir, "pixel_values"), npy(fixture_dir, "attention_mask"))


def finetuned_checkpoint(fixture_dir, tmp_path, with_task=True, task="pos", head=None):
    """The fixture's encoder with a task head of 3 labels (default: token classification)."""
    config = json.loads((fixture_dir / "config.json").read_text())
    labels = ["NOUN", "VERB", "X"]
    config.update(
        architectures=["PIXELForTokenClassification"],
        num_labels=3,
        id2label={str(i): l for i, l in enumerate(labels)},
        label2id={l: i for i, l in enumerate(labels)},
    )
    if with_task:
        config["finetuning_task"] = task
    rng = np.random.default_rng(0)
    weights = {
        p.stem: np.load(p) for p in fixture_dir.glob("vit.*.npy")
    }
    for name, shape in (head or {"classifier.weight": (3, 64), "classifier.bias": (3,)}).items():
        weights[name] = rng.normal(0, 0.3, shape).astype(np.float32)
    out = tmp_path / (task if with_task else "hf")
    out.mkdir()
    (out / "config.json").write_text(json.dumps(config))
    write_safetensors(out / "model.safetensors", weights)
    return out, weights, labels


def test_predict_token_head(fixture_dir, tmp_path):
    path, weights, labels = finetuned_checkpoint(fixture_dir, tmp_path)
    model = pixel.load(path)
    assert model.kind == "finetuned" and model.task == "pos" and model.labels == labels
    pv, am = npy(fixture_dir, "pixel_values"), npy(fixture_dir, "attention_mask")
    logits = model.predict(pv, am)["logits"]
    assert logits.shape == (2, 24, 3)
    hidden = model.encode(pv, am)[:, 1:, :]  # patches, CLS dropped
    want = hidden @ weights["classifier.weight"].T + weights["classifier.bias"]
    assert np.abs(logits - want).max() <= 1e-5
    with pytest.raises(ValueError, match="pretraining checkpoint"):
        model.reconstruct(pv, am)


def test_huggingface_finetuned_checkpoint_needs_its_task(fixture_dir, tmp_path):
    path, _, _ = finetuned_checkpoint(fixture_dir, tmp_path, with_task=False)
    with pytest.raises(ValueError, match="task="):
        pixel.load(path)
    assert pixel.load(path, task="pos").task == "pos"


def test_predict_parsing_and_classification_heads(fixture_dir, tmp_path):
    pv, am = npy(fixture_dir, "pixel_values"), npy(fixture_dir, "attention_mask")
    parse_head = {
        "vit.pooler.dense.weight": (64, 64), "vit.pooler.dense.bias": (64,),
        "biaffine_arcs.weight": (1, 65, 64), "biaffine_rels.weight": (3, 65, 65),
        "classifier.weight": (3, 64), "classifier.bias": (3,),
    }
    path, _, _ = finetuned_checkpoint(fixture_dir, tmp_path, task="parse", head=parse_head)
    parser = pixel.load(path)
    assert parser.task == "parse"
    starts = [[0, 3, 5, 9], [0, 2, 4]]
    out = parser.predict(pv, am, word_starts=starts)
    assert out["logits"].shape == (2, 24, 25) and out["rel_logits"].shape == (2, 24, 3)
    assert np.isfinite(out["logits"][0, :3]).all()
    with pytest.raises(ValueError, match="needs word_starts"):
        parser.predict(pv, am)
    with pytest.raises(ValueError, match="must increase"):
        parser.predict(pv, am, word_starts=[[0, 3, 3], [0, 2]])
    with pytest.raises(ValueError, match="outside 0..24"):
        parser.predict(pv, am, word_starts=[[0, 30], [0, 2]])

    mean_head = {
        "pooler.linear.weight": (64, 64), "pooler.linear.bias": (64,),
        "pooler.ln.weight": (64,), "pooler.ln.bias": (64,),
        "classifier.weight": (3, 64), "classifier.bias": (3,),
    }
    path, _, _ = finetuned_checkpoint(fixture_dir, tmp_path, task="classify", head=mean_head)
    classifier = pixel.load(path)
    logits = classifier.predict(pv, am)["logits"]
    assert logits.shape == (2, 3)
    # One example alone gives its row of the batch.
    assert np.abs(classifier.predict(pv[1], am[1])["logits"] - logits[1]).max() <= 1e-5
