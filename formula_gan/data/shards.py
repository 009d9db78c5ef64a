"""WebDataset tar shards: writing them atomically and deterministically, reading them back.

A sample is ``<key>.png`` (8-bit grayscale, dark ink on white) plus ``<key>.json``
(its metadata, see DESIGN.md's sample schema). Tars are written byte-for-byte
deterministically (fixed mtime, owner and mode, members in sample order), so the
same samples give the same file and the same checksum, which is what makes
resume and split jobs comparable to uninterrupted ones.
"""

from __future__ import annotations

import io
import json
import os
import re
import tarfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

from formula_gan.errors import FormulaGanError

SHARD_PATTERN = "shard-{index:06d}.tar"
_SHARD_RE = re.compile(r"^shard-(\d{6})\.tar$")
# Keys become tar member names "<key>.png"; webdataset splits a member name at
# its first dot, so keys must not contain dots (or slashes).
_KEY_RE = re.compile(r"[A-Za-z0-9_\-]+")
_EXT_RE = re.compile(r"[a-z0-9]+(\.[a-z0-9]+)*")


class ShardError(FormulaGanError):
    """A shard that is missing, truncated, or does not match its manifest."""


class SampleKeyError(ShardError, ValueError):
    """A sample key that is not the project's key shape. Keys become file names in exports,
    so a key read from a shard is untrusted input. Also a ValueError: to ShardWriter, a bad
    key is a bad argument."""


_KEY_RULE = "a sample key may hold only letters, digits, '_' and '-'"


def check_key(key: object, where: str | Path = "sample") -> str:
    """``key`` when it has the project's key shape (ASCII letters, digits, '_', '-'), else a
    SampleKeyError naming ``where``. The shape alone rules out absolute paths, separators and
    '..'; the reason is spelled out because "not a key" would hide an attack."""
    if isinstance(key, str) and _KEY_RE.fullmatch(key):  # fullmatch: "$" would let a trailing newline in
        return key
    if not isinstance(key, str):
        why = "is not a string"
    else:
        why = _path_problem(key) or ("is empty" if not key else "holds other characters")
    raise SampleKeyError(f"{where}: sample key {key!r} {why} ({_KEY_RULE})")


def member_key(name: str, where: str | Path) -> tuple[str, str]:
    """A shard member name -> (key, extension), the key checked by ``check_key``."""
    key, dot, ext = name.partition(".")
    problem = _path_problem(name) or (None if dot and _EXT_RE.fullmatch(ext) else "is not <key>.<extension>")
    if problem:
        raise SampleKeyError(f"{where}: member {name!r} {problem} ({_KEY_RULE})")
    return check_key(key, f"{where}: member {name!r}"), ext


def _path_problem(name: str) -> str | None:
    """Why ``name`` would lead a file name out of its folder, if it would."""
    if name.startswith(("/", "\\")) or re.match(r"[A-Za-z]:", name):
        return "is an absolute path"
    if ".." in name:
        return "holds '..'"
    if "/" in name or "\\" in name:
        return "holds a path separator"
    return None


@dataclass(frozen=True)
class Sample:
    key: str
    png: bytes
    meta: dict[str, Any]
    # more members of the sample, (extension, bytes): e.g. ("inkml", strokes) beside the image
    extra: tuple[tuple[str, bytes], ...] = ()


def shard_name(index: int) -> str:
    return SHARD_PATTERN.format(index=index)


