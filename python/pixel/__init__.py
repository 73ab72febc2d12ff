"""PIXEL (Pixel-based Encoder of Language) for Python: the renderer and the model.

The renderer ships its fonts and needs no Pango, Cairo or fontconfig; its output depends only
on the text, the fonts and the settings. The model runs on the CPU in this package's compiled
module (no PyTorch needed); arrays come back as NumPy arrays.

>>> import pixel
>>> renderer = pixel.Renderer()
>>> enc = renderer.render("Hello, world")
>>> enc.pixel_values.shape, enc.num_text_patches
((16, 8464), 5)
>>> model = pixel.load("path/to/checkpoint")                # doctest: +SKIP
>>> hidden = model.encode(enc.to_model_input()[None], enc.attention_mask[None])  # doctest: +SKIP

`pixel.compat.PangoCairoTextRenderer` stands in for the original PIXEL renderer class.
"""

from ._pixel import RENDERINGS, Encoding, Model, Renderer, __version__, keep_freed_memory, load
from . import compat

__all__ = [
    "Renderer",
    "Encoding",
    "Model",
    "load",
    "compat",
    "keep_freed_memory",
    "RENDERINGS",
    "__version__",
]
