"""The long-lived ``node normalize.js`` process and the :class:`Normalizer` that streams batches through it.

``normalize.js`` parses each formula with the pinned KaTeX and writes the parse
tree back as one canonical token sequence (conventions in that file and in
``datasets/README.md``). This module runs it and survives it: a formula that
hangs is rejected with the reason ``timeout`` and the process is restarted for
the rest; a process that dies is restarted and its unanswered formulas are sent again.
"""

from __future__ import annotations

import collections
import json
import os
import select
import shutil
import subprocess
import tempfile
import threading
import time
from pathlib import Path
from typing import IO

from katex_render.errors import KatexRenderError

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