def shard_index(name: str) -> int | None:
    match = _SHARD_RE.match(name)
    return int(match.group(1)) if match else None


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    """Write to a temporary name in the same folder, fsync, then rename over ``path``."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)  # after a failed write (a full disk): no half file left behind


def atomic_write_json(path: str | Path, obj: Any) -> None:
    atomic_write_bytes(path, (json.dumps(obj, indent=1, ensure_ascii=False) + "\n").encode("utf-8"))


class ShardWriter:
    """Writes one shard; the final name appears only when the block exits cleanly.

    >>> with ShardWriter(out / shard_name(3)) as w:
    ...     w.write(Sample(key, png, meta))
    """

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.tmp = self.path.with_name(f".{self.path.name}.tmp-{os.getpid()}")
        self.count = 0
        self._keys: set[str] = set()
        self._tar: tarfile.TarFile | None = None

    def __enter__(self) -> "ShardWriter":
        self._tar = tarfile.open(self.tmp, "w", format=tarfile.USTAR_FORMAT)
        return self

    def write(self, sample: Sample) -> None:
        assert self._tar is not None, "use ShardWriter as a context manager"
        check_key(sample.key, self.path.name)
        if sample.key in self._keys:
            raise ValueError(f"duplicate sample key {sample.key!r} in {self.path.name}")
        self._keys.add(sample.key)
        meta = json.dumps(sample.meta, ensure_ascii=False, sort_keys=True).encode("utf-8")
        for ext, data in sample.extra:  # before png and json: a reader has the whole sample when those arrive
            if ext in ("png", "json") or not _EXT_RE.fullmatch(ext):
                raise ValueError(f"sample member extension {ext!r} is not allowed")
            self._add(f"{sample.key}.{ext}", data)
        self._add(f"{sample.key}.png", sample.png)
        self._add(f"{sample.key}.json", meta)
        self.count += 1

    def _add(self, name: str, data: bytes) -> None:
        info = tarfile.TarInfo(name)
        info.size = len(data)
        info.mtime = 0  # deterministic bytes: same samples, same file, same checksum
        info.mode = 0o644
        info.uname = info.gname = ""
        self._tar.addfile(info, io.BytesIO(data))  # type: ignore[union-attr]

    def __exit__(self, exc_type, exc, tb) -> None:
        assert self._tar is not None
        try:
            # close() writes the end-of-archive blocks and the buffered rest: on a full
            # disk it fails too (again, after a failed write), and the half file must go
            # either way, or it keeps the disk full for the rerun.
            try:
                self._tar.close()
            except OSError:
                if exc_type is None:
                    raise
                # else the block's own error is the one that propagates; this is its echo
            if exc_type is None:
                with open(self.tmp, "rb+") as f:
                    os.fsync(f.fileno())
                os.replace(self.tmp, self.path)
        finally:
            self.tmp.unlink(missing_ok=True)


def check_members(path: str | Path) -> int:
    """Check that every member of a shard is a regular file named ``<key>.<ext>`` with a safe key,
    reading the tar headers only (cheap beside a sha256 of the same file); return the member count."""
    path = Path(path)
    count = 0
    try:
        with tarfile.open(path, "r") as tar:
            for member in tar:
                _check_member(member, path)
                count += 1
    except (tarfile.TarError, EOFError, OSError) as err:
        raise ShardError(f"{path}: cannot read shard ({err})") from err
    return count


def _check_member(member: tarfile.TarInfo, path: Path) -> tuple[str, str]:
    if not member.isfile():
        raise ShardError(f"{path}: member {member.name!r} is not a regular file (shards hold only files)")
    return member_key(member.name, path)


def read_shard(path: str | Path) -> Iterator[Sample]:
    """Yield the samples of one shard in order (a plain reader for tests and exports;
    training reads through ``webdataset``)."""
    path = Path(path)
    try:
        with tarfile.open(path, "r") as tar:
            pending: dict[str, dict[str, bytes]] = {}
            for member in tar:
                key, ext = _check_member(member, path)
                fileobj = tar.extractfile(member)
                assert fileobj is not None
                parts = pending.setdefault(key, {})
                parts[ext] = fileobj.read()
                if "png" in parts and "json" in parts:
                    del pending[key]
                    extra = tuple((e, d) for e, d in parts.items() if e not in ("png", "json"))
                    yield Sample(key, parts["png"], json.loads(parts["json"].decode("utf-8")), extra)
    except ShardError:
        raise  # a bad member, named already (SampleKeyError is a ValueError too)
    except (tarfile.TarError, EOFError, OSError, ValueError, RecursionError) as err:  # ValueError: a bad .json member
        raise ShardError(f"{path}: cannot read shard ({err})") from err
    if pending:
        raise ShardError(f"{path}: samples without both .png and .json: {sorted(pending)[:5]}")
