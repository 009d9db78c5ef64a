"""Shards -> the folder layouts other recognizers read, and readers for those layouts.

* ``im2latex`` (im2markup / im2latex-100k, the "filter" variant): ``images/NAME.png``,
  ``formulas.lst`` (line i = the tokens of formula i, space-separated) and
  ``{train,validate,test}_filter.lst`` (lines ``NAME.png i``, 0-based i). The samples
  go to one split (``--split``); the other two lists are written empty so that tools
  which open all three find them.
* ``crohme-images`` (WAP, BTTR, CoMER): ``img/NAME.png`` (or ``.bmp``) and
  ``caption.txt`` with lines ``NAME<TAB>tokens``.

NAME is the sample key (letters, digits, ``_``, ``-``: safe in every layout). Images
stay dark ink on white, 8-bit grayscale, exactly as stored.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

from PIL import Image

from formula_gan.data.images import decode_png
from formula_gan.data.jobs import shard_paths, verify
from formula_gan.data.shards import atomic_write_bytes, read_shard
from formula_gan.errors import FormulaGanError

FORMATS = ("im2latex", "crohme-images")
SPLITS = ("train", "validate", "test")


@dataclass
class ExportResult:
    out_dir: Path
    count: int


def _samples(shard_dir: str | Path) -> Iterator:
    for path in shard_paths(shard_dir):
        yield from read_shard(path)


def export_shards(shard_dir: str | Path, out_dir: str | Path, fmt: str, *, split: str = "train",
                  image_format: str = "png") -> ExportResult:
    """Write every sample of a finished shard folder in layout ``fmt`` under ``out_dir``."""
    if fmt not in FORMATS:
        raise FormulaGanError(f"unknown export format {fmt!r} (known: {', '.join(FORMATS)})")
    if split not in SPLITS:
        raise FormulaGanError(f"unknown split {split!r} (known: {', '.join(SPLITS)})")
    if image_format not in ("png", "bmp") or (fmt == "im2latex" and image_format != "png"):
        raise FormulaGanError(f"image format {image_format!r} is not available for {fmt}")
    out = Path(out_dir)
    marker = out / ("formulas.lst" if fmt == "im2latex" else "caption.txt")
    if marker.exists():
        raise FormulaGanError(f"{out} already holds an export ({marker.name}); choose another --out")
    # Every shard as its manifest promises (size, sha256, sample count, each PNG decodes)
    # before anything is written: an export is a copy other tools trust.
    verify(shard_dir, samples=True)
    img_dir = out / ("images" if fmt == "im2latex" else "img")
    img_dir.mkdir(parents=True, exist_ok=True)
    lines: list[str] = []
    names: list[str] = []
    for sample in _samples(shard_dir):
        tokens = str(sample.meta.get("tokens", "")).strip()
        if fmt == "im2latex" or image_format == "png":
            (img_dir / f"{sample.key}.png").write_bytes(sample.png)
        else:
            buf = io.BytesIO()
            Image.fromarray(decode_png(sample.png)).save(buf, format="BMP")
            (img_dir / f"{sample.key}.bmp").write_bytes(buf.getvalue())
        names.append(sample.key)
        lines.append(tokens)
    if fmt == "im2latex":
        for s in SPLITS:
            rows = [f"{n}.png {i}\n" for i, n in enumerate(names)] if s == split else []
            atomic_write_bytes(out / f"{s}_filter.lst", "".join(rows).encode("utf-8"))
        atomic_write_bytes(marker, "".join(f"{t}\n" for t in lines).encode("utf-8"))
    else:
        atomic_write_bytes(marker, "".join(f"{n}\t{t}\n" for n, t in zip(names, lines)).encode("utf-8"))
    return ExportResult(out, len(names))


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
