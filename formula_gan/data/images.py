"""The one place where stored images and tensors meet.

Files are 8-bit grayscale PNG with dark ink on white paper (what a person
expects to look at). Tensors are float with ink = 1 and background = 0, as the
paper normalizes them. Everything that crosses between the two goes through
this module, so the convention cannot drift (PNG bytes to arrays: ``data.png``).
"""

from __future__ import annotations

import numpy as np
import torch

from formula_gan.data.png import decode_png, encode_png  # noqa: F401  (the arrays' side, re-exported)


def paper_to_ink(paper: np.ndarray) -> torch.Tensor:
    """uint8 [h, w] (white paper = 255, ink dark) -> float [1, h, w], ink = 1."""
    if paper.dtype != np.uint8 or paper.ndim != 2:
        raise ValueError(f"expected a 2-D uint8 grayscale image, got {paper.dtype} {paper.shape}")
    return (255 - torch.from_numpy(paper).float()).div_(255.0).unsqueeze(0)


def ink_to_paper(ink: torch.Tensor) -> np.ndarray:
    """float [1, h, w] or [h, w] with ink = 1 -> uint8 [h, w] dark ink on white."""
    if ink.dim() == 3:
        if ink.shape[0] != 1:
            raise ValueError(f"expected one channel, got shape {tuple(ink.shape)}")
        ink = ink[0]
    if ink.dim() != 2:
        raise ValueError(f"expected [1, h, w] or [h, w], got shape {tuple(ink.shape)}")
    paper = (1.0 - ink.detach().float().clamp(0.0, 1.0)) * 255.0
    return paper.round().to(torch.uint8).cpu().numpy()
