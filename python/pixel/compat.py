"""Drop-in stand-ins for the original PIXEL (xplip/pixel) rendering classes.

A training script written for the original renders with this package by changing one import::

    # from pixel import PangoCairoTextRenderer
    from pixel.compat import PangoCairoTextRenderer

    renderer = PangoCairoTextRenderer(font_file="GoNotoCurrent.ttf", max_seq_length=256)
    enc = renderer(text="A sentence.")                  # one text
    enc = renderer(text=("A premise.", "A hypothesis."))  # a pair (GLUE, NLI, QA)
    enc = renderer(text=["Words", "for", "tagging"])      # a word list (POS, NER, parsing)
    enc.pixel_values, enc.num_text_patches, enc.sep_patches, enc.word_starts

What matches the original: the geometry (text from x = 2, the 2 px gaps, black separator and
end-of-sequence patches at the next patch boundary, word lists starting each word on a patch
boundary, pair direction by PIXEL's is_rtl vote, text_a_max_length truncation), the uint8
(16, 16 * max_seq_length) array, black text on white, `num_text_patches`, `word_starts`,
`offset_mapping` and `sep_patches` (pixel offsets, as the original stores them).

Where the pixels differ: glyph outlines are rasterised without hinting, while the original
goes through FreeType with fontconfig's "slight" hinting, which snaps stems and the baseline
to whole pixels. Measured against the original's strips for the 12 English inputs of the
reference set (10 sentences, an NLI pair, a UD word list; Noto Sans, which is what
GoNotoCurrent draws Latin with; tests/test_compat.py repeats the measurement when the
reference strips are present): the patch counts agree on all 12 and the first and last ink
columns on every sentence; the grey levels of the text patches differ by 5.4 levels (of 255)
on average, and 5.7% of their pixels by more than 32 levels. That is the size of the change
the original itself shows when its hinting is turned off (2-7 levels, 3-8% of pixels).
Other scripts use the embedded Noto fonts with Noto Sans' line metrics, as GoNotoCurrent does:
against the original with a GoNotoCurrent-like merged font, 9 of 10 inputs (Arabic, Hindi,
Russian, Chinese, Japanese, Korean, Tamil, Amharic, Coptic, Tamil words) get the same patch
count and the Japanese one is one patch shorter; with system fonts the original's output
there depends on what fontconfig finds. Colour emoji are not drawn: `rgb=True` gives the grayscale strip in three channels.
"""

import json
import os
from dataclasses import dataclass
from typing import List, Optional, Tuple, Union

import numpy as np

from ._pixel import Renderer

__all__ = ["Encoding", "PangoCairoTextRenderer", "PyGameTextRenderer"]

PIXELS_PER_PATCH = 16


@dataclass
class Encoding:
    """The original's renderer output, field for field."""

    pixel_values: np.ndarray
    sep_patches: List[int]
    num_text_patches: int
    word_starts: Optional[List[int]] = None
    offset_mapping: Optional[List[Tuple[int, int]]] = None
    overflowing_patches: Optional[List] = None
    sequence_ids: Optional[List[Optional[int]]] = None


