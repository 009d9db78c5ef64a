"""Formulas in, rendered shards out: the Python API of ``formula-gan render`` and
``formula-gan prepare-formulas``.

The stream, in input order::

    read_formulas ─► Normalizer ─► filters (vocab, max tokens) ─► items ─► ShardedJob
                                                       (formula × variant)      │ pending shards
                                                                                ▼
                 manifest.json + rejects.jsonl ◄── commit ◄── (width filter) ◄── Renderer

Every input line becomes items in a fixed order: a rejected line is one item
(its reject), an accepted formula is ``variants`` items. Item ``i`` belongs to
shard ``i // shard_size``, so a rerun into the same folder skips complete shards
and writes what an uninterrupted run would have: each item's style comes from a
seed derived from (seed, source, latex, variant) alone, and the renderer gives
the same pixels for the same formula and style whatever batch it lands in.

Rendered is the normalized form (``tokens_to_latex``: tokens joined by spaces,
text arguments unspaced) under the sampled font command; a sample's ``latex`` keeps the input as given and ``tokens`` the
normalized tokens.
"""

from __future__ import annotations

import collections
import hashlib
import json
import time
from concurrent.futures import Future
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Iterator

import numpy as np
from tqdm import tqdm

from formula_gan.config import to_dict
from formula_gan.data.crohme_job import iter_crohme_labels
from formula_gan.data.png import encode_png
from formula_gan.data.inkml import iter_inkml_files
from formula_gan.data.jobs import Chunk, ShardResult, ShardedJob, env_rank
from formula_gan.data.shards import Sample, shard_name
from formula_gan.data.vocab import Vocab
from formula_gan.errors import FormulaGanError
from formula_gan.hashing import sha256_file
from katex_render.normalize import (
    TIMEOUT_REASON,
    Normalizer,
    load_vocab,
    normalize_formulas,
    reason_category,
    tokens_to_latex,
)
from katex_render.readers import Reject, SourceFormula, read_formulas
from katex_render.renderer import RenderConfig, Renderer
from katex_render.styles import Style, StyleConfig, sample_style

# Renderer settings that change the pixels (the rest, like workers and batch
# size, change only the speed and may differ between a run and its resume).
OUTPUT_SETTINGS = ("strict", "max_size", "max_expand", "display_mode", "max_group_depth", "max_side", "max_pixels",
                   "ink_threshold")


