"""The generator as an ONNX graph: export (from an exported torch generator file or a loaded
model) and a callable that runs it with ONNX Runtime in place of the torch module.

The graph is the baked plain ``Generator`` (spectral norms folded into the weights, as
``generator_io`` exports it), eval mode: ``ink [b, 1, h, w]`` (ink = 1), ``domain [b]`` (int64)
and ``z [b, z_dim]`` in, ``out [b, 1, h, w]`` in [0, 1] out, with batch, height and width
dynamic (multiples of the stride, as synthesis feeds them). Its metadata carries the torch
file's contract, model config, step and sha256, so that samples record the same generator
identity whichever engine made them (an engine is a speed setting: the outputs agree within
``TOLERANCE``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from formula_gan.models.generator import STRIDE
from formula_gan.models.generator_io import checked_contract, load_generator
from formula_gan.models.onnx_engine import run, session
from formula_gan.models.onnx_files import OnnxFile, OnnxFileError, export_graph, parse, read_onnx, stamp, write_onnx

INPUTS, OUTPUTS = ("ink", "domain", "z"), ("out",)
# Largest difference from the torch generator, in ink (0..1), that the parity test allows on a
# fixed batch; measured 3e-6 (the packaged generator and a tiny random one, fp32 on the CPU). In
# 8-bit pixels it is a rounding flip at most: a few pixels one gray level apart.
TOLERANCE = 1e-4


def generator_graph(generator: torch.nn.Module, height: int) -> bytes:
    """``generator`` (a plain, baked ``Generator``) as ONNX bytes, unstamped."""
    generator = generator.cpu().float().eval()
    b, width = 2, 4 * STRIDE
    args = (torch.zeros(b, 1, height, width), torch.ones(b, dtype=torch.long), torch.zeros(b, int(generator.z_dim)))
    axes = {"ink": {0: "batch", 2: "height", 3: "width"}, "domain": {0: "batch"}, "z": {0: "batch"},
            "out": {0: "batch", 2: "height", 3: "width"}}
    with torch.no_grad():
        return export_graph(generator, args, INPUTS, OUTPUTS, axes)


def stamped_generator(generator: torch.nn.Module, meta: dict[str, Any]) -> bytes:
    """The stamped ONNX bytes of a loaded generator; ``meta``: contract, model, config, step,
    generator_sha256 (the torch file's sha256: the identity samples record)."""
    return stamp(generator_graph(generator, int(meta["contract"]["height"])), "generator", meta)


def export_generator_onnx(generator_file: str | Path, out: str | Path) -> dict[str, Any]:
    """An exported torch generator file (``export-generator --out``, or the packaged one) as an ONNX
    file at ``out``; returns its metadata. Nothing is written when the source cannot be read."""
    generator, meta = load_generator(generator_file, "cpu")
    info = {
        "contract": meta["contract"], "model": meta["model"], "config": meta["config"] or {},
        "step": int(meta["step"] or 0), "generator_sha256": meta["sha256"], "source_sha256": meta["source_sha256"],
        "dtype": meta["dtype"],
    }  # fmt: skip
    write_onnx(stamped_generator(generator, info), out)
    return info


class OnnxGenerator:
    """A generator graph in an ONNX Runtime session, called like the torch ``Generator``:
    ``(x [b, 1, h, w], domain [b], z [b, z_dim]) -> [b, 1, h, w]`` (CPU tensors)."""

    def __init__(self, graph: OnnxFile, threads: int) -> None:
        self.graph = graph
        self.config: dict[str, Any] = dict(graph.meta.get("model") or {})
        self.z_dim = int(graph.meta["contract"]["z_dim"])
        self.session = session(graph, threads)

    def __call__(self, x: torch.Tensor, domain: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        return run(self.session, {"ink": x.float(), "domain": domain.long(), "z": z.float()})[0]

    def eval(self) -> "OnnxGenerator":
        return self


def read_generator_onnx(path: str | Path) -> OnnxFile:
    """A generator ONNX file, checked (kind, version, checksum) and its contract too."""
    graph = read_onnx(path, ("generator",))
    _check_meta(graph)
    return graph


def in_memory(generator: torch.nn.Module, meta: dict[str, Any]) -> OnnxFile:
    """A loaded generator converted to a checked in-memory graph (nothing written)."""
    graph = parse(stamped_generator(generator, meta), "in-memory generator graph", ("generator",))
    _check_meta(graph)
    return graph


def _check_meta(graph: OnnxFile) -> None:
    meta = graph.meta
    try:
        z_dim = int(meta["model"]["z_dim"])
        meta["contract"] = checked_contract(Path(graph.name), meta["contract"], z_dim)
        int(meta["step"]), str(meta["generator_sha256"])
    except (KeyError, TypeError, ValueError) as err:
        raise OnnxFileError(f"{graph.name}: its metadata does not describe a generator ({type(err).__name__}: {err})") from err
