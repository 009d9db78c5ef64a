"""``Synthesizer``: formulas in, a sharded handwritten dataset out, streamed through bounded stages.

    read + normalize + filter ─q─► render (Chromium pool) + scale to the working height
        ─q─► group by width, generate in batches ─q─► encode PNG ─q─► write shards (this thread)

Each arrow is a queue of a few messages (pieces of up to ``render_batch``
records), so memory is bounded by what the stages hold (about one shard of
images), never by the size of the corpus.

The job is a ``ShardedJob``: item ``i`` (a formula and variant) goes to shard
``i // samples_per_shard`` and shard ``s`` to rank ``s % world_size``; a shard is
written whole or not at all, so a killed run resumes where it stopped and
split runs add up to one run. Every sample is a pure function of its item:
the style and z come from seeds derived from the job seed and the sample's
key, the generator runs in eval mode on inputs padded as a function of the
sample alone, and batches are formed within one shard in a fixed order. The
resulting shards are byte-identical however the job is run (on one device
type; CUDA kernels and bf16 give other bytes than the CPU).
"""

from __future__ import annotations

import collections
import concurrent.futures
import json
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Iterator, Sequence

from formula_gan.config import to_dict
from formula_gan.data.images import encode_png
from formula_gan.data.jobs import ShardedJob, ShardResult, disk_space_for, env_rank
from formula_gan.data.shards import Sample, shard_name
from formula_gan.devices import resolve_device
from formula_gan.errors import FormulaGanError
from formula_gan.hashing import sha256_file
from formula_gan.synthesis.config import SynthesisConfig
from formula_gan.synthesis.generation import (
    UNTRAINED_WARNING,
    BatchRunner,
    LoadedGenerator,
    default_generator,
    load,
    untrained_generator,
)
from formula_gan.data.render_job import OUTPUT_SETTINGS, RenderItem, derive_seed, sample_key
from formula_gan.synthesis.items import Item, Record, iter_items, z_seed_for
from formula_gan.synthesis.policy import padded_width, prepare
from formula_gan.synthesis.preview import write_preview
from formula_gan.synthesis.stages import Pipeline, StageStats

PREVIEW = "preview.png"
PREVIEW_PAIRS = 8  # rows of the preview sheet: the first samples of shard 0
DOMAIN = "synthetic"


@dataclass
class Piece:
    """A run of consecutive records of one shard, as it travels between stages."""

    shard: int
    size: int  # records in the whole shard
    records: list[Record]
    last: bool  # nothing of this shard follows


@dataclass
class SynthesisReport:
    out_dir: Path
    shards_written: int
    samples_written: int
    rejected: int
    downscaled: int
    manifest: dict[str, Any] | None  # None until every rank's shards are there
    preview: Path | None
    generator: dict[str, Any]
    seconds: float
    stages: list[StageStats] = field(default_factory=list)
    browser_launch_s: float = 0.0  # part of the render stage's time: starting Chromium, a fixed cost

    def stage_rates(self) -> dict[str, float]:
        """Items per busy second of each stage (busy = not waiting on a neighbour)."""
        items = self.samples_written + self.rejected
        return {s.name: items / s.busy_s for s in self.stages if s.busy_s > 0}


