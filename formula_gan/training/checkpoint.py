"""One-file GAN training checkpoints: written atomically, read with ``weights_only=True``
(both by ``formula_gan.models.torch_files``, which every torch file of the project goes through).

Everything in a checkpoint is a tensor or a plain Python value (dicts, lists, numbers,
strings), so the restricted unpickler can read it: RNG states are stored as tensors and
the config as its plain dict. A checkpoint from elsewhere is untrusted input.
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import numpy as np
import torch

from formula_gan.errors import FormulaGanError
from formula_gan.hashing import sha256_file
from formula_gan.models.generator import Generator
from formula_gan.models.generator_io import save_generator
from formula_gan.models.torch_files import load_torch_file, save_torch_file

FORMAT = "formula-gan-gan-checkpoint"
FORMAT_VERSION = 1


class CheckpointError(FormulaGanError):
    """A checkpoint that is missing, truncated, corrupt, or does not fit the run."""


def save_checkpoint(payload: dict[str, Any], path: str | Path) -> Path:
    """Write ``payload`` to ``path`` atomically (never half a checkpoint), stamped with its format."""
    return save_torch_file({"format": FORMAT, "format_version": FORMAT_VERSION, **payload}, path)


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """Read a GAN training checkpoint; every way it can be unreadable is one clear ``CheckpointError``."""
    payload = load_torch_file(path, "checkpoint", CheckpointError)
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        kind = payload.get("format") if isinstance(payload, dict) else type(payload).__name__
        raise CheckpointError(f"{path} is not a formula-gan GAN training checkpoint (format {kind!r})")
    if payload.get("format_version") != FORMAT_VERSION:
        raise CheckpointError(f"{path}: checkpoint format {payload.get('format_version')} is not supported (expected {FORMAT_VERSION})")
    return payload


def check_architecture(saved: dict[str, Any], current: dict[str, Any], path: str | Path) -> None:
    """Error naming the first difference when a checkpoint's models are not the ones this config builds."""
    for part in sorted(set(saved) | set(current)):
        a, b = saved.get(part, {}), current.get(part, {})
        for key in sorted(set(a) | set(b)):
            if _plain(a.get(key)) != _plain(b.get(key)):
                raise CheckpointError(
                    f"{path} holds a checkpoint of another architecture: {part}.{key} is {a.get(key)!r} there "
                    f"but {b.get(key)!r} in this config"
                )


def _plain(v: Any) -> Any:
    return list(v) if isinstance(v, tuple) else v


def rng_state() -> dict[str, Any]:
    """Every global RNG as tensors and numbers (readable by ``weights_only``)."""
    version, mt, gauss = random.getstate()
    np_kind, np_keys, np_pos, np_has_gauss, np_gauss = np.random.get_state()
    return {
        "torch": torch.get_rng_state(),
        "cuda": list(torch.cuda.get_rng_state_all()) if torch.cuda.is_available() else [],
        "python": {"version": version, "state": torch.tensor(mt, dtype=torch.int64), "gauss": gauss},
        "numpy": {"keys": torch.from_numpy(np_keys.astype(np.int64)), "pos": int(np_pos),
                  "has_gauss": int(np_has_gauss), "gauss": float(np_gauss)},
    }


def set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    if state["cuda"] and torch.cuda.is_available() and len(state["cuda"]) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(state["cuda"])
    py = state["python"]
    random.setstate((py["version"], tuple(py["state"].tolist()), py["gauss"]))
    n = state["numpy"]
    np.random.set_state(("MT19937", n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["gauss"]))


def export_generator(checkpoint: str | Path, out: str | Path, fp16: bool = False) -> tuple[Path, str, int]:
    """The EMA generator of a training checkpoint as a small generator file for synthesis.

    Returns (path, sha256 of the file, training step)."""
    payload = load_checkpoint(checkpoint)
    try:
        generator = Generator(**payload["architecture"]["G"])
        generator.load_state_dict(payload["models"]["G_ema"])
    except (KeyError, TypeError, ValueError, RuntimeError) as err:
        raise CheckpointError(f"{checkpoint}: its EMA generator does not fit the architecture it names: {err}") from err
    step = int(payload["step"])
    sha = save_generator(generator, out, step=step, config=payload["config"], source_sha256=sha256_file(checkpoint), fp16=fp16)
    return Path(out), sha, step
