"""``prepare-symbols``: InkML files -> a symbol bank (``symbol_bank``), with its manifest and rejects.

Every ``.inkml`` below the input folder (sorted) is read; each trace group whose
label maps to one token of the project's vocabulary becomes a glyph, in symbol
heights of its own file (see ``symbol_bank``); a trace group or a file that
cannot be used is a line of ``rejects.jsonl`` with its reason. ``bank_curation``
then leaves out glyphs whose shape is far from their token's others and, with
``writers``, keeps whole writers only (the small bank the package ships).
"""

from __future__ import annotations

import collections
import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

import numpy as np
from tqdm import tqdm

from formula_gan.data.bank_curation import OUTLIER_Z, choose_writers, outliers
from formula_gan.data.crohme_job import _input_digest
from formula_gan.data.ink_labels import label_latex, premap_label
from formula_gan.data.inkml import Ink, InkmlError, iter_inkml_files, read_inkml
from formula_gan.data.rasterize import symbol_height
from formula_gan.data.shards import atomic_write_bytes, atomic_write_json
from formula_gan.data.symbol_bank import BANK, FORMAT, MANIFEST, Glyph, write_bank
from formula_gan.errors import FormulaGanError
from formula_gan.hashing import sha256_file
from katex_render.normalize import Normalizer

REJECTS = "rejects.jsonl"
GLYPH_LIST = "symbols.jsonl"
LAYOUT = "layout.json"  # the measured placement (stitching/layout_stats.py), beside the bank  # MathWriting's list of single glyphs in its training files
FEW = 20  # tokens with fewer samples than this are reported: too few hands to vary
MIN_STEP = 0.01  # symbol heights between kept points
SIMPLIFY = 0.005  # symbol heights a dropped point may lie off the simplified stroke
NormalizeFn = Callable[[list[str]], list[tuple[list[str] | None, str | None]]]


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
    """The stroke with the points a pen would not miss dropped: first those within MIN_STEP of
    the last kept one, then those within SIMPLIFY of the line through their kept neighbours
    (Ramer-Douglas-Peucker). Both are under a tenth of a pixel at the sizes the rasterizer draws
    symbols (20-60 px), and the bank holds a third of the points (CROHME train: 3.46 M -> see
    the manifest's points)."""
    keep = [0]
    for i in range(1, len(stroke)):
        if np.abs(stroke[i] - stroke[keep[-1]]).max() >= MIN_STEP:
            keep.append(i)
    if keep[-1] != len(stroke) - 1:
        keep.append(len(stroke) - 1)
    pts = stroke[keep]
    return pts[_simplify(pts, SIMPLIFY)].astype(np.float32)


def _simplify(pts: np.ndarray, tolerance: float) -> np.ndarray:
    """Indices of the points Ramer-Douglas-Peucker keeps (iterative: no recursion limit)."""
    n = len(pts)
    if n < 3:
        return np.arange(n)
    keep = np.zeros(n, dtype=bool)
    keep[[0, n - 1]] = True
    spans = [(0, n - 1)]
    while spans:
        a, b = spans.pop()
        if b - a < 2:
            continue
        seg = pts[b] - pts[a]
        rel = pts[a + 1 : b] - pts[a]
        length = float(np.hypot(*seg))
        if length > 0:
            dist = np.abs(seg[0] * rel[:, 1] - seg[1] * rel[:, 0]) / length
        else:
            dist = np.hypot(rel[:, 0], rel[:, 1])
        i = int(np.argmax(dist))
        if dist[i] > tolerance:
            keep[a + 1 + i] = True
            spans += [(a, a + 1 + i), (a + 1 + i, b)]
    return np.flatnonzero(keep)


