"""pixel.Renderer against `pixel render --batch` (same strips byte for byte, same layout
numbers) and the model-input layout of SPEC 1.5."""

import json
import subprocess

import numpy as np
import pytest

import pixel
from helpers import read_gray_png

TEXTS = [
    "Hello, world",
    "President Bush on Tuesday nominated two individuals to replace retiring jurists on federal courts.",
    "Café naïve résumé – “curly quotes” and ‘single’ — em dash … 12/03/2021 $27.50 (15%)",
    "AVAWAY To Ty Yo LT fi fl ffi ffl WAVE Type office affluent",
    "",
    "Москва — столица России, крупнейший город страны.",
    "Η Αθήνα είναι η πρωτεύουσα της Ελλάδας.",
    "اللغة العربية هي إحدى أكثر اللغات انتشارا في العالم.",
    "עברית היא שפה שמית ממשפחת השפות האפרו-אסיאתיות.",
    "हिन्दी भारत की सबसे अधिक बोली जाने वाली भाषा है।",
    "北京是中华人民共和国的首都，也是全国的政治和文化中心。",
    "அனைத்துத் துறைகளையும் விட, மருத்துவத் துறை",
    "አማርኛ የኢትዮጵያ የሥራ ቋንቋ ነው።",
    "Private use \ue000 and Linear A \U00010600 in Latin text.",
    "The history of writing systems is, in large part, a history of borrowing. " * 25,
]

WORDS = [
    ["President", "Bush", "on", "Tuesday", "nominated", "two", "individuals", "."],
    ["Das", "ist", "ein", "kleiner", "Test", "."],
    ["சாதாரண", ",", "சாமானிய", "ஏழையெளிய", "மக்களுக்கு"],
    ["اللغة", "العربية", "هي", "إحدى", "أكثر", "اللغات"],
    ["日本語", "の", "文", "です", "。"],
    ["word"] * 300,
]

PAIRS = [
    ("A man is playing a guitar on stage.", "Someone is performing music."),
    ("اللغة العربية جميلة.", "هي إحدى أكثر اللغات انتشارا في العالم."),
    ("מה השעה?", "השעה שלוש אחר הצהריים."),
    ("Who wrote it?", "It was written by a committee over many years. " * 20),
    ("Is this English?", "Нет, это по-русски."),
]


def cli_batch(pixel_bin, tmp_path, lines, mode_args, max_seq_length):
    """Runs `pixel render --batch` on `lines`: (JSON objects, strips) in line order."""
    batch = tmp_path / "batch.txt"
    batch.write_text("\n".join(lines) + "\n", encoding="utf-8")
    out_dir = tmp_path / "png"
    result = subprocess.run(
        [str(pixel_bin), "render", "--batch", str(batch), "--out-dir", str(out_dir),
         "--max-seq-length", str(max_seq_length), *mode_args],
        check=True, capture_output=True, text=True,
    )
    records = [json.loads(line) for line in result.stdout.splitlines()]
    assert len(records) == len(lines)
    strips = [read_gray_png(out_dir / f"{i:06}.png") for i in range(len(lines))]
    return records, strips


def check_same(encodings, records, strips, max_seq_length):
    assert len(encodings) == len(records)
    for i, (enc, rec, strip) in enumerate(zip(encodings, records, strips)):
        assert enc.pixel_values.dtype == np.uint8
        assert enc.pixel_values.shape == (16, 16 * max_seq_length)
        assert np.array_equal(enc.pixel_values, strip), f"item {i}: strips differ"
        assert enc.num_text_patches == rec["num_text_patches"], f"item {i}"
        assert int(enc.attention_mask.sum()) == rec["attention_len"], f"item {i}"
        assert enc.truncated == rec["truncated"], f"item {i}"
        assert enc.missing_glyphs == rec["missing_glyphs"], f"item {i}"
        assert enc.word_starts == rec.get("word_starts"), f"item {i}"


@pytest.mark.parametrize("max_seq_length", [529, 64])
def test_texts_match_cli(pixel_bin, tmp_path, max_seq_length):
    records, strips = cli_batch(pixel_bin, tmp_path, TEXTS, [], max_seq_length)
    renderer = pixel.Renderer(max_seq_length=max_seq_length)
    check_same([renderer.render(t) for t in TEXTS], records, strips, max_seq_length)
    check_same(renderer.render_batch(TEXTS), records, strips, max_seq_length)
    assert any(r["truncated"] for r in records) and any(r["missing_glyphs"] for r in records)


