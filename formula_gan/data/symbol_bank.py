"""The symbol bank: every handwritten symbol of CROHME, as strokes, by token and writer.

``prepare_symbols(CROHME_DIR, OUT)`` reads every ``.inkml`` below the folder
(sorted) and keeps each trace group (one handwritten symbol, as CROHME segments
them) whose label maps to one token of the project's vocabulary, through the
same KaTeX normalizer as every formula (``\\lt`` -> ``<``, ``\\ldots``,
``\\sqrt``, ``-``, which CROHME also uses for fraction bars). A trace group or a
file that cannot be used is a line of ``rejects.jsonl`` with its reason; the
segmentation is not trusted either: groups that share a stroke (every one of them)
and groups that name no stroke are rejects too.

Units: each glyph is stored in the unit "symbol heights of its own file" (the
median height of the file's non-flat symbols, as the rasterizer's ``symbol``
normalization estimates it), with its top-left corner at 0: an ``x`` is about
0.6 high, a ``-`` about 0.05, a ``\\sum`` about 1.5, whatever the tablet's
coordinates were (0.01 to 10,000 units per symbol across CROHME's sources).
Points closer than ``MIN_STEP`` to the previous kept point are dropped (far
below a pixel at any size the rasterizer draws) and coordinates are float16.

The file (``symbols.npz``, numpy arrays only, read with ``allow_pickle=False`` and
checked whole on load: kinds, shapes, offsets, indices, finite numbers):

* ``points`` float16 [P, 2]: every kept point, stroke after stroke;
* ``stroke_start`` int64 [S + 1]: where each stroke's points begin in ``points``;
* ``glyph_start`` int64 [G + 1]: where each glyph's strokes begin;
* ``glyph_token``, ``glyph_writer``, ``glyph_file`` int32 [G]: indices into
  ``tokens``, ``writers``, ``files`` (unicode arrays);
* ``glyph_size`` float32 [G, 2]: (width, height) in symbol heights.

Writers: the file's ``writer`` annotation; a file without one (MathBrush) is its
own writer, ``file:<path>``. ``manifest.json`` holds the counts per token and per
writer, the reject reasons, and the tokens with fewer than ``FEW`` samples.
"""

from __future__ import annotations

import collections
import io
import json
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from formula_gan.data.shards import atomic_write_bytes
from formula_gan.errors import FormulaGanError
from formula_gan.hashing import sha256_file

BANK = "symbols.npz"
MANIFEST = "manifest.json"  # beside the bank: its counts, reasons, and the sha256 checked on load
FORMAT = "formula-gan-symbols/1"


@dataclass
class Glyph:
    """One handwritten symbol: strokes in symbol heights, top-left corner at (0, 0)."""

    token: str
    writer: str
    file: str
    strokes: list[np.ndarray]  # each [n, 2] float32 (x, y), y down
    width: float
    height: float


# ---- the bank file ------------------------------------------------------------------------
def write_bank(path: str | Path, glyphs: Sequence[Glyph]) -> None:
    """The compact file (see the module docstring), written atomically."""
    tokens = sorted({g.token for g in glyphs})
    writers = sorted({g.writer for g in glyphs})
    files = sorted({g.file for g in glyphs})
    t_index = {t: i for i, t in enumerate(tokens)}
    w_index = {w: i for i, w in enumerate(writers)}
    f_index = {f: i for i, f in enumerate(files)}
    strokes = [s for g in glyphs for s in g.strokes]
    arrays = {
        "points": (np.concatenate(strokes) if strokes else np.zeros((0, 2))).astype(np.float16),
        "stroke_start": np.cumsum([0] + [len(s) for s in strokes], dtype=np.int64),
        "glyph_start": np.cumsum([0] + [len(g.strokes) for g in glyphs], dtype=np.int64),
        "glyph_token": np.array([t_index[g.token] for g in glyphs], dtype=np.int32),
        "glyph_writer": np.array([w_index[g.writer] for g in glyphs], dtype=np.int32),
        "glyph_file": np.array([f_index[g.file] for g in glyphs], dtype=np.int32),
        "glyph_size": np.array([[g.width, g.height] for g in glyphs], dtype=np.float32).reshape(-1, 2),
        "tokens": np.array(tokens, dtype=str),
        "writers": np.array(writers, dtype=str),
        "files": np.array(files, dtype=str),
        "format": np.array(FORMAT),
    }
    buffer = io.BytesIO()
    np.savez_compressed(buffer, **arrays)
    atomic_write_bytes(path, buffer.getvalue())


