"""Framing: a formula image cropped to its ink, with a margin in proportion to its height.

CROHME strokes are rasterized (``rasterize``, height128) so that the ink fills the
image but for a margin of 8/128 of its height. Renderings come with the renderer's
random padding (0-15 px at font sizes of 16-50 px), so once both are scaled to one
height, a rendered symbol can be half the size of a handwritten one in the same
layout. A GAN cannot move a formula's framing (its convolutions work in place), so
a discriminator would tell the domains apart by the margin alone. Framing the
renderings the way the handwriting is framed removes that cue; the generator then
only has to change what the ink looks like.
"""

from __future__ import annotations

import numpy as np

MARGIN = 8 / 128  # the handwriting's margin as a fraction of the image height (rasterize: 8 px at 128)
INK_BELOW = 250  # paper values below this count as ink (anti-aliasing fringe included)


def frame_ink(paper: np.ndarray, margin: float = MARGIN) -> np.ndarray:
    """uint8 paper [h, w] -> the ink's bounding box with a white margin of ``margin`` x the framed
    height on every side (so that after any scaling the margin is that share of the height).
    A blank image is returned unchanged."""
    ink = paper < INK_BELOW
    rows, cols = np.flatnonzero(ink.any(1)), np.flatnonzero(ink.any(0))
    if rows.size == 0:
        return paper
    box = paper[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1]
    h = box.shape[0]
    pad = int(round(h * margin / (1 - 2 * margin)))  # margin share of the *framed* height
    return np.pad(box, pad, constant_values=255)
