"""``stitch``: real handwritten glyphs of a symbol bank placed where KaTeX lays each symbol out.

    layout: symbol boxes (no capture) ─► stitch, rasterize, encode (a pool of processes)

A sample's JSON gets the stitcher's identity as its ``generator``, the
``boxes`` of its glyphs in the image ([token index, x0, y0, x1, y1]), the
``writers`` of the glyphs and ``box_writers`` (per box, an index into
``writers``); with ``ink``, ``<key>.inkml`` holds its strokes. A formula with a
token that the symbol bank has no glyph for is a reject naming the token. The
layout is KaTeX's at ``stitch.layout_px`` in the style's font command (the
style's size and padding are the rasterizer's business here, as for CROHME).

No torch on this path: ``python3 -X importtime`` shows it.
"""

from __future__ import annotations

import collections
import concurrent.futures
import dataclasses
import os
import weakref
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Iterator, Mapping

from formula_gan.config import to_dict
from formula_gan.errors import FormulaGanError
from formula_gan.stitching.stitcher import StitchConfig, Stitcher
from formula_gan.stitching.worker import Done, StitchPool, Task
from formula_gan.synthesis.items import Piece, Record
from formula_gan.synthesis.layouts import SymbolBoxes
from formula_gan.synthesis.methods.base import Resources
from formula_gan.synthesis.preview import kept_for_preview
from formula_gan.synthesis.stages import Stage


@dataclass(frozen=True)
class StitchSettings(StitchConfig):
    """The stitcher's settings (StitchConfig: rasterization, layout size, jitter) and where its
    glyphs come from."""

    # A symbol bank (formula-gan prepare-symbols --out DIR). None: the bank the package ships.
    symbols: str | None = None
    # A second bank for the symbols the first has no writer for (before the Hershey font).
    fallback_symbols: str | None = None
    # Also write each sample's strokes, <key>.inkml in the shard.
    ink: bool = False

    def stitcher_config(self) -> StitchConfig:
        return StitchConfig(**{f.name: getattr(self, f.name) for f in dataclasses.fields(StitchConfig)})


# The bank the package ships (formula_gan/weights/symbols/, with its NOTICE and card).
DEFAULT_BANK = Path(__file__).resolve().parents[2] / "weights" / "symbols"


def symbol_bank_setting(symbols: str | None) -> str:
    """The bank a setting names, or the one the package ships."""
    if symbols is not None:
        return symbols
    if not (DEFAULT_BANK / "symbols.npz").is_file():
        raise FormulaGanError("no symbol bank: this installation ships none; give one with --symbols DIR "
                              "(formula-gan prepare-symbols CROHME_DIR --out DIR)")
    return str(DEFAULT_BANK)


class StitchMethod:
    name: ClassVar[str] = "stitch"
    sections: ClassVar[Mapping[str, type]] = {"stitch": StitchSettings}
    uses: ClassVar[frozenset[str]] = frozenset({"workers"})

    def __init__(self, settings: StitchSettings, stitcher: Stitcher, pool: StitchPool, *, pixels: bool = False) -> None:
        """``pixels``: hand the stitched images on as ``record.image`` (unencoded) for a stage
        that takes them further (a refiner), instead of finishing the samples."""
        self.settings = settings
        self.stitcher = stitcher
        self.pool = pool
        self.pixels = pixels
        self._finalizer = weakref.finalize(self, pool.close)

    @classmethod
    def create(cls, sections: Mapping[str, Any], resources: Resources, log: Any, *, pixels: bool = False) -> "StitchMethod":
        settings: StitchSettings = sections["stitch"]
        stitcher = Stitcher(symbol_bank_setting(settings.symbols), settings.stitcher_config(), settings.fallback_symbols)
        # Stitching holds the GIL: one process per core (the browsers get the gaps).
        workers = (os.cpu_count() or 1) if resources.workers is None else resources.workers
        return cls(settings, stitcher, StitchPool(stitcher, workers), pixels=pixels)

    def identity(self) -> dict[str, Any]:
        return {**self.stitcher.identity(), "ink": self.settings.ink}

    def job_identity(self) -> dict[str, Any]:
        settings = to_dict(self.settings)
        for path in ("symbols", "fallback_symbols"):
            settings.pop(path)  # paths: the banks' hashes (in identity) are what counts
        return {"generator": self.identity(), "stitch": settings}

    def layout(self) -> SymbolBoxes:
        return SymbolBoxes(self.settings.layout_px)

    def stages(self) -> list[tuple[str, Stage]]:
        return [("stitch", self.stitch_stage)]

    def manifest_extra(self) -> dict[str, Any]:
        return {}

    def close(self) -> None:
        """End the stitching processes (also done when the method is collected)."""
        self._finalizer()

    def stitch_stage(self, pieces: Iterator[Piece]) -> Iterator[Piece]:
        # A few pieces in flight, so that every stitching process has work.
        inflight: collections.deque[tuple[Piece, list[Record], concurrent.futures.Future[list[Done]] | None]] = \
            collections.deque()
        try:
            for piece in pieces:
                todo = [r for r in piece.records if r.reject is None and r.boxes is not None]
                tasks = [Task(r.rendering.tokens, tuple(b.to_json() for b in r.boxes), r.seed,  # type: ignore[union-attr]
                              r.item.latex, image=self.pixels or kept_for_preview(r), ink=self.settings.ink,
                              png=not self.pixels) for r in todo]
                inflight.append((piece, todo, self.pool.submit(tasks) if tasks else None))
                if len(inflight) > max(1, self.pool.workers):
                    yield self._finish(*inflight.popleft())
            while inflight:
                yield self._finish(*inflight.popleft())
        finally:
            for _, _, future in inflight:
                if future is not None:
                    future.cancel()

    def _finish(self, piece: Piece, todo: list[Record], future: "concurrent.futures.Future[list[Done]] | None") -> Piece:
        if future is None:
            return piece
        for r, done in zip(todo, future.result()):
            if done.reject is not None:
                r.reject, r.stage = f"stitch: {done.reject}", "stitch"
                continue
            r.meta.update(done.meta or {})
            if done.inkml is not None:
                r.members = (("inkml", done.inkml),)
            if self.pixels:
                r.image = done.image
            else:
                r.png, r.size = done.png, done.size
            if kept_for_preview(r) and done.image is not None:
                r.preview.append(done.image)
        return piece
