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
import time
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

import numpy as np
from tqdm import tqdm

from formula_gan.data.crohme_job import _input_digest
from formula_gan.data.ink_labels import premap_label
from formula_gan.data.inkml import Ink, InkmlError, iter_inkml_files, read_inkml
from formula_gan.data.rasterize import symbol_height
from formula_gan.data.shards import atomic_write_bytes, atomic_write_json
from formula_gan.errors import FormulaGanError
from formula_gan.hashing import sha256_file
from katex_render.normalize import Normalizer

BANK = "symbols.npz"
MANIFEST = "manifest.json"
REJECTS = "rejects.jsonl"
FORMAT = "formula-gan-symbols/1"
FEW = 20  # tokens with fewer samples than this are reported: too few hands to vary
MIN_STEP = 0.01  # symbol heights between kept points
NormalizeFn = Callable[[list[str]], list[tuple[list[str] | None, str | None]]]


@dataclass
class Glyph:
    """One handwritten symbol: strokes in symbol heights, top-left corner at (0, 0)."""

    token: str
    writer: str
    file: str
    strokes: list[np.ndarray]  # each [n, 2] float32 (x, y), y down
    width: float
    height: float


@dataclass
class SymbolsReport:
    out_dir: Path
    files: int = 0
    glyphs: int = 0
    rejected: int = 0
    reasons: collections.Counter = field(default_factory=collections.Counter)
    few: dict[str, int] = field(default_factory=dict)  # token -> samples, for tokens under FEW
    tokens: int = 0
    writers: int = 0
    seconds: float = 0.0

    def summary(self) -> str:
        top = ", ".join(f"{n}x {r}" for r, n in self.reasons.most_common(3)) or "none"
        few = ", ".join(f"{t} ({n})" for t, n in sorted(self.few.items(), key=lambda kv: (kv[1], kv[0]))) or "none"
        return (f"prepare-symbols: {self.glyphs} glyphs of {self.tokens} tokens by {self.writers} writers from "
                f"{self.files} files, {self.rejected} rejected (top: {top}), {self.seconds:.1f} s -> {self.out_dir}\n"
                f"tokens with fewer than {FEW} samples: {few}")


# ---- labels -> tokens ---------------------------------------------------------------
def label_tokens(labels: Sequence[str], normalize_fn: NormalizeFn) -> dict[str, tuple[str | None, str | None]]:
    """Each distinct trace-group label -> (its one token, None) or (None, why not).

    A label is normalized as a formula (CROHME spellings premapped as for the
    formulas); a command that needs an argument (``\\sqrt``) is normalized with one
    and stands for its first token."""
    out: dict[str, tuple[str | None, str | None]] = {}
    todo: dict[str, str] = {}
    for label in labels:
        try:
            todo[label] = premap_label(label)
        except InkmlError as err:
            out[label] = (None, err.reason)
    names = list(todo)
    plain = normalize_fn([todo[n] for n in names])
    with_arg = normalize_fn([todo[n] + " {x}" for n in names])
    for name, (tokens, error), (arg_tokens, _) in zip(names, plain, with_arg):
        if tokens is not None and len(tokens) == 1:
            out[name] = (tokens[0], None)
        elif arg_tokens is not None and len(arg_tokens) == 4 and arg_tokens[1:] == ["{", "x", "}"]:
            out[name] = (arg_tokens[0], None)
        elif tokens is None:
            out[name] = (None, f"label {name!r} does not parse: {error}")
        else:
            out[name] = (None, f"label {name!r} is not one symbol: it normalizes to {' '.join(tokens)!r}")
    return out


# ---- one file -> glyphs -------------------------------------------------------------------
def file_glyphs(ink: Ink, tokens: dict[str, tuple[str | None, str | None]]) -> Iterator[Glyph | dict[str, Any]]:
    """The glyphs of one parsed file, and a reject record per trace group it cannot use."""
    writer = ink.writer or f"file:{ink.source}"
    scale, _ = symbol_height(ink)
    index = {tid: i for i, tid in enumerate(ink.trace_ids)}
    shared = _shared_traces(ink.trace_groups)
    for number, (label, refs) in enumerate(ink.trace_groups):
        problem = _group_problem(number, refs, index, shared) or _token_problem(label, tokens, scale)
        if problem is not None:
            kind, reason = problem
            yield {"source": ink.source, "group": number, "label": label, "kind": kind, "reason": reason}
            continue
        token = tokens[label][0]
        assert token is not None  # _token_problem refused the group otherwise
        strokes = [ink.strokes[index[r]] for r in refs]
        pts = np.concatenate(strokes)
        origin = pts.min(axis=0)
        kept = [_decimate((s - origin) / scale) for s in strokes]
        size = (pts.max(axis=0) - origin) / scale
        yield Glyph(token, writer, ink.source, kept, float(size[0]), float(size[1]))


def _group_problem(number: int, refs: list[str], index: dict[str, int],
                   shared: dict[int, str]) -> tuple[str, str] | None:
    """(kind, reason) when a trace group's segmentation cannot be trusted, else None."""
    if not refs:
        return "empty-group", "the trace group names no trace"
    if number in shared:
        return "shared-trace", shared[number]
    missing = [r for r in refs if r not in index]
    if missing:
        return "missing-trace", f"trace(s) {', '.join(missing[:3])} not in the file"
    return None


