"""Normalization of LaTeX through KaTeX's parser, in one long-lived ``node`` process.

``normalize.js`` parses each formula with the pinned KaTeX and writes the parse
tree back as one canonical token sequence (conventions in that file and in
``datasets/README.md``). This module runs it, streams batches through it, and
survives it: a formula that hangs is rejected with the reason ``timeout`` and
the process is restarted for the rest; a process that dies is restarted and its
unanswered formulas are sent again.

    with Normalizer() as norm:
        norm.normalize([r"\\frac 1 2", r"\\foo"])
    # [(['\\frac', '{', '1', '}', '{', '2', '}'], None),
    #  (None, 'KaTeX parse error: Undefined control sequence: \\foo at position 1: ...')]
"""

from __future__ import annotations

import collections
import errno
import json
import os
import queue
import re
import select
import shutil
import subprocess
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Callable, Iterable, Iterator

from katex_render.errors import KatexRenderError
from katex_render.readers import Reject, SourceFormula, read_formulas

__all__ = [
    "Normalizer",
    "NormalizeSummary",
    "filter_tokens",
    "group_depth",
    "load_vocab",
    "normalize_file",
    "normalize_formulas",
    "reason_category",
    "tokens_to_latex",
    "Reject",
    "SourceFormula",
    "read_formulas",
]

HERE = Path(__file__).resolve().parent
SCRIPT = HERE / "normalize.js"
KATEX_PACKAGE = HERE / "node_modules" / "katex" / "package.json"
TIMEOUT_REASON = "timeout"
STARTUP_TIMEOUT_S = 60.0  # loading node and KaTeX; generous because shared machines can be slow


def find_node() -> str:
    """The ``node`` binary: FORMULA_GAN_NODE, else ``node`` on PATH."""
    node = os.environ.get("FORMULA_GAN_NODE") or shutil.which("node")
    if not node:
        raise KatexRenderError(
            "Node.js not found: install node (18 or newer), then run 'bash scripts/setup.sh' "
            "(or set FORMULA_GAN_NODE to the node binary)"
        )
    return node


def check_katex() -> None:
    if not KATEX_PACKAGE.is_file():
        raise KatexRenderError(
            f"KaTeX is not installed in {HERE / 'node_modules'}: run 'bash scripts/setup.sh' "
            "or 'npm ci --prefix katex_render'"
        )


class _NodeProcess:
    """One ``node normalize.js`` child and a line reader over its stdout with a deadline."""

    def __init__(self, node: str, args: list[str]) -> None:
        # stderr goes to a file: a pipe nobody reads could fill and block the child.
        self.stderr: IO[bytes] = tempfile.TemporaryFile()
        self.proc = subprocess.Popen(
            [node, str(SCRIPT), *args],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self.stderr,
        )
        self.buffer = b""
        self.writer: threading.Thread | None = None

    def send(self, payload: bytes) -> None:
        """Writes the requests from a thread, so that reading the answers can go on
        at the same time (a large batch would otherwise fill both pipes and deadlock)."""
        self.wait_writer()

        def write() -> None:
            try:
                self.proc.stdin.write(payload)
                self.proc.stdin.flush()
            except (BrokenPipeError, ValueError, OSError):
                # The child died or was killed: read_line() sees its stdout close and
                # the caller restarts it and resends what was not answered.
                return

        self.writer = threading.Thread(target=write, daemon=True)
        self.writer.start()

    def wait_writer(self) -> None:
        if self.writer is not None:
            self.writer.join()
            self.writer = None

    def read_line(self, timeout_s: float) -> bytes | None:
        """The next line of output; None when the child has closed stdout (died).
        Raises TimeoutError when no line arrives within ``timeout_s``."""
        deadline = time.monotonic() + timeout_s
        fd = self.proc.stdout.fileno()
        while b"\n" not in self.buffer:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError
            ready, _, _ = select.select([fd], [], [], left)
            if not ready:
                continue
            chunk = os.read(fd, 1 << 20)
            if not chunk:
                return None
            self.buffer += chunk
        line, _, self.buffer = self.buffer.partition(b"\n")
        return line

    def stderr_tail(self) -> str:
        self.stderr.seek(0)
        return self.stderr.read()[-2000:].decode("utf-8", errors="replace").strip()

    def close(self, kill: bool = False) -> None:
        if self.proc.poll() is None:
            if kill:
                self.proc.kill()
            else:
                try:
                    self.proc.stdin.close()
                except OSError:
                    pass  # already gone: the wait below reaps it either way
                try:
                    self.proc.wait(timeout=5)
                except subprocess.TimeoutExpired:
                    self.proc.kill()
        self.proc.wait()
        self.wait_writer()
        for stream in (self.proc.stdin, self.proc.stdout):
            try:
                stream.close()
            except OSError:
                pass  # a broken pipe on close changes nothing: the child is reaped
        self.stderr.close()


