"""``preview.png``: rendered inputs beside their handwritten outputs, one pair per row.

Made with torch (padding, concatenation) and pillow (PNG), no torchvision: the
CPU-only torch wheels used here cannot import it.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from formula_gan.data.images import encode_png, ink_to_paper, paper_to_ink
from formula_gan.data.shards import atomic_write_bytes

GAP = 8  # px of paper between the two columns and between rows
RULE = 0.35  # ink level of the thin line under each row (light gray), so rows read apart


def preview_grid(pairs: list[tuple[np.ndarray, np.ndarray]], max_width: int = 768) -> np.ndarray:
    """[(input, output)] uint8 paper images [h, w_i] -> one uint8 paper image: input | output per row.

    An image wider than ``max_width`` is scaled down (aspect kept) so that one very long formula
    neither makes the sheet unreadable nor loses its end.
    """
    if not pairs:
        raise ValueError("a preview needs at least one pair")
    cells = [[_fit_width(paper_to_ink(img), max_width) for img in pair] for pair in pairs]  # [1, h, w] ink
    col_w = [max(row[c].shape[2] for row in cells) for c in range(2)]
    rows = []
    for left, right in cells:
        h = max(left.shape[1], right.shape[1])
        row = torch.cat(
            [
                _pad_to(left, h, col_w[0]),
                torch.zeros(1, h, GAP),
                _pad_to(right, h, col_w[1]),
            ],
            dim=2,
        )  # [1, h, W]
        rule = torch.full((1, 1, row.shape[2]), RULE)
        rows.append(torch.cat([row, torch.zeros(1, GAP // 2, row.shape[2]), rule, torch.zeros(1, GAP // 2, row.shape[2])], dim=1))
    grid = torch.cat(rows, dim=1)  # [1, H, W]
    grid = F.pad(grid, (GAP, GAP, GAP, GAP))  # a margin of paper all round
    return ink_to_paper(grid)


def write_preview(path: str | Path, pairs: list[tuple[np.ndarray, np.ndarray]]) -> None:
    atomic_write_bytes(path, encode_png(preview_grid(pairs), compress_level=6))


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
