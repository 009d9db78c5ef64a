"""The ``normalize`` command's job: a formula file through the normalizer and the
filters, accepted formulas and rejects written atomically."""

from __future__ import annotations

import collections
import errno
import json
import os
import queue
import shutil
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Callable, Iterable, Iterator

from katex_render.errors import KatexRenderError
from katex_render.node_normalizer import Normalizer
from katex_render.readers import Reject, SourceFormula, read_formulas
from katex_render.tokens import filter_tokens, reason_category

# --- streaming API of the `normalize` command --------------------------------------
@dataclass
class NormalizeSummary:
    accepted: int = 0
    rejected: int = 0
    reasons: collections.Counter = field(default_factory=collections.Counter)
    seconds: float = 0.0

    @property
    def total(self) -> int:
        return self.accepted + self.rejected

    def top_reasons(self, n: int = 5) -> list[tuple[str, int]]:
        return self.reasons.most_common(n)

    def line(self) -> str:
        """One line: counts, rate and the top reasons."""
        rate = self.total / self.seconds if self.seconds > 0 else 0.0
        top = "; ".join(f"{count}× {reason}" for reason, count in self.top_reasons(3))
        return (f"{self.accepted} accepted, {self.rejected} rejected of {self.total} "
                f"({rate:.0f} formulas/s)" + (f"; top reasons: {top}" if top else ""))

    def to_dict(self) -> dict:
        return {"accepted": self.accepted, "rejected": self.rejected, "seconds": round(self.seconds, 3),
                "top_reasons": self.top_reasons(10)}


def normalize_formulas(
    items: Iterable[SourceFormula | Reject],
    normalizer: Normalizer,
    *,
    vocab: set[str] | None = None,
    max_tokens: int | None = None,
    chunk: int = 4096,
) -> Iterator[tuple[SourceFormula, list[str]] | Reject]:
    """Streams formulas through the normalizer and the filters, in input order:
    (formula, tokens) when accepted, a Reject (with the reason) otherwise."""
    def flush(batch: list[SourceFormula | Reject]) -> Iterator[tuple[SourceFormula, list[str]] | Reject]:
        formulas = [item for item in batch if isinstance(item, SourceFormula)]
        results = iter(normalizer.normalize([f.latex for f in formulas]))
        for item in batch:
            if isinstance(item, Reject):
                yield item
                continue
            tokens, error = next(results)
            if tokens is None:
                yield Reject(item.source, item.latex, error or "rejected")
                continue
            reason = filter_tokens(tokens, vocab, max_tokens)
            yield Reject(item.source, item.latex, reason) if reason else (item, tokens)

    for batch in _prefetch(items, chunk):
        yield from flush(batch)