class Normalizer:
    """A long-lived KaTeX normalizer (context manager).

    ``timeout_s`` bounds each formula: a formula that takes longer is rejected
    with the reason ``timeout``, the process is killed and restarted, and the
    rest of the batch goes on. ``batch_size`` formulas travel per round trip.
    A process that dies is replaced and its unanswered formulas are sent again.
    One instance serves one thread at a time (it owns one pipe pair); use one
    per worker. Without ``with``, the first ``normalize`` call starts it and
    ``close()`` ends it.
    """

    def __init__(
        self,
        *,
        timeout_s: float = 10.0,
        max_chars: int = 4000,
        max_expand: int = 1000,
        batch_size: int = 4096,
        node: str | None = None,
    ) -> None:
        # A value out of range would reject every formula (a negative timeout times out
        # at once): an error before any work, naming the setting.
        for name, value, low, high in (("timeout_s", timeout_s, 0.001, 86_400), ("max_chars", max_chars, 1, 10**7),
                                       ("max_expand", max_expand, 0, 10**9), ("batch_size", batch_size, 1, 10**6)):
            if not low <= value <= high:  # also false for NaN
                raise KatexRenderError(f"normalizer: {name} must be in {low}..{high}, got {value}")
        self.timeout_s = timeout_s
        self.max_chars = max_chars
        self.max_expand = max_expand
        self.batch_size = batch_size
        self.node = node
        self._proc: _NodeProcess | None = None
        self.restarts = 0  # how many times the node process had to be replaced
        self.katex_version: str | None = None

    # --- life cycle -------------------------------------------------------------
    def __enter__(self) -> "Normalizer":
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def start(self) -> None:
        if self._proc is not None:
            return
        node = self.node or find_node()
        check_katex()
        args = ["--max-chars", str(self.max_chars), "--max-expand", str(self.max_expand)]
        try:
            proc = _NodeProcess(node, args)
        except OSError as err:
            raise KatexRenderError(
                f"cannot run Node.js ({node}): {err.strerror or err}; install node (18 or newer) and run "
                "'bash scripts/setup.sh', or set FORMULA_GAN_NODE"
            ) from err
        # Wait for the ready line, so that loading KaTeX never counts against a formula's timeout.
        try:
            line = proc.read_line(STARTUP_TIMEOUT_S)
        except TimeoutError:
            line = None
        ready = None
        if line is not None:
            try:
                ready = json.loads(line).get("ready")
            except (json.JSONDecodeError, AttributeError):
                ready = None
        if ready is None:
            tail = proc.stderr_tail()
            proc.close(kill=True)
            raise KatexRenderError(
                f"normalize.js did not start ({tail[-500:] or 'no message'}); "
                "run 'bash scripts/setup.sh' or 'npm ci --prefix katex_render'"
            )
        self.katex_version = ready
        self._proc = proc

    def close(self) -> None:
        if self._proc is not None:
            self._proc.close()
            self._proc = None

    def _restart(self) -> None:
        if self._proc is not None:
            self._proc.close(kill=True)
            self._proc = None
        self.restarts += 1
        self.start()

    @property
    def pid(self) -> int | None:
        """The node process id (tests kill it to show that the next call recovers)."""
        return self._proc.proc.pid if self._proc is not None else None

    # --- work ------------------------------------------------------------------
    def normalize(self, latex: list[str]) -> list[tuple[list[str] | None, str | None]]:
        """(tokens, None) for each accepted formula, (None, reason) for each rejected one."""
        results: list[tuple[list[str] | None, str | None]] = []
        for start in range(0, len(latex), self.batch_size):
            results.extend(self._batch(latex[start:start + self.batch_size]))
        return results

    def _batch(self, latex: list[str]) -> list[tuple[list[str] | None, str | None]]:
        for text in latex:
            if not isinstance(text, str):
                raise TypeError(f"Normalizer.normalize takes strings, got {type(text).__name__}")
        if self._proc is None:
            self.start()
        results: list[tuple[list[str] | None, str | None] | None] = [None] * len(latex)
        deaths: collections.Counter[int] = collections.Counter()
        todo = list(range(len(latex)))
        while todo:
            payload = "".join(json.dumps({"id": i, "latex": latex[i]}) + "\n" for i in todo)
            self._proc.send(payload.encode("utf-8"))
            done = 0
            try:
                while done < len(todo):
                    line = self._proc.read_line(self.timeout_s)
                    if line is None:
                        break  # the process died; handled below
                    try:
                        answer = json.loads(line)
                    except json.JSONDecodeError as err:
                        raise KatexRenderError(f"normalize.js wrote a line that is not a result: {line[:200]!r}") from err
                    expected = todo[done]
                    if answer.get("id") != expected:
                        raise KatexRenderError(
                            f"normalize.js answered formula {answer.get('id')!r}, expected {expected}"
                        )
                    if "tokens" in answer:
                        results[expected] = (answer["tokens"], None)
                    else:
                        results[expected] = (None, answer.get("error") or "rejected without a reason")
                    done += 1
            except TimeoutError:
                # The formula being worked on hangs: it alone is rejected; the rest is resent.
                results[todo[done]] = (None, TIMEOUT_REASON)
                self._restart()
                todo = todo[done + 1:]
                continue
            if done == len(todo):
                self._proc.wait_writer()
                break
            # The process died with formulas unanswered (killed from outside, out of
            # memory, a bug). Restart and resend them; a formula that kills it twice
            # is rejected so that it cannot stall the run.
            stuck = todo[done]
            deaths[stuck] += 1
            tail = self._proc.stderr_tail()
            if "Cannot find module" in tail or "SyntaxError" in tail:
                # Not this formula's fault: the script or KaTeX cannot even load.
                raise KatexRenderError(
                    f"normalize.js cannot start: {tail[-500:]}\n"
                    "run 'bash scripts/setup.sh' or 'npm ci --prefix katex_render'"
                )
            if deaths[stuck] >= 2:
                results[stuck] = (None, f"the KaTeX process died on this formula: {tail[-300:] or 'no message'}")
                done += 1
            self._restart()
            todo = todo[done:]
        return [r if r is not None else (None, "no result") for r in results]


