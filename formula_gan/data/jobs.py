"""Sharded, resumable, splittable dataset jobs (render, prepare, synthesize).

A job turns a deterministic stream of work items into shards: item ``i`` goes to
shard ``i // items_per_shard``. A shard is the unit of work and of failure: it is
written whole (tar to a temporary name, renamed; then its small sidecar
``shard-NNNNNN.json`` with counts, rejects and checksum, renamed last) or not at
all. So:

* resume = skip complete shards: kill -9 at any point, rerun, and every item ends
  up in exactly one complete shard. A shard is complete when its sidecar exists and
  the shard's size and sha256 are the sidecar's: a shard damaged since (truncated,
  a flipped byte, deleted) is reported in one line and done again, byte-identical;
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

import contextlib
import errno
import json
import os
import re
import shutil
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Generic, Iterable, Iterator, TextIO, TypeVar


from formula_gan import __version__
from formula_gan.data.shards import (
    ShardWriter,
    Sample,
    atomic_write_bytes,
    atomic_write_json,
    shard_index,
    shard_name,
)
from formula_gan.data.shard_sets import FORMAT, MANIFEST, VerifyReport, load_manifest, shard_paths, verify  # noqa: F401
from formula_gan.hashing import sha256_file
from katex_render.process import pid_alive

T = TypeVar("T")
REJECTS = "rejects.jsonl"
JOB = "job.json"


# A killed run's temporaries of the folder-wide files (job.json, manifest.json, ...),
# named ".<name>.tmp-<pid>" by atomic_write_bytes. They are removed when their writer is
# gone and they are older than a write could take: another rank may be writing its own.
_FOLDER_TEMPORARY = re.compile(r"^\.(?!shard-)[^/]+\.tmp-(\d+)$")
STALE_AFTER_S = 60.0


class JobMismatchError(FormulaGanError):
    """The output folder already holds a different job."""


class DiskFullError(FormulaGanError):
    """The output folder's file system is full (or its quota is used up)."""


@contextlib.contextmanager
def disk_space_for(folder: str | Path, what: str, need: int) -> Iterator[None]:
    """Turn a full disk while writing ``what`` (about ``need`` bytes) into one clear error.
    The writers (ShardWriter, atomic_write_bytes) have removed their half files by then."""
    try:
        yield
    except OSError as err:
        if err.errno not in (errno.ENOSPC, errno.EDQUOT):
            raise
        free = shutil.disk_usage(folder).free
        raise DiskFullError(
            f"no space left in {folder} for {what}: {_size(free)} free, it needs about {_size(need)}; "
            "free some space and rerun the same command to resume (finished shards are kept)"
        ) from err


def _size(n: int) -> str:
    return f"{n / 1e6:.1f} MB" if n >= 100_000 else f"{n / 1e3:.0f} kB"


