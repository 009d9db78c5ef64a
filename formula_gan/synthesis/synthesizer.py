"""``Synthesizer``: formulas in, a sharded handwritten dataset out, streamed through bounded stages.

    read + normalize + filter ─q─► lay out (Chromium pool) ─q─► the method's stages ─q─► write shards

The synthesizer does what every way of writing shares; a handwriting method
(``methods/``: ``gan``, ``stitch``, ...) says how its records are laid out and
which stages turn them into samples. Each arrow is a queue of a few messages
(pieces of up to ``render_batch`` records), so memory is bounded by what the
stages hold (about one shard of images), never by the size of the corpus.

The job is a ``ShardedJob``: item ``i`` (a formula and variant) goes to shard
``i // samples_per_shard`` and shard ``s`` to rank ``s % world_size``; a shard is
written whole or not at all, so a killed run resumes where it stopped and
split runs add up to one run. Every sample is a pure function of its item:
its style and noise come from seeds derived from the job seed and the sample's
key, and batches are formed within one shard in a fixed order. The resulting
shards are byte-identical however the job is run (on one device type and engine;
CUDA kernels and bf16 give other bytes than the CPU, ONNX Runtime a few pixels one
gray level apart from torch).

Nothing here imports torch: a method that needs it imports it itself.
"""

from __future__ import annotations

import json
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

