"""Recognizer files: the training checkpoint and the exported file, loaded into one typed object.

Everything that reads a recognizer (evaluation, the scorecard, ``recognize``, the
training loop's resume) goes through ``load_recognizer``: the file read with
``weights_only=True`` (models/torch_files.py), its kind and the checksum of its
weights checked, the config rebuilt and checked key by key, and the input height
worked out once (``LoadedRecognizer.height``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from formula_gan.config import from_dict
from formula_gan.data.vocab import Vocab
from formula_gan.errors import FormulaGanError
from formula_gan.models.checksum import state_dict_sha256
from formula_gan.models.recognizer import RecognizerModel
from formula_gan.models.torch_files import load_torch_file, save_torch_file
from formula_gan.recognition.config import RecognizerRunConfig

CHECKPOINT_KIND = "formula-gan-recognizer/1"
WEIGHTS = Path(__file__).resolve().parents[1] / "weights"
# The scorecard's judge: a recognizer trained on real CROHME handwriting alone. A recognizer
# trained with stitched data reads stitched images more easily and maps them closer to real in
# its features, so it cannot referee stitching against a GAN; the best recognizer (weights/
# recognizer.pt) may be such a one, the judge never is.
JUDGE = WEIGHTS / "judge.pt"


def default_judge() -> Path | None:
    """The packaged judge (weights/judge.pt), or None when this installation has none."""
    return JUDGE if JUDGE.is_file() else None


@dataclass
class LoadedRecognizer:
    """A recognizer ready to read: model (eval mode), vocabulary, its run config, and where its
    images come from (``height``: the height it reads at; None: native sizes)."""

    model: RecognizerModel
    vocab: Vocab
    config: RecognizerRunConfig
    step: int
    path: Path
    checkpoint: dict[str, Any]

    @property
    def height(self) -> int | None:
        return self.config.data.height


def load_recognizer(path: str | Path, device: torch.device | str = "cpu") -> LoadedRecognizer:
    """A recognizer checkpoint or exported file; one clear error for anything else."""
    path = Path(path)
    ckpt = load_torch_file(path, "recognizer checkpoint", FormulaGanError)
    if not isinstance(ckpt, dict) or ckpt.get("kind") != CHECKPOINT_KIND:
        raise FormulaGanError(f"{path}: not a formula-gan recognizer checkpoint")
    expected = ckpt.get("weights_sha256")  # exported files carry one (formula-gan export-recognizer)
    if expected is not None and state_dict_sha256(ckpt["model"]) != expected:
        raise FormulaGanError(f"{path}: the weights do not match their checksum (a damaged or modified file)")
    try:
        cfg = from_dict(RecognizerRunConfig, ckpt["config"])
        vocab = Vocab(ckpt["vocab"])
        model = RecognizerModel(len(vocab), cfg.model)
        model.load_state_dict(ckpt["model"])
    except (KeyError, TypeError, ValueError, RuntimeError) as err:  # config or weights that do not fit the model
        first = str(err).strip().splitlines()[0] if str(err).strip() else ""
        raise FormulaGanError(f"{path}: not a usable recognizer checkpoint ({type(err).__name__}: {first})") from err
    broken = non_finite(model.state_dict())
    if broken:
        raise FormulaGanError(f"{path}: {len(broken)} weight tensors hold NaN or infinite values ({', '.join(broken[:3])}"
                              f"{' ...' if len(broken) > 3 else ''}): a diverged training run; it cannot read anything")
    return LoadedRecognizer(model.to(device).eval(), vocab, cfg, int(ckpt.get("step", 0)), path, ckpt)


def non_finite(state: dict[str, torch.Tensor]) -> list[str]:
    """The names of the floating-point tensors holding NaN or infinite values."""
    return [k for k, v in state.items() if v.is_floating_point() and not torch.isfinite(v).all()]


def export_recognizer(checkpoint: str | Path, out: str | Path) -> dict[str, Any]:
    """A training checkpoint -> a small file for inference: weights, config, vocabulary, step and a
    checksum of the weights (no optimizer state). Returns what was written, less the weights."""
    loaded = load_recognizer(checkpoint, "cpu")  # refuses non-finite weights: nothing is written
    ckpt = loaded.checkpoint
    state = {k: v.detach().clone() for k, v in loaded.model.state_dict().items()}
    best_wer = float(ckpt.get("best_wer", math.inf))
    payload = {
        "kind": CHECKPOINT_KIND,
        "version": ckpt.get("version"),
        "model": state,
        "weights_sha256": state_dict_sha256(state),
        "config": ckpt["config"],
        "vocab": list(loaded.vocab.tokens),
        "step": loaded.step,
        "best_exprate": float(ckpt.get("best_exprate", -1.0)),
        "best_wer": best_wer if math.isfinite(best_wer) else None,
    }
    save_torch_file(payload, out)
    return {k: v for k, v in payload.items() if k != "model"}
