"""``Recognizer``: handwritten formula pictures and InkML files in, LaTeX out.

>>> from formula_gan import Recognizer
>>> rec = Recognizer()                        # the shipped weights (weights/recognizer.md)
>>> rec.read_file("photo.jpg").latex
'\\frac {a} {b}'

Pictures are normalized as ``preprocess`` describes; several files are read in
width-sorted batches (less padding, one beam search per batch), a few batches of
files at a time so that readings come out as they are made. Each file is prepared
on its own: one that cannot be read gives a ``Reading`` with its ``error`` and the
others go on.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Iterable, Iterator, Sequence

import numpy as np
import torch

from formula_gan.data.loader import collate
from formula_gan.devices import resolve_device
from formula_gan.errors import FormulaGanError
from formula_gan.models.onnx_files import is_onnx_file
from formula_gan.recognition.files import load_recognizer
from formula_gan.recognition.preprocess import prepare_file
from katex_render.normalize import tokens_to_latex

DEFAULT_RECOGNIZER = Path(__file__).resolve().parents[1] / "weights" / "recognizer.pt"
ENGINES = ("torch", "onnx")  # what runs the model: readings are identical (tests/test_onnx.py), speed is not
WINDOW_BATCHES = 4  # files prepared, then read, this many batches at a time: width sorting within, output streamed


@dataclass
class Reading:
    source: str  # the file (or the caller's name for an array)
    latex: str | None  # None when the input could not be read
    tokens: list[str]
    score: float | None  # length-normalized log-probability of the reading
    error: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def default_recognizer() -> Path | None:
    """The packaged recognizer, or None when this installation has none."""
    return DEFAULT_RECOGNIZER if DEFAULT_RECOGNIZER.is_file() else None


class Recognizer:
    """A recognizer checkpoint (default: the packaged one) ready to read formulas."""

    def __init__(
        self, checkpoint: str | Path | None = None, *, device: str = "cpu", beam: int = 10, batch_size: int = 8,
        engine: str = "torch", threads: int | None = None,
    ) -> None:
        """``engine``: ``torch``, or ``onnx`` (ONNX Runtime on the CPU, the optional extra
        ``formula-gan[onnx]``; ``checkpoint`` is then an ONNX file of ``export-recognizer --onnx``
        or a torch file converted in memory). ``threads``: ONNX Runtime's threads (None: torch's)."""
        if engine not in ENGINES:
            raise FormulaGanError(f"engine must be one of {', '.join(ENGINES)}, got {engine!r}")
        if beam < 1:
            raise FormulaGanError(f"beam must be at least 1, got {beam}")
        if batch_size < 1:
            raise FormulaGanError(f"batch size must be at least 1, got {batch_size}")
        if checkpoint is None:
            checkpoint = default_recognizer()
            if checkpoint is None:
                raise FormulaGanError(
                    f"no recognizer: {DEFAULT_RECOGNIZER} is missing from this installation; give a checkpoint "
                    "(a best.pt of `formula-gan train-recognizer`)"
                )
        self.checkpoint = Path(checkpoint)
        self.device = resolve_device(device)
        self.engine = engine
        loaded: Any
        if engine == "onnx":
            from formula_gan.recognition.onnx import load_onnx_recognizer

            if self.device.type != "cpu":
                raise FormulaGanError(f"the onnx engine reads on the CPU (ONNX Runtime's CPU provider), not on "
                                      f"{self.device}: use --engine torch there")
            loaded = load_onnx_recognizer(self.checkpoint, threads)
        else:
            if self.checkpoint.is_file() and is_onnx_file(self.checkpoint):
                raise FormulaGanError(f"{self.checkpoint} is an ONNX file: read it with --engine onnx "
                                      "(Recognizer(..., engine='onnx'))")
            loaded = load_recognizer(self.checkpoint, self.device)
        self.model, self.vocab = loaded.model, loaded.vocab
        self.height: int | None = loaded.height
        if self.height is None:
            raise FormulaGanError(
                f"{self.checkpoint}: this recognizer reads images at their native size (symbol normalization); "
                "pictures need a fixed-height model such as configs/recognizer/cpu.yaml"
            )
        self.beam = beam
        self.batch_size = batch_size
        # The encoder halves its input log2(stride) times: anything narrower or lower than one stride
        # (a lone "1", a single stroke) leaves no feature cell, and torch's pooling fails on it.
        self.min_side = int(self.model.encoder.stride)

    def read_file(self, path: str | Path) -> Reading:
        """One picture or InkML file; a problem with it is a FormulaGanError."""
        reading = next(self.read_files([path]))
        if reading.error is not None:
            raise FormulaGanError(reading.error)
        return reading

    def read_files(self, paths: Iterable[str | Path]) -> Iterator[Reading]:
        """Readings in input order; an unreadable file yields a Reading with ``error`` set."""
        paths = [Path(p) for p in paths]
        window = self.batch_size * WINDOW_BATCHES
        for start in range(0, len(paths), window):
            yield from self._read_window(paths[start : start + window])

    def _read_window(self, paths: list[Path]) -> Iterator[Reading]:
        prepared = [self._prepare(path) for path in paths]
        papers = {i: p for i, p in enumerate(prepared) if isinstance(p, np.ndarray)}
        readings = dict(zip(papers, self.read_arrays(list(papers.values()), [str(paths[i]) for i in papers])))
        for i, path in enumerate(paths):
            yield readings[i] if i in readings else Reading(str(path), None, [], None, str(prepared[i]))

    def _prepare(self, path: Path) -> np.ndarray | str:
        """One file's paper, or the one line that says why it cannot be read."""
        try:
            return prepare_file(path, self.height)
        except FormulaGanError as err:
            return str(err)

    @torch.no_grad()
    def read_arrays(self, papers: Sequence[np.ndarray], names: Sequence[str] | None = None) -> list[Reading]:
        """Prepared uint8 papers [height, w] (dark ink on white) -> readings, in order."""
        names = list(names) if names is not None else [f"array {i}" for i in range(len(papers))]
        papers = [_at_least(p, self.min_side) for p in papers]
        order = sorted(range(len(papers)), key=lambda i: papers[i].shape[1])  # width-sorted: little padding
        out: dict[int, Reading] = {}
        for start in range(0, len(order), self.batch_size):
            idx = order[start : start + self.batch_size]
            batch = collate([(names[i], papers[i], [], 0) for i in idx]).to(self.device)
            hyps = self.model.decode(batch.images, batch.masks, beam=self.beam)
            for i, hyp in zip(idx, hyps):
                tokens = self.vocab.decode(hyp.tokens)
                out[i] = Reading(names[i], tokens_to_latex(tokens), tokens, round(hyp.score, 5))
        return [out[i] for i in range(len(papers))]


def _at_least(paper: np.ndarray, side: int) -> np.ndarray:
    """``paper`` widened and heightened with white margin, centered, to at least ``side`` px each way."""
    h, w = paper.shape
    if h >= side and w >= side:
        return paper
    top, left = max(0, side - h) // 2, max(0, side - w) // 2
    out = np.full((max(h, side), max(w, side)), 255, dtype=np.uint8)
    out[top : top + h, left : left + w] = paper
    return out
