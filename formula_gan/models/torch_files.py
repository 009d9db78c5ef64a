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
        raise error(load_error_message(err, what, path, hint)) from err


def load_error_message(err: BaseException, what: str, path: str | Path, hint: str = "") -> str:
    """One line saying why ``torch.load(path, weights_only=True)`` failed, with none of torch's
    advice: for a file that holds pickled Python objects, torch's text advises loading it with
    weights_only=False, i.e. running its code. ``hint`` ends the message of a damaged file."""
    if _is_pickled_code(err):
        return f"{path}: not a plain-data {what} (it holds pickled Python objects, which could run code): refused{hint}"
    if isinstance(err, pickle.UnpicklingError):  # garbage, told apart by the same loader
        return f"cannot read {what} {path}: truncated or corrupt (not a readable pickle){hint}"
    return f"cannot read {what} {path}: truncated or corrupt ({type(err).__name__}: {_first_sentence(err)}){hint}"


def _is_pickled_code(err: BaseException) -> bool:
    """Whether torch's weights-only loader refused the file for naming a Python class or function
    (a pickle GLOBAL, which is how a pickle runs code) rather than for being damaged."""
    return isinstance(err, pickle.UnpicklingError) and "Unsupported global" in str(err)


def _first_sentence(err: BaseException) -> str:
    """torch's messages run to a paragraph of advice; the first sentence says what failed."""
    lines = str(err).strip().splitlines() or [type(err).__name__]
    return lines[0].split(". ")[0].rstrip(".")