_NEEDED = frozenset({"points", "stroke_start", "glyph_start", "glyph_token", "glyph_writer", "glyph_file",
                     "glyph_size", "tokens", "writers", "files", "format"})


def _bank_problem(arrays: dict[str, np.ndarray]) -> str | None:
    """What makes a bank's arrays unusable (the first thing found), or None: shapes and kinds,
    offsets that index what they claim to, indices within their name lists, finite numbers."""
    return _shape_problem(arrays) or _offset_problem(arrays) or _value_problem(arrays)


def _shape_problem(a: dict[str, np.ndarray]) -> str | None:
    kinds = {"points": "f", "glyph_size": "f", "stroke_start": "iu", "glyph_start": "iu", "glyph_token": "iu",
             "glyph_writer": "iu", "glyph_file": "iu", "tokens": "U", "writers": "U", "files": "U"}
    for name, kind in kinds.items():
        if a[name].dtype.kind not in kind:
            return f"{name} holds {a[name].dtype}, not {'numbers' if kind != 'U' else 'text'} of the right kind"
        if a[name].ndim != (2 if name in ("points", "glyph_size") else 1):
            return f"{name} has shape {a[name].shape}"
    if a["points"].shape[1] != 2 or a["glyph_size"].shape[1] != 2:
        return f"points {a['points'].shape} and glyph_size {a['glyph_size'].shape} must be [n, 2]"
    g = len(a["glyph_token"])
    lengths = {"glyph_writer": len(a["glyph_writer"]), "glyph_file": len(a["glyph_file"]),
               "glyph_size": len(a["glyph_size"]), "glyph_start": len(a["glyph_start"]) - 1}
    for name, n in lengths.items():
        if n != g:
            return f"{name} is for {n} glyphs, glyph_token for {g} (arrays of inconsistent lengths)"
    return None


def _offset_problem(a: dict[str, np.ndarray]) -> str | None:
    """stroke_start / glyph_start: from 0, strictly increasing (no empty stroke or glyph), up to
    the number of points / strokes."""
    ends = {"stroke_start": len(a["points"]), "glyph_start": len(a["stroke_start"]) - 1}
    for name, end in ends.items():
        starts = a[name]
        if len(starts) == 0 or starts[0] != 0 or starts[-1] != end:
            return f"{name} must run from 0 to {end} (truncated or modified)"
        if np.any(np.diff(starts) <= 0):
            return f"{name} is not strictly increasing (a negative offset or an empty {name.split('_')[0]})"
    return None


def _value_problem(a: dict[str, np.ndarray]) -> str | None:
    for name, names in (("glyph_token", "tokens"), ("glyph_writer", "writers"), ("glyph_file", "files")):
        index = a[name]
        if len(index) and (index.min() < 0 or index.max() >= len(a[names])):
            return f"{name} holds indices outside 0..{len(a[names]) - 1} (the {len(a[names])} {names})"
    for name in ("points", "glyph_size"):
        if not np.isfinite(a[name].astype(np.float64)).all():
            return f"{name} holds NaN or infinite values"
    if len(a["glyph_size"]) and a["glyph_size"].min() < 0:
        return "glyph_size holds negative sizes"
    return None


def _check_manifest(file: Path, sha256: str) -> None:
    """A bank whose manifest states its checksum must match it (a bank file that was changed,
    truncated or replaced after prepare-symbols wrote it is refused, naming the file)."""
    manifest = file.parent / MANIFEST
    if not manifest.is_file():
        return  # a bare symbols.npz: nothing states what it should be
    try:
        stated = json.loads(manifest.read_text(encoding="utf-8")).get("bank_sha256")
    except (json.JSONDecodeError, UnicodeDecodeError, AttributeError) as err:
        raise FormulaGanError(f"{manifest}: not a readable bank manifest ({err})") from err
    if stated is not None and stated != sha256:
        raise FormulaGanError(f"{file}: does not match the checksum in {manifest.name} (a damaged or modified "
                              "bank); make it again with `formula-gan prepare-symbols`")