# ---- the pieces other jobs (synthesis) reuse ---------------------------------------
def derive_seed(seed: int, source: str, latex: str, variant: int) -> int:
    """A 63-bit seed that depends only on the job seed and this item."""
    digest = hashlib.sha256(f"{seed}\x00{source}\x00{latex}\x00{variant}".encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") >> 1


def sample_key(source: str, latex: str, variant: int) -> str:
    """Stable shard key: letters, digits and '-' only."""
    digest = hashlib.sha1(f"{source}\x00{latex}".encode("utf-8")).hexdigest()[:12]
    return f"{digest}-v{variant}"


@dataclass(frozen=True)
class RenderItem:
    """One image to render: an accepted formula in one variant."""

    formula: SourceFormula
    tokens: tuple[str, ...]
    variant: int
    seed: int
    style: Style

    @property
    def key(self) -> str:
        return sample_key(self.formula.source, self.formula.latex, self.variant)

    @property
    def rendered_latex(self) -> str:
        """What is rendered: the normalized tokens, spaced (text arguments kept unspaced)."""
        return tokens_to_latex(list(self.tokens))

    def meta(self) -> dict[str, Any]:
        return {
            "latex": self.formula.latex,
            "tokens": " ".join(self.tokens),
            "source": self.formula.source,
            "domain": "rendered",
            "style": self.style.to_json(),
            "seed": self.seed,
            "variant": self.variant,
        }


Item = RenderItem | Reject


def plan_items(accepted: Iterable[tuple[SourceFormula, list[str]] | Reject], style_cfg: StyleConfig,
               seed: int, variants: int) -> Iterator[Item]:
    """Expand normalized formulas into render items (``variants`` each); rejects pass through."""
    for entry in accepted:
        if isinstance(entry, Reject):
            yield entry
            continue
        formula, tokens = entry
        for variant in range(variants):
            item_seed = derive_seed(seed, formula.source, formula.latex, variant)
            yield RenderItem(formula, tuple(tokens), variant, item_seed, sample_style(style_cfg, item_seed))


def reject_record(source: str, latex: str, reason: str, variant: int | None = None) -> dict[str, Any]:
    """One line of rejects.jsonl: {"source", "line", "input", "reason"} (+ "variant" for render rejects,
    + "retryable": true for a reject that the next run of the job tries again)."""
    record = Reject(source, latex, reason).to_record()
    if variant is not None:
        record["variant"] = variant
    if is_retryable(reason):
        record["retryable"] = True
    return record


def is_retryable(reason: str) -> bool:
    """Rejects that depend on the machine's state, not on the input: a timeout (a loaded
    machine) or a browser that died. Recording them as final would make them permanent,
    since timeouts are no part of a job's identity; their shard is redone on a rerun."""
    return reason == TIMEOUT_REASON or reason.startswith(("render: timed out", "render: the browser died"))


def width_at_height(image: np.ndarray, height: int) -> float:
    """The width of ``image`` [h, w] once scaled to ``height`` px (the paper's width filter)."""
    return image.shape[1] * height / image.shape[0]


# ---- the job ------------------------------------------------------------------------
@dataclass
class RenderJobSpec:
    """What to render and which formulas to keep."""

    input: str | Path
    out: str | Path
    seed: int = 0
    variants: int = 1
    shard_size: int = 1000
    fmt: str = "auto"
    filter_list: str | Path | None = None
    vocab: set[str] | None = None           # keep only formulas whose tokens are all in it
    vocab_origin: str | None = None         # where the vocabulary came from (recorded in job.json)
    max_tokens: int | None = None
    max_width: int | None = None            # keep only images at most this wide at `height`
    height: int = 128
    command: str = "render"
    boxes: bool = False                     # per-symbol boxes in each sample's JSON (katex_render.boxes)

    def __post_init__(self) -> None:
        if self.variants < 1:
            raise FormulaGanError(f"--variants must be at least 1, got {self.variants}")
        if self.shard_size < 1:
            raise FormulaGanError(f"--shard-size must be at least 1, got {self.shard_size}")
        if self.max_tokens is not None and self.max_tokens < 1:
            raise FormulaGanError(f"--max-tokens must be at least 1, got {self.max_tokens}")
        if self.max_width is not None and self.max_width < 1:
            raise FormulaGanError(f"--max-width must be at least 1, got {self.max_width}")
        if not Path(self.input).exists():
            raise FormulaGanError(f"input not found: {self.input}")
        if Path(self.input).is_dir() and (self.fmt not in ("auto", "crohme") or self.filter_list):
            raise FormulaGanError(f"{self.input} is a folder: only a folder of CROHME InkML files can be read")


@dataclass
class RenderJobSummary:
    out: Path
    items: int = 0                 # items in the whole job (all shards)
    samples_written: int = 0       # by this run
    rejected_written: int = 0      # by this run
    shards_written: int = 0
    shards_skipped: int = 0
    num_shards: int = 0
    seconds: float = 0.0
    manifest: dict[str, Any] | None = None
    reasons: collections.Counter = field(default_factory=collections.Counter)

    def line(self) -> str:
        rate = self.samples_written / self.seconds if self.seconds > 0 else 0.0
        done = (f"{self.manifest['num_samples']} samples, {self.manifest['num_rejected']} rejected in total "
                f"(manifest.json, rejects.jsonl)") if self.manifest else "not finished: other ranks still have shards to write"
        top = "; ".join(f"{n}x {r}" for r, n in self.reasons.most_common(3))
        return (f"{self.shards_written} shards written, {self.shards_skipped} already complete, of {self.num_shards} "
                f"in {self.out}: {done}; this run: {self.samples_written} rendered, {self.rejected_written} rejected, "
                f"{self.seconds:.1f} s ({rate:.0f} samples/s)" + (f"; top reasons: {top}" if top else ""))


def job_description(spec: RenderJobSpec, config: RenderConfig) -> dict[str, Any]:
    """job.json: everything that decides the dataset (not the speed settings)."""
    renderer = to_dict(config.renderer)
    return {
        "command": spec.command,
        "input": Path(spec.input).name,
        "input_sha256": input_fingerprint(spec.input),
        "format": spec.fmt,
        "filter_list_sha256": sha256_file(spec.filter_list) if spec.filter_list else None,
        "seed": spec.seed,
        "variants": spec.variants,
        "vocab": spec.vocab_origin,
        "vocab_sha1": hashlib.sha1("\n".join(sorted(spec.vocab)).encode()).hexdigest() if spec.vocab else None,
        "max_tokens": spec.max_tokens,
        "max_width": spec.max_width,
        "height": spec.height if spec.max_width else None,
        "style": to_dict(config.style),
        "renderer": {k: renderer[k] for k in OUTPUT_SETTINGS},
        **({"boxes": True} if spec.boxes else {}),  # absent when off: older jobs keep their identity
    }


def load_vocab_tokens(path: str | Path) -> set[str]:
    """The tokens of a vocabulary: a shard folder (or its manifest.json), whose vocabulary the
    data layer reads, or a vocabulary file (JSON list, {"tokens": [...]}, or one token per line)."""
    path = Path(path)
    if path.name == "manifest.json":
        path = path.parent
    if path.is_dir():
        return set(Vocab.from_manifest(path).tokens)
    return load_vocab(path)


def read_input(spec: RenderJobSpec) -> Iterator[SourceFormula | Reject]:
    """A formula file, or a folder of CROHME InkML files whose ``truth`` labels are the
    formulas (rendering them gives the rendered domain paired with the handwriting)."""
    if Path(spec.input).is_dir():
        return iter_crohme_labels(spec.input)
    return read_formulas(spec.input, spec.fmt, spec.filter_list)


def input_fingerprint(path: str | Path) -> str:
    """sha256 of a file, or of every InkML file (path and content) below a folder."""
    path = Path(path)
    if path.is_file():
        return sha256_file(path)
    digest = hashlib.sha256()
    for inkml in iter_inkml_files(path):
        digest.update(inkml.relative_to(path).as_posix().encode() + b"\0" + sha256_file(inkml).encode())
    return digest.hexdigest()


def _render_chunk(chunk: Chunk[Item], renderer: Renderer, boxes: bool = False) -> Future:
    if boxes:  # the same LaTeX (tokens_to_latex under the style), measured per symbol
        return renderer.submit_boxes([(item.tokens, item.style) for item in chunk.items if isinstance(item, RenderItem)])
    todo = [(item.rendered_latex, item.style) for item in chunk.items if isinstance(item, RenderItem)]
    return renderer.submit(todo)


def _finish_chunk(chunk: Chunk[Item], results: list[Any], spec: RenderJobSpec,
                  summary: RenderJobSummary) -> ShardResult:
    samples: list[Sample] = []
    rejects: list[dict[str, Any]] = []
    vocab: set[str] = set()
    answers = iter(results)
    for item in chunk.items:
        if isinstance(item, Reject):
            rejects.append(reject_record(item.source, item.input, item.reason))
            continue
        answer = next(answers)
        image, error = (answer.image, answer.error) if spec.boxes else answer
        if image is None:
            reason = f"render: {error}"
        elif spec.boxes and not answer.boxes:
            reason = f"render: no symbol boxes: {answer.boxes_error}"
        elif spec.max_width is not None and width_at_height(image, spec.height) > spec.max_width:
            reason = (f"too wide: {width_at_height(image, spec.height):.0f} px at height {spec.height} "
                      f"> {spec.max_width}")
        else:
            meta = item.meta()
            if spec.boxes:  # [token index, x0, y0, x1, y1]: columns x0..x1-1, rows y0..y1-1 of the image
                meta["boxes"] = [b.to_json() for b in answer.boxes]
            samples.append(Sample(item.key, encode_png(image), meta))
            vocab.update(item.tokens)
            continue
        rejects.append(reject_record(item.formula.source, item.formula.latex, reason, item.variant))
    for record in rejects:
        summary.reasons[reason_category(record["reason"])] += 1
    summary.samples_written += len(samples)
    summary.rejected_written += len(rejects)
    return ShardResult(samples, rejects, {"vocab": sorted(vocab)})


def run_render_job(spec: RenderJobSpec, config: RenderConfig | None = None, *, workers: int | None = None,
                   progress: bool = True, rank: int | None = None, world_size: int | None = None) -> RenderJobSummary:
    """Render ``spec.input`` into shards under ``spec.out``; resumable, splittable by rank."""
    config = config or RenderConfig()
    if workers is not None and not 1 <= workers <= 64:
        raise FormulaGanError(f"workers must be in 1..64, got {workers}")  # before the folder is touched
    if rank is None or world_size is None:
        rank, world_size = env_rank()
    started = time.perf_counter()
    out = Path(spec.out)
    job = ShardedJob(out, job_description(spec, config), spec.shard_size, rank, world_size).open()
    summary = RenderJobSummary(out=out)
    bar = tqdm(desc=spec.command, unit="item", disable=not progress, dynamic_ncols=True)
    renderer: Renderer | None = None  # started at the first pending shard: a finished job starts no browser
    try:
        with Normalizer() as normalizer:
            stream = read_input(spec)
            accepted = normalize_formulas(stream, normalizer, vocab=spec.vocab, max_tokens=spec.max_tokens)
            items = plan_items(accepted, config.style, spec.seed, spec.variants)
            previous: tuple[Chunk[Item], Future] | None = None
            # One chunk renders in the browsers while the previous one is encoded and written.
            for chunk in job.pending(items):
                if renderer is None:
                    renderer = Renderer(workers=workers, config=config.renderer).__enter__()
                current = (chunk, _render_chunk(chunk, renderer, spec.boxes))
                if previous is not None:
                    _commit(job, previous, spec, summary, bar)
                previous = current
            if previous is not None:
                _commit(job, previous, spec, summary, bar)
    finally:
        if renderer is not None:
            renderer.close()
        bar.close()
    summary.items = job.num_items or 0
    summary.num_shards = job.num_shards()
    summary.shards_skipped = sum(1 for i in range(summary.num_shards)
                                 if job.is_mine(i)) - summary.shards_written
    summary.manifest = job.finalize(_manifest_extra(job, spec, config))
    summary.seconds = time.perf_counter() - started
    return summary


def _commit(job: ShardedJob, pending: tuple[Chunk[Item], Future], spec: RenderJobSpec,
            summary: RenderJobSummary, bar: Any) -> None:
    chunk, future = pending
    job.commit(chunk.index, _finish_chunk(chunk, future.result(), spec, summary))
    summary.shards_written += 1
    bar.update(len(chunk.items))


def _manifest_extra(job: ShardedJob, spec: RenderJobSpec, config: RenderConfig) -> dict[str, Any]:
    """Vocabulary of the written samples and counts by reason, merged from every shard's sidecar."""
    vocab: set[str] = set()
    reasons: collections.Counter = collections.Counter()
    for index in range(job.num_shards()):
        sidecar = job.out_dir / (shard_name(index)[: -len(".tar")] + ".json")
        if not sidecar.is_file():
            return {}  # not finished (finalize will not write a manifest either)
        info = json.loads(sidecar.read_text(encoding="utf-8"))
        vocab.update(info.get("stats", {}).get("vocab", []))
        reasons.update(reason_category(r["reason"]) for r in info.get("rejects", []))
    return {
        "domain": "rendered",
        "vocab": sorted(vocab),
        "reject_reasons": dict(sorted(reasons.items(), key=lambda kv: (-kv[1], kv[0]))),
        "config": to_dict(config),
        "filters": {"vocab": spec.vocab_origin, "max_tokens": spec.max_tokens, "max_width": spec.max_width,
                    "height": spec.height if spec.max_width else None},
    }
