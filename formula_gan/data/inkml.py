"""InkML parsing: strokes, the label, the writer and the symbol segmentation.

Two dialects are read, told apart by their annotations: CROHME (``truth``, trace
groups, often a ``writer``) and Google's MathWriting (``normalizedLabel`` /
``label``, no segmentation in the file, no writer).

CROHME files come from several sources (HAMEX, KAIST, MathBrush, MfrDB,
expressmatch, extension, the 2014 test set) that differ in coordinate scale
(0.01 to 10,000 units per symbol), in channels per point (X Y, X Y T, X Y F,
declared or not in ``<traceFormat>``) and in whitespace. Everything below the
file level is treated as untrusted input: a file that cannot be used raises
``InkmlError`` with a short ``kind`` (for counting) and a readable reason, and
never anything else, so that a batch job can record it and go on.

Safety: files above a size limit are refused before parsing, and the XML is
parsed by ``defusedxml`` with DTDs forbidden: a DOCTYPE (the only way to declare
entities, hence "billion laughs" expansion and external entities) is refused by
the parser itself, whatever the file's encoding (a byte search for "<!DOCTYPE"
misses it in a UTF-16 file).
"""

from __future__ import annotations

import math
import re
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

import defusedxml.ElementTree as SafeET
import numpy as np
from defusedxml import DefusedXmlException

from formula_gan.errors import FormulaGanError

# The largest CROHME 2014 file is 61 kB; 4 MiB leaves room for long, densely sampled
# expressions from other collections while refusing anything absurd.
MAX_FILE_BYTES = 4 << 20
_XML_ID = "{http://www.w3.org/XML/1998/namespace}id"
# InkML's difference encodings (' velocity, " acceleration, ! explicit, * and ?
# for missing values) do not occur in CROHME; they are refused with a clear reason
# rather than misread as numbers.
_NOTATION_RE = re.compile(r"[\'\"!*?]")

CROHME = "crohme"
MATHWRITING = "mathwriting"
# The annotation that holds a file's label, in the order looked for, and the dialect it marks.
# MathWriting's ``label`` is the prompt as given; ``normalizedLabel`` (missing for its single
# glyphs under symbols/) is the ground truth its authors ask to train on.
LABEL_ANNOTATIONS = {"truth": CROHME, "normalizedLabel": MATHWRITING, "label": MATHWRITING}


class InkmlError(FormulaGanError):
    """A file that cannot be used; ``kind`` is a short stable category for reports."""

    def __init__(self, kind: str, reason: str):
        super().__init__(reason)
        self.kind = kind
        self.reason = reason


@dataclass
class Ink:
    strokes: list[np.ndarray]  # each [n, 2] float64 (x, y), y pointing down as on screen
    truth: str  # the label as written in the file (CROHME's truth, MathWriting's normalizedLabel)
    trace_groups: list[tuple[str, list[str]]] = field(default_factory=list)  # (symbol label, trace ids)
    trace_ids: list[str] = field(default_factory=list)  # id of each stroke, same order as ``strokes``
    source: str = ""  # where it came from (a path relative to the input folder)
    writer: str | None = None  # the ``writer`` annotation, when the file has one
    dialect: str = CROHME  # which collection's conventions the file follows (see LABEL_ANNOTATIONS)

    def bbox(self) -> tuple[float, float, float, float]:
        """(x0, y0, x1, y1) over all points."""
        pts = np.concatenate(self.strokes)
        return float(pts[:, 0].min()), float(pts[:, 1].min()), float(pts[:, 0].max()), float(pts[:, 1].max())


def _local(tag: str) -> str:
    return tag.rsplit("}", 1)[-1]


def read_inkml(path: str | Path, source: str | None = None, max_bytes: int = MAX_FILE_BYTES) -> Ink:
    """Read one InkML file; raise ``InkmlError`` with a reason when it cannot be used."""
    path = Path(path)
    data = _read_bytes(path, max_bytes)
    return parse_inkml(data, source=source if source is not None else path.name, max_bytes=max_bytes)


def read_truth(path: str | Path, max_bytes: int = MAX_FILE_BYTES) -> str:
    """Only the label of a file as written (no stroke parsing); :func:`read_header` also gives its dialect."""
    return read_header(path, max_bytes)[0]


