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

The stages are plain functions (``steps``), the last one the shard writer
(``writer``); this class holds the settings and the job, and the hooks that
another method (``stitching``) replaces.
"""

from __future__ import annotations

import functools
import json
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Iterator, Sequence

from formula_gan.config import to_dict
from formula_gan.data.jobs import ShardedJob, env_rank
from formula_gan.data.render_job import OUTPUT_SETTINGS
from formula_gan.data.shards import shard_name
from formula_gan.devices import resolve_device
from formula_gan.errors import FormulaGanError
from formula_gan.hashing import sha256_file
from formula_gan.synthesis.config import SynthesisConfig
from formula_gan.synthesis.generation import (
    UNTRAINED_WARNING,
    LoadedGenerator,
    default_generator,
    load,
    untrained_generator,
)
from formula_gan.synthesis.items import Item, Piece, Record, iter_items
from formula_gan.synthesis.preview import PREVIEW
from formula_gan.synthesis.stages import Pipeline, Stage, StageStats
from formula_gan.synthesis.steps import (
    check_tools,
    encode_stage,
    finish_images,
    generate_stage,
    prepare_records,
    read_pieces,
    render_stage,
    submit_images,
)
from formula_gan.synthesis.writer import DOMAIN, SynthesisWriter
from katex_render.normalize import Normalizer
from katex_render.renderer import Renderer, RendererConfig


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
    stages: list[StageStats] = field(default_factory=list)  # where each stage's time went


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
    ) -> SynthesisReport:
        """Synthesize every formula of ``inputs`` (this rank's shards) into ``out_dir``; resumable.

        ``rank``/``world_size``: which part of a split job this is (default: torchrun's
        RANK/WORLD_SIZE, else the whole job).
        """
        start = time.perf_counter()
        if not inputs:
            raise FormulaGanError("no input files given")
        if rank is None or world_size is None:
            rank, world_size = env_rank()
        if world_size < 1 or not 0 <= rank < world_size:
            raise FormulaGanError(f"shard index {rank} is outside 0..{world_size - 1}")
        check_tools()
        job = ShardedJob(out_dir, self.job_identity(inputs), self.config.samples_per_shard, rank, world_size).open()
        writer = self._writer(job)
        stats = self._run_stages(self._read(job, iter_items(inputs, self.config.variants)), self._stages(), writer)
        writer.close()
        manifest = job.finalize(self._manifest_extra(job))
        preview = job.out_dir / PREVIEW
        return SynthesisReport(job.out_dir, writer.shards, writer.samples, writer.rejected, writer.downscaled,
                               manifest, preview if preview.is_file() else None, self._identity(),
                               time.perf_counter() - start, stats)

    def _run_stages(self, pieces: Iterable[Piece], stages: list[tuple[str, Stage]],
                    writer: SynthesisWriter) -> list[StageStats]:
        """Every stage in a thread of its own, joined by bounded queues; the writer in this one."""
        with Pipeline(pieces, stages, self.queue_depth, source_name="normalize") as pipeline:
            for piece in pipeline:
                writer.add(piece)
        return pipeline.stats + [_write_stats(pipeline.consumer_stats, writer.busy_s)]

    # ---- what another method (formula_gan.synthesis.stitching) replaces -----------------------
    def _identity(self) -> dict[str, Any]:
        """What makes the output: the generator's hash and step."""
        return self.gen.identity()

    def _stages(self) -> list[tuple[str, Stage]]:
        cfg = self.config
        generate = functools.partial(generate_stage, gen=self.gen, batch_size=self.batch_size, height=cfg.height,
                                     cpu_threads=self.cpu_threads)
        encode = functools.partial(encode_stage, threads=self.encode_workers)
        return [("render", self._render_stage), ("generate", generate), ("encode", encode)]

    def _writer(self, job: ShardedJob) -> SynthesisWriter:
        return SynthesisWriter(job, self._identity(), self.progress)

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

    # ---- the stages (steps.py) with this synthesizer's settings; the stitch method replaces
    # ---- _prepare_records, _submit and _finish_render
    def _read(self, job: ShardedJob, items: Iterable[Item]) -> Iterator[Piece]:
        return read_pieces(job, items, self.render_batch, self._prepare_records)

    def _prepare_records(self, records: list[Record], normalizer: Normalizer | None) -> None:
        prepare_records(records, normalizer, self.config)

    def _render_stage(self, pieces: Iterator[Piece]) -> Iterator[Piece]:
        return render_stage(pieces, self.render_workers, self.encode_workers, self._start_renderer,
                            self._submit, self._finish_render)

    def _start_renderer(self) -> Renderer:
        return Renderer(workers=self.render_workers).__enter__()

    def _submit(self, renderer: Renderer, todo: list[Record]) -> Any:
        return submit_images(renderer, todo)

    def _finish_render(self, piece: Piece, todo: list[Record], future: Any, pool: Any) -> Piece:
        return finish_images(piece, todo, future, pool, self.config)


def _write_stats(consumer: StageStats, busy_s: float) -> StageStats:
    """The consumer's stats as the write stage: its busy time is the writer's own."""
    return StageStats("write", consumer.messages_in, 0, consumer.wait_in_s, 0.0, consumer.wait_in_s + busy_s)
