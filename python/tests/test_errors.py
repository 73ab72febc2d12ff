"""Bad inputs raise ValueError / OSError (TypeError for wrong Python types) with a message
that names the problem; nothing crashes the interpreter."""

import json

import numpy as np
import pytest

import pixel


def test_renderer_settings():
    with pytest.raises(ValueError, match="allowed values: continuous, bigrams, mono, words"):
        pixel.Renderer(rendering="trigrams")
    with pytest.raises(ValueError, match="max_seq_length"):
        pixel.Renderer(max_seq_length=0)
    with pytest.raises(ValueError, match="pango or pygame"):
        pixel.Renderer(layout="cairo")
    with pytest.raises(ValueError, match="font size"):
        pixel.Renderer(font_size=0)
    assert pixel.RENDERINGS == ["continuous", "bigrams", "mono", "words"]
    assert pixel.Renderer(rendering="bigrams").rendering == "bigrams"


def test_missing_and_broken_fonts(tmp_path):
    missing = tmp_path / "NoSuchFont.ttf"
    with pytest.raises(OSError, match="NoSuchFont.ttf"):
        pixel.Renderer(font=missing)
    broken = tmp_path / "broken.ttf"
    broken.write_bytes(b"not a font at all")
    with pytest.raises(OSError, match="broken.ttf.*not a TrueType/OpenType font"):
        pixel.Renderer(font=str(broken))
    with pytest.raises(OSError, match="fallback font directory"):
        pixel.Renderer(fallback_fonts=tmp_path / "no_such_dir")


def test_wrong_input_types():
    renderer = pixel.Renderer(max_seq_length=16)
    with pytest.raises(TypeError):
        renderer.render(3)
    with pytest.raises(TypeError):
        renderer.render_words("not a list")
    with pytest.raises(ValueError, match="item 1: a pair must be a tuple of two strings"):
        renderer.render_batch(["ok", ("a", "b", "c")])
    with pytest.raises(TypeError, match="item 0"):
        renderer.render_batch([3])
    with pytest.raises(TypeError, match="not one str"):
        renderer.render_batch("a sentence")


def test_missing_and_malformed_checkpoints(tmp_path, fixture_dir):
    with pytest.raises(OSError, match="no such checkpoint"):
        pixel.load(tmp_path / "nothing_here")
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(OSError, match="no checkpoint here"):
        pixel.load(empty)
    bad_config = tmp_path / "bad_config"
    bad_config.mkdir()
    (bad_config / "config.json").write_text("{ not json")
    with pytest.raises(OSError, match="config.json"):
        pixel.load(bad_config)
    truncated = tmp_path / "truncated"
    truncated.mkdir()
    (truncated / "config.json").write_text((fixture_dir / "config.json").read_text())
    data = (fixture_dir / "model.safetensors").read_bytes()
    (truncated / "model.safetensors").write_bytes(data[: len(data) // 2])
    with pytest.raises(OSError, match="model.safetensors"):
        pixel.load(truncated)
    wrong_shape = tmp_path / "wrong_shape"
    wrong_shape.mkdir()
    config = json.loads((fixture_dir / "config.json").read_text())
    config["hidden_size"] = 32
    config["intermediate_size"] = 64
    (wrong_shape / "config.json").write_text(json.dumps(config))
    (wrong_shape / "model.safetensors").write_bytes(data)
    with pytest.raises(OSError, match="shape"):
        pixel.load(wrong_shape)
    with pytest.raises(ValueError, match="unknown task"):
        pixel.load(fixture_dir, task="translation")


def test_wrong_arrays(fixture_dir):
    model = pixel.load(fixture_dir)
    pv = np.load(fixture_dir / "pixel_values.npy")
    am = np.load(fixture_dir / "attention_mask.npy")
    with pytest.raises(ValueError, match="float32.*got dtype float64"):
        model.encode(pv.astype(np.float64), am)
    with pytest.raises(ValueError, match=r"got shape \[2, 3, 16, 368\]"):
        model.encode(pv[..., :368], am)
    with pytest.raises(ValueError, match="L = 24"):
        model.encode(np.ones((3, 16, 16 * 529), np.float32), np.ones(529))
    with pytest.raises(ValueError, match=r"attention_mask must have shape \[2, 24\]"):
        model.encode(pv, am[:, :10])
    with pytest.raises(ValueError, match="attention_mask must be 0 or 1"):
        model.encode(pv, am * 2)
    with pytest.raises(ValueError, match="attention_mask must hold 0/1"):
        model.encode(pv, np.array([["a"] * 24] * 2))
    with pytest.raises(ValueError, match="batch is empty"):
        model.encode(pv[:0], am[:0])
    with pytest.raises(ValueError, match="every row must remove the same number"):
        pm = np.zeros((2, 24), np.float32)
        pm[0, :3] = 1
        model.reconstruct(pv, am, pm)
    with pytest.raises(ValueError, match="mask_ratio"):
        model.reconstruct(pv, am, mask_ratio=1.5)