def read_header(path: str | Path, max_bytes: int = MAX_FILE_BYTES) -> tuple[str, str, str | None]:
    """(label as written, dialect, writer) of a file, without parsing its strokes."""
    root = _parse_root(_read_bytes(Path(path), max_bytes), max_bytes)
    label, dialect = _label(root)
    return label, dialect, _writer(root)


def read_writer(path: str | Path, max_bytes: int = MAX_FILE_BYTES) -> str | None:
    """Only the ``writer`` annotation of a file (None when it has none or says "unknown")."""
    return _writer(_parse_root(_read_bytes(Path(path), max_bytes), max_bytes))


# Writer annotations that name nobody: files carrying them are not one person's.
_ANONYMOUS_WRITERS = frozenset({"", "unknown", "anonymous", "none", "n/a"})


def _writer(root: ET.Element) -> str | None:
    writer = next((" ".join((c.text or "").split()) for c in root
                   if _local(c.tag) == "annotation" and c.get("type") == "writer"), None)
    return None if writer is None or writer.lower() in _ANONYMOUS_WRITERS else writer


def _label(root: ET.Element, required: bool = True) -> tuple[str, str]:
    """(label, dialect): CROHME's ``truth`` annotation, else MathWriting's ``normalizedLabel``
    (its ground truth) or, for its single glyphs, ``label``. Not ``required`` (ink to be
    read, not trained on): no label or an empty one is ("", dialect)."""
    annotations = {}
    for child in root:
        if _local(child.tag) == "annotation" and child.get("type") in LABEL_ANNOTATIONS:
            annotations.setdefault(child.get("type"), (child.text or "").strip())
    for kind, dialect in LABEL_ANNOTATIONS.items():
        if kind in annotations:
            label = annotations[kind]
            if not label or label.strip("$ \t\r\n") == "":
                if not required:
                    return "", dialect
                raise InkmlError("missing-truth", f"the {kind} annotation is empty")
            return label, dialect
    if not required:
        return "", CROHME
    raise InkmlError("missing-truth", 'no label: neither <annotation type="truth"> (CROHME) nor '
                                      '"normalizedLabel"/"label" (MathWriting)')


def _read_bytes(path: Path, max_bytes: int) -> bytes:
    try:
        size = path.stat().st_size
        if size > max_bytes:
            raise InkmlError("too-large", f"file is {size} bytes, above the limit of {max_bytes}")
        return path.read_bytes()
    except OSError as err:
        raise InkmlError("unreadable", f"cannot read file ({err.strerror or err})") from err


def _parse_root(data: bytes, max_bytes: int) -> ET.Element:
    if len(data) > max_bytes:
        raise InkmlError("too-large", f"file is {len(data)} bytes, above the limit of {max_bytes}")
    if not data.strip():
        raise InkmlError("malformed-xml", "malformed XML: the file is empty")
    try:
        root = SafeET.fromstring(data, forbid_dtd=True, forbid_entities=True, forbid_external=True)
    except DefusedXmlException as err:  # DTDForbidden, EntitiesForbidden, ExternalReferenceForbidden
        raise InkmlError("malformed-xml", "malformed XML: DOCTYPE/ENTITY declarations are not accepted in InkML input") from err
    except (ET.ParseError, ValueError) as err:  # ValueError: an encoding expat cannot read ("UTF-16-LE")
        raise InkmlError("malformed-xml", f"malformed XML: {err}") from err
    if _local(root.tag) != "ink":
        raise InkmlError("malformed-xml", f"malformed InkML: root element is <{_local(root.tag)}>, not <ink>")
    return root


def parse_inkml(data: bytes, source: str = "", max_bytes: int = MAX_FILE_BYTES, labelled: bool = True) -> Ink:
    """Parse InkML bytes into an ``Ink`` (see ``read_inkml``); ``labelled=False``: a file without
    a label is accepted (its ``truth`` is ""), for ink that is to be read rather than learned."""
    root = _parse_root(data, max_bytes)
    x_idx, y_idx = _xy_channels(root)
    truth, dialect = _label(root, required=labelled)

    strokes: list[np.ndarray] = []
    ids: list[str] = []
    for trace in root.iter():
        if _local(trace.tag) != "trace":
            continue
        tid = trace.get("id") or trace.get(_XML_ID) or str(len(ids))
        strokes.append(_parse_points(trace.text or "", tid, x_idx, y_idx))
        ids.append(tid)
    if not strokes:
        raise InkmlError("no-traces", "no <trace> elements")

    pts = np.concatenate(strokes)
    with np.errstate(over="ignore"):  # finite points can still span more than a float (-1e308 to 1e308)
        extent = pts.max(0) - pts.min(0)  # [2] width, height
    if not np.isfinite(extent).all():
        raise InkmlError("non-finite", "the coordinates span more than a floating-point number can hold")
    if (extent <= 0).all():
        raise InkmlError("zero-size", "the expression is 0x0: every point has the same coordinates")
    return Ink(strokes=strokes, truth=truth, trace_groups=_trace_groups(root), trace_ids=ids, source=source,
               writer=_writer(root), dialect=dialect)


