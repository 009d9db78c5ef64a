"""From a rendering of any size to the generator's input: working height, width padding, oversize policy.

The generator is fully convolutional but was trained at one height (128 px in
the paper), so every rendering is scaled, keeping its aspect ratio, to that
height. Its width is then padded with blank paper to a multiple of the
generator's stride (16: it halves the resolution four times; its file says)
and cropped back after generation.

The paper caps inputs at width × height = 640,000 px (width 5,000 at height
128). What happens to a wider formula is an explicit policy, and every
application of it is reported:

* ``skip``: the sample becomes a reject with the reason ``oversize``;
* ``downscale``: the rendering is scaled down as a whole until it fits, and
  centred vertically on a canvas of the working height (the formula is drawn
  smaller rather than squeezed); the sample records the scale it got.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import numpy as np
from PIL import Image

from formula_gan.data.framing import frame_ink

OversizePolicy = Literal["skip", "downscale"]
MAX_PIXELS = 640_000  # the paper's limit on width x height


@dataclass(frozen=True)
class Prepared:
    """A rendering ready for the generator, or the reason it cannot be."""

    image: np.ndarray | None  # uint8 [height, width] dark ink on white, width = content width (unpadded)
    reject: str | None = None
    downscaled: float | None = None  # the scale applied by the downscale policy, else None
    scaled_width: int = 0  # width at the working height before any oversize policy


def padded_width(width: int, multiple: int) -> int:
    """The generator's input width for content of ``width`` px: the next multiple of its stride
    (which its file states), at least one."""
    return max(multiple, -(-width // multiple) * multiple)




def prepare(
    paper: np.ndarray,
    height: int,
    policy: OversizePolicy,
    max_pixels: int = MAX_PIXELS,
    frame: bool = False,
) -> Prepared:
    """Scale a rendering (uint8 [h, w], dark on white) to ``height`` and apply the oversize policy;
    ``frame``: crop it to its ink with the handwriting's margin first (data/framing.py)."""
    if paper.dtype != np.uint8 or paper.ndim != 2 or min(paper.shape) < 1:
        raise ValueError(f"expected a non-empty 2-D uint8 image, got {paper.dtype} {paper.shape}")
    if frame:
        paper = frame_ink(paper)
    h, w = paper.shape
    width = max(1, round(w * height / h))
    if width * height <= max_pixels:
        return Prepared(_resize(paper, width, height), scaled_width=width)
    where = f"{width}x{height} = {width * height:,} px at the working height (limit {max_pixels:,})"
    if policy == "skip":
        return Prepared(None, reject=f"oversize: {where}", scaled_width=width)
    if policy != "downscale":
        raise ValueError(f"unknown oversize policy {policy!r} (skip or downscale)")
    limit = max_pixels // height  # the paper's limit is on content, before the padding to 16
    if limit < 1:
        raise ValueError(f"working height {height} leaves no width under {max_pixels} px")
    scale = limit / width
    small_h = max(1, math.floor(height * scale))
    small = _resize(paper, limit, small_h)
    canvas = np.full((height, limit), 255, dtype=np.uint8)
    top = (height - small_h) // 2
    canvas[top : top + small_h] = small
    return Prepared(canvas, downscaled=round(scale, 6), scaled_width=width)


def _resize(paper: np.ndarray, width: int, height: int) -> np.ndarray:
    if paper.shape == (height, width):
        return paper
    # LANCZOS: renderings are mostly enlarged (font sizes 16-50 px -> 128 px rows)
    # and sometimes reduced; it keeps strokes sharp both ways.
    img = Image.fromarray(paper).resize((width, height), Image.Resampling.LANCZOS)
    return np.array(img, dtype=np.uint8)  # a writable copy (torch.from_numpy warns on read-only arrays)
