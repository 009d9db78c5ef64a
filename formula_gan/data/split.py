"""A folder of InkML files split into train and validation, whole formulas and whole writers apart.

CROHME's training set has 4,845 distinct formulas in 8,834 files; some were
written by dozens of writers (one 58 times). Holding out every n-th *file* puts
most repeated formulas on both sides, and a recognizer that memorized them
scores there far above what it reads on new formulas (measured: 76 % on
held-out files of seen formulas, 16 % on unseen ones, 7 % on CROHME test 2014).
Test sets have new formulas written by new people, so validation must too.

Files are linked into groups that must stay on one side: two files are in one
group when they hold the same formula (the label normalized by KaTeX, so that
``{x}^2`` and ``x^{2}`` are one formula) or name the same writer (within the
same collection folder, since writer ids like ``User001`` are only unique
there; "Unknown" names nobody). Groups are then taken into validation in an
order fixed by a seeded hash of each group's smallest formula, skipping a group
that would overshoot the share, until the share of files is reached: the split
does not depend on file order, and a few giant groups (CROHME has one of 1,564
files, linked through prolific writers) cannot swing it.

Writes ``OUT/train/`` and ``OUT/val/`` as symbolic links to the files (named by
their path below the input folder, ``/`` written as ``__``) and ``OUT/split.json``.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from formula_gan.data.ink_labels import read_label
from formula_gan.data.inkml import InkmlError, iter_inkml_files, read_writer
from formula_gan.errors import FormulaGanError
from katex_render.node_normalizer import Normalizer

PARTS = ("train", "val")


@dataclass
class SplitReport:
    files: dict[str, int]
    formulas: dict[str, int]
    writers: dict[str, int]
    groups: int
    largest_group: int
    out: Path

    def summary(self) -> str:
        return (f"split {sum(self.files.values())} files into {self.groups} groups (largest {self.largest_group} files): "
                f"train {self.files['train']} files ({self.formulas['train']} formulas, {self.writers['train']} writers), "
                f"val {self.files['val']} files ({self.formulas['val']} formulas, {self.writers['val']} writers; "
                f"none of them in train) -> {self.out}")


class _Groups:
    """Union-find over file indices."""

    def __init__(self, n: int) -> None:
        self.parent = list(range(n))

    def find(self, i: int) -> int:
        while self.parent[i] != i:
            self.parent[i] = self.parent[self.parent[i]]
            i = self.parent[i]
        return i

    def union(self, a: int, b: int) -> None:
        self.parent[self.find(a)] = self.find(b)


def formula_keys(files: list[Path]) -> list[str]:
    """One formula key per file: the normalized tokens, else the raw label, else the file name."""
    labels: list[str | None] = []
    for f in files:
        try:
            labels.append(read_label(f))
        except InkmlError:
            labels.append(None)  # unreadable: a group of its own (prepare-crohme will reject it)
    with Normalizer() as normalizer:
        results = normalizer.normalize([label or "" for label in labels])
    keys = []
    for f, label, (tokens, _) in zip(files, labels, results):
        if label is None:
            keys.append(f"file:{f.name}")
        else:
            keys.append(" ".join(tokens) if tokens else f"raw:{label}")
    return keys


def writer_keys(files: list[Path], root: Path) -> list[str | None]:
    """One writer key per file (collection folder + writer annotation), None when the file names nobody."""
    keys: list[str | None] = []
    for f in files:
        try:
            writer = read_writer(f)
        except InkmlError:
            writer = None
        keys.append(None if writer is None else f"{f.parent.relative_to(root).as_posix()}|{writer}")
    return keys


def _rank(key: str, seed: int) -> bytes:
    return hashlib.sha256(f"{seed}\0{key}".encode("utf-8")).digest()


def assign(formulas: list[str], writers: list[str | None], val_share: float, seed: int) -> tuple[list[str], int, int]:
    """The part of each file, the number of groups and the size of the largest (see the module docstring)."""
    groups = _Groups(len(formulas))
    first: dict[str, int] = {}
    for i, key in enumerate(formulas):
        groups.union(i, first.setdefault(f"f:{key}", i))
    for i, key in enumerate(writers):
        if key is not None:
            groups.union(i, first.setdefault(f"w:{key}", i))
    members: dict[int, list[int]] = {}
    for i in range(len(formulas)):
        members.setdefault(groups.find(i), []).append(i)
    order = sorted(members.values(), key=lambda m: _rank(min(formulas[i] for i in m), seed))
    target = round(val_share * len(formulas))
    parts = ["train"] * len(formulas)
    taken = 0
    for group in order:
        if taken >= target:
            break
        if taken + len(group) > target * 1.05 + 1:
            continue  # would overshoot: a later, smaller group fills the share
        for i in group:
            parts[i] = "val"
        taken += len(group)
    return parts, len(members), max(len(m) for m in members.values())


def split_inkml(
    inkml_dir: str | Path,
    out: str | Path,
    *,
    val_share: float = 0.05,
    seed: int = 0,
    progress: Callable[[str], None] | None = None,
) -> SplitReport:
    """Split every ``*.inkml`` below ``inkml_dir`` into ``out/train`` and ``out/val`` (links)."""
    if not 0 < val_share < 1:
        raise FormulaGanError(f"val_share must be in (0, 1), got {val_share}")
    root = Path(inkml_dir).resolve()
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise FormulaGanError(f"--out {out} is a file, not a folder")
    if any((out / part).exists() for part in PARTS) or (out / "split.json").exists():
        raise FormulaGanError(f"{out} already holds a split; remove it first (or choose another --out)")
    files = iter_inkml_files(root)
    if not files:
        raise FormulaGanError(f"no .inkml files below {root}")
    if progress:
        progress(f"reading {len(files)} labels and writers")
    formulas = formula_keys(files)
    writers = writer_keys(files, root)
    parts, n_groups, largest = assign(formulas, writers, val_share, seed)
    # Written under a temporary name and renamed as a whole: an interrupted split leaves nothing.
    tmp = out.parent / f".{out.name}.tmp-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    listing: dict[str, list[str]] = {part: [] for part in PARTS}
    try:
        for part in PARTS:
            (tmp / part).mkdir(parents=True)
        for f, part in zip(files, parts):
            rel = f.relative_to(root).as_posix()
            (tmp / part / rel.replace("/", "__")).symlink_to(f)
            listing[part].append(rel)
        record = {"inkml_dir": str(root), "val_share": val_share, "seed": seed, "groups": n_groups,
                  "largest_group": largest, "files": listing}
        (tmp / "split.json").write_text(json.dumps(record, indent=1, allow_nan=False) + "\n", encoding="utf-8")
        out.mkdir(parents=True, exist_ok=True)
        for name in (*PARTS, "split.json"):
            os.replace(tmp / name, out / name)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    count = {part: sum(p == part for p in parts) for part in PARTS}
    distinct = {part: len({k for k, p in zip(formulas, parts) if p == part}) for part in PARTS}
    people = {part: len({w for w, p in zip(writers, parts) if p == part and w is not None}) for part in PARTS}
    return SplitReport(count, distinct, people, n_groups, largest, out)
