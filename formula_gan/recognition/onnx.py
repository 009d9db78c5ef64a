"""The recognizer's ONNX files: export (from a training checkpoint or an exported ``.pt``, the
packaged one included) and loading for ``Recognizer(engine="onnx")``.

``export-recognizer CKPT --onnx FILE`` writes two graphs (``models/onnx_recognizer.py``): the
encoder as ``FILE`` and the decoder step as ``FILE``'s ``.step.onnx`` sibling (``step_path``).
Both carry what the torch export carries (vocabulary, run config, input height, stride, step,
the torch weights' sha256) and their own checksum; the encoder file also names its step file
and that file's checksum, so a step graph of another export is refused, not mixed in. A reader
is given the encoder file.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from formula_gan.config import from_dict
from formula_gan.data.vocab import Vocab
from formula_gan.errors import FormulaGanError
from formula_gan.models.onnx_files import OnnxFile, OnnxFileError, is_onnx_file, parse, read_onnx, stamp, write_onnx
from formula_gan.models.onnx_recognizer import OnnxRecognizerModel, recognizer_graphs, state_names
from formula_gan.recognition.config import RecognizerRunConfig
from formula_gan.recognition.files import CHECKPOINT_KIND, LoadedRecognizer, load_recognizer


def step_path(encoder_path: str | Path) -> Path:
    """Where the decoder step graph of an encoder file lives: ``rec.onnx`` -> ``rec.step.onnx``."""
    p = Path(encoder_path)
    stem = p.name[: -len(".onnx")] if p.name.lower().endswith(".onnx") else p.name
    return p.with_name(stem + ".step.onnx")


def _graphs(loaded: LoadedRecognizer, step_name: str) -> tuple[bytes, bytes, dict[str, Any]]:
    """Stamped (encoder, step) bytes of a loaded recognizer, and the encoder's metadata."""
    encoder_bytes, step_bytes = recognizer_graphs(loaded.model)
    cfg = loaded.model.cfg
    common = {
        "source_kind": CHECKPOINT_KIND, "weights_sha256": loaded.checkpoint.get("weights_sha256") or _torch_sha(loaded),
        "vocab": list(loaded.vocab.tokens), "config": loaded.checkpoint["config"], "height": loaded.height,
        "stride": int(loaded.model.encoder.stride), "max_len": int(cfg.max_len), "step": loaded.step,
        "state": state_names(loaded.model),
    }  # fmt: skip
    step = stamp(step_bytes, "recognizer-step", common)
    step_sha = parse(step, step_name, ("recognizer-step",)).weights_sha256
    meta = {**common, "step_file": step_name, "step_weights_sha256": step_sha}
    return stamp(encoder_bytes, "recognizer-encoder", meta), step, meta


def _torch_sha(loaded: LoadedRecognizer) -> str:
    from formula_gan.models.checksum import state_dict_sha256

    return state_dict_sha256(loaded.model.state_dict())


def export_recognizer_onnx(checkpoint: str | Path, out: str | Path) -> dict[str, Any]:
    """A recognizer checkpoint or exported file -> ``out`` (encoder) and ``step_path(out)`` (decoder
    step). Returns the encoder's metadata less the vocabulary and config; nothing is written when
    the source cannot be read."""
    loaded = load_recognizer(checkpoint, "cpu")  # refuses damaged files and non-finite weights
    out = Path(out)
    encoder, step, meta = _graphs(loaded, step_path(out).name)
    write_onnx(step, step_path(out))  # the step first: an encoder file never names a missing step
    write_onnx(encoder, out)
    return {k: v for k, v in meta.items() if k not in ("vocab", "config")} | {"files": [str(out), str(step_path(out))]}


@dataclass
class OnnxLoadedRecognizer:
    """What a reader needs, from ONNX graphs: the model (``decode``), vocabulary, config, height."""

    model: OnnxRecognizerModel
    vocab: Vocab
    config: RecognizerRunConfig
    step: int

    @property
    def height(self) -> int | None:
        return self.config.data.height


def load_onnx_recognizer(path: str | Path, threads: int | None = None) -> OnnxLoadedRecognizer:
    """An ONNX recognizer (its encoder file; the step file beside it), or a torch recognizer file
    converted in memory (nothing written), in ONNX Runtime sessions of ``threads`` threads
    (None: torch's thread count, what the torch engine would use)."""
    path = Path(path)
    threads = threads or torch.get_num_threads()
    if not path.is_file():
        raise FormulaGanError(f"recognizer not found: {path}")
    if is_onnx_file(path):
        encoder = read_onnx(path, ("recognizer-encoder",))
        step = _read_step(encoder)
    else:
        loaded = load_recognizer(path, "cpu")
        encoder_bytes, step_bytes, _ = _graphs(loaded, "in-memory step graph")
        encoder = parse(encoder_bytes, f"{path} (converted in memory)", ("recognizer-encoder",))
        step = parse(step_bytes, f"{path} (converted in memory, step)", ("recognizer-step",))
    meta = encoder.meta
    try:
        vocab = Vocab(meta["vocab"])
        cfg = from_dict(RecognizerRunConfig, meta["config"])
        int(meta["stride"]), int(meta["max_len"]), list(meta["state"])
    except (KeyError, TypeError, ValueError) as err:
        raise OnnxFileError(f"{encoder.name}: its metadata does not describe a recognizer ({type(err).__name__}: {err})") from err
    return OnnxLoadedRecognizer(OnnxRecognizerModel(encoder, step, threads), vocab, cfg, int(meta.get("step", 0)))


def _read_step(encoder: OnnxFile) -> OnnxFile:
    """The step file an encoder file names, checked to be the one exported with it."""
    assert encoder.path is not None
    name = str(encoder.meta.get("step_file", ""))
    if not name or Path(name).name != name:  # a bare file name beside the encoder, never a path elsewhere
        raise OnnxFileError(f"{encoder.path}: its metadata names no step file beside it")
    path = encoder.path.with_name(name)
    if not path.is_file():
        raise OnnxFileError(f"{encoder.path}: its decoder step graph {path} is missing (export-recognizer --onnx "
                            "writes both files; keep them together)")
    step = read_onnx(path, ("recognizer-step",))
    if step.weights_sha256 != encoder.meta.get("step_weights_sha256"):
        raise OnnxFileError(f"{path} is not the step graph exported with {encoder.path} (their checksums do not "
                            "match): export the recognizer again")
    return step
