"""The project's torch files (training checkpoints, exported generators): one writer, one reader.

Written whole or not at all: to a temporary name beside the target, flushed to
disk, then renamed over it, so a crash or a full disk leaves the previous file
intact and a reader never sees half of one. Read as untrusted input: the file
may come from elsewhere, so ``torch.load(weights_only=True)`` (tensors and plain
values only), and every way a file can be unreadable is one clear error of the
caller's kind naming the file. What a file must hold is each kind's own check.
"""

from __future__ import annotations

import os
import pickle
import zipfile
from pathlib import Path
from typing import Any

import torch

from formula_gan.errors import FormulaGanError


def save_torch_file(payload: Any, path: str | Path) -> Path:
    """``torch.save(payload)`` to ``path`` atomically (the parent folder is created)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    try:
        with open(tmp, "wb") as f:
            torch.save(payload, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)  # after a failed write; the previous file is untouched
    return path


def load_torch_file(path: str | Path, what: str, error: type[FormulaGanError], hint: str = "") -> Any:
    """The payload of a torch file, read with ``weights_only=True``.

    ``what`` names the kind of file in the messages ("checkpoint", "generator file"), ``error``
    is the error to raise, ``hint`` ends the message of an unreadable file (what to do)."""
    path = Path(path)
    if not path.is_file():
        raise error(f"{what} not found: {path}")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except (RuntimeError, EOFError, pickle.UnpicklingError, zipfile.BadZipFile, ValueError, OSError) as err:
        raise error(f"cannot read {what} {path}: truncated or corrupt ({type(err).__name__}: {err}){hint}") from err
