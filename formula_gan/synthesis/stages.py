"""Stages joined by bounded queues: the memory of a streaming job does not grow with its input.

A stage is a function from an iterator of inputs to an iterator of outputs,
``fn(inputs) -> outputs``, run in its own thread. Writing stages as generators
lets one hold a resource for the whole stream (``with Renderer() as r: for x in
inputs: yield r.render(x)``) and lets it emit at its own pace (a batcher may
take several inputs before it yields). Between two stages sits a queue of at
most ``depth`` messages: a fast producer blocks instead of piling up work, so
at most ``depth`` messages per queue plus what each stage holds are alive.

Error policy (as in webdataset's handlers, but with one fixed choice): the
first exception in any stage stops every stage — each unwinds through its
``finally``/``with`` blocks, so browsers and node processes are closed — and is
re-raised in the consumer's thread. Nothing is swallowed; a per-item failure
that should become a reject is the stage's own business, not the pipeline's.

The threads need no GIL-free Python: the heavy work of each stage runs in
code that releases it (Chromium in other processes, torch kernels, zlib).
"""

from __future__ import annotations

import queue
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Iterator

Stage = Callable[[Iterator[Any]], Iterable[Any]]
_END = object()  # end of stream marker, sent once through each queue
_POLL_S = 0.1  # how often a blocked stage looks at the stop flag


class _Stopped(Exception):
    """Raised inside a stage's input iterator when another stage failed."""


@dataclass
class StageStats:
    """Where a stage's wall time went: ``busy`` = its own work (not waiting on a neighbour)."""

    name: str
    messages_in: int = 0
    messages_out: int = 0
    wait_in_s: float = 0.0  # starved: waiting for the previous stage
    wait_out_s: float = 0.0  # back-pressure: waiting for the next stage
    total_s: float = 0.0

    @property
    def busy_s(self) -> float:
        return max(0.0, self.total_s - self.wait_in_s - self.wait_out_s)


@dataclass
class _Shared:
    stop: threading.Event = field(default_factory=threading.Event)
    error: BaseException | None = None
    lock: threading.Lock = field(default_factory=threading.Lock)

    def fail(self, err: BaseException) -> None:
        with self.lock:
            if self.error is None:
                self.error = err
        self.stop.set()


def _get(q: "queue.Queue[Any]", shared: _Shared, stats: StageStats) -> Any:
    start = time.perf_counter()
    try:
        while True:
            if shared.stop.is_set():
                raise _Stopped
            try:
                return q.get(timeout=_POLL_S)
            except queue.Empty:
                continue
    finally:
        stats.wait_in_s += time.perf_counter() - start


def _put(q: "queue.Queue[Any]", item: Any, shared: _Shared, stats: StageStats) -> None:
    start = time.perf_counter()
    try:
        while True:
            if shared.stop.is_set():
                raise _Stopped
            try:
                q.put(item, timeout=_POLL_S)
                return
            except queue.Full:
                continue
    finally:
        stats.wait_out_s += time.perf_counter() - start


def _inputs(q: "queue.Queue[Any]", shared: _Shared, stats: StageStats) -> Iterator[Any]:
    while True:
        item = _get(q, shared, stats)
        if item is _END:
            return
        stats.messages_in += 1
        yield item


class Pipeline:
    """``source`` → stage 1 → … → stage n, each in a thread, consumed by iterating the pipeline.

    >>> with Pipeline(read_items(), [("render", render), ("generate", generate)], depth=2) as p:
    ...     for out in p:
    ...         write(out)

    The source runs in a thread too (reading and normalizing input is a stage
    like the others). Leaving the ``with`` block early, or an exception in the
    consumer, stops the stages and joins their threads.
    """

    def __init__(self, source: Iterable[Any], stages: list[tuple[str, Stage]], depth: int = 2, source_name: str = "source"):
        if depth < 1:
            raise ValueError("queue depth must be at least 1")
        self._shared = _Shared()
        self._queues: list[queue.Queue[Any]] = [queue.Queue(maxsize=depth) for _ in range(len(stages) + 1)]
        self.stats = [StageStats(source_name)] + [StageStats(name) for name, _ in stages]
        self._threads = [threading.Thread(target=self._run_source, args=(source,), name="stage-source", daemon=True)]
        for i, (name, fn) in enumerate(stages):
            self._threads.append(
                threading.Thread(target=self._run_stage, args=(i, fn), name=f"stage-{name}", daemon=True)
            )
        self._consumer = StageStats("consumer")
        self._started = False

    # ---- threads --------------------------------------------------------------------
    def _run_source(self, source: Iterable[Any]) -> None:
        stats, out = self.stats[0], self._queues[0]
        start = time.perf_counter()
        iterator = iter(source)
        try:
            for item in iterator:
                _put(out, item, self._shared, stats)
                stats.messages_out += 1
            _put(out, _END, self._shared, stats)
        except _Stopped:
            pass  # another stage failed first; its error is the one reported
        except BaseException as err:  # noqa: BLE001 - handed to the consumer, re-raised there
            self._shared.fail(err)
        finally:
            _close(iterator)
            stats.total_s = time.perf_counter() - start

    def _run_stage(self, i: int, fn: Stage) -> None:
        stats, qin, qout = self.stats[i + 1], self._queues[i], self._queues[i + 1]
        start = time.perf_counter()
        outputs: Iterable[Any] = ()
        try:
            outputs = fn(_inputs(qin, self._shared, stats))
            for item in outputs:
                _put(qout, item, self._shared, stats)
                stats.messages_out += 1
            _put(qout, _END, self._shared, stats)
        except _Stopped:
            pass
        except BaseException as err:  # noqa: BLE001 - handed to the consumer, re-raised there
            self._shared.fail(err)
        finally:
            _close(outputs)
            stats.total_s = time.perf_counter() - start

    # ---- consumer -------------------------------------------------------------------
    def __enter__(self) -> "Pipeline":
        for t in self._threads:
            t.start()
        self._started = True
        self._t0 = time.perf_counter()
        return self

    def __iter__(self) -> Iterator[Any]:
        if not self._started:
            raise RuntimeError("use Pipeline as a context manager")
        last = self._queues[-1]
        while True:
            try:
                item = _get(last, self._shared, self._consumer)
            except _Stopped:
                break
            if item is _END:
                break
            self._consumer.messages_in += 1
            yield item
        self._raise_error()

    def __exit__(self, exc_type, exc, tb) -> None:
        # Finished, failed, or the consumer left early: either way every thread must end.
        self._shared.stop.set()
        for t in self._threads:
            t.join()
        self._consumer.total_s = time.perf_counter() - self._t0
        if exc_type is None:
            self._raise_error()

    def _raise_error(self) -> None:
        if self._shared.error is not None:
            raise self._shared.error

    @property
    def consumer_stats(self) -> StageStats:
        return self._consumer


def _close(obj: Any) -> None:
    """Close a generator so that its ``with``/``finally`` blocks run in this thread."""
    close = getattr(obj, "close", None)
    if callable(close):
        close()