from formula_gan.config import ConfigError, from_dict, to_dict
from formula_gan.data.jobs import ShardedJob, env_rank
from formula_gan.data.render_job import OUTPUT_SETTINGS
from formula_gan.data.shards import shard_name
from formula_gan.errors import FormulaGanError
from formula_gan.hashing import sha256_file
from formula_gan.synthesis.config import SynthesisConfig, load_synthesis_config
from formula_gan.synthesis.items import Item, Piece, Record, iter_items
from formula_gan.synthesis.methods import method_class, method_names
from formula_gan.synthesis.methods.base import Method, Resources
from formula_gan.synthesis.preview import PREVIEW
from formula_gan.synthesis.stages import Pipeline, Stage, StageStats
from formula_gan.synthesis.steps import check_tools, encode_threads, prepare_records, read_pieces, render_stage
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
    """Write formulas as handwriting with one method, at scale.

    >>> synth = Synthesizer("stitch", settings={"stitch": {"symbols": "datasets/prepared/symbols"}})
    >>> report = synth.run(["formulas.txt"], "out/stitched")
    >>> Synthesizer("gan", SynthesisConfig(variants=4), settings={"gan": {"generator": "g.pt"}},
    ...             resources=Resources(device="cuda"))

    ``method``: a name of ``methods.method_names()`` (its sections from ``settings``: dataclasses
    or plain mappings, checked key by key) or a method object made already. Everything that can
    be wrong with the set-up (files, device) is an error here, before any work; an output folder
    holding another job is an error at the start of ``run``. ``close()`` (or ``with``) ends the
    method's worker processes.
    """

    def __init__(
        self,
        method: "Method | str" = "stitch",
        config: SynthesisConfig | None = None,
        *,
        settings: Mapping[str, Any] | None = None,
        resources: Resources | None = None,
        render_batch: int = 192,
        queue_depth: int = 2,
        progress: bool = True,
        log: Any = None,
    ):
        if render_batch < 1 or queue_depth < 1:
            raise FormulaGanError("render batch and queue depth must be at least 1")
        self.config = config or SynthesisConfig()
        self.resources = resources or Resources()
        self.log = log if log is not None else sys.stderr
        if isinstance(method, str):
            cls = method_class(method)
            sections = _sections(cls, settings or {}, method)
            self.method: Method = cls.create(sections, self.resources, self.log)
        else:
            if settings:
                raise FormulaGanError("settings are for a method given by name; this one is made already")
            self.method = method
        self.render_batch = render_batch
        self.queue_depth = queue_depth
        self.progress = progress
        self.layout_start_s: float | None = None  # how long the browsers took to start (last run)

    @classmethod
    def from_config(
        cls,
        method: str,
        config_file: str | Path | None = None,
        overrides: Sequence[str] = (),
        *,
        resources: Resources | None = None,
        given: Iterable[str] = (),
        **kwargs: Any,
    ) -> "Synthesizer":
        """What ``formula-gan synthesize`` does: the shared config and the method's sections from a
        YAML file and ``a.b=c`` overrides (another method's section is an error naming it), and
        the resources; ``given``: the resources the caller set explicitly, each of which the method
        must use (``--device`` means nothing to the stitcher: an error, not a silent no-op)."""
        method_cls = method_class(method)
        unused = sorted(set(given) - set(method_cls.uses))
        if unused:
            raise ConfigError(f"{', '.join(unused)}: not used by method {method!r} "
                              f"(it uses: {', '.join(sorted(method_cls.uses)) or 'none of them'})")
        others = [name for name in method_names() if name != method]
        config, sections = load_synthesis_config(method, method_cls.sections, config_file, overrides, others)
        return cls(method_cls.create(sections, resources or Resources(), kwargs.get("log") or sys.stderr),
                   config, resources=resources, **kwargs)

    def close(self) -> None:
        self.method.close()

    def __enter__(self) -> "Synthesizer":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    # ---- the job --------------------------------------------------------------------
    def job_identity(self, inputs: Sequence[str | Path]) -> dict[str, Any]:
        """What makes two runs the same job: inputs (by name and content), method, configs."""
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
            "config": to_dict(self.config),
            "method": self.method.name,
            **self.method.job_identity(),
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
        in_turn: bool = False,
    ) -> SynthesisReport:
        """Synthesize every formula of ``inputs`` (this rank's shards) into ``out_dir``; resumable.

        ``rank``/``world_size``: which part of a split job this is (default: torchrun's
        RANK/WORLD_SIZE, else the whole job). ``in_turn``: run the stages one after another over
        the whole input instead of together (each stage's rate alone, for benchmarks; memory then
        grows with the input).
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
        writer = SynthesisWriter(job, self.method.name, self.method.identity(), self.progress)
        pieces = self._read(job, iter_items(inputs, self.config.variants))
        stages = [("layout", self._layout_stage), *self.method.stages()]
        stats = self._in_turn(pieces, stages, writer) if in_turn else self._together(pieces, stages, writer)
        writer.close()
        manifest = job.finalize(self._manifest_extra(job))
        preview = job.out_dir / PREVIEW
        return SynthesisReport(job.out_dir, writer.shards, writer.samples, writer.rejected, writer.downscaled,
                               manifest, preview if preview.is_file() else None, self.method.identity(),
                               time.perf_counter() - start, stats)

    def _together(self, pieces: Iterable[Piece], stages: list[tuple[str, Stage]],
                  writer: SynthesisWriter) -> list[StageStats]:
        """Every stage in a thread of its own, joined by bounded queues; the writer in this one."""
        with Pipeline(pieces, stages, self.queue_depth, source_name="normalize") as pipeline:
            for piece in pipeline:
                writer.add(piece)
        return pipeline.stats + [_write_stats(pipeline.consumer_stats, writer.busy_s)]

    def _in_turn(self, pieces: Iterable[Piece], stages: list[tuple[str, Stage]],
                 writer: SynthesisWriter) -> list[StageStats]:
        """Each stage over the whole stream before the next starts (its time is its own)."""
        stats = []
        t0 = time.perf_counter()
        held = list(pieces)
        stats.append(StageStats("normalize", 0, len(held), total_s=time.perf_counter() - t0))
        for name, stage in stages:
            t0 = time.perf_counter()
            out = list(stage(iter(held)))
            stats.append(StageStats(name, len(held), len(out), total_s=time.perf_counter() - t0))
            held = out
        t0 = time.perf_counter()
        for piece in held:
            writer.add(piece)
        stats.append(StageStats("write", len(held), 0, total_s=time.perf_counter() - t0))
        return stats

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
            "method": self.method.name,
            "generator": self.method.identity(),
            **self.method.manifest_extra(),
            "preview": PREVIEW,
        }

    # ---- the shared stages ----------------------------------------------------------
    def _read(self, job: ShardedJob, items: Iterable[Item]) -> Iterable[Piece]:
        layout = self.method.layout()

        def prepare(records: list[Record], normalizer: Normalizer | None) -> None:
            prepare_records(records, normalizer, self.config, layout)

        return read_pieces(job, items, self.render_batch, prepare)

    def _layout_stage(self, pieces: Iterable[Piece]) -> Iterable[Piece]:
        return render_stage(iter(pieces), self.resources.render_workers, encode_threads(), self._start_renderer,
                            self.method.layout())

    def _start_renderer(self) -> Renderer:
        t0 = time.perf_counter()
        renderer = Renderer(workers=self.resources.render_workers).__enter__()
        self.layout_start_s = time.perf_counter() - t0
        return renderer


def _sections(method_cls: Any, settings: Mapping[str, Any], method: str) -> dict[str, Any]:
    """The method's sections from ``settings`` (dataclass instances or mappings); another
    method's section is an error naming it."""
    unknown = sorted(set(settings) - set(method_cls.sections))
    if unknown:
        raise ConfigError(f"{', '.join(unknown)}: not a section of method {method!r} "
                          f"(its sections: {', '.join(method_cls.sections)})")
    out = {}
    for name, section_cls in method_cls.sections.items():
        value = settings.get(name)
        out[name] = value if isinstance(value, section_cls) else from_dict(section_cls, value, name)
    return out


def _write_stats(consumer: StageStats, busy_s: float) -> StageStats:
    """The consumer's stats as the write stage: its busy time is the writer's own."""
    return StageStats("write", consumer.messages_in, 0, consumer.wait_in_s, 0.0, consumer.wait_in_s + busy_s)