def _prefetch(items: Iterable[SourceFormula | Reject], chunk: int) -> Iterator[list[SourceFormula | Reject]]:
    """Chunks of ``items``, read one chunk ahead in a thread: the next chunk is read
    and decoded while node parses the current one (the two overlap, one core each)."""
    chunks: queue.Queue = queue.Queue(maxsize=2)
    stop = threading.Event()
    end = object()

    def put(value: object) -> bool:
        while not stop.is_set():
            try:
                chunks.put(value, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def read() -> None:
        batch: list = []
        try:
            for item in items:
                batch.append(item)
                if len(batch) >= chunk:
                    if not put(batch):
                        return
                    batch = []
            if batch and not put(batch):
                return
            put(end)
        except BaseException as err:  # handed to the consumer, which raises it
            put(err)

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:
        while True:
            value = chunks.get()
            if value is end:
                return
            if isinstance(value, BaseException):
                raise value
            yield value
    finally:
        stop.set()
        reader.join()


def normalize_file(
    input: str | Path,
    out: str | Path | None = None,
    rejects: str | Path | None = None,
    *,
    fmt: str = "auto",
    filter_list: str | Path | None = None,
    vocab: set[str] | None = None,
    max_tokens: int | None = None,
    output_format: str = "txt",
    normalizer: Normalizer | None = None,
    progress: Callable[[int], None] | None = None,
) -> NormalizeSummary:
    """Reads ``input``, normalizes and filters every formula, writes accepted ones to
    ``out`` and rejects to ``rejects`` (JSON lines: source, line, input, reason).

    ``output_format``: ``txt`` writes the tokens of each accepted formula joined by
    spaces, one per line (rejected lines are left out, so line numbers shift: the
    rejects report says which); ``jsonl`` writes {"source", "latex", "tokens"} with
    the tokens joined by spaces. ``progress`` is called with the number of input
    lines handled since the last call.
    """
    if output_format not in ("txt", "jsonl"):
        raise KatexRenderError(f"unknown output format {output_format!r}: use txt or jsonl")
    check_outputs({"--out": out, "--rejects": rejects}, {"the input": input, "--filter-list": filter_list})
    summary = NormalizeSummary()
    started = time.perf_counter()
    own = normalizer is None
    norm = normalizer or Normalizer()
    out_f = _Output.open(out)
    rej_f = _Output.open(rejects)
    done = False
    try:
        if own:
            norm.start()
        for result in normalize_formulas(read_formulas(input, fmt, filter_list), norm,
                                         vocab=vocab, max_tokens=max_tokens):
            if isinstance(result, Reject):
                summary.rejected += 1
                summary.reasons[reason_category(result.reason)] += 1
                if rej_f is not None:
                    rej_f.write(json.dumps(result.to_record(), ensure_ascii=False) + "\n")
            else:
                formula, tokens = result
                summary.accepted += 1
                if out_f is not None:
                    if output_format == "txt":
                        out_f.write(" ".join(tokens) + "\n")
                    else:
                        record = {"source": formula.source, "latex": formula.latex, "tokens": " ".join(tokens)}
                        out_f.write(json.dumps(record, ensure_ascii=False) + "\n")
            if progress is not None:
                progress(1)
        for f in (out_f, rej_f):
            if f is not None:
                f.commit()
        done = True
    except OSError as err:
        if err.errno not in (errno.ENOSPC, errno.EDQUOT):
            raise
        where = Path(out or rejects or ".").resolve().parent
        raise KatexRenderError(f"no space left in {where} ({shutil.disk_usage(where).free / 1e6:.1f} MB free); "
                               "free some space and run the command again") from err
    finally:
        if own:
            norm.close()
        if not done:
            for f in (out_f, rej_f):
                if f is not None:
                    f.discard()
    summary.seconds = time.perf_counter() - started
    return summary


def check_outputs(outputs: dict[str, str | Path | None], inputs: dict[str, str | Path | None]) -> None:
    """Refuse, before anything is opened, an output that is one of the inputs or another
    output (``--out c.txt`` for the input c.txt would empty it); names are the options'."""
    named = [(name, Path(p)) for name, p in outputs.items() if p is not None and str(p) not in ("-", "/dev/stdout")]
    for name, path in named:
        for other, source in [(n, Path(p)) for n, p in inputs.items() if p is not None]:
            if _same_file(path, source):
                raise KatexRenderError(f"{name} {path} is also {other}: it would be overwritten by its own "
                                       "output; choose another file name")
        for other, source in named:
            if other != name and _same_file(path, source):
                raise KatexRenderError(f"{name} and {other} are the same file ({path}); give each its own")


def _same_file(a: Path, b: Path) -> bool:
    if a.exists() and b.exists():
        return os.path.samefile(a, b)  # links and other spellings of one file too
    return a.resolve() == b.resolve()


class _Output:
    """A text output written under a temporary name beside it and renamed over the
    final name only when the run has finished: an interrupted or failed run leaves
    the previous file as it was. Devices and pipes (standard output) are written directly."""

    def __init__(self, path: Path, direct: bool):
        self.path = path
        self.tmp = path if direct else path.with_name(f".{path.name}.tmp-{os.getpid()}")
        self.direct = direct
        self.file: IO[str] = self.tmp.open("w", encoding="utf-8", newline="\n")

    @classmethod
    def open(cls, path: str | Path | None) -> "_Output | None":
        if path is None:
            return None
        path = Path(path)
        direct = path.exists() and not path.is_file()  # /dev/stdout, a pipe
        if not direct:
            path.parent.mkdir(parents=True, exist_ok=True)
        return cls(path, direct)

    def write(self, text: str) -> None:
        self.file.write(text)

    def commit(self) -> None:
        self.file.close()
        if not self.direct:
            os.replace(self.tmp, self.path)

    def discard(self) -> None:
        try:
            self.file.close()
        except OSError:
            # flushing the rest of a file that is thrown away failed (the disk is full):
            # nothing is lost, and the error that stopped the run is the one to report
            pass
        finally:
            if not self.direct:
                self.tmp.unlink(missing_ok=True)
