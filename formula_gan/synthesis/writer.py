"""The last stage of a synthesis job: each shard is written when all of its records are in.

Records arrive in pieces, a shard's pieces in order (the stages keep order). At
the shard's last piece its records are sorted by position, checked complete,
and committed through the job as one shard (samples) plus its rejects and stats;
for shard 0, ``preview.png`` is written first.
"""

from __future__ import annotations

import collections
import sys
import time
from typing import Any

from tqdm import tqdm

from formula_gan.data.jobs import ShardedJob, ShardResult, disk_space_for
from formula_gan.data.shards import Sample
from formula_gan.synthesis.items import Piece, Record
from formula_gan.synthesis.preview import PREVIEW, PREVIEW_PAIRS, write_preview

DOMAIN = "synthetic"  # every sample's domain


class SynthesisWriter:
    """Collects pieces (in the calling thread) and commits each shard whole."""

    def __init__(self, job: ShardedJob, method: str, generator: dict[str, Any], progress: bool):
        self.job = job
        self.method = method  # every sample's "method"
        self.generator = generator  # every sample's "generator": what made it (the method's identity)
        self.shard: int | None = None
        self.records: list[Record] = []
        self.shards = self.samples = self.rejected = self.downscaled = 0
        self.busy_s = 0.0
        self._bar = tqdm(unit=" samples", desc="synthesize", dynamic_ncols=True, file=sys.stderr) if progress else None

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
            if "oversize" in r.meta:
                downscaled.append(r.key)
        if self.shard == 0:
            rows = [r.preview for r in records if r.png is not None and len(r.preview) >= 2]
            if rows:
                # Before the shard's commit: if a kill comes between the two, the rerun redoes both.
                with disk_space_for(self.job.out_dir, PREVIEW, 1 << 20):
                    write_preview(self.job.out_dir / PREVIEW, rows[:PREVIEW_PAIRS])
        stats = {"token_counts": dict(sorted(tokens.items())), "downscaled": downscaled}
        self.job.commit(self.shard, ShardResult(samples, rejects, stats))  # type: ignore[arg-type]
        self.shards += 1
        self.samples += len(samples)
        self.rejected += len(rejects)
        self.downscaled += len(downscaled)
        self.shard, self.records = None, []

    def _sample(self, r: Record) -> Sample:
        assert r.rendering is not None and r.size is not None and r.png is not None
        meta = r.rendering.meta()  # latex, tokens, source, style, seed, variant: as `render` writes them
        meta.update(domain=DOMAIN, method=self.method, generator=self.generator, size=list(r.size))
        meta.update(r.meta)  # what the method adds (z seed, boxes and writers, the oversize policy applied, ...)
        return Sample(r.key, r.png, meta, r.members)  # type: ignore[arg-type]

    def close(self) -> None:
        if self.records:
            raise RuntimeError(f"shard {self.shard} left incomplete")
        if self._bar is not None:
            self._bar.close()