class PangoCairoTextRenderer:
    """The original `PangoCairoTextRenderer`'s constructor and call, on pixel's renderer.

    Args:
        font_file: main font file (e.g. GoNotoCurrent.ttf); None = the embedded Noto Sans.
            The embedded script fonts are tried after it and after `fallback_fonts_dir`.
        font_size: points (8). dpi: dots per inch (120); 8 pt at 120 dpi = 13.33 px per em.
        font_color, background_color: ignored, as the original PangoCairo renderer ignores
            them (always black on white).
        rgb: return (16, W, 3) uint8 instead of (16, W) (three equal channels here).
        pad_size: unused, as in the original.
        pixels_per_patch: must be 16.
        max_seq_length: patches per strip (529).
        fallback_fonts_dir: directory whose *tf files are tried after the main font.
    """

    _layout = "pango"

    def __init__(
        self,
        font_file: Optional[str] = None,
        font_size: int = 8,
        font_color: str = "black",
        background_color: str = "white",
        rgb: bool = False,
        dpi: int = 120,
        pad_size: int = 3,
        pixels_per_patch: int = PIXELS_PER_PATCH,
        max_seq_length: int = 529,
        fallback_fonts_dir: Optional[str] = None,
        **kwargs,
    ):
        if pixels_per_patch != PIXELS_PER_PATCH:
            raise ValueError(
                f"pixels_per_patch must be {PIXELS_PER_PATCH} (PIXEL's patch size), got {pixels_per_patch}"
            )
        self.font_file = font_file
        self.font_size = font_size
        self.font_color = font_color
        self.background_color = background_color
        self.rgb = rgb
        self.dpi = dpi
        self.pad_size = pad_size
        self.pixels_per_patch = pixels_per_patch
        self.max_seq_length = max_seq_length
        self.fallback_fonts_dir = fallback_fonts_dir
        for key, value in kwargs.items():  # the original keeps unknown settings as attributes
            setattr(self, key, value)
        self._renderer = self._make_renderer()

    def _make_renderer(self) -> Renderer:
        return Renderer(
            "continuous",
            self.max_seq_length,
            self.font_file,
            self.fallback_fonts_dir,
            layout=self._layout,
            font_size=float(self.font_size),
            dpi=float(self.dpi),
        )

    @classmethod
    def from_pretrained(cls, path: Union[str, os.PathLike], **kwargs) -> "PangoCairoTextRenderer":
        """A renderer from a local directory holding text_renderer_config.json (as in a
        PIXEL checkpoint); `font_file` there is taken relative to the directory. Nothing is
        downloaded: pass a directory, not a hub name."""
        config_file = os.path.join(os.fspath(path), "text_renderer_config.json")
        if not os.path.isfile(config_file):
            raise OSError(
                f"{config_file}: not found (from_pretrained reads a local directory with "
                "text_renderer_config.json; this package downloads nothing)"
            )
        with open(config_file, encoding="utf-8") as f:
            config = json.load(f)
        config.pop("text_renderer_type", None)
        font_file = config.get("font_file")
        if font_file is not None and not os.path.isabs(font_file):
            config["font_file"] = os.path.join(os.fspath(path), font_file)
        config.update(kwargs)
        return cls(**config)

    @property
    def max_pixels_len(self) -> int:
        return self.max_seq_length * self.pixels_per_patch

    def __call__(
        self,
        text: Union[str, Tuple[str, str], List[str]],
        return_overflowing_patches: bool = False,
        return_offset_mapping: bool = False,
        stride: int = 0,
        rtl: bool = False,
        text_a_max_length: Optional[int] = None,
        **kwargs,
    ) -> Encoding:
        """Renders a str, a (str, str) pair or a list of words, as the original does."""
        if return_overflowing_patches:
            raise NotImplementedError(
                "return_overflowing_patches (QA sliding windows) is not available in pixel.compat"
            )
        if isinstance(text, list):
            enc = self._renderer.render_words(text)
        elif isinstance(text, tuple):
            if len(text) != 2:
                raise ValueError(f"a text pair must have 2 texts, got {len(text)}")
            if rtl:
                raise NotImplementedError(
                    "rtl=True for pairs is not available: the direction follows PIXEL's is_rtl "
                    "vote on both texts"
                )
            enc = self._renderer.render_pair(text[0], text[1], text_a_max_patches=text_a_max_length)
        elif isinstance(text, str):
            enc = self._renderer.render(text)
        else:
            raise TypeError(
                f"{type(self).__name__} does not support inputs of type {type(text)}; "
                "supported: str, Tuple[str, str], List[str]"
            )
        return self._encoding(enc, with_offsets=return_offset_mapping and isinstance(text, tuple))

    def _encoding(self, enc, with_offsets: bool) -> Encoding:
        pixel_values = enc.pixel_values
        if self.rgb:
            pixel_values = np.repeat(pixel_values[:, :, None], 3, axis=2)
        return Encoding(
            pixel_values=pixel_values,
            sep_patches=[p * PIXELS_PER_PATCH for p in enc.sep_patches],
            num_text_patches=enc.num_text_patches,
            word_starts=enc.word_starts,
            offset_mapping=enc.offset_mapping if with_offsets else None,
        )

    def __getstate__(self):
        state = dict(self.__dict__)
        del state["_renderer"]
        return state

    def __setstate__(self, state):
        self.__dict__.update(state)
        self._renderer = self._make_renderer()


class PyGameTextRenderer(PangoCairoTextRenderer):
    """The original `PyGameTextRenderer` (PIXEL's pretraining renderer): no kerning, ink-box
    widths, ink centred on row 8 (words: baseline row 11). Same arguments as
    `PangoCairoTextRenderer`; `sep_patches` are patch indices, as the original PyGame
    renderer stores them."""

    _layout = "pygame"

    def _encoding(self, enc, with_offsets: bool) -> Encoding:
        out = super()._encoding(enc, with_offsets=False)
        out.sep_patches = list(enc.sep_patches)
        return out
