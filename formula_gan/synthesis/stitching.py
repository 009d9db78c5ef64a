"""``synthesize --method stitch``: the synthesis job with the glyph stitcher in place of the GAN.

    read + normalize + filter ─q─► lay out and measure per-symbol boxes (Chromium pool, no capture)
        ─q─► stitch, rasterize, encode (a pool of processes) ─q─► write shards (this thread)

Everything else is the GAN path's (``Synthesizer``): items, keys and seeds,
shards, manifest, rejects, resume, ``--num-shards`` splits and ``preview.png``
(here: KaTeX's rendering | the stitched handwriting). A sample's JSON has
``domain: synthetic`` and ``method: stitch``, the stitcher's identity as its
``generator``, the ``boxes`` of its glyphs in the image ([token index, x0, y0, x1,
y1]), the ``writers`` of the glyphs and ``box_writers`` (per box, an index into
``writers``); with ``ink``, ``<key>.inkml`` holds its strokes. A formula with a
token that the symbol bank has no glyph for is a reject naming the token.

The layout is KaTeX's at ``stitch.layout_px`` in the style's font command (the
style's size and padding are the rasterizer's business here, as for CROHME).
"""

from __future__ import annotations

import collections
import concurrent.futures
import dataclasses
import os
import sys
import weakref
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Sequence

from formula_gan.config import to_dict
from formula_gan.data.shards import Sample
from formula_gan.errors import FormulaGanError
from formula_gan.stitching.stitcher import StitchConfig, Stitcher
from formula_gan.stitching.worker import Done, StitchPool, Task
from formula_gan.synthesis.config import SynthesisConfig
from formula_gan.synthesis.items import Piece, Record
from formula_gan.synthesis.preview import kept_for_preview
from formula_gan.synthesis.synthesizer import Synthesizer
from formula_gan.synthesis.writer import DOMAIN, SynthesisWriter

METHOD = "stitch"


@dataclass
class StitchSynthesisConfig(SynthesisConfig):
    """SynthesisConfig (variants, seed, max_tokens, samples_per_shard, style) and the
    stitcher's settings under ``stitch``. height, oversize and max_pixels are the
    GAN's and play no part here."""

    stitch: StitchConfig = field(default_factory=StitchConfig)