class Synthesizer:
    """Translate formulas into handwriting with a trained generator, at scale.

    >>> synth = Synthesizer("generator.pt", device="cuda")
    >>> report = synth.run(["formulas.txt"], "out/synthetic")

    Everything that can be wrong with the set-up (the generator file, the
    device) is an error here, before any work; an output folder holding
    another job is an error at the start of ``run``.
    """

    def __init__(
        self,
        generator: str | Path | None = None,  # None: the packaged default generator, when there is one
        *,
        untrained: bool = False,
        config: SynthesisConfig | None = None,
        device: str | None = None,
        batch_size: int = 32,
        render_workers: int = 2,
        render_batch: int = 192,
        queue_depth: int = 2,
        cpu_threads: int | None = None,
        progress: bool = True,
        log: Any = None,
    ):
        if generator is not None and untrained:
            raise FormulaGanError("give either a generator file or untrained=True, not both")
        if generator is None and not untrained:
            generator = default_generator()
            if generator is None:
                raise FormulaGanError(
                    "no generator: this installation ships no trained default generator yet. Give one with "
                    "--generator FILE (from `formula-gan export-generator`), or ask for --untrained-generator "
                    "explicitly to try the pipeline (random weights: the output is NOT handwriting)"
                )
        if batch_size < 1 or render_workers < 1 or render_batch < 1:
            raise FormulaGanError("batch size, render workers and render batch must be at least 1")
        if cpu_threads is not None and cpu_threads < 1:
            raise FormulaGanError(f"cpu threads must be at least 1, got {cpu_threads}")
        self.device = resolve_device(device)
        self.gen: LoadedGenerator = untrained_generator(self.device) if untrained else load(generator, self.device)
        # the working height and framing the generator was trained with, unless the config says
        self.config = (config or SynthesisConfig()).for_generator(self.gen.config)
        self.batch_size = batch_size
        self.render_workers = render_workers
        self.render_batch = render_batch
        self.queue_depth = queue_depth
        # Threads that scale renderings and encode PNGs: one per four cores (the rest
        # render in Chromium); one on a small machine.
        self.encode_workers = max(1, (os.cpu_count() or 1) // 4)
        # Torch threads of a CPU generator. The browsers take `render_workers` cores; more
        # torch threads than the cores left make OpenMP spin against Chromium (on a busy
        # 2-core machine 1 thread is ~2x faster than 2).
        self.cpu_threads = cpu_threads or max(1, (os.cpu_count() or 1) - render_workers)
        self.progress = progress
        self.log = log if log is not None else sys.stderr
        if self.gen.untrained:
            print(UNTRAINED_WARNING, file=self.log)

    # ---- the job --------------------------------------------------------------------
    def job_identity(self, inputs: Sequence[str | Path]) -> dict[str, Any]:
        """What makes two runs the same job: inputs (by name and content), generator, config."""
        described = []
        names = [Path(p).name for p in inputs]
        for path in inputs:
            path = Path(path)
            if not path.is_file():
                raise FormulaGanError(f"input not found: {path}")
            if names.count(path.name) > 1:
                # a sample's source and key hold the file name: two files of one name would collide
                raise FormulaGanError(f"two inputs are named {path.name!r}; give each input file a distinct name")
            described.append({"name": path.name, "bytes": path.stat().st_size, "sha256": sha256_file(path)})
        from katex_render.renderer import RendererConfig

        renderer = to_dict(RendererConfig())
        return {
            "kind": "synthesize",
            "inputs": described,
            "generator": self._identity(),
            "config": to_dict(self.config),
            # the renderer settings that change pixels (the `render` job's list); workers do not
            "renderer": {k: renderer[k] for k in OUTPUT_SETTINGS},
        }

    def run(
        self,
        inputs: Sequence[str | Path],
        out_dir: str | Path,
        *,
        rank: int | None = None,
        world_size: int | None = None,
        overlap: bool = True,
    ) -> SynthesisReport:
        """Synthesize every formula of ``inputs`` (this rank's shards) into ``out_dir``; resumable.

        ``rank``/``world_size``: which part of a split job this is (default: torchrun's
        RANK/WORLD_SIZE, else the whole job). ``overlap=False`` runs each stage over the
        whole input before the next starts (same output; memory grows with the input):
        it measures each stage alone, for benchmarks.
        """
        start = time.perf_counter()
        self._launch_s = 0.0
        if not inputs:
            raise FormulaGanError("no input files given")
        if rank is None or world_size is None:
            rank, world_size = env_rank()
        if world_size < 1 or not 0 <= rank < world_size:
            raise FormulaGanError(f"shard index {rank} is outside 0..{world_size - 1}")
        _check_tools()
        job = ShardedJob(out_dir, self.job_identity(inputs), self.config.samples_per_shard, rank, world_size).open()
        writer = self._writer(job)
        source = self._source(job, iter_items(inputs, self.config.variants))
        stages = self._stages()
        if overlap:
            with Pipeline(source, stages, self.queue_depth, source_name="normalize") as pipeline:
                for piece in pipeline:
                    writer.add(piece)
            stats = pipeline.stats + [_write_stats(pipeline.consumer_stats, writer.busy_s)]
        else:
            stats = []
            data: Iterable[Any] = source
            for name, fn in [("normalize", lambda xs: xs)] + stages:
                t0 = time.perf_counter()
                data = list(fn(iter(data)))
                stats.append(StageStats(name, total_s=time.perf_counter() - t0))
            for piece in data:
                writer.add(piece)
            stats.append(StageStats("write", total_s=writer.busy_s))
        writer.close()
        manifest = job.finalize(self._manifest_extra(job))
        preview = job.out_dir / PREVIEW
        return SynthesisReport(
            out_dir=job.out_dir,
            shards_written=writer.shards,
            samples_written=writer.samples,
            rejected=writer.rejected,
            downscaled=writer.downscaled,
            manifest=manifest,
            preview=preview if preview.is_file() else None,
            generator=self._identity(),
            seconds=time.perf_counter() - start,
            stages=stats,
            browser_launch_s=self._launch_s,
        )

    # ---- what another method (formula_gan.synthesis.stitching) replaces -----------------------
    def _identity(self) -> dict[str, Any]:
        """What makes the output: the generator's hash and step."""
        return self.gen.identity()

    def _stages(self) -> list[tuple[str, Any]]:
        return [("render", self._render_stage), ("generate", self._generate_stage), ("encode", self._encode_stage)]

    def _writer(self, job: ShardedJob) -> "_Writer":
        return _Writer(job, self._identity(), self.progress)

    def _manifest_extra(self, job: ShardedJob) -> dict[str, Any]:
        # Deterministic content only (no times, no rank): every rank that happens to
        # finish last writes the same manifest.
        tokens: set[str] = set()
        for index in range(job.num_shards()):
            sidecar = job.out_dir / (shard_name(index)[: -len(".tar")] + ".json")
            if not sidecar.is_file():
                return {}  # another rank is not done; finalize writes no manifest either
            stats = json.loads(sidecar.read_text(encoding="utf-8")).get("stats", {})
            tokens.update(stats.get("token_counts", {}))
        return {
            "domain": DOMAIN,
            "vocab": sorted(tokens),  # as the `render` job's manifest: Vocab.from_manifest reads it
            "generator": self._identity(),
            "oversize": {"policy": self.config.oversize, "max_pixels": self.config.max_pixels, "height": self.config.height},
            "preview": PREVIEW,
        }

    # ---- stage 0: read, normalize, filter, assign keys, seeds and styles ---------------
    def _source(self, job: ShardedJob, items: Iterable[Item]) -> Iterator[Piece]:
        from katex_render.normalize import Normalizer

        normalizer: Normalizer | None = None
        sizes = _piece_sizes(self.render_batch)
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
                    self._prepare_records(piece, normalizer)
                    yield Piece(chunk.index, len(records), piece, last=start >= len(records))
        finally:
            if normalizer is not None:
                normalizer.__exit__(None, None, None)

    def _prepare_records(self, records: list[Record], normalizer: Any) -> None:
        """Key, seeds, normalized tokens and render style of each record, or its reject."""
        from katex_render.normalize import filter_tokens
        from katex_render.readers import SourceFormula
        from katex_render.styles import sample_style

        cfg = self.config
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

    # ---- stage 1: render and scale to the working height -------------------------------
    def _render_stage(self, pieces: Iterator[Piece]) -> Iterator[Piece]:
        from katex_render.renderer import Renderer

        renderer: Renderer | None = None
        pool = concurrent.futures.ThreadPoolExecutor(self.encode_workers, thread_name_prefix="scale")
        # Several pieces in flight, so that every browser has the next batch waiting
        # while this thread scales the previous one.
        inflight: collections.deque[tuple[Piece, list[Record], concurrent.futures.Future[Any] | None]] = collections.deque()
        try:
            for piece in pieces:
                todo = [r for r in piece.records if r.reject is None]
                future = None
                if todo:
                    if renderer is None:
                        t0 = time.perf_counter()
                        renderer = Renderer(workers=self.render_workers).__enter__()
                        self._launch_s = time.perf_counter() - t0
                    future = self._submit(renderer, todo)
                inflight.append((piece, todo, future))
                if len(inflight) > self.render_workers:
                    yield self._finish_render(*inflight.popleft(), pool)
            while inflight:
                yield self._finish_render(*inflight.popleft(), pool)
        finally:
            for _, _, future in inflight:
                if future is not None:
                    future.cancel()
            pool.shutdown()
            if renderer is not None:
                renderer.__exit__(None, None, None)

    def _submit(self, renderer: Any, todo: list[Record]) -> "concurrent.futures.Future[Any]":
        return renderer.submit([(r.rendering.rendered_latex, r.rendering.style) for r in todo])  # type: ignore[union-attr]

    def _finish_render(self, piece: Piece, todo: list[Record], future: concurrent.futures.Future[Any] | None,
                       pool: concurrent.futures.ThreadPoolExecutor) -> Piece:
        if future is None:
            return piece
        cfg = self.config
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

    # ---- stage 2: group by width, generate -------------------------------------------
    def _generate_stage(self, pieces: Iterator[Piece]) -> Iterator[Piece]:
        import torch

        if self.device.type != "cpu":
            yield from self._generate_batches(pieces)
            return
        previous = torch.get_num_threads()  # process-wide: restored when the stage ends
        torch.set_num_threads(self.cpu_threads)
        try:
            yield from self._generate_batches(pieces)
        finally:
            torch.set_num_threads(previous)

    def _generate_batches(self, pieces: Iterator[Piece]) -> Iterator[Piece]:
        runner = BatchRunner(self.gen)
        # Records are grouped by padded width. A batch runs when its group is full, when
        # more than two batches' worth of records wait (then the largest group goes, so
        # the generator never idles for long), and at the end of each shard. The rule
        # sees only the shard's records in item order: reruns and split runs batch alike.
        buckets: dict[int, list[Record]] = {}
        waiting = 0
        budget = self.batch_size * self.config.height * 512  # pixels: wide inputs make smaller batches
        for piece in pieces:
            done = [r for r in piece.records if r.image is None]  # rejects pass straight on
            for r in piece.records:
                if r.image is None:
                    continue
                width = padded_width(r.image.shape[1])
                bucket = buckets.setdefault(width, [])
                bucket.append(r)
                waiting += 1
                if len(bucket) >= self.batch_size or len(bucket) * width * self.config.height >= budget:
                    full = width
                elif waiting > 2 * self.batch_size:
                    full = max(buckets, key=lambda w: (len(buckets[w]), -w))
                else:
                    continue
                batch = buckets.pop(full)
                waiting -= len(batch)
                done.extend(self._generate(runner, batch, full))
            if piece.last:
                for width in sorted(buckets):
                    done.extend(self._generate(runner, buckets[width], width))
                buckets.clear()
                waiting = 0
            if done or piece.last:
                yield Piece(piece.shard, piece.size, done, piece.last)

    def _generate(self, runner: BatchRunner, batch: list[Record], width: int) -> list[Record]:
        outputs = runner.run([r.image for r in batch], [r.z_seed for r in batch], width)  # type: ignore[misc]
        for r, out in zip(batch, outputs):
            r.output = out
            r.size = (int(out.shape[0]), int(out.shape[1]))
            if not _for_preview(r):
                r.image = None  # only the preview needs the input after this
        return batch

    # ---- stage 3: encode PNG ----------------------------------------------------------
    def _encode_stage(self, pieces: Iterator[Piece]) -> Iterator[Piece]:
        # zlib releases the GIL: on a machine with many cores a few threads keep up with a GPU.
        with concurrent.futures.ThreadPoolExecutor(self.encode_workers, thread_name_prefix="png") as pool:
            for piece in pieces:
                piece.records = list(pool.map(_encode, piece.records))
                yield piece


def _piece_sizes(full: int) -> Iterator[int]:
    """16, 32, 64, ... up to ``full``, then ``full`` for ever: the first records reach the
    generator within a fraction of a second instead of after a whole render batch, so the
    stages start overlapping at once. (Piece boundaries never change a sample.)"""
    size = min(16, full)
    while True:
        yield size
        size = min(full, size * 2)


def _for_preview(r: Record) -> bool:
    """The first records of shard 0 keep their pixels until the preview is drawn (a few
    more than it shows, since some may be rejects)."""
    return r.shard == 0 and r.pos < PREVIEW_PAIRS * 4


def _encode(r: Record) -> Record:
    if r.output is not None:
        r.png = encode_png(r.output)
        if not _for_preview(r):
            r.output = None  # the bytes are what is written; keep the pixels only for the preview
    return r


class _Writer:
    """The last stage (the calling thread): write each shard when all its records are in."""

    def __init__(self, job: ShardedJob, generator: dict[str, Any], progress: bool):
        self.job = job
        self.generator = generator
        self.shard: int | None = None
        self.records: list[Record] = []
        self.shards = self.samples = self.rejected = self.downscaled = 0
        self.busy_s = 0.0
        self._bar = None
        if progress:
            from tqdm import tqdm

            self._bar = tqdm(unit=" samples", desc="synthesize", dynamic_ncols=True, file=sys.stderr)

    def add(self, piece: Piece) -> None:
        t0 = time.perf_counter()
        if self.shard is None:
            self.shard = piece.shard
        if piece.shard != self.shard:
            raise RuntimeError(f"shard {self.shard} incomplete when shard {piece.shard} arrived")
        self.records.extend(piece.records)
        if self._bar is not None:
            self._bar.update(len(piece.records))  # items through the pipeline, shard written or not
        if piece.last:
            self._commit(piece.size)
        self.busy_s += time.perf_counter() - t0

    def _commit(self, size: int) -> None:
        records = sorted(self.records, key=lambda r: r.pos)
        if [r.pos for r in records] != list(range(size)):
            raise RuntimeError(f"shard {self.shard}: got {len(records)} of {size} records")
        samples, rejects = [], []
        tokens: collections.Counter[str] = collections.Counter()
        downscaled = []
        for r in records:
            if r.png is None:
                rejects.append(r.reject_record())
                continue
            samples.append(self._sample(r))
            tokens.update(r.rendering.tokens)  # type: ignore[union-attr]
            if r.downscaled is not None:
                downscaled.append(r.key)
        if self.shard == 0:
            pairs = [(r.image, r.output) for r in records if r.output is not None and r.image is not None]
            if pairs:
                # Before the shard's commit: if a kill comes between the two, the rerun redoes both.
                with disk_space_for(self.job.out_dir, PREVIEW, 1 << 20):
                    write_preview(self.job.out_dir / PREVIEW, pairs[:PREVIEW_PAIRS])
        stats = {"token_counts": dict(sorted(tokens.items())), "downscaled": downscaled}
        self.job.commit(self.shard, ShardResult(samples, rejects, stats))  # type: ignore[arg-type]
        self.shards += 1
        self.samples += len(samples)
        self.rejected += len(rejects)
        self.downscaled += len(downscaled)
        self.shard, self.records = None, []

    def _sample(self, r: Record) -> Sample:
        return Sample(r.key, r.png, self._meta(r))  # type: ignore[arg-type]

    def _meta(self, r: Record) -> dict[str, Any]:
        assert r.rendering is not None and r.size is not None
        meta = r.rendering.meta()  # latex, tokens, source, style, seed, variant: as `render` writes them
        meta.update(
            domain=DOMAIN,
            z_seed=r.z_seed,
            generator=self.generator,
            size=list(r.size),
        )
        if r.downscaled is not None:
            meta["oversize"] = {"policy": "downscale", "scale": r.downscaled, "rendered_size": list(r.rendered_size or ())}
        return meta

    def close(self) -> None:
        if self.records:
            raise RuntimeError(f"shard {self.shard} left incomplete")
        if self._bar is not None:
            self._bar.close()


def _check_tools() -> None:
    """Node (KaTeX's parser) and Chromium must be there: say so before any work, not mid-run."""
    from katex_render.browser import find_chromium
    from katex_render.normalize import check_katex, find_node

    find_node()
    check_katex()
    find_chromium()


def _write_stats(consumer: StageStats, busy_s: float) -> StageStats:
    """The consumer's stats as the write stage: its busy time is the writer's own."""
    return StageStats("write", consumer.messages_in, 0, consumer.wait_in_s, 0.0, consumer.wait_in_s + busy_s)