@pytest.mark.parametrize("max_seq_length", [529, 64])
def test_word_lists_match_cli(pixel_bin, tmp_path, max_seq_length):
    lines = [" ".join(words) for words in WORDS]
    records, strips = cli_batch(pixel_bin, tmp_path, lines, ["--words"], max_seq_length)
    renderer = pixel.Renderer(max_seq_length=max_seq_length)
    check_same([renderer.render_words(w) for w in WORDS], records, strips, max_seq_length)
    check_same(renderer.render_batch(WORDS), records, strips, max_seq_length)


@pytest.mark.parametrize("max_seq_length", [529, 64])
def test_pairs_match_cli(pixel_bin, tmp_path, max_seq_length):
    lines = [f"{a}\t{b}" for a, b in PAIRS]
    records, strips = cli_batch(pixel_bin, tmp_path, lines, ["--pair", "-", "-"], max_seq_length)
    renderer = pixel.Renderer(max_seq_length=max_seq_length)
    check_same([renderer.render_pair(a, b) for a, b in PAIRS], records, strips, max_seq_length)
    check_same(renderer.render_batch(PAIRS), records, strips, max_seq_length)
    for enc in renderer.render_batch(PAIRS):
        sep, eos = enc.sep_patches
        assert (enc.pixel_values[:, 16 * sep : 16 * sep + 16] == 0).all()
        assert enc.num_text_patches == eos


def test_mixed_batch_keeps_order():
    renderer = pixel.Renderer(max_seq_length=64)
    items = [TEXTS[0], PAIRS[0], WORDS[0], TEXTS[7]] * 20
    batch = renderer.render_batch(items)
    one_by_one = [
        renderer.render(x) if isinstance(x, str)
        else renderer.render_pair(*x) if isinstance(x, tuple)
        else renderer.render_words(x)
        for x in items
    ]
    for a, b in zip(batch, one_by_one):
        assert np.array_equal(a.pixel_values, b.pixel_values)
        assert a.sep_patches == b.sep_patches


def test_encoding_fields():
    renderer = pixel.Renderer()
    enc = renderer.render("Hello")
    # PIXEL's own numbers for "Hello" (SPEC 1.2): EOS in patch 3, mask of 4.
    assert enc.num_text_patches == 3 and enc.sep_patches == [3]
    assert enc.attention_mask.dtype == np.float32 and enc.attention_mask.shape == (529,)
    assert enc.attention_mask[:4].tolist() == [1, 1, 1, 1] and enc.attention_mask[4:].sum() == 0
    assert len(enc.offset_mapping) == 529 and enc.word_starts is None
    assert enc.pixel_values[0, 0] == 255 and (enc.pixel_values[:, 48:64] == 0).all()
    assert enc.pixel_values is enc.pixel_values  # one array, made once
    words = renderer.render_words(["President", "Bush"])
    assert words.word_starts[:2] == [0, 4] and words.offset_mapping is None


@pytest.mark.parametrize("max_seq_length", [529, 64])
def test_model_input_is_the_cli_strip_over_255_in_three_channels(pixel_bin, tmp_path, max_seq_length):
    records, strips = cli_batch(pixel_bin, tmp_path, TEXTS[:4], [], max_seq_length)
    renderer = pixel.Renderer(max_seq_length=max_seq_length)
    for text, strip in zip(TEXTS[:4], strips):
        x = renderer.render(text).to_model_input()
        assert x.dtype == np.float32 and x.shape == (3, 16, 16 * max_seq_length)
        want = strip.astype(np.float32) / np.float32(255)
        for c in range(3):
            assert np.array_equal(x[c], want)
        assert x.min() >= 0.0 and x.max() <= 1.0


def test_pickled_renderer_renders_the_same():
    import pickle

    renderer = pixel.Renderer(max_seq_length=32, layout="pygame", font_size=9)
    copy = pickle.loads(pickle.dumps(renderer))
    assert copy.max_seq_length == 32 and copy.layout == "pygame"
    a, b = renderer.render(TEXTS[1]), copy.render(TEXTS[1])
    assert np.array_equal(a.pixel_values, b.pixel_values)


def test_threads_share_one_renderer():
    from concurrent.futures import ThreadPoolExecutor

    renderer = pixel.Renderer(max_seq_length=128)
    want = [renderer.render(t).pixel_values for t in TEXTS]
    with ThreadPoolExecutor(max_workers=4) as pool:
        got = list(pool.map(lambda t: renderer.render(t).pixel_values, TEXTS * 4))
    for i, strip in enumerate(got):
        assert np.array_equal(strip, want[i % len(TEXTS)])