def _token_problem(label: str, tokens: dict[str, tuple[str | None, str | None]],
                   scale: float) -> tuple[str, str] | None:
    """(kind, reason) when a trace group's label or its file's scale is unusable, else None."""
    token, reason = tokens.get(label, (None, f"label {label!r} was not mapped"))
    if token is None:
        return "label", str(reason)
    if not scale > 0:
        return "zero-size", "the file's symbol height is 0"
    return None


def _shared_traces(groups: list[tuple[str, list[str]]]) -> dict[int, str]:
    """Group number -> why it is refused, for every group holding a trace that another group
    (or itself, twice) holds too: one stroke cannot be two symbols, and which group it really
    belongs to the file does not say, so every group that shares it goes."""
    holders: dict[str, list[int]] = collections.defaultdict(list)  # trace id -> group numbers, per mention
    for number, (_, refs) in enumerate(groups):
        for ref in refs:
            holders[ref].append(number)
    out: dict[int, str] = {}
    for tid, numbers in holders.items():
        if len(numbers) < 2:
            continue
        for number in dict.fromkeys(numbers):
            others = [o for o in dict.fromkeys(numbers) if o != number]
            where = ", ".join(f"{o} ({groups[o][0]!r})" for o in others) if others else "this one, twice"
            out.setdefault(number, f"trace {tid} is also in trace group {where}: one stroke cannot be two symbols")
    return out


def _decimate(stroke: np.ndarray) -> np.ndarray:
    """Drop points within MIN_STEP of the last kept one (the last point is always kept)."""
    keep = [0]
    for i in range(1, len(stroke)):
        if np.abs(stroke[i] - stroke[keep[-1]]).max() >= MIN_STEP:
            keep.append(i)
    if keep[-1] != len(stroke) - 1:
        keep.append(len(stroke) - 1)
    return stroke[keep].astype(np.float32)


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
        self.digest = sha256_file(file)[:16]

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


# ---- the command --------------------------------------------------------------------------
def prepare_symbols(inkml_dir: str | Path, out_dir: str | Path, *, normalize_fn: NormalizeFn | None = None,
                    progress: bool = True) -> SymbolsReport:
    """Write ``symbols.npz``, ``manifest.json`` and ``rejects.jsonl`` for every trace group
    below ``inkml_dir`` into ``out_dir``. Rerunning replaces them (each is written whole)."""
    started = time.perf_counter()
    root = Path(inkml_dir)
    files = iter_inkml_files(root)
    if not files:
        raise FormulaGanError(f"{root}: no .inkml files found")
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise FormulaGanError(f"--out {out} is a file, not a folder")
    out.mkdir(parents=True, exist_ok=True)
    report = SymbolsReport(out_dir=out, files=len(files))
    inks: list[Ink] = []
    rejects: list[dict[str, Any]] = []
    for path in tqdm(files, desc="prepare-symbols", unit="file", disable=not progress, dynamic_ncols=True):
        rel = path.relative_to(root).as_posix()
        try:
            inks.append(read_inkml(path, source=rel))
        except InkmlError as err:
            rejects.append({"source": rel, "group": None, "label": None, "kind": err.kind, "reason": err.reason})
    labels = sorted({label for ink in inks for label, _ in ink.trace_groups})
    closer = None
    if normalize_fn is None:
        closer = Normalizer().__enter__()
        normalize_fn = closer.normalize
    try:
        mapping = label_tokens(labels, normalize_fn)
    finally:
        if closer is not None:
            closer.__exit__(None, None, None)
    glyphs: list[Glyph] = []
    for ink in inks:
        for item in file_glyphs(ink, mapping):
            (glyphs.append if isinstance(item, Glyph) else rejects.append)(item)
    if not glyphs:
        raise FormulaGanError(f"{root}: no usable trace group (the files have no symbol segmentation?)")
    write_bank(out / BANK, glyphs)
    counts = collections.Counter(g.token for g in glyphs)
    report.reasons = collections.Counter(r["kind"] for r in rejects)
    report.glyphs, report.rejected = len(glyphs), len(rejects)
    report.tokens, report.writers = len(counts), len({g.writer for g in glyphs})
    report.few = {t: n for t, n in counts.items() if n < FEW}
    lines = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rejects)
    atomic_write_bytes(out / REJECTS, lines.encode("utf-8"))
    atomic_write_json(out / MANIFEST, {
        "format": FORMAT,
        "input": str(root.resolve()),
        "input_digest": _input_digest(root, files),
        "bank": BANK,
        "bank_sha256": sha256_file(out / BANK),
        "files": len(files),
        "files_used": len({g.file for g in glyphs}),
        "glyphs": len(glyphs),
        "rejected": len(rejects),
        "reject_reasons": dict(report.reasons.most_common()),
        "writers": report.writers,
        "writers_annotated": len({g.writer for g in glyphs if not g.writer.startswith("file:")}),
        "counts": dict(sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))),
        "few": {"threshold": FEW, "tokens": dict(sorted(report.few.items(), key=lambda kv: (kv[1], kv[0])))},
        "labels": {label: token for label, (token, _) in sorted(mapping.items()) if token is not None},
        "min_step": MIN_STEP,
    })
    report.seconds = time.perf_counter() - started
    return report
