"""Reading a finished shard set: its manifest, its shard files, and checking them whole.

``ShardedJob`` (``jobs``) writes a set; everything that reads one starts here: the
manifest is checked for what readers rely on, and ``verify`` compares every shard
with it (present, size, sha256, member names, and with ``samples`` every PNG).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from PIL import Image

from formula_gan.data.png import decode_png
from formula_gan.data.shards import ShardError, check_members, read_shard, shard_index
from formula_gan.hashing import sha256_file

MANIFEST = "manifest.json"
FORMAT = "formula-gan-shards/1"


def load_manifest(shard_dir: str | Path) -> dict[str, Any]:
    """The manifest of a finished shard set, checked for what readers rely on (a list of
    shards, each with a shard file name, sample count, size and sha256)."""
    path = Path(shard_dir) / MANIFEST
    if not path.is_file():
        raise ShardError(f"{shard_dir}: no {MANIFEST} (not a finished shard set)")
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError, RecursionError) as err:  # ValueError: bad JSON or bad UTF-8
        raise ShardError(f"{path}: unreadable or not valid JSON (truncated?): {err}") from err
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        found = manifest.get("format") if isinstance(manifest, dict) else type(manifest).__name__
        raise ShardError(f"{path}: unknown format {found!r}")
    shards = manifest.get("shards")
    if not isinstance(shards, list):
        raise ShardError(f"{path}: no list of shards")
    for i, info in enumerate(shards):
        problem = _shard_entry_problem(info)
        if problem:
            raise ShardError(f"{path}: shard entry {i}: {problem}")
    return manifest


_SHA256 = re.compile(r"^[0-9a-f]{64}$")


def _shard_entry_problem(info: Any) -> str | None:
    if not isinstance(info, dict):
        return "not an object"
    if not isinstance(info.get("name"), str) or shard_index(info["name"]) is None:
        return f"name {info.get('name')!r} is not a shard file name (shard-NNNNNN.tar)"
    for key in ("samples", "bytes"):
        value = info.get(key)
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            return f"{key} {value!r} is not a count"
    if not isinstance(info.get("sha256"), str) or not _SHA256.match(info["sha256"]):
        return f"sha256 {info.get('sha256')!r} is not a sha256 digest"
    return None


def shard_paths(shard_dir: str | Path) -> list[Path]:
    """The shard files of a finished set, in order, as its manifest lists them."""
    manifest = load_manifest(shard_dir)
    return [Path(shard_dir) / s["name"] for s in manifest["shards"]]


@dataclass
class VerifyReport:
    shards: int
    samples: int
    bytes: int


def verify(shard_dir: str | Path, *, samples: bool = False) -> VerifyReport:
    """Check every shard against the manifest: present, its size and sha256; with
    ``samples`` also read every sample (count as listed, each PNG decodes, each JSON
    parses). Raises ``ShardError`` naming the first shard that differs."""
    manifest = load_manifest(shard_dir)
    report = VerifyReport(0, 0, 0)
    for info in manifest["shards"]:
        path = Path(shard_dir) / info["name"]
        if not path.is_file():
            raise ShardError(f"{path}: missing (listed in {MANIFEST})")
        size = path.stat().st_size
        if size != info["bytes"]:
            raise ShardError(f"{path}: {size} bytes, {MANIFEST} says {info['bytes']} (truncated or modified)")
        if sha256_file(path) != info["sha256"]:
            raise ShardError(f"{path}: sha256 differs from {MANIFEST} (modified or corrupt)")
        # A matching sha256 says only that the shard is the one its writer listed; its keys
        # become file names downstream (export), so they are checked here too, even --quick.
        check_members(path)
        if samples:
            count = 0
            for sample in read_shard(path):
                try:
                    decode_png(sample.png)
                # pillow's errors for a bad file: UnidentifiedImageError (an OSError), SyntaxError
                # (a broken chunk), DecompressionBombError (a huge declared size)
                except (ValueError, OSError, SyntaxError, Image.DecompressionBombError) as err:
                    raise ShardError(f"{path}: sample {sample.key!r}: the PNG does not decode ({err})") from err
                count += 1
            if count != info["samples"]:
                raise ShardError(f"{path}: {count} samples, {MANIFEST} says {info['samples']}")
        report.shards += 1
        report.samples += info["samples"]
        report.bytes += size
    return report