# ---- the command --------------------------------------------------------------------------
def prepare_symbols(inkml_dir: str | Path, out_dir: str | Path, *, normalize_fn: NormalizeFn | None = None,
                    progress: bool = True, writers: int | None = None, min_per_token: int = 10,
                    keep_outliers: bool = False, glyph_list: str | Path | None = None, seed: int = 0,
                    measure_layout: bool = False) -> SymbolsReport:
    """Write ``symbols.npz``, ``manifest.json`` and ``rejects.jsonl`` for every trace group
    below ``inkml_dir`` into ``out_dir``. Rerunning replaces them (each is written whole).

    Glyphs far from their token's others are left out unless ``keep_outliers``; ``writers``:
    keep only that many whole writers, rare tokens topped up to ``min_per_token`` glyphs
    (``bank_curation``). ``glyph_list``: MathWriting's ``symbols.jsonl`` (which strokes of which
    file are one symbol), for files that carry no segmentation of their own; by default the
    ``symbols.jsonl`` in ``inkml_dir`` or its parent, when there is one. ``measure_layout``: also
    write ``layout.json``, how these writers place symbols against KaTeX's layout of the same
    formulas (stitching/layout_stats.py; needs Chromium), which the stitcher then uses."""
    if writers is not None and writers < 1:
        raise FormulaGanError(f"writers must be at least 1, got {writers}")
    if min_per_token < 0:
        raise FormulaGanError(f"min_per_token must be at least 0, got {min_per_token}")
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
    listing = Path(glyph_list) if glyph_list is not None else _default_glyph_list(root)
    if listing is not None:
        rejects.extend(add_listed_groups(inks, listing))
    labels = sorted({label for ink in inks for label, _ in ink.trace_groups})
    closer = None
    if normalize_fn is None:
        closer = Normalizer().__enter__()
        normalize_fn = closer.normalize
    try:
        mapping = label_tokens(labels, normalize_fn)
        if measure_layout:
            layout = _measure_layout(inks, mapping, normalize_fn)
    finally:
        if closer is not None:
            closer.__exit__(None, None, None)
    glyphs: list[Glyph] = []
    for ink in inks:
        for item in file_glyphs(ink, mapping):
            (glyphs.append if isinstance(item, Glyph) else rejects.append)(item)
    if not glyphs:
        raise FormulaGanError(f"{root}: no usable trace group (the files have no symbol segmentation?)")
    far = set() if keep_outliers else outliers(glyphs)
    for i in sorted(far):
        g = glyphs[i]
        rejects.append({"source": g.file, "group": None, "label": g.token, "kind": "outlier",
                        "reason": f"its shape is far from the other {g.token!r} glyphs (mis-segmented or mislabelled?)"})
    glyphs = [g for i, g in enumerate(glyphs) if i not in far]
    curation = choose_writers(glyphs, writers, min_per_token, seed) if writers is not None else None
    if curation is not None:
        glyphs = curation.kept
    write_bank(out / BANK, glyphs)
    if measure_layout:
        atomic_write_json(out / LAYOUT, layout)
    counts = collections.Counter(g.token for g in glyphs)
    report.reasons = collections.Counter(r["kind"] for r in rejects)
    report.glyphs, report.rejected = len(glyphs), len(rejects)
    report.tokens, report.writers = len(counts), len({g.writer for g in glyphs})
    report.few = {t: n for t, n in counts.items() if n < FEW}
    lines = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rejects)
    atomic_write_bytes(out / REJECTS, lines.encode("utf-8"))
    atomic_write_json(out / MANIFEST, {
        "format": FORMAT,
        "input": root.name,  # the folder's name (its content: input_digest); no machine's path
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
        "simplify": SIMPLIFY,
        "points": int(sum(len(s) for g in glyphs for s in g.strokes)),
        "outliers": {"left_out": len(far), "z": OUTLIER_Z,
                     "tokens": dict(collections.Counter(r["label"] for r in rejects if r["kind"] == "outlier").most_common())},
        "curation": None if curation is None else {
            "writers": curation.writers, "min_per_token": min_per_token, "seed": seed,
            "topped_up": curation.topped_up},
        "glyph_list": None if listing is None else listing.name,
        "layout": LAYOUT if measure_layout else None,
    })
    report.seconds = time.perf_counter() - started
    return report


def _default_glyph_list(root: Path) -> Path | None:
    for candidate in (root / GLYPH_LIST, root.parent / GLYPH_LIST):
        if candidate.is_file():
            return candidate
    return None


def add_listed_groups(inks: list[Ink], listing: Path) -> list[dict[str, Any]]:
    """Trace groups from MathWriting's glyph list (one JSON object per line: ``sourceSampleId``,
    ``strokeIndices``, ``label``) added to the files they name; a line that names no file here
    is skipped, a line that cannot be used is a reject."""
    by_id = {Path(ink.source).stem: ink for ink in inks}
    rejects: list[dict[str, Any]] = []
    try:
        lines = listing.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as err:
        raise FormulaGanError(f"{listing}: cannot read the glyph list ({err})") from err
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            entry = json.loads(line)
            sample, indices, label = str(entry["sourceSampleId"]), entry["strokeIndices"], str(entry["label"])
            if not isinstance(indices, list) or not all(isinstance(i, int) for i in indices):
                raise TypeError("strokeIndices is not a list of integers")
        except (json.JSONDecodeError, KeyError, TypeError) as err:
            rejects.append({"source": f"{listing.name}:{number}", "group": None, "label": None, "kind": "glyph-list",
                            "reason": f"not a glyph-list line ({type(err).__name__}: {err})"})
            continue
        ink = by_id.get(sample)
        if ink is None:
            continue  # a file of another split
        bad = [i for i in indices if not 0 <= i < len(ink.trace_ids)]
        if bad or not indices:
            rejects.append({"source": f"{listing.name}:{number}", "group": None, "label": label, "kind": "glyph-list",
                            "reason": f"stroke indices {bad or indices} are not strokes of {ink.source}"})
            continue
        ink.trace_groups.append((label, [ink.trace_ids[i] for i in indices]))
    return rejects


def _measure_layout(inks: list[Ink], mapping: dict[str, tuple[str | None, str | None]],
                    normalize_fn: NormalizeFn) -> dict:
    from formula_gan.stitching.compose import BARS  # the stitcher's rooms: only when measuring
    from formula_gan.stitching.layout_stats import measure

    latex = []
    for ink in inks:
        try:
            latex.append(label_latex(ink.truth, ink.dialect))
        except InkmlError:
            latex.append("")
    tokens = [t for t, _ in normalize_fn(latex)]
    return measure(inks, tokens, mapping, lambda t: "-" if t in BARS else t)