# --- tokens back to LaTeX --------------------------------------------------------------
# Commands whose braced argument is text: there a space is a visible space, so the
# characters of the argument are written next to each other.
TEXT_COMMANDS = frozenset({
    "\\text", "\\textrm", "\\textsf", "\\texttt", "\\textnormal", "\\textbf", "\\textmd", "\\textit",
    "\\textup", "\\emph", "\\fbox", "\\angl",
})
_CONTROL_WORD = re.compile(r"\\[A-Za-z@]+\*?")


def tokens_to_latex(tokens: list[str]) -> str:
    """The LaTeX to render for normalized tokens: joined by spaces, except inside
    text arguments (``\\text { A . }`` -> ``\\text {A.}``), where KaTeX would draw
    each separating space. Normalizing the result gives the same tokens again;
    ``" ".join(tokens)`` is also valid KaTeX, with spaced-out text."""
    modes = ["math"]  # per open brace: "math", "text", or "textmath" ($...$ inside text)
    out: list[str] = []
    prev = ""
    for i, tok in enumerate(tokens):
        if i > 0:
            glue = modes[-1] == "text" and not _CONTROL_WORD.fullmatch(prev)
            out.append("" if glue else " ")
        out.append(tok)
        if tok == "{":
            if prev in TEXT_COMMANDS and modes[-1] != "text":
                # the argument of \\text (a "{" inside text is a plain group: push text)
                modes.append("text")
            else:
                modes.append(modes[-1] if modes[-1] != "textmath" else "math")
            # the glue before the first character was decided above, in the outer mode
        elif tok == "}" and len(modes) > 1:
            modes.pop()
        elif tok == "$" and modes[-1] in ("text", "textmath"):
            modes[-1] = "textmath" if modes[-1] == "text" else "text"
        prev = tok
    return "".join(out)