class StitchSynthesizer(Synthesizer):
    """Formulas in, stitched handwriting out, as a sharded dataset.

    >>> synth = StitchSynthesizer("datasets/prepared/symbols")
    >>> report = synth.run(["formulas.txt"], "out/stitched")
    """

    def __init__(self, symbols: str | Path, *, config: StitchSynthesisConfig | None = None, ink: bool = False,
                 render_workers: int = 2, render_batch: int = 192, queue_depth: int = 2,
                 stitch_workers: int | None = None, progress: bool = True, log: Any = None):
        # Synthesizer.__init__ loads a generator; the stitch path sets only what it uses.
        if render_workers < 1 or render_batch < 1:
            raise FormulaGanError("render workers and render batch must be at least 1")
        self.config = config or StitchSynthesisConfig()
        self.stitcher = Stitcher(symbols, self.config.stitch)
        self.ink = ink
        self.render_workers = render_workers
        self.render_batch = render_batch
        self.queue_depth = queue_depth
        self.encode_workers = max(1, (os.cpu_count() or 1) // 4)
        self.device = "cpu"
        self.progress = progress
        self.log = log if log is not None else sys.stderr
        # Stitching holds the GIL: one process per core (the browsers get the gaps).
        workers = (os.cpu_count() or 1) if stitch_workers is None else stitch_workers
        self.pool = StitchPool(self.stitcher, workers)
        self._finalizer = weakref.finalize(self, self.pool.close)

    def close(self) -> None:
        """End the stitching processes (also done when the synthesizer is collected)."""
        self._finalizer()

    def __enter__(self) -> "StitchSynthesizer":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    # ---- what differs from the GAN path ----------------------------------------------------
    def _identity(self) -> dict[str, Any]:
        return {**self.stitcher.identity(), "ink": self.ink}

    def job_identity(self, inputs: Sequence[str | Path]) -> dict[str, Any]:
        identity = super().job_identity(inputs)
        identity["config"] = to_dict(self.config)
        return identity

    def _manifest_extra(self, job: Any) -> dict[str, Any]:
        extra = super()._manifest_extra(job)
        if extra:  # every shard is there
            extra.pop("oversize", None)  # the GAN's input policy
            extra["method"] = METHOD
        return extra

    def _stages(self) -> list[tuple[str, Any]]:
        return [("layout", self._render_stage), ("stitch", self._stitch_stage)]

    def _writer(self, job: Any) -> SynthesisWriter:
        return _StitchWriter(job, self._identity(), self.progress)

    def _prepare_records(self, records: list[Record], normalizer: Any) -> None:
        super()._prepare_records(records, normalizer)
        size = self.config.stitch.layout_px
        for r in records:  # the layout's own size; the rasterizer sets the image's
            if r.rendering is not None:
                style = dataclasses.replace(r.rendering.style, font_size=size, padding=0)
                r.rendering = dataclasses.replace(r.rendering, style=style)

    def _submit(self, renderer: Any, todo: list[Record]) -> "concurrent.futures.Future[Any]":
        boxes = renderer.submit_boxes([(r.rendering.tokens, r.rendering.style) for r in todo], images=False)
        shown = [r for r in todo if kept_for_preview(r)]
        pictures = renderer.submit_boxes([(r.rendering.tokens, r.rendering.style) for r in shown]) if shown else None
        return _Both(boxes, pictures, [kept_for_preview(r) for r in todo])

    def _finish_render(self, piece: Piece, todo: list[Record], future: Any, pool: Any) -> Piece:
        if future is None:
            return piece
        for r, (layout, picture) in zip(todo, future.result()):
            if layout.error is not None:
                r.reject, r.stage = f"render: {layout.error}", "render"
            elif not layout.boxes:
                r.reject, r.stage = f"render: no symbol boxes: {layout.boxes_error}", "render"
            else:
                r.extra = {"layout": layout.boxes}
                r.image = picture.image if picture is not None else None  # the preview's left column
        return piece

    def _stitch_stage(self, pieces: Iterator[Piece]) -> Iterator[Piece]:
        # A few pieces in flight, so that every stitching process has work.
        inflight: collections.deque[tuple[Piece, list[Record], concurrent.futures.Future[list[Done]] | None]] = \
            collections.deque()
        try:
            for piece in pieces:
                todo = [r for r in piece.records if r.reject is None and r.extra is not None]
                tasks = [Task(r.rendering.tokens, tuple(b.to_json() for b in r.extra["layout"]), r.seed,  # type: ignore[union-attr]
                              r.item.latex, image=kept_for_preview(r), ink=self.ink) for r in todo]
                inflight.append((piece, todo, self.pool.submit(tasks) if tasks else None))
                if len(inflight) > max(1, self.pool.workers):
                    yield _finish_stitch(*inflight.popleft())
            while inflight:
                yield _finish_stitch(*inflight.popleft())
        finally:
            for _, _, future in inflight:
                if future is not None:
                    future.cancel()


def _finish_stitch(piece: Piece, todo: list[Record], future: "concurrent.futures.Future[list[Done]] | None") -> Piece:
    if future is None:
        return piece
    for r, done in zip(todo, future.result()):
        if done.reject is not None:
            r.reject, r.stage, r.extra = f"stitch: {done.reject}", "stitch", None
            continue
        r.png, r.size = done.png, done.size
        r.output = done.image  # only for the preview (kept for its first records)
        r.extra = {"meta": done.meta, "inkml": done.inkml}
    return piece


class _Both:
    """The layout boxes of a piece and the pictures of its preview records, as one future."""

    def __init__(self, boxes: Any, pictures: Any, shown: list[bool]):
        self.boxes, self.pictures, self.shown = boxes, pictures, shown

    def result(self) -> list[tuple[Any, Any]]:
        layouts = self.boxes.result()
        pictures = iter(self.pictures.result() if self.pictures is not None else ())
        return [(layout, next(pictures) if shown else None) for layout, shown in zip(layouts, self.shown)]

    def cancel(self) -> None:
        for future in (self.boxes, self.pictures):
            if future is not None:
                future.cancel()


class _StitchWriter(SynthesisWriter):
    def _sample(self, r: Record) -> Sample:
        extra = (("inkml", r.extra["inkml"]),) if r.extra and r.extra.get("inkml") else ()
        return Sample(r.key, r.png, self._meta(r), extra)  # type: ignore[arg-type]

    def _meta(self, r: Record) -> dict[str, Any]:
        assert r.rendering is not None and r.size is not None and r.extra is not None
        meta = r.rendering.meta()  # latex, tokens, source, style (of the layout), seed, variant
        meta.update(domain=DOMAIN, method=METHOD, generator=self.generator, size=list(r.size), **r.extra["meta"])
        return meta
