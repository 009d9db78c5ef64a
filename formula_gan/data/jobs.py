"""Sharded, resumable, splittable dataset jobs (render, prepare, synthesize).

A job turns a deterministic stream of work items into shards: item ``i`` goes to
shard ``i // items_per_shard``. A shard is the unit of work and of failure: it is
written whole (tar to a temporary name, renamed; then its small sidecar
``shard-NNNNNN.json`` with counts, rejects and checksum, renamed last) or not at
all. So:

* resume = skip shards whose sidecar exists: kill -9 at any point, rerun, and
  every item ends up in exactly one complete shard;
* split = shard ``s`` belongs to rank ``s % world_size``: many processes, GPUs or
  machines share one output folder and together write exactly what one
  process would;
* ``finalize`` merges the sidecars into ``manifest.json`` and ``rejects.jsonl``
  once every shard is there (whichever process finishes last writes them).

``job.json`` records what the job is (its inputs, config, generator); rerunning
into a folder that holds another job is an error before any work is done.
"""

from __future__ import annotations

from formula_gan.errors import FormulaGanError

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Generic, Iterable, Iterator, TypeVar

from formula_gan import __version__
from formula_gan.data.shards import (
    ShardError,
    ShardWriter,
    Sample,
    atomic_write_bytes,
    atomic_write_json,
    sha256_file,
    shard_index,
    shard_name,
)

T = TypeVar("T")
MANIFEST = "manifest.json"
REJECTS = "rejects.jsonl"
JOB = "job.json"
FORMAT = "formula-gan-shards/1"


class JobMismatchError(FormulaGanError):
    """The output folder already holds a different job."""


@dataclass
class Chunk(Generic[T]):
    """The work items of one shard."""

    index: int
    items: list[T]

    @property
    def name(self) -> str:
        return shard_name(self.index)


@dataclass
class ShardResult:
    """What a shard's worker produced: its samples and the items it had to reject."""

    samples: list[Sample]
    rejects: list[dict[str, Any]] = field(default_factory=list)
    stats: dict[str, Any] = field(default_factory=dict)


