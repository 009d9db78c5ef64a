"""A checksum of a model's weights, stored in exported files and checked when they are loaded.

A file whose tensors were changed (a flipped bit on disk, a bad copy) still
unpickles and loads; only a checksum over the tensor bytes tells.
"""

from __future__ import annotations

import hashlib

import torch


def state_dict_sha256(state: dict[str, torch.Tensor]) -> str:
    """sha256 over every tensor's name, dtype, shape and bytes, in sorted name order."""
    digest = hashlib.sha256()
    for name in sorted(state):
        t = state[name].detach().cpu().contiguous()
        digest.update(f"{name}|{t.dtype}|{tuple(t.shape)}|".encode())
        digest.update(t.view(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return digest.hexdigest()
