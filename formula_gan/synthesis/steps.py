"""The stages of a synthesis job, as plain functions over a stream of pieces.

Each stage takes an iterator of ``Piece``s and yields pieces (``stages.Pipeline``
runs each in a thread, joined by bounded queues). A record that a stage rejects
keeps its reason and passes on untouched, so every item reaches the writer.

    read_pieces   read, normalize, filter; key, seeds and render style per record
    render_stage  render in a Chromium pool; the GAN path scales to the working height
    generate_stage  group by width, run the generator in batches
    encode_stage  PNG
"""

from __future__ import annotations

import collections
import concurrent.futures
from typing import Any, Callable, Iterable, Iterator

import torch

from formula_gan.data.images import encode_png
from formula_gan.data.jobs import ShardedJob
from formula_gan.data.render_job import RenderItem, derive_seed, sample_key
from formula_gan.synthesis.config import SynthesisConfig
from formula_gan.synthesis.generation import BatchRunner, LoadedGenerator
from formula_gan.synthesis.items import Item, Piece, Record, z_seed_for
from formula_gan.synthesis.policy import padded_width, prepare
from formula_gan.synthesis.preview import kept_for_preview
from katex_render.browser import find_chromium
from katex_render.normalize import Normalizer, check_katex, filter_tokens, find_node
from katex_render.readers import SourceFormula
from katex_render.renderer import Renderer
from katex_render.styles import sample_style

Submit = Callable[[Renderer, list[Record]], Any]  # (renderer, records to render) -> a future of their results
Finish = Callable[[Piece, list[Record], Any, concurrent.futures.ThreadPoolExecutor], Piece]


def check_tools() -> None:
    """Node (KaTeX's parser) and Chromium must be there: say so before any work, not mid-run."""
    find_node()
    check_katex()
    find_chromium()


# ---- stage 0: read, normalize, filter, assign keys, seeds and styles -------------------
def read_pieces(job: ShardedJob, items: Iterable[Item], render_batch: int,
                prepare_records: Callable[[list[Record], Normalizer], None]) -> Iterator[Piece]:
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


def prepare_records(records: list[Record], normalizer: Normalizer | None, cfg: SynthesisConfig) -> None:
    """Key, seeds, normalized tokens and render style of each record, or its reject."""
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


# ---- stage 1: render (the GAN path: and scale to the working height) --------------------
def render_stage(pieces: Iterator[Piece], workers: int, scale_threads: int, start_renderer: Callable[[], Renderer],
                 submit: Submit, finish: Finish) -> Iterator[Piece]:
    """Render the records of each piece that are still in (``submit``), then ``finish`` them
    (the GAN path scales the images; the stitch path keeps the boxes)."""
    renderer: Renderer | None = None
    pool = concurrent.futures.ThreadPoolExecutor(scale_threads, thread_name_prefix="scale")
    # Several pieces in flight, so that every browser has the next batch waiting
    # while this thread scales the previous one.
    inflight: collections.deque[tuple[Piece, list[Record], Any]] = collections.deque()
    try:
        for piece in pieces:
            todo = [r for r in piece.records if r.reject is None]
            future = None
            if todo:
                if renderer is None:
                    renderer = start_renderer()  # on the first piece with work: a finished job starts no browser
                future = submit(renderer, todo)
            inflight.append((piece, todo, future))
            if len(inflight) > workers:
                yield finish(*inflight.popleft(), pool)
        while inflight:
            yield finish(*inflight.popleft(), pool)
    finally:
        for _, _, future in inflight:
            if future is not None:
                future.cancel()
        pool.shutdown()
        if renderer is not None:
            renderer.__exit__(None, None, None)


def submit_images(renderer: Renderer, todo: list[Record]) -> "concurrent.futures.Future[Any]":
    """The GAN path's rendering: each record's image in its style."""
    return renderer.submit([(r.rendering.rendered_latex, r.rendering.style) for r in todo])  # type: ignore[union-attr]


