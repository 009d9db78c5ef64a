"""ONNX model files: one graph each, with what its torch file says, checked before any work.

A formula-gan ``.onnx`` file is a plain ONNX model whose ``metadata_props`` hold

* ``formula_gan.format`` / ``formula_gan.format_version``: this layout (``FORMAT``, ``FORMAT_VERSION``);
* ``formula_gan.kind``: which graph it is (``generator``, ``recognizer-encoder``, ``recognizer-step``),
  so that a generator given to ``recognize`` is refused by name, not by a shape error mid-run;
* ``formula_gan.meta``: JSON of what the torch export states (a generator's contract, model
  config, step and file hash; a recognizer's vocabulary, run config, input height and step);
* ``formula_gan.weights_sha256``: a sha256 over every tensor the graph holds (initializers and
  constant nodes: name, type, dims, bytes). ONNX parsers do not notice a flipped bit inside a
  tensor, and the model would load and compute something else; reading checks it first.

The metadata lives outside the graph, so the checksum of the weights is not disturbed by it.
``onnx`` and ``onnxruntime`` are an optional extra (``pip install 'formula-gan[onnx]'``): they are
imported only here and in ``onnx_engine``, and their absence is one line saying how to get them.
"""

from __future__ import annotations

import hashlib
import importlib
import io
import json
import os
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

import torch

from formula_gan import __version__
from formula_gan.errors import FormulaGanError

FORMAT = "formula-gan-onnx"
FORMAT_VERSION = 1
KINDS = ("generator", "recognizer-encoder", "recognizer-step")
# Opset 17: what the TorchScript exporter writes well for these models (LayerNorm-free, Resize,
# scaled dot-product attention decomposed); onnxruntime has run it since 1.13.
OPSET = 17
INSTALL_HINT = "pip install 'formula-gan[onnx]' (or: pip install onnx onnxruntime)"
_KEY = "formula_gan."


class OnnxUnavailableError(FormulaGanError):
    """onnx or onnxruntime is not installed."""


class OnnxFileError(FormulaGanError):
    """An ONNX file that is missing, damaged, modified, of another kind, or not runnable here."""


def require(module: str) -> Any:
    """``import module`` (``onnx`` or ``onnxruntime``), or one line saying how to install it."""
    try:
        return importlib.import_module(module)
    except ImportError as err:
        raise OnnxUnavailableError(f"the onnx engine needs {module}, which is not installed: {INSTALL_HINT}") from err


def require_exporter() -> None:
    """Both onnx (to write graphs) and onnxruntime (to check them), before an export writes anything."""
    require("onnx")
    require("onnxruntime")


def export_graph(module: torch.nn.Module, args: tuple[torch.Tensor, ...], input_names: Sequence[str],
                 output_names: Sequence[str], dynamic_axes: Mapping[str, Mapping[int, str]]) -> bytes:
    """``module`` (eval mode, CPU) as ONNX bytes, by torch's TorchScript-based exporter.

    That exporter, not the dynamo one: on these models both give graphs equal to torch within
    3e-6, but it exports the generator in ~1 s instead of ~11 s (synthesis converts a torch file
    in memory at start), needs no onnxscript, and traces the recognizer's step, whose beam count
    is worked out from shapes, without shape guards."""
    buffer = io.BytesIO()
    with warnings.catch_warnings():
        # its deprecation notice and the tracer's notes on Python conditionals (shape checks
        # that hold for every input synthesis and reading feed) say nothing a user can act on
        warnings.simplefilter("ignore")
        torch.onnx.export(module.eval(), args, buffer, dynamo=False, opset_version=OPSET, input_names=list(input_names),
                          output_names=list(output_names), dynamic_axes={k: dict(v) for k, v in dynamic_axes.items()},
                          do_constant_folding=True)
    return buffer.getvalue()


def weights_sha256(model: Any) -> str:
    """sha256 over every tensor of ``model``'s graph and its subgraphs (initializers and constant
    nodes), by name, type, dims and bytes, in sorted name order."""
    onnx = require("onnx")
    from onnx import numpy_helper

    tensors: dict[str, Any] = {}

    def visit(graph: Any, prefix: str) -> None:
        for t in graph.initializer:
            tensors[f"{prefix}init:{t.name}"] = t
        for i, node in enumerate(graph.node):
            for attr in node.attribute:
                if attr.type == onnx.AttributeProto.TENSOR:
                    tensors[f"{prefix}node{i}:{node.output[0] if node.output else node.name}:{attr.name}"] = attr.t
                elif attr.type == onnx.AttributeProto.GRAPH:
                    visit(attr.g, f"{prefix}{i}.{attr.name}/")

    visit(model.graph, "")
    digest = hashlib.sha256()
    for name in sorted(tensors):
        t = tensors[name]
        digest.update(f"{name}|{t.data_type}|{tuple(t.dims)}|".encode())
        digest.update(numpy_helper.to_array(t).tobytes())
    return digest.hexdigest()


