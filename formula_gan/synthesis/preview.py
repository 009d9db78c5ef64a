"""``preview.png``: each formula's images side by side (its layout, then what the method made of
it), one formula per row, any number of columns.

numpy and pillow only: the stitch path runs without torch.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np
from PIL import Image

from formula_gan.data.png import encode_png
from formula_gan.data.shards import atomic_write_bytes
from formula_gan.synthesis.items import Record

PREVIEW = "preview.png"  # in the output folder
PREVIEW_PAIRS = 8  # rows of the preview sheet: the first samples of shard 0
GAP = 8  # px of paper between the columns and between rows
RULE = 166  # paper value of the thin line under each row (light gray, ink 0.35), so rows read apart
PAPER = 255


def preview_grid(rows: Sequence[Sequence[np.ndarray]], max_width: int = 768) -> np.ndarray:
    """Rows of uint8 paper images [h, w_i] (e.g. input, output) -> one uint8 paper image, the
    images of a row side by side in aligned columns.

    An image wider than ``max_width`` is scaled down (aspect kept) so that one very long formula
    neither makes the sheet unreadable nor loses its end.
    """
    if not rows:
        raise ValueError("a preview needs at least one row")
    cells = [[_fit_width(img, max_width) for img in row] for row in rows]
    columns = max(len(row) for row in cells)
    col_w = [max(row[c].shape[1] for row in cells if c < len(row)) for c in range(columns)]
    width = sum(col_w) + GAP * (columns - 1)
    lines = []
    for row in cells:
        h = max(cell.shape[0] for cell in row)
        line = np.full((h + GAP + 1, width), PAPER, dtype=np.uint8)  # the row, a gap, the rule, a gap
        x = 0
        for c, cell in enumerate(row):
            line[: cell.shape[0], x : x + cell.shape[1]] = cell
            x += col_w[c] + GAP
        line[h + GAP // 2] = RULE
        lines.append(line)
    grid = np.concatenate(lines, axis=0)
    return np.pad(grid, GAP, constant_values=PAPER)  # a margin of paper all round


def kept_for_preview(r: Record) -> bool:
    """The first records of shard 0 keep their pixels until the preview is drawn (a few
    more than it shows, since some may be rejects)."""
    return r.shard == 0 and r.pos < PREVIEW_PAIRS * 4


def write_preview(path: str | Path, rows: Sequence[Sequence[np.ndarray]]) -> None:
    atomic_write_bytes(path, encode_png(preview_grid(rows), compress_level=6))


def _fit_width(paper: np.ndarray, max_width: int) -> np.ndarray:
    """[h, w] -> [h', w'] with w' <= max_width, aspect kept (box filtering keeps thin strokes visible)."""
    h, w = paper.shape
    if w <= max_width:
        return paper
    size = (max_width, max(1, round(h * max_width / w)))
    return np.asarray(Image.fromarray(paper).resize(size, Image.Resampling.BOX), dtype=np.uint8)