class ShardedJob:
    """One output folder of shards, shared by ``world_size`` cooperating processes."""

    def __init__(
        self,
        out_dir: str | Path,
        job: dict[str, Any],
        items_per_shard: int,
        rank: int = 0,
        world_size: int = 1,
    ):
        if items_per_shard < 1:
            raise ValueError("items_per_shard must be at least 1")
        if not 0 <= rank < world_size:
            raise ValueError(f"shard index {rank} is outside 0..{world_size - 1}")
        self.out_dir = Path(out_dir)
        self.items_per_shard = items_per_shard
        self.rank = rank
        self.world_size = world_size
        self.job = {**job, "items_per_shard": items_per_shard}
        self.num_items: int | None = None

    # ---- set-up ---------------------------------------------------------------------
    def open(self) -> "ShardedJob":
        """Create the folder or check that it holds this same job (before any work)."""
        self.out_dir.mkdir(parents=True, exist_ok=True)
        path = self.out_dir / JOB
        if path.exists():
            try:
                existing = json.loads(path.read_text(encoding="utf-8"))
            except json.JSONDecodeError as err:
                raise JobMismatchError(f"{path} is not valid JSON ({err}); remove the folder or choose another --out") from err
            if existing != self.job:
                diff = _first_difference(existing, self.job)
                raise JobMismatchError(
                    f"{self.out_dir} holds a different job ({diff}); "
                    "choose another --out, or remove the folder to start over"
                )
            self._remove_stale_temporaries()
        else:
            if any(p.suffix == ".tar" for p in self.out_dir.iterdir()):
                raise JobMismatchError(f"{self.out_dir} holds shards but no {JOB}; choose an empty folder")
            atomic_write_json(path, self.job)
        return self

    def _remove_stale_temporaries(self) -> None:
        """Delete half-written files of this rank's shards (a killed run leaves them):
        only this rank writes those shards, and it is starting now, so none is live."""
        for tmp in self.out_dir.glob(".shard-*.tmp-*"):
            index = shard_index(tmp.name[1:].split(".tmp-")[0].replace(".json", ".tar"))
            if index is not None and self.is_mine(index):
                tmp.unlink(missing_ok=True)

    # ---- planning -------------------------------------------------------------------
    def is_complete(self, index: int) -> bool:
        return (self.out_dir / _sidecar(index)).exists() and (self.out_dir / shard_name(index)).exists()

    def is_mine(self, index: int) -> bool:
        return index % self.world_size == self.rank

    def pending(self, items: Iterable[T]) -> Iterator[Chunk[T]]:
        """Group the item stream into shards and yield the ones this rank still has to do.

        The stream is consumed to the end (counting items), but only pending chunks
        are materialized, so skipping done work costs only reading the input.
        """
        count = 0
        chunk: list[T] = []
        index, wanted = -1, False
        for item in items:
            if count // self.items_per_shard != index:
                index = count // self.items_per_shard
                wanted = self.is_mine(index) and not self.is_complete(index)
            count += 1
            if wanted:
                chunk.append(item)
            if count % self.items_per_shard == 0 and chunk:
                yield Chunk(index, chunk)
                chunk = []
        if chunk:
            yield Chunk(index, chunk)
        self.num_items = count

    def num_shards(self) -> int:
        if self.num_items is None:
            raise RuntimeError("num_shards is known once the item stream has been consumed")
        return -(-self.num_items // self.items_per_shard)

    # ---- writing --------------------------------------------------------------------
    def commit(self, index: int, result: ShardResult) -> dict[str, Any]:
        """Write shard ``index`` atomically, then its sidecar; return the sidecar."""
        path = self.out_dir / shard_name(index)
        with ShardWriter(path) as writer:
            for sample in result.samples:
                writer.write(sample)
        info = {
            "name": path.name,
            "samples": writer.count,
            "rejected": len(result.rejects),
            "bytes": path.stat().st_size,
            "sha256": sha256_file(path),
            "rejects": result.rejects,
            "stats": result.stats,
        }
        atomic_write_json(self.out_dir / _sidecar(index), info)
        return info

    def finalize(self, extra: dict[str, Any] | None = None) -> dict[str, Any] | None:
        """Write manifest.json and rejects.jsonl if every shard is complete; else None."""
        total = self.num_shards()
        if not all(self.is_complete(i) for i in range(total)):
            return None
        shards, rejects = [], []
        for i in range(total):
            info = json.loads((self.out_dir / _sidecar(i)).read_text(encoding="utf-8"))
            rejects.extend(info.pop("rejects"))
            shards.append(info)
        manifest = {
            "format": FORMAT,
            "created_by": f"formula-gan {__version__}",
            "num_items": self.num_items,
            "num_samples": sum(s["samples"] for s in shards),
            "num_rejected": len(rejects),
            "num_shards": total,
            "shards": shards,
            "job": self.job,
            **(extra or {}),
        }
        lines = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rejects)
        atomic_write_bytes(self.out_dir / REJECTS, lines.encode("utf-8"))
        atomic_write_json(self.out_dir / MANIFEST, manifest)
        return manifest


def load_manifest(shard_dir: str | Path) -> dict[str, Any]:
    path = Path(shard_dir) / MANIFEST
    if not path.is_file():
        raise ShardError(f"{shard_dir}: no {MANIFEST} (not a finished shard set)")
    manifest = json.loads(path.read_text(encoding="utf-8"))
    if manifest.get("format") != FORMAT:
        raise ShardError(f"{path}: unknown format {manifest.get('format')!r}")
    return manifest


def shard_paths(shard_dir: str | Path) -> list[Path]:
    """The shard files of a finished set, in order, as its manifest lists them."""
    manifest = load_manifest(shard_dir)
    return [Path(shard_dir) / s["name"] for s in manifest["shards"]]


def verify(shard_dir: str | Path) -> None:
    """Check every shard's size and checksum against the manifest."""
    manifest = load_manifest(shard_dir)
    for info in manifest["shards"]:
        path = Path(shard_dir) / info["name"]
        if not path.is_file():
            raise ShardError(f"{path}: missing")
        if path.stat().st_size != info["bytes"] or sha256_file(path) != info["sha256"]:
            raise ShardError(f"{path}: size or checksum differs from {MANIFEST} (truncated or modified)")


def _sidecar(index: int) -> str:
    return shard_name(index)[: -len(".tar")] + ".json"


def _first_difference(a: Any, b: Any, where: str = "") -> str:
    if isinstance(a, dict) and isinstance(b, dict):
        for key in sorted(set(a) | set(b)):
            if a.get(key) != b.get(key):
                return _first_difference(a.get(key), b.get(key), f"{where}.{key}" if where else key)
    return f"{where or 'job'}: {json.dumps(a)[:80]} here, {json.dumps(b)[:80]} now"


def env_rank() -> tuple[int, int]:
    """(rank, world_size) from torchrun's environment, or (0, 1)."""
    return int(os.environ.get("RANK", "0")), int(os.environ.get("WORLD_SIZE", "1"))
