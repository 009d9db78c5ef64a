"""``preview.png``: rendered inputs beside their handwritten outputs, one formula per row (any number of columns).

Made with torch (padding, concatenation) and pillow (PNG), no torchvision: the
CPU-only torch wheels used here cannot import it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F

from formula_gan.data.images import encode_png, ink_to_paper, paper_to_ink
from formula_gan.data.shards import atomic_write_bytes
from formula_gan.synthesis.items import Record

PREVIEW = "preview.png"  # in the output folder
PREVIEW_PAIRS = 8  # rows of the preview sheet: the first samples of shard 0
GAP = 8  # px of paper between the two columns and between rows
RULE = 0.35  # ink level of the thin line under each row (light gray), so rows read apart


def preview_grid(rows: Sequence[Sequence[np.ndarray]], max_width: int = 768) -> np.ndarray:
    """Rows of uint8 paper images [h, w_i] (e.g. input, output) -> one uint8 paper image, the
    images of a row side by side in aligned columns.

    An image wider than ``max_width`` is scaled down (aspect kept) so that one very long formula
    neither makes the sheet unreadable nor loses its end.
    """
    if not rows:
        raise ValueError("a preview needs at least one row")
    cells = [[_fit_width(paper_to_ink(img), max_width) for img in row] for row in rows]  # [1, h, w] ink
    columns = max(len(row) for row in cells)
    col_w = [max(row[c].shape[2] for row in cells if c < len(row)) for c in range(columns)]
    lines = []
    for row in cells:
        h = max(cell.shape[1] for cell in row)
        parts: list[torch.Tensor] = []
        for c in range(columns):
            cell = row[c] if c < len(row) else torch.zeros(1, h, col_w[c])
            parts += [_pad_to(cell, h, col_w[c]), torch.zeros(1, h, GAP)]
        line = torch.cat(parts[:-1], dim=2)  # [1, h, W]
        rule = torch.full((1, 1, line.shape[2]), RULE)
        gap = torch.zeros(1, GAP // 2, line.shape[2])
        lines.append(torch.cat([line, gap, rule, gap], dim=1))
    grid = torch.cat(lines, dim=1)  # [1, H, W]
    grid = F.pad(grid, (GAP, GAP, GAP, GAP))  # a margin of paper all round
    return ink_to_paper(grid)


def kept_for_preview(r: Record) -> bool:
    """The first records of shard 0 keep their pixels until the preview is drawn (a few
    more than it shows, since some may be rejects)."""
    return r.shard == 0 and r.pos < PREVIEW_PAIRS * 4


def write_preview(path: str | Path, rows: Sequence[Sequence[np.ndarray]]) -> None:
    atomic_write_bytes(path, encode_png(preview_grid(rows), compress_level=6))


def _fit_width(ink: torch.Tensor, max_width: int) -> torch.Tensor:
    """[1, h, w] -> [1, h', w'] with w' <= max_width, aspect kept (area averaging keeps thin strokes visible)."""
    h, w = ink.shape[1:]
    if w <= max_width:
        return ink
    size = (max(1, round(h * max_width / w)), max_width)
    return F.interpolate(ink.unsqueeze(0), size=size, mode="area").squeeze(0)


def _pad_to(ink: torch.Tensor, h: int, w: int) -> torch.Tensor:
    """Pad [1, h_i, w_i] with background (ink 0) on the right and bottom to [1, h, w]."""
    return F.pad(ink, (0, w - ink.shape[2], 0, h - ink.shape[1]))
