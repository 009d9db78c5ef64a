"""The stages of a synthesis job, as plain functions over a stream of pieces.

Each stage takes an iterator of ``Piece``s and yields pieces (``stages.Pipeline``
runs each in a thread, joined by bounded queues). A record that a stage rejects
keeps its reason and passes on untouched, so every item reaches the writer.

    read_pieces   read, normalize, filter; key, seeds and render style per record
    render_stage  lay out in a Chromium pool, as the method's layout says (``layouts``)
    encode_stage  PNG (a method's last stage when it writes arrays)

These are the stages every method shares; a method's own stages live with it
(``methods/``). Nothing here imports torch.
"""

from __future__ import annotations

import collections
import concurrent.futures
import os
from typing import TYPE_CHECKING, Any, Callable, Iterable, Iterator

from formula_gan.data.jobs import ShardedJob
from formula_gan.data.png import encode_png
from formula_gan.data.render_job import RenderItem, derive_seed, sample_key
from formula_gan.synthesis.config import SynthesisConfig
from formula_gan.synthesis.items import Item, Piece, Record, z_seed_for
from formula_gan.synthesis.preview import kept_for_preview
from katex_render.browser import find_chromium
from katex_render.normalize import Normalizer, check_katex, filter_tokens, find_node
from katex_render.readers import SourceFormula
from katex_render.renderer import Renderer
from katex_render.styles import sample_style

if TYPE_CHECKING:
    from formula_gan.synthesis.methods.base import Layout


def encode_threads() -> int:
    """Threads that scale layouts and encode PNGs (pillow and zlib release the GIL): one per
    four cores, one on a small machine (the rest render in Chromium)."""
    return max(1, (os.cpu_count() or 1) // 4)


def check_tools() -> None:
    """Node (KaTeX's parser) and Chromium must be there: say so before any work, not mid-run."""
    find_node()
    check_katex()
    find_chromium()


# ---- stage 0: read, normalize, filter, assign keys, seeds and styles -------------------
def read_pieces(job: ShardedJob, items: Iterable[Item], render_batch: int,
                prepare_records: Callable[[list[Record], Normalizer | None], None]) -> Iterator[Piece]:
    """This rank's pending shards as pieces of records, each prepared by ``prepare_records``."""
    normalizer: Normalizer | None = None
    sizes = piece_sizes(render_batch)
    try:
        for chunk in job.pending(items):
            records = [Record(chunk.index, pos, item) for pos, item in enumerate(chunk.items)]
            start = 0
            while start < len(records):
                piece = records[start : start + next(sizes)]
                start += len(piece)
                if normalizer is None and any(r.item.read_error is None for r in piece):
                    # started on the first pending piece: a finished job costs nothing
                    normalizer = Normalizer().__enter__()
                prepare_records(piece, normalizer)
                yield Piece(chunk.index, len(records), piece, last=start >= len(records))
    finally:
        if normalizer is not None:
            normalizer.__exit__(None, None, None)


def piece_sizes(full: int) -> Iterator[int]:
    """16, 32, 64, ... up to ``full``, then ``full`` for ever: the first records reach the
    generator within a fraction of a second instead of after a whole render batch, so the
    stages start overlapping at once. (Piece boundaries never change a sample.)"""
    size = min(16, full)
    while True:
        yield size
        size = min(full, size * 2)


def prepare_records(records: list[Record], normalizer: Normalizer | None, cfg: SynthesisConfig,
                    layout: "Layout") -> None:
    """Key, seeds, normalized tokens and render style of each record (adjusted by the method's
    layout), or its reject."""
    todo: list[Record] = []
    for r in records:
        if r.item.read_error is not None:
            r.reject, r.stage = r.item.read_error, "read"
            continue
        r.key = sample_key(r.item.source, r.item.latex, r.item.variant)
        r.seed = derive_seed(cfg.seed, r.item.source, r.item.latex, r.item.variant)
        r.z_seed = z_seed_for(r.seed)
        todo.append(r)
    if not todo:
        return
    assert normalizer is not None  # started by read_pieces for any piece with a readable item
    distinct = list(dict.fromkeys(r.item.latex for r in todo))  # variants share one normalization
    normalized = dict(zip(distinct, normalizer.normalize(distinct)))
    for r in todo:
        tokens, error = normalized[r.item.latex]
        if tokens is None:
            r.reject, r.stage = error or "normalize: no reason given", "normalize"
            continue
        reason = filter_tokens(tokens, None, cfg.max_tokens)
        if reason is not None:
            r.reject, r.stage = reason, "filter"
            continue
        style = sample_style(cfg.style, r.seed)
        r.rendering = RenderItem(SourceFormula(r.item.latex, r.item.source), tuple(tokens), r.item.variant, r.seed, style)
        layout.prepare(r)


# ---- stage 1: lay out (render images, or measure symbol boxes) ---------------------------
def render_stage(pieces: Iterator[Piece], workers: int, scale_threads: int, start_renderer: Callable[[], Renderer],
                 layout: "Layout") -> Iterator[Piece]:
    """Lay out the records of each piece that are still in (``layout.submit``), then
    ``layout.finish`` them (scaled images, or boxes)."""
    renderer: Renderer | None = None
    pool = concurrent.futures.ThreadPoolExecutor(scale_threads, thread_name_prefix="scale")
    # Several pieces in flight, so that every browser has the next batch waiting
    # while this thread finishes the previous one.
    inflight: collections.deque[tuple[Piece, list[Record], Any]] = collections.deque()
    try:
        for piece in pieces:
            todo = [r for r in piece.records if r.reject is None]
            future = None
            if todo:
                if renderer is None:
                    renderer = start_renderer()  # on the first piece with work: a finished job starts no browser
                future = layout.submit(renderer, todo)
            inflight.append((piece, todo, future))
            if len(inflight) > workers:
                yield layout.finish(*inflight.popleft(), pool)
        while inflight:
            yield layout.finish(*inflight.popleft(), pool)
    finally:
        for _, _, future in inflight:
            if future is not None:
                future.cancel()
        pool.shutdown()
        if renderer is not None:
            renderer.__exit__(None, None, None)


# ---- the last stage of methods that write arrays: encode PNG ----------------------------------------------------------------
def encode_stage(pieces: Iterator[Piece], threads: int) -> Iterator[Piece]:
    # zlib releases the GIL: on a machine with many cores a few threads keep up with a GPU.
    with concurrent.futures.ThreadPoolExecutor(threads, thread_name_prefix="png") as pool:
        for piece in pieces:
            piece.records = list(pool.map(_encode, piece.records))
            yield piece


def _encode(r: Record) -> Record:
    if r.output is not None:
        r.png = encode_png(r.output)
        r.size = (int(r.output.shape[0]), int(r.output.shape[1]))
        if kept_for_preview(r):
            r.preview.append(r.output)
        r.output = None  # the bytes are what is written
    return r
