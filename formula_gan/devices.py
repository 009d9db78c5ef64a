"""Device names -> torch devices: the one place that decides "auto" and checks what was asked for."""

from __future__ import annotations

import os

import torch

from formula_gan.errors import FormulaGanError


class DeviceError(FormulaGanError):
    """A device that this machine does not have, or a name torch does not know."""


def resolve_device(name: str | None = "auto", local_rank: int | None = None) -> torch.device:
    """``None``/"auto" -> this process's GPU when CUDA is present, else the CPU.

    A CUDA device without an index is this rank's local GPU under torchrun
    (``local_rank``, default the LOCAL_RANK variable), so one command serves one
    process per GPU. A device the machine lacks is a DeviceError, not a late
    CUDA failure."""
    if name is None or name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    try:
        device = torch.device(name)
    except RuntimeError as err:
        raise DeviceError(f"unknown device {name!r} (use cpu, cuda or cuda:N)") from err
    if device.type == "cpu":
        return device
    if device.type != "cuda":
        raise DeviceError(f"device {name!r} is not supported (use cpu, cuda or cuda:N)")
    if not torch.cuda.is_available():
        raise DeviceError(f"--device {name}: this machine has no CUDA device (torch {torch.__version__}); use --device cpu")
    index = device.index
    if index is None:
        index = local_rank if local_rank is not None else int(os.environ.get("LOCAL_RANK", "0"))
    count = torch.cuda.device_count()
    if index >= count:
        raise DeviceError(f"--device {name}: GPU {index} requested, this machine has {count}")
    return torch.device("cuda", index)
