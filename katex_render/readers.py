"""Streaming readers for formula corpora: plain text, im2latex ``.lst``, JSON lines.

Every input line becomes either a :class:`SourceFormula` or a :class:`Reject`
with a reason; a bad line never stops the run and nothing is dropped silently.
Files are read line by line (a corpus of millions of lines is never held in
memory), as bytes, so that one line of bad UTF-8 is that line's problem only.

Line conventions, the same for every format:

* a UTF-8 byte order mark at the start of the file is skipped;
* CRLF and LF line ends are both accepted (the im2latex release uses CRLF);
* surrounding whitespace is stripped;
* rejected with a reason: blank lines, bytes that are not UTF-8, control
  characters (a stray CR, NUL, ESC, ...) and a byte order mark inside a line.

One exception: in the im2latex ``.lst`` format a CR inside a line is a line
break of the LaTeX source the formula was cut from (the release counts lines
by LF only), so it is read as a space there.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Iterator

from katex_render.errors import KatexRenderError

FORMATS = ("auto", "txt", "lst", "jsonl")
_BOM = b"\xef\xbb\xbf"


@dataclass(frozen=True)
class SourceFormula:
    latex: str  # as given (after decoding the line and stripping its ends)
    source: str  # "<file name>:<line number>" (1-based)


@dataclass(frozen=True)
class Reject:
    source: str  # "<file name>:<line number>" (1-based)
    input: str  # the line (undecodable bytes shown as \\xNN escapes)
    reason: str

    def to_record(self) -> dict:
        """The JSON-lines rejects report entry: {"source", "line", "input", "reason"}."""
        _, _, line = self.source.rpartition(":")
        return {
            "source": self.source,
            "line": int(line) if line.isdigit() else None,
            "input": self.input,
            "reason": self.reason,
        }


def detect_format(path: str | Path) -> str:
    """``.jsonl``/``.ndjson``/``.json`` -> jsonl, ``.lst`` -> lst, anything else -> txt."""
    suffix = Path(path).suffix.lower()
    if suffix in (".jsonl", ".ndjson", ".json"):
        return "jsonl"
    if suffix == ".lst":
        return "lst"
    return "txt"


def read_formulas(
    path: str | Path, fmt: str = "auto", filter_list: str | Path | None = None
) -> Iterator[SourceFormula | Reject]:
    """Yields every line of ``path`` as a formula or a reject, in file order.

    ``fmt``: ``txt`` (one formula per line), ``lst`` (the im2latex formulas file;
    with ``filter_list``, an im2latex ``image_name line_index`` list, only the
    selected lines, 0-based as in that release), ``jsonl`` (objects with a
    ``"latex"`` string), or ``auto`` (by file extension).
    """
    path = Path(path)
    if fmt not in FORMATS:
        raise KatexRenderError(f"unknown input format {fmt!r}: use one of {', '.join(FORMATS)}")
    if fmt == "auto":
        fmt = detect_format(path)
    if filter_list is not None and fmt != "lst":
        raise KatexRenderError(f"a filter list selects lines of an im2latex .lst file, not of a {fmt} file")
    if not path.is_file():
        raise KatexRenderError(f"input file not found: {path}")
    if filter_list is None:
        yield from _read_lines(path, fmt)
        return
    yield from _read_filtered(path, Path(filter_list))


def _lines(f: BinaryIO, name: str) -> Iterator[tuple[str, str | None, str | None]]:
    """Yields (source, text, reason) per line: text when the line decodes, else the reason."""
    for number, raw in enumerate(f, start=1):
        source = f"{name}:{number}"
        if number == 1 and raw.startswith(_BOM):
            raw = raw[len(_BOM):]
        if raw.endswith(b"\n"):
            raw = raw[:-1]
        if raw.endswith(b"\r"):
            raw = raw[:-1]
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as err:
            shown = raw.decode("utf-8", errors="backslashreplace")
            yield source, shown, f"not valid UTF-8: byte 0x{raw[err.start]:02x} at column {err.start + 1}"
            continue
        yield source, text, None


# Control characters (Unicode category Cc) except tab, and the byte order mark.
_BAD_CHAR = re.compile("[\x00-\x08\x0a-\x1f\x7f-\x9f\ufeff]")


def _check_text(text: str) -> str | None:
    """The reason a decoded line cannot be a formula, or None."""
    if not text.strip():
        return "blank line"
    bad = _BAD_CHAR.search(text)
    if bad is None:
        return None
    char, column = bad.group(), bad.start() + 1
    if char == "\ufeff":
        return f"byte order mark (U+FEFF) inside the line at column {column}"
    return f"control character U+{ord(char):04X} at column {column}"


def _read_lines(path: Path, fmt: str) -> Iterator[SourceFormula | Reject]:
    with path.open("rb") as f:
        for source, text, reason in _lines(f, path.name):
            if reason is None and fmt == "lst":
                text = text.replace("\r", " ")
            if reason is None:
                reason = _check_text(text)
            if reason is not None:
                yield Reject(source, text, reason)
                continue
            if fmt == "jsonl":
                yield _from_json(source, text)
            else:
                yield SourceFormula(text.strip(), source)


def _from_json(source: str, text: str) -> SourceFormula | Reject:
    try:
        record = json.loads(text)
    except json.JSONDecodeError as err:
        return Reject(source, text, f"bad JSON: {err.msg} at column {err.colno}")
    except RecursionError:
        # the decoder recurses once per nesting level: 100,000 brackets are this line's problem only
        return Reject(source, text, "bad JSON: nested too deep")
    if not isinstance(record, dict) or not isinstance(record.get("latex"), str):
        return Reject(source, text, 'bad JSON line: expected an object with a "latex" string')
    latex = record["latex"]
    reason = _check_text(latex)
    if reason is not None:
        return Reject(source, latex, reason)
    return SourceFormula(latex.strip(), source)


def _count_lines(path: Path) -> int:
    """Lines as ``_lines`` numbers them (a last line without a line end counts)."""
    count, last = 0, b"\n"
    with path.open("rb") as f:
        while block := f.read(1 << 20):
            count += block.count(b"\n")
            last = block[-1:]
    return count + (last != b"\n")


def _read_filter(filter_list: Path, num_lines: int) -> tuple[bytearray, list[int], list[Reject]]:
    """The selected 0-based line indices as a bitmap (an eighth of a byte per line of
    the corpus, however long the list), the selected indices past the corpus's
    ``num_lines`` lines (each a reject later; they never grow the bitmap, so a huge
    index costs nothing), and the rejects of bad filter lines."""
    if not filter_list.is_file():
        raise KatexRenderError(f"filter list not found: {filter_list}")
    selected = bytearray((num_lines + 7) // 8)
    past_end: set[int] = set()
    rejects = []
    with filter_list.open("rb") as f:
        for source, text, reason in _lines(f, filter_list.name):
            if reason is None and not text.strip():
                continue  # blank lines in a filter list select nothing
            fields = text.split() if reason is None else []
            if reason is None and (len(fields) != 2 or not fields[1].isdigit()):
                reason = "bad filter line: expected 'image_name line_index'"
            if reason is not None:
                rejects.append(Reject(source, text, reason))
                continue
            index = int(fields[1])
            if index >= num_lines:
                past_end.add(index)
                continue
            selected[index // 8] |= 1 << (index % 8)
    return selected, sorted(past_end), rejects


def _read_filtered(path: Path, filter_list: Path) -> Iterator[SourceFormula | Reject]:
    selected, past_end, rejects = _read_filter(filter_list, _count_lines(path))
    yield from rejects

    def is_selected(index: int) -> bool:
        return index // 8 < len(selected) and bool(selected[index // 8] >> (index % 8) & 1)

    count = 0
    with path.open("rb") as f:
        for index, (source, text, reason) in enumerate(_lines(f, path.name)):
            count = index + 1
            if not is_selected(index):
                continue
            if reason is None:
                text = text.replace("\r", " ")
                reason = _check_text(text)
            if reason is not None:
                yield Reject(source, text, reason)
            else:
                yield SourceFormula(text.strip(), source)
    # Indices past the end of the formulas file: each one is a reject, not a silent gap.
    for index in past_end:
        yield Reject(
            f"{path.name}:{index + 1}",
            "",
            f"selected by {filter_list.name} (index {index}) but {path.name} has only {count} lines",
        )