def finish_images(piece: Piece, todo: list[Record], future: "concurrent.futures.Future[Any] | None",
                  pool: concurrent.futures.ThreadPoolExecutor, cfg: SynthesisConfig) -> Piece:
    """The renderings scaled to the working height by the oversize policy, or the records' rejects."""
    if future is None:
        return piece
    results = future.result()
    # Scaling releases the GIL (pillow): a few threads keep up with many browsers.
    prepared = pool.map(lambda res: None if res[0] is None else prepare(res[0], cfg.height, cfg.oversize, cfg.max_pixels, cfg.frame), results)
    for r, (image, reason), p in zip(todo, results, prepared):
        if image is None:
            r.reject, r.stage = f"render: {reason}", "render"  # as the `render` job words it
            continue
        r.rendered_size = (int(image.shape[0]), int(image.shape[1]))
        if p.reject is not None:
            r.reject, r.stage = p.reject, "oversize"
            continue
        r.image, r.downscaled = p.image, p.downscaled
    return piece


# ---- stage 2: group by width, generate -------------------------------------------------
def generate_stage(pieces: Iterator[Piece], gen: LoadedGenerator, batch_size: int, height: int,
                   cpu_threads: int) -> Iterator[Piece]:
    """The generator's output for every record with an input image; on the CPU with
    ``cpu_threads`` torch threads (the browsers have the other cores)."""
    if gen.device.type != "cpu":
        yield from _generate_batches(pieces, gen, batch_size, height)
        return
    previous = torch.get_num_threads()  # process-wide: restored when the stage ends
    torch.set_num_threads(cpu_threads)
    try:
        yield from _generate_batches(pieces, gen, batch_size, height)
    finally:
        torch.set_num_threads(previous)


def _generate_batches(pieces: Iterator[Piece], gen: LoadedGenerator, batch_size: int, height: int) -> Iterator[Piece]:
    runner = BatchRunner(gen)
    # Records are grouped by padded width. A batch runs when its group is full, when
    # more than two batches' worth of records wait (then the largest group goes, so
    # the generator never idles for long), and at the end of each shard. The rule
    # sees only the shard's records in item order: reruns and split runs batch alike.
    buckets: dict[int, list[Record]] = {}
    waiting = 0
    budget = batch_size * height * 512  # pixels: wide inputs make smaller batches
    for piece in pieces:
        done = [r for r in piece.records if r.image is None]  # rejects pass straight on
        for r in piece.records:
            if r.image is None:
                continue
            width = padded_width(r.image.shape[1])
            bucket = buckets.setdefault(width, [])
            bucket.append(r)
            waiting += 1
            if len(bucket) >= batch_size or len(bucket) * width * height >= budget:
                full = width
            elif waiting > 2 * batch_size:
                full = max(buckets, key=lambda w: (len(buckets[w]), -w))
            else:
                continue
            batch = buckets.pop(full)
            waiting -= len(batch)
            done.extend(_generate(runner, batch, full))
        if piece.last:
            for width in sorted(buckets):
                done.extend(_generate(runner, buckets[width], width))
            buckets.clear()
            waiting = 0
        if done or piece.last:
            yield Piece(piece.shard, piece.size, done, piece.last)


def _generate(runner: BatchRunner, batch: list[Record], width: int) -> list[Record]:
    outputs = runner.run([r.image for r in batch], [r.z_seed for r in batch], width)  # type: ignore[misc]
    for r, out in zip(batch, outputs):
        r.output = out
        r.size = (int(out.shape[0]), int(out.shape[1]))
        if not kept_for_preview(r):
            r.image = None  # only the preview needs the input after this
    return batch


# ---- stage 3: encode PNG ----------------------------------------------------------------
def encode_stage(pieces: Iterator[Piece], threads: int) -> Iterator[Piece]:
    # zlib releases the GIL: on a machine with many cores a few threads keep up with a GPU.
    with concurrent.futures.ThreadPoolExecutor(threads, thread_name_prefix="png") as pool:
        for piece in pieces:
            piece.records = list(pool.map(_encode, piece.records))
            yield piece


def _encode(r: Record) -> Record:
    if r.output is not None:
        r.png = encode_png(r.output)
        if not kept_for_preview(r):
            r.output = None  # the bytes are what is written; keep the pixels only for the preview
    return r
