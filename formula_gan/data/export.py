"""Shards -> the folder layouts other recognizers read, and readers for those layouts.

* ``im2latex`` (im2markup / im2latex-100k, the "filter" variant): ``images/NAME.png``,
  ``formulas.lst`` (line i = the tokens of formula i, space-separated) and
  ``{train,validate,test}_filter.lst`` (lines ``NAME.png i``, 0-based i). The samples
  go to one split (``--split``); the other two lists are written empty so that tools
  which open all three find them.
* ``crohme-images`` (WAP, BTTR, CoMER): ``img/NAME.png`` (or ``.bmp``) and
  ``caption.txt`` with lines ``NAME<TAB>tokens``.

NAME is the sample key (letters, digits, ``_``, ``-``: safe in every layout; a key read
from a shard is untrusted and checked, ``shards.check_key``). Images
stay dark ink on white, 8-bit grayscale, exactly as stored.
"""

from __future__ import annotations

import io
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

from PIL import Image

from formula_gan.data.images import decode_png
from formula_gan.data.jobs import disk_space_for, shard_paths, verify
from formula_gan.data.shards import Sample, check_key, read_shard
from formula_gan.errors import FormulaGanError

FORMATS = ("im2latex", "crohme-images")
SPLITS = ("train", "validate", "test")


@dataclass
class ExportResult:
    out_dir: Path
    count: int


def _samples(shard_dir: str | Path) -> Iterator[Sample]:
    for path in shard_paths(shard_dir):
        yield from read_shard(path)


def export_shards(shard_dir: str | Path, out_dir: str | Path, fmt: str, *, split: str = "train",
                  image_format: str = "png") -> ExportResult:
    """Write every sample of a finished shard folder in layout ``fmt`` under ``out_dir``.

    The layout is written into a temporary folder beside ``out_dir`` and renamed to it when
    complete: a failure (a bad sample, a full disk, Ctrl-C) leaves no half export behind."""
    if fmt not in FORMATS:
        raise FormulaGanError(f"unknown export format {fmt!r} (known: {', '.join(FORMATS)})")
    if split not in SPLITS:
        raise FormulaGanError(f"unknown split {split!r} (known: {', '.join(SPLITS)})")
    if image_format not in ("png", "bmp") or (fmt == "im2latex" and image_format != "png"):
        raise FormulaGanError(f"image format {image_format!r} is not available for {fmt}")
    out = Path(out_dir)
    _check_out(out, "formulas.lst" if fmt == "im2latex" else "caption.txt")
    # Every shard as its manifest promises (size, sha256, sample count, each PNG decodes, every
    # key safe) before anything is written: an export is a copy other tools trust.
    report = verify(shard_dir, samples=True)
    target = out.resolve()  # "." or "out/" have a usable name and parent only once resolved
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.tmp-{os.getpid()}")
    tmp.mkdir()
    try:
        with disk_space_for(target.parent, f"the export {target.name}", report.bytes):
            count = _write_layout(shard_dir, tmp, fmt, split, image_format)
        os.replace(tmp, target)  # rename(2) replaces a missing or empty folder in one step
    finally:
        if tmp.exists():
            shutil.rmtree(tmp)
    return ExportResult(out, count)


def _check_out(out: Path, marker: str) -> None:
    """``out`` must be new or an empty folder: the finished layout is renamed onto it."""
    if (out / marker).exists():
        raise FormulaGanError(f"{out} already holds an export ({marker}); choose another --out")
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise FormulaGanError(f"{out} exists and is not an empty folder; choose a new or empty --out")


def _write_layout(shard_dir: str | Path, out: Path, fmt: str, split: str, image_format: str) -> int:
    """The layout ``fmt`` of every sample, under the (new, empty) folder ``out``; returns the count."""
    img_dir = out / ("images" if fmt == "im2latex" else "img")
    img_dir.mkdir()
    lines: list[str] = []
    names: list[str] = []
    seen: set[str] = set()
    for sample in _samples(shard_dir):
        key = check_key(sample.key, shard_dir)  # keys name files here: never trusted
        if key in seen:  # two samples, one file name: the second would replace the first's image
            raise FormulaGanError(f"{shard_dir}: sample key {key!r} occurs twice; the export needs one image per key")
        seen.add(key)
        _write_image(img_dir, key, sample.png, "png" if fmt == "im2latex" else image_format)
        names.append(key)
        lines.append(str(sample.meta.get("tokens", "")).strip())
    if fmt == "im2latex":
        for s in SPLITS:
            rows = [f"{n}.png {i}\n" for i, n in enumerate(names)] if s == split else []
            (out / f"{s}_filter.lst").write_text("".join(rows), encoding="utf-8")
        (out / "formulas.lst").write_text("".join(f"{t}\n" for t in lines), encoding="utf-8")
    else:
        (out / "caption.txt").write_text("".join(f"{n}\t{t}\n" for n, t in zip(names, lines)), encoding="utf-8")
    return len(names)


def _write_image(img_dir: Path, key: str, png: bytes, image_format: str) -> None:
    """One image, as stored (PNG) or converted (BMP), named by its (checked) key."""
    if image_format == "png":
        (img_dir / f"{key}.png").write_bytes(png)
        return
    buf = io.BytesIO()
    Image.fromarray(decode_png(png)).save(buf, format="BMP")
    (img_dir / f"{key}.bmp").write_bytes(buf.getvalue())


def read_im2latex(folder: str | Path, split: str = "train") -> list[tuple[Path, str]]:
    """(image path, tokens) of one split of an im2latex-layout folder."""
    folder = Path(folder)
    formulas = (folder / "formulas.lst").read_text(encoding="utf-8").split("\n")
    out = []
    for line in (folder / f"{split}_filter.lst").read_text(encoding="utf-8").splitlines():
        name, idx = line.rsplit(" ", 1)
        out.append((folder / "images" / name, formulas[int(idx)]))
    return out


def read_crohme_images(folder: str | Path) -> list[tuple[Path, str]]:
    """(image path, tokens) of a caption.txt + img/ folder (png or bmp)."""
    folder = Path(folder)
    out = []
    for line in (folder / "caption.txt").read_text(encoding="utf-8").splitlines():
        name, _, tokens = line.partition("\t")
        matches = [p for p in (folder / "img" / f"{name}.png", folder / "img" / f"{name}.bmp") if p.exists()]
        if not matches:
            raise FormulaGanError(f"{folder}: caption.txt names {name!r} but img/ has no such image")
        out.append((matches[0], tokens))
    return out
