"""A generator file for synthesis: the (EMA) generator alone, small, safe to load.

The exported generator has its spectral norms baked into plain weights (W / σ with the
power-iteration vectors of the checkpoint), so synthesis needs no parametrizations and
loads into ``Generator(spectral_norm=False)``. The file is a plain dict of tensors and
primitives, read with ``torch.load(weights_only=True)``, with a sha256 of its weights
(names, shapes, dtypes, bytes) that loading checks: torch's reader does not notice a
flipped bit inside a tensor, and the generator would load and draw something else.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import torch
from torch.nn.utils import parametrize

from formula_gan import __version__
from formula_gan.errors import FormulaGanError
from formula_gan.hashing import sha256_file
from formula_gan.models.checksum import state_dict_sha256
from formula_gan.models.generator import STRIDE, Generator
from formula_gan.models.torch_files import load_torch_file, save_torch_file

FORMAT = "formula-gan-generator"
# 2: weights_sha256 (files of version 1 carry no checksum: export them again);
# 3: the contract (what synthesis must feed the generator) stated in the file.
FORMAT_VERSION = 3
READABLE_VERSIONS = (2, 3)
PAPER_HEIGHT = 128  # the height of a file that does not say (the paper's)


def contract_of(generator: Generator, config: dict[str, Any]) -> dict[str, Any]:
    """What synthesis must feed a generator: its input height and framing (as it was trained),
    stride (sizes are multiples of it), input channels, z size, and what its inputs were
    (``source``: KaTeX renderings, or stitched handwriting for a refiner)."""
    data = config.get("data", {}) if isinstance(config, dict) else {}
    return {
        "height": int(data.get("height", PAPER_HEIGHT)),
        "frame": bool(data.get("frame", False)),
        "stride": STRIDE,
        "in_channels": 1,
        "z_dim": int(generator.z_dim),
        "source": str(data.get("source_domain", "rendered")),
    }


class GeneratorFileError(FormulaGanError):
    """A generator file that is missing, truncated, corrupt, or of another kind."""


def bake_spectral_norm(generator: Generator) -> Generator:
    """A plain copy of ``generator`` (eval mode, float32, CPU) with each spectral-normed
    weight replaced by its value W / σ: the same function, without parametrizations."""
    src = copy.deepcopy(generator).cpu().float().eval()  # eval: reading a weight runs no power iteration
    state = {k: v for k, v in src.state_dict().items() if ".parametrizations." not in k}
    with torch.no_grad():
        for name, module in src.named_modules():
            if parametrize.is_parametrized(module):
                for tensor_name in module.parametrizations.keys():
                    state[f"{name}.{tensor_name}" if name else tensor_name] = getattr(module, tensor_name).detach().clone()
    plain = Generator(**{**generator.config, "spectral_norm": False})
    plain.load_state_dict(state)
    return plain.eval()


def save_generator(generator: Generator, path: str | Path, *, step: int, config: dict[str, Any],
                   source_sha256: str | None = None, fp16: bool = False) -> str:
    """Write ``generator`` (usually the EMA copy) for synthesis; returns the file's sha256.

    ``fp16`` halves the file; weights are cast back to float32 on load."""
    plain = bake_spectral_norm(generator)
    state = {k: (v.half() if fp16 and v.is_floating_point() else v) for k, v in plain.state_dict().items()}
    payload = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "package_version": __version__,
        "model": dict(plain.config),
        "state_dict": state,
        "step": int(step),
        "config": config,
        "source_sha256": source_sha256,
        "dtype": "float16" if fp16 else "float32",
        "contract": contract_of(plain, config),
        "weights_sha256": state_dict_sha256(state),
    }
    return sha256_file(save_torch_file(payload, path))  # atomic: a reader never sees a half-written file


def load_generator(path: str | Path, device: str | torch.device = "cpu") -> tuple[Generator, dict[str, Any]]:
    """(Generator in eval mode on ``device``, meta) from an exported file.

    meta: ``config`` (the training config), ``model`` (constructor arguments), ``step``,
    ``sha256`` (of this file), ``source_sha256`` (of the training checkpoint), ``dtype``,
    ``contract`` (see :func:`contract_of`)."""
    path = Path(path)
    payload = load_torch_file(path, "generator file", GeneratorFileError)
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        kind = payload.get("format") if isinstance(payload, dict) else type(payload).__name__
        hint = " (a training checkpoint: export it with `formula-gan export-generator CKPT --out FILE`)" if kind == "formula-gan-gan-checkpoint" else ""
        raise GeneratorFileError(f"{path} is not a formula-gan generator file (format {kind!r}){hint}")
    if payload.get("format_version") == 1:
        raise GeneratorFileError(f"{path}: a generator file of format version 1 carries no checksum of its weights; "
                                 "export it again from its training checkpoint (formula-gan export-generator)")
    if payload.get("format_version") not in READABLE_VERSIONS:
        raise GeneratorFileError(f"{path}: generator format version {payload.get('format_version')} is not supported "
                                 f"(this version reads {', '.join(map(str, READABLE_VERSIONS))})")
    weights = payload.get("state_dict")
    if not isinstance(weights, dict) or not all(isinstance(v, torch.Tensor) for v in weights.values()):
        raise GeneratorFileError(f"{path}: the file holds no state_dict of tensors")
    if state_dict_sha256(weights) != payload.get("weights_sha256"):
        raise GeneratorFileError(f"{path}: the weights do not match their checksum (the file is corrupt or was "
                                 "modified); export it again from its training checkpoint")
    try:
        generator = Generator(**payload["model"])
        state = {k: (v.float() if v.is_floating_point() else v) for k, v in payload["state_dict"].items()}
        generator.load_state_dict(state)
    except (KeyError, TypeError, ValueError, RuntimeError) as err:
        raise GeneratorFileError(f"{path}: the weights do not fit the generator it describes: {err}") from err
    meta = {k: payload.get(k) for k in ("config", "model", "step", "source_sha256", "dtype", "package_version")}
    meta["sha256"] = sha256_file(path)
    # version 2 files predate the stated contract: it follows from their training config
    meta["contract"] = checked_contract(path, payload.get("contract") or contract_of(generator, payload.get("config") or {}),
                                        generator.z_dim)
    return generator.to(device).eval(), meta


def checked_contract(path: Path, contract: Any, z_dim: int) -> dict[str, Any]:
    """The contract as stated, refused with one line when it cannot be what a generator of this z
    size takes (the torch file's and the ONNX file's contracts are checked alike)."""
    try:
        height, stride, stated_z = int(contract["height"]), int(contract["stride"]), int(contract["z_dim"])
        ok = (stride == STRIDE and height >= stride and height % stride == 0 and stated_z == z_dim
              and int(contract["in_channels"]) == 1 and isinstance(contract["frame"], bool)
              and contract.get("source", "rendered") in ("rendered", "synthetic"))
    except (KeyError, TypeError, ValueError):
        ok = False
    if not ok:
        raise GeneratorFileError(f"{path}: its contract {contract!r} does not describe the generator it holds "
                                 f"(stride {STRIDE}, z size {z_dim}, one input channel)")
    return {"source": "rendered", **contract}  # files of the first format 3 builds did not say: renderings