def _is_retryable(record: dict[str, Any]) -> bool:
    return bool(record.get("retryable"))


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
        log: TextIO | None = None,
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
        self.log = log  # where a damaged shard found by a rerun is reported, one line each (None: stderr)
        self.damaged: list[str] = []  # those lines
        self._intact: set[int] = set()  # shards this process wrote or hashed whole: not hashed again

    # ---- set-up ---------------------------------------------------------------------
    def open(self) -> "ShardedJob":
        """Create the folder or check that it holds this same job (before any work)."""
        if self.out_dir.exists() and not self.out_dir.is_dir():
            raise JobMismatchError(f"{self.out_dir} is a file, not a folder; choose another --out")
        self.out_dir.mkdir(parents=True, exist_ok=True)
        path = self.out_dir / JOB
        if path.exists():
            try:
                existing = json.loads(path.read_text(encoding="utf-8"))
            except (json.JSONDecodeError, UnicodeDecodeError, RecursionError) as err:
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
            self._remove_stale_temporaries()
            with disk_space_for(self.out_dir, JOB, 4096):
                atomic_write_json(path, self.job)
        return self

    def _remove_stale_temporaries(self) -> None:
        """Delete half-written files a killed run left: those of this rank's shards (only
        this rank writes them, and it is starting now, so none is live), and those of the
        folder-wide files whose writer no longer runs."""
        for tmp in self.out_dir.glob(".shard-*.tmp-*"):
            index = shard_index(tmp.name[1:].split(".tmp-")[0].replace(".json", ".tar"))
            if index is not None and self.is_mine(index):
                tmp.unlink(missing_ok=True)
        for tmp in self.out_dir.glob(".*.tmp-*"):
            match = _FOLDER_TEMPORARY.match(tmp.name)
            if match is None or pid_alive(int(match.group(1))):
                continue
            try:
                if time.time() - tmp.stat().st_mtime > STALE_AFTER_S:
                    tmp.unlink()
            except FileNotFoundError:
                continue  # another rank removed it first

    # ---- planning -------------------------------------------------------------------
    def is_complete(self, index: int) -> bool:
        """The shard and its sidecar are there and the shard's size is the sidecar's (no sha256:
        finalize asks about every shard, other ranks' too; planning checks this rank's in full)."""
        return self._check(index, checksum=False)[0] is not None

    def is_mine(self, index: int) -> bool:
        return index % self.world_size == self.rank

    def _to_do(self, index: int) -> bool:
        """Whether this run (re)does shard ``index``: it is not complete, it is damaged (reported),
        or some of its rejects were retryable (timeouts, a dead browser: the machine's state, not
        the input's fault). The sha256 of every complete shard of this rank is checked on every
        rerun: it reads a finished set once, at the disk's speed. Measured on the 2-core machine,
        a finished set of 400 shards (270 MB, 40,000 samples) took 0.3 s to check (page cache),
        the size-only check 0.02 s; writing those shards alone took 8 s, rendering them ~100 s."""
        info, damage = self._check(index, checksum=True)
        if damage is not None:
            line = f"{self.out_dir / shard_name(index)}: {damage}; the shard is done again"
            self.damaged.append(line)
            print(line, file=self.log or sys.stderr, flush=True)
        return info is None or bool(info.get("retryable"))

    def _check(self, index: int, checksum: bool) -> tuple[dict[str, Any] | None, str | None]:
        """(sidecar, damage) of shard ``index``: the sidecar when the shard is complete, else None
        with why, when a sidecar says it was finished but the shard no longer matches it."""
        sidecar = self.out_dir / _sidecar(index)
        if not sidecar.exists():
            return None, None  # not finished (or killed between the tar's rename and its sidecar's)
        try:
            info = json.loads(sidecar.read_text(encoding="utf-8"))
        except (OSError, ValueError) as err:  # ValueError: bad JSON or UTF-8
            return None, f"its sidecar {sidecar.name} is unreadable ({err})"
        path = self.out_dir / shard_name(index)
        if not path.is_file():
            return None, f"missing, though its sidecar {sidecar.name} is there"
        size = path.stat().st_size
        if not isinstance(info, dict) or size != info.get("bytes"):
            listed = info.get("bytes") if isinstance(info, dict) else None
            return None, f"{size} bytes, its sidecar says {listed} (truncated or modified)"
        if checksum and index not in self._intact:
            if sha256_file(path) != info.get("sha256"):
                return None, "sha256 differs from its sidecar's (modified or corrupt)"
            self._intact.add(index)
        return info, None

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
                wanted = self.is_mine(index) and self._to_do(index)
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
        # A shard done again (a retry) is not complete, nor the set finished, until it is
        # written: the old sidecar and manifest go first, so a kill in between redoes it.
        (self.out_dir / _sidecar(index)).unlink(missing_ok=True)
        (self.out_dir / MANIFEST).unlink(missing_ok=True)
        need = sum(len(s.png) + 2048 for s in result.samples) + 1024 * (len(result.rejects) + 1)
        with disk_space_for(self.out_dir, path.name, need):
            with ShardWriter(path) as writer:
                for sample in result.samples:
                    writer.write(sample)
            info = {
                "name": path.name,
                "samples": writer.count,
                "rejected": len(result.rejects),
                "retryable": sum(map(_is_retryable, result.rejects)),
                "bytes": path.stat().st_size,
                "sha256": sha256_file(path),
                "rejects": result.rejects,
                "stats": result.stats,
            }
            atomic_write_json(self.out_dir / _sidecar(index), info)
        self._intact.add(index)
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
        lines = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rejects).encode("utf-8")
        with disk_space_for(self.out_dir, f"{REJECTS} and {MANIFEST}", len(lines) + 1024 * (total + 1)):
            atomic_write_bytes(self.out_dir / REJECTS, lines)
            atomic_write_json(self.out_dir / MANIFEST, manifest)
        return manifest


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
