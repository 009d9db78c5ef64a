"""The work of a synthesis job: one item per (formula, variant), each with its own key and seeds.

The item stream is a pure function of the inputs and the config, so that item
``i`` lands in the same shard on every run, on every rank: that is what makes
resume and split jobs write exactly the dataset of one uninterrupted run.
A line the reader rejects (blank, bad UTF-8) is an item too: it ends up as one
line of ``rejects.jsonl`` in the shard where it falls, so every item is
accounted for exactly once (``samples + rejects = items``).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Sequence

import numpy as np

from katex_render.styles import Style

_SEED_MASK = (1 << 63) - 1  # seeds fit torch.manual_seed and random.Random alike


@dataclass(frozen=True)
class Item:
    """A formula and variant to synthesize, or a line the reader rejected (``variant`` -1)."""

    source: str  # "<file name>:<line>"
    latex: str  # as given
    variant: int
    read_error: str | None = None


def iter_items(inputs: Sequence[str | Path], variants: int) -> Iterator[Item]:
    """Every formula of every input, ``variants`` times in a row, in input order (streamed)."""
    from katex_render.readers import Reject, read_formulas

    for path in inputs:
        for entry in read_formulas(path):
            if isinstance(entry, Reject):
                yield Item(entry.source, entry.input, -1, entry.reason)
                continue
            for variant in range(variants):
                yield Item(entry.source, entry.latex, variant)


def sample_key(source: str, latex: str, variant: int) -> str:
    """Stable, unique within a job, and safe as a tar member name: letters, digits and '-'."""
    digest = hashlib.sha1(f"{source}\n{latex}".encode("utf-8")).hexdigest()[:12]
    return f"{digest}-v{variant}"


def derive_seed(job_seed: int, key: str, purpose: str) -> int:
    """A per-sample seed from the job seed and the sample key; ``purpose`` separates streams
    (``style`` for the rendering, ``z`` for the generator's noise)."""
    digest = hashlib.sha256(f"{job_seed}:{purpose}:{key}".encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") & _SEED_MASK


@dataclass(slots=True)
class Record:
    """One item on its way through the stages; each stage fills in its part."""

    shard: int
    pos: int  # position in its shard (samples are written in item order)
    item: Item
    key: str | None = None
    seed: int = 0  # the render style's seed
    z_seed: int = 0  # the generator noise's seed
    tokens: list[str] | None = None
    style: Style | None = None
    reject: str | None = None  # why this item gives no sample (then nothing below is set)
    stage: str | None = None  # where it was rejected: read, normalize, filter, render, oversize
    image: np.ndarray | None = None  # uint8 [height, w] generator input at the working height
    output: np.ndarray | None = None  # uint8 [height, w] generated handwriting
    rendered_size: tuple[int, int] | None = None  # (h, w) of the rendering before scaling
    downscaled: float | None = None  # scale applied by the oversize policy "downscale"

    def reject_record(self) -> dict[str, Any]:
        """A line of rejects.jsonl: {"source", "line", "input", "reason"} plus key and variant."""
        _, _, line = self.item.source.rpartition(":")
        out: dict[str, Any] = {
            "source": self.item.source,
            "line": int(line) if line.isdigit() else None,
            "input": self.item.latex,
            "reason": self.reject,
            "stage": self.stage,
        }
        if self.key is not None:
            out["key"] = self.key
            out["variant"] = self.item.variant
        return out
