"""Reading many files at once: folders expanded to the pictures and InkML files in them, and the
readings written as JSON lines (``formula-gan recognize DIR --out readings.jsonl``)."""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from types import TracebackType
from typing import Sequence, TextIO

from formula_gan.errors import FormulaGanError
from formula_gan.recognition.preprocess import IMAGE_SUFFIXES
from formula_gan.recognition.recognizer import Reading

READABLE_SUFFIXES = frozenset(IMAGE_SUFFIXES | {".inkml"})


def expand_inputs(args: Sequence[str | Path]) -> list[Path]:
    """The files to read, in order: a file as given; a folder as its picture and InkML files (by suffix,
    sorted by name; hidden files and subfolders are left out). A missing file with a picture or InkML
    suffix is kept (its reading says so, the others go on); any other missing path, or a folder holding
    nothing to read, is a FormulaGanError before any work."""
    files: list[Path] = []
    for arg in args:
        path = Path(arg)
        if path.is_dir():
            found = sorted(p for p in path.iterdir()
                           if p.is_file() and not p.name.startswith(".") and p.suffix.lower() in READABLE_SUFFIXES)  # fmt: skip
            if not found:
                raise FormulaGanError(
                    f"{path}: no picture or InkML file in this folder (looked for {', '.join(sorted(READABLE_SUFFIXES))}; "
                    "subfolders are not searched)"
                )
            files.extend(found)
        elif path.exists() or path.suffix.lower() in READABLE_SUFFIXES:
            files.append(path)
        else:
            raise FormulaGanError(f"{path}: no such file or folder")
    return files


def reading_json(reading: Reading) -> str:
    """One reading as strict JSON (no NaN or Infinity: a non-finite score is null)."""
    row = reading.to_dict()
    if row["score"] is not None and not math.isfinite(row["score"]):
        row["score"] = None
    return json.dumps(row, ensure_ascii=False, allow_nan=False)


class ReadingsFile:
    """``--out FILE``: one JSON object per line and per reading, written to a hidden temporary name
    beside FILE and renamed to FILE once every reading is in: an interrupted run leaves no half file
    (and an older FILE as it was)."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        if self.path.is_dir():
            raise FormulaGanError(f"--out {self.path}: is a folder; name a file, e.g. {self.path / 'readings.jsonl'}")
        if not self.path.parent.is_dir():
            raise FormulaGanError(f"--out {self.path}: the folder {self.path.parent} does not exist")
        self.tmp = self.path.with_name(f".{self.path.name}.tmp-{os.getpid()}")
        self._file: TextIO | None = None
        self.count = 0

    def __enter__(self) -> "ReadingsFile":
        self._file = open(self.tmp, "w", encoding="utf-8")
        return self

    def write(self, reading: Reading) -> None:
        assert self._file is not None, "use ReadingsFile as a context manager"
        self._file.write(reading_json(reading) + "\n")
        self.count += 1

    def __exit__(self, kind: type[BaseException] | None, err: BaseException | None, tb: TracebackType | None) -> None:
        assert self._file is not None
        self._file.close()
        if kind is None:
            os.replace(self.tmp, self.path)
        else:
            self.tmp.unlink(missing_ok=True)
