"""Stored images: 8-bit grayscale PNG, dark ink on white paper, to and from numpy arrays.

numpy and pillow only: the torch-free paths (rendering, stitching, dataset jobs)
read and write images through this module; ``data.images`` converts arrays to
the tensors of the models.
"""

from __future__ import annotations

import io

import numpy as np
from PIL import Image


def encode_png(paper: np.ndarray, compress_level: int = 1) -> bytes:
    """uint8 [h, w] paper image -> PNG bytes. Level 1: the writer is on the hot path,
    and level 6 costs ~3x the time for ~10% smaller files on formula images."""
    if paper.dtype != np.uint8 or paper.ndim != 2:
        raise ValueError(f"expected a 2-D uint8 grayscale image, got {paper.dtype} {paper.shape}")
    buf = io.BytesIO()
    Image.fromarray(paper).save(buf, format="PNG", compress_level=compress_level)
    return buf.getvalue()


def decode_png(data: bytes) -> np.ndarray:
    """PNG bytes -> uint8 [h, w] grayscale paper image (any PNG mode is converted)."""
    with Image.open(io.BytesIO(data)) as img:
        if img.mode != "L":
            img = img.convert("L")
        return np.asarray(img, dtype=np.uint8).copy()