class SymbolBank:
    """The glyphs of a ``prepare-symbols`` folder (or its ``symbols.npz``), by token and writer.

    >>> bank = SymbolBank("datasets/prepared/symbols")
    >>> bank.count("x"), bank.glyph(bank.indices("x")[0]).strokes[0].shape
    """

    def __init__(self, path: str | Path):
        path = Path(path)
        file = path / BANK if path.is_dir() else path
        if not file.is_file():
            raise FormulaGanError(f"{path}: no symbol bank ({BANK}); make one with `formula-gan prepare-symbols`")
        sha256 = sha256_file(file)
        _check_manifest(file, sha256)
        try:
            with np.load(file, allow_pickle=False) as data:
                arrays = {k: data[k] for k in data.files}
        except (OSError, ValueError, EOFError, zipfile.BadZipFile) as err:  # truncated, not an npz
            raise FormulaGanError(f"{file}: not a symbol bank ({err})") from err
        if not _NEEDED <= arrays.keys() or str(arrays["format"]) != FORMAT:
            raise FormulaGanError(f"{file}: not a symbol bank of format {FORMAT}")
        problem = _bank_problem(arrays)
        if problem is not None:  # a crafted or damaged file: never an IndexError in the stitcher later
            raise FormulaGanError(f"{file}: not a usable symbol bank: {problem}")
        self.path = file
        self.points = arrays["points"].astype(np.float32)  # [P, 2]
        self.stroke_start = arrays["stroke_start"]
        self.glyph_start = arrays["glyph_start"]
        self.glyph_token = arrays["glyph_token"]
        self.glyph_writer = arrays["glyph_writer"]
        self.glyph_file = arrays["glyph_file"]
        self.glyph_size = arrays["glyph_size"]  # [G, 2] (width, height)
        self.tokens = [str(t) for t in arrays["tokens"]]
        self.writers = [str(w) for w in arrays["writers"]]
        self.files = [str(f) for f in arrays["files"]]
        self._by_token: dict[str, np.ndarray] = {
            t: np.flatnonzero(self.glyph_token == i) for i, t in enumerate(self.tokens)}
        # (token, writer) -> glyph indices: the "one hand per formula" lookups
        pairs: dict[tuple[int, int], list[int]] = collections.defaultdict(list)
        for i, (t, w) in enumerate(zip(self.glyph_token.tolist(), self.glyph_writer.tolist())):
            pairs[(t, w)].append(i)
        self._by_pair = {k: np.array(v) for k, v in pairs.items()}
        self._token_index = {t: i for i, t in enumerate(self.tokens)}
        self.digest = sha256[:16]

    def __len__(self) -> int:
        return len(self.glyph_token)

    def has(self, token: str) -> bool:
        return token in self._by_token

    def count(self, token: str) -> int:
        return len(self._by_token.get(token, ()))

    def indices(self, token: str, writer: int | None = None) -> np.ndarray:
        """Glyph indices of a token (by one writer, when given)."""
        if writer is None:
            return self._by_token.get(token, np.zeros(0, dtype=np.int64))
        t = self._token_index.get(token)
        return self._by_pair.get((t, writer), np.zeros(0, dtype=np.int64)) if t is not None else np.zeros(0, dtype=np.int64)

    def writer_tokens(self) -> dict[int, set[str]]:
        """Writer index -> the tokens that writer has glyphs for."""
        out: dict[int, set[str]] = collections.defaultdict(set)
        for t, w in self._by_pair:
            out[w].add(self.tokens[t])
        return dict(out)

    def strokes(self, index: int) -> list[np.ndarray]:
        """Glyph ``index``'s strokes: [n, 2] float32 views in symbol heights, top-left at 0."""
        a, b = self.glyph_start[index], self.glyph_start[index + 1]
        return [self.points[self.stroke_start[s]:self.stroke_start[s + 1]] for s in range(a, b)]

    def glyph(self, index: int) -> Glyph:
        w, h = self.glyph_size[index]
        return Glyph(self.tokens[self.glyph_token[index]], self.writers[self.glyph_writer[index]],
                     self.files[self.glyph_file[index]], self.strokes(index), float(w), float(h))