def group_depth(latex: str) -> int:
    """The deepest ``{...}`` nesting in ``latex`` (escaped braces do not count).

    KaTeX recurses once per group, and where that overflows the JavaScript stack
    depends on the engine's state (a fresh page goes deeper than a warm one), so
    the renderer refuses formulas deeper than ``max_group_depth`` before KaTeX sees
    them: the same input always gets the same answer."""
    depth = deepest = 0
    escaped = False
    for char in latex:
        if escaped:
            escaped = False
        elif char == "\\":
            escaped = True
        elif char == "{":
            depth += 1
            deepest = max(deepest, depth)
        elif char == "}":
            depth -= 1
    return deepest


# --- filters -------------------------------------------------------------------------
def filter_tokens(tokens: list[str], vocab: set[str] | None, max_tokens: int | None) -> str | None:
    """The reason these tokens are kept out (too long, outside the vocabulary), or None."""
    if max_tokens is not None and len(tokens) > max_tokens:
        return f"too many tokens: {len(tokens)} > {max_tokens}"
    if vocab is not None:
        unknown = sorted({t for t in tokens if t not in vocab})
        if unknown:
            shown = " ".join(unknown[:8]) + (" ..." if len(unknown) > 8 else "")
            return f"tokens not in the vocabulary: {shown}"
    return None


def load_vocab(path: str | Path) -> set[str]:
    """A vocabulary file: JSON (a list of tokens, or an object with a "tokens" list)
    or text with one token per line."""
    path = Path(path)
    if not path.is_file():
        raise KatexRenderError(f"vocabulary file not found: {path}")
    text = path.read_text(encoding="utf-8")
    if path.suffix.lower() == ".json":
        try:
            data = json.loads(text)
        except json.JSONDecodeError as err:
            raise KatexRenderError(f"{path}: not valid JSON: {err}") from err
        tokens = data.get("tokens") if isinstance(data, dict) else data
        if not isinstance(tokens, list) or not all(isinstance(t, str) for t in tokens):
            raise KatexRenderError(f'{path}: expected a JSON list of tokens or an object with a "tokens" list')
        return set(tokens)
    return {line.strip() for line in text.splitlines() if line.strip()}


_POSITION = re.compile(r" at (?:position|end of input).*$")


def reason_category(reason: str) -> str:
    """A reason without the part that differs per formula (KaTeX's position and
    excerpt, token lists), for counting the top reasons."""
    reason = _POSITION.sub("", reason)
    for prefix in ("too long", "too many tokens", "tokens not in the vocabulary", "normalized form is not stable",
                   "normalized form does not parse", "not valid UTF-8", "control character", "bad JSON:",
                   "too wide", "render: timeout", "oversize"):
        if reason.startswith(prefix):
            return prefix
    return reason[:120]


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