def _xy_channels(root: ET.Element) -> tuple[int, int]:
    """Positions of X and Y within a point, from ``<traceFormat>`` (default 0 and 1).

    Extra channels (time T, force F) are read and ignored, also when a file has more
    numbers per point than its traceFormat declares (some MfrDB files)."""
    for node in root.iter():
        if _local(node.tag) == "traceFormat":
            names = [c.get("name", "").upper() for c in node if _local(c.tag) == "channel"]
            if "X" in names and "Y" in names:
                return names.index("X"), names.index("Y")
            break
    return 0, 1


def _parse_points(text: str, tid: str, x_idx: int, y_idx: int) -> np.ndarray:
    text = text.strip()
    if not text:
        raise InkmlError("empty-trace", f"trace {tid} has no points")
    if _NOTATION_RE.search(text):
        raise InkmlError(
            "bad-number", f"trace {tid} uses InkML difference notation (' \" ! * ?), which is not supported"
        )
    points = [p.split() for p in text.split(",")]
    width = len(points[0])
    need = max(x_idx, y_idx) + 1
    try:
        if all(len(p) == width for p in points):
            if width < need:
                raise InkmlError("bad-number", f"trace {tid}: {width} number(s) per point, need at least {need}")
            arr = np.array(points, dtype=np.float64)[:, [x_idx, y_idx]]  # [n, 2]
        else:
            short = next((p for p in points if len(p) < need), None)
            if short is not None:
                raise InkmlError("bad-number", f"trace {tid}: point {' '.join(short)!r} has fewer than {need} numbers")
            arr = np.array([[float(p[x_idx]), float(p[y_idx])] for p in points], dtype=np.float64)
    except ValueError as err:
        raise InkmlError("bad-number", f"trace {tid}: {err}") from err
    if not np.isfinite(arr).all():
        raise InkmlError("non-finite", f"trace {tid} has NaN or infinite coordinates")
    return arr


def _trace_groups(root: ET.Element) -> list[tuple[str, list[str]]]:
    """Symbol segmentation: (label, trace ids) for every labelled group that names traces
    directly, and for every labelled leaf group (no group inside) that names none: a symbol
    with no strokes is the file's fault, for its users to refuse, not to lose quietly."""
    groups = []
    for group in root.iter():
        if _local(group.tag) != "traceGroup":
            continue
        label, refs, leaf = None, [], True
        for child in group:
            name = _local(child.tag)
            if name == "annotation" and child.get("type") == "truth" and label is None:
                label = (child.text or "").strip()
            elif name == "traceView" and child.get("traceDataRef") is not None:
                refs.append(child.get("traceDataRef", ""))
            elif name == "traceGroup":
                leaf = False
        if label and (refs or leaf):
            groups.append((label, refs))
    return groups


def iter_inkml_files(inkml_dir: str | Path) -> list[Path]:
    """Every ``*.inkml`` below ``inkml_dir``, sorted by relative path (deterministic order)."""
    root = Path(inkml_dir)
    if not root.is_dir():
        raise FormulaGanError(f"{root}: not a folder")
    return sorted((p for p in root.rglob("*") if p.suffix.lower() == ".inkml" and p.is_file()),
                  key=lambda p: p.relative_to(root).as_posix())


def group_boxes(ink: Ink) -> Iterator[tuple[str, float, float]]:
    """(label, width, height) of each trace group's bounding box, in ink units."""
    index = {tid: i for i, tid in enumerate(ink.trace_ids)}
    for label, refs in ink.trace_groups:
        members = [ink.strokes[index[r]] for r in refs if r in index]
        if not members:
            continue
        pts = np.concatenate(members)
        w = float(pts[:, 0].max() - pts[:, 0].min())
        h = float(pts[:, 1].max() - pts[:, 1].min())
        if math.isfinite(w) and math.isfinite(h):
            yield label, w, h