def stamp(graph: bytes, kind: str, meta: Mapping[str, Any]) -> bytes:
    """ONNX bytes with this package's metadata (kind, version, meta, checksum of the weights)."""
    if kind not in KINDS:
        raise ValueError(f"unknown ONNX file kind {kind!r}")
    onnx = require("onnx")
    model = onnx.load_from_string(graph)
    props = {
        "format": FORMAT, "format_version": str(FORMAT_VERSION), "kind": kind, "package_version": __version__,
        "meta": json.dumps(meta, sort_keys=True), "weights_sha256": weights_sha256(model),
    }  # fmt: skip
    del model.metadata_props[:]
    for key, value in props.items():
        entry = model.metadata_props.add()
        entry.key, entry.value = _KEY + key, value
    model.producer_name, model.producer_version = "formula-gan", __version__
    return model.SerializeToString()


def write_onnx(stamped: bytes, path: str | Path) -> Path:
    """Write stamped ONNX bytes atomically (temporary name, fsync, rename; the folder is created)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    try:
        with open(tmp, "wb") as f:
            f.write(stamped)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


@dataclass
class OnnxFile:
    """A checked formula-gan ONNX graph: its bytes (for a session), kind, meta and checksum."""

    path: Path | None  # None: made in memory from a torch file
    kind: str
    meta: dict[str, Any]
    graph: bytes
    opset: int
    weights_sha256: str

    @property
    def name(self) -> str:
        return str(self.path) if self.path is not None else f"in-memory {self.kind} graph"


def parse(data: bytes, name: str, kinds: Sequence[str]) -> OnnxFile:
    """Check stamped ONNX bytes: a formula-gan file of one of ``kinds``, of a readable version,
    whose weights match their checksum. ``name`` names it in the errors."""
    onnx = require("onnx")
    try:
        model = onnx.load_from_string(data)
    except Exception as err:  # protobuf's DecodeError and friends: a damaged or foreign file
        raise OnnxFileError(f"cannot read ONNX file {name}: truncated or corrupt ({type(err).__name__})") from err
    props = {p.key[len(_KEY):]: p.value for p in model.metadata_props if p.key.startswith(_KEY)}
    if props.get("format") != FORMAT or not model.graph.node:
        raise OnnxFileError(f"{name} is not a formula-gan ONNX file (export one with `formula-gan export-generator "
                            "... --onnx FILE` or `formula-gan export-recognizer ... --onnx FILE`)")
    if props.get("format_version") != str(FORMAT_VERSION):
        raise OnnxFileError(f"{name}: formula-gan ONNX format version {props.get('format_version')} is not supported "
                            f"(this version reads {FORMAT_VERSION}); export it again with this version")
    kind = props.get("kind", "")
    if kind not in kinds:
        wanted = " or ".join(_described(k) for k in kinds)
        raise OnnxFileError(f"{name} holds {_described(kind)}, not {wanted}")
    if weights_sha256(model) != props.get("weights_sha256"):
        raise OnnxFileError(f"{name}: the weights do not match their checksum (the file is corrupt or was modified); "
                            "export it again")
    try:
        meta = json.loads(props.get("meta", ""))
    except json.JSONDecodeError as err:
        raise OnnxFileError(f"{name}: its metadata is not readable JSON ({err.msg})") from err
    opset = max((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), default=0)
    return OnnxFile(None, kind, meta, data, int(opset), props["weights_sha256"])


def read_onnx(path: str | Path, kinds: Sequence[str]) -> OnnxFile:
    """A formula-gan ONNX file from disk, checked as :func:`parse` does."""
    path = Path(path)
    if not path.is_file():
        raise OnnxFileError(f"ONNX file not found: {path}")
    try:
        data = path.read_bytes()
    except OSError as err:
        raise OnnxFileError(f"cannot read ONNX file {path}: {err.strerror}") from err
    checked = parse(data, str(path), kinds)
    checked.path = path
    return checked


def is_onnx_file(path: str | Path) -> bool:
    """Whether ``path`` looks like an ONNX file rather than a torch file (a zip archive): what the
    engines use to tell a user which ``--engine`` a file is for."""
    path = Path(path)
    if path.suffix.lower() == ".onnx":
        return True
    try:
        with open(path, "rb") as f:
            head = f.read(4)
    except OSError:
        return False
    return bool(head) and not head.startswith(b"PK") and head[:1] == b"\x08"  # protobuf field 1 (ir_version), varint


def _described(kind: str) -> str:
    return {"generator": "a generator", "recognizer-encoder": "a recognizer (its encoder graph)",
            "recognizer-step": "a recognizer's decoder step graph (give its encoder file instead)"}.get(
        kind, f"an unknown kind {kind!r}" if kind else "no kind")
