"""The work of a synthesis job: one item per (formula, variant), each with its own key and seeds.

The item stream is a pure function of the inputs and the config, so that item
``i`` lands in the same shard on every run, on every rank: that is what makes
resume and split jobs write exactly the dataset of one uninterrupted run.
A line the reader rejects (blank, bad UTF-8) is an item too: it ends up as one
line of ``rejects.jsonl`` in the shard where it falls, so every item is
accounted for exactly once (``samples + rejects = items``).

Unlike the `render` job, where a formula the normalizer rejects is one item,
here it is ``variants`` items (one reject each): the stream then depends on
reading alone, so a rank normalizes only its own pending shards instead of the
whole corpus, and a resumed run does not normalize what is already written.
Keys, seeds, styles and the rendering's metadata are the `render` job's own
(``formula_gan.data.render_job``): a synthetic sample's input is the very image
that `render` gives for the same formula, seed and variant.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Sequence

import numpy as np

from formula_gan.data.render_job import RenderItem, reject_record
from katex_render.boxes import SymbolBox
from katex_render.readers import Reject, read_formulas


@dataclass(frozen=True)
class Item:
    """A formula and variant to synthesize, or a line the reader rejected (``variant`` -1)."""

    source: str  # "<file name>:<line>"
    latex: str  # as given
    variant: int
    read_error: str | None = None


def iter_items(inputs: Sequence[str | Path], variants: int) -> Iterator[Item]:
    """Every formula of every input, ``variants`` times in a row, in input order (streamed)."""
    for path in inputs:
        for entry in read_formulas(path):
            if isinstance(entry, Reject):
                yield Item(entry.source, entry.input, -1, entry.reason)
                continue
            for variant in range(variants):
                yield Item(entry.source, entry.latex, variant)


def z_seed_for(seed: int) -> int:
    """The generator noise's seed, derived from the sample's seed (which also picks its render
    style, as in the `render` job): one number in the metadata regenerates the whole sample."""
    digest = hashlib.sha256(f"z\x00{seed}".encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") >> 1


@dataclass(slots=True)
class Record:
    """One item on its way through the stages; each stage fills in its part."""

    shard: int
    pos: int  # position in its shard (samples are written in item order)
    item: Item
    key: str | None = None
    seed: int = 0  # the sample's seed (its render style, as in the `render` job)
    z_seed: int = 0  # the generator noise's seed (derived from ``seed``)
    rendering: RenderItem | None = None  # once normalized: tokens, style, the rendering's metadata
    reject: str | None = None  # why this item gives no sample (then nothing below is set)
    stage: str | None = None  # where it was rejected: read, normalize, filter, render, stitch, ...
    boxes: tuple[SymbolBox, ...] | None = None  # the layout's per-symbol boxes (box layouts)
    image: np.ndarray | None = None  # uint8 [h, w] the method's input image (a rendering, a stitched formula)
    output: np.ndarray | None = None  # uint8 [h, w] the handwriting written
    png: bytes | None = None  # the output, encoded
    size: tuple[int, int] | None = None  # (h, w) of the output
    meta: dict[str, Any] = field(default_factory=dict)  # what the method adds to the sample's JSON
    members: tuple[tuple[str, bytes], ...] = ()  # further files of the sample: (extension, bytes)
    preview: list[np.ndarray] = field(default_factory=list)  # the preview's row (records kept for it)

    def reject_record(self) -> dict[str, Any]:
        """A line of rejects.jsonl, as the `render` job writes it, plus the stage and the key."""
        variant = self.item.variant if self.item.variant >= 0 else None
        out = reject_record(self.item.source, self.item.latex, self.reject or "", variant)
        out["stage"] = self.stage
        if self.key is not None:
            out["key"] = self.key
        return out


@dataclass
class Piece:
    """A run of consecutive records of one shard, as it travels between stages."""

    shard: int
    size: int  # records in the whole shard
    records: list[Record]
    last: bool  # nothing of this shard follows
