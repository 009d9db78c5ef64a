"""Stitching many formulas, in this process or in a pool of worker processes.

Stitching and rasterizing are pure Python and pillow calls that hold the GIL
(two threads draw no faster than one), so a dataset job spreads them over
processes. A worker gets the stitcher once, when the pool starts (by fork: the
symbol bank's arrays are shared, not copied or pickled), and then only small
tasks: tokens, boxes, seed; it sends back the PNG and the sample's metadata.
"""

from __future__ import annotations

import concurrent.futures
import multiprocessing as mp
import os
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

from formula_gan.data.png import encode_png
from formula_gan.stitching.stitcher import StitchError, Stitcher
from katex_render.boxes import SymbolBox
from katex_render.process import die_with_parent

# The stitcher of this worker process, set once by the pool's initializer (a pool task
# can only name a module-level function, and the bank is too large to send per task).
_worker_stitcher: Stitcher | None = None


@dataclass(frozen=True)
class Task:
    """One formula to stitch."""

    tokens: tuple[str, ...]
    boxes: tuple[tuple[int, int, int, int, int], ...]  # SymbolBox.to_json() rows (layout px)
    seed: int
    latex: str
    image: bool = False  # also send the pixels back (the preview draws them; a refiner takes them)
    ink: bool = False  # also the strokes as InkML
    png: bool = True  # encode the image (False when another stage takes the pixels on)


@dataclass
class Done:
    """A stitched formula (png, meta, ...) or, with ``reject``, why there is none."""

    reject: str | None = None
    png: bytes | None = None
    size: tuple[int, int] | None = None
    meta: dict[str, Any] | None = None  # boxes, writers, box_writers
    inkml: bytes | None = None
    image: np.ndarray | None = None


def stitch_tasks(tasks: Sequence[Task], stitcher: Stitcher | None = None) -> list[Done]:
    """Stitch, draw and encode each task (with this worker's stitcher unless one is given)."""
    stitcher = stitcher or _worker_stitcher
    if stitcher is None:
        raise RuntimeError("stitch_tasks in a process without a stitcher")
    out = []
    for task in tasks:
        boxes = [SymbolBox.from_json(row) for row in task.boxes]
        try:
            stitched = stitcher.stitch(task.tokens, boxes, task.seed, task.latex)
        except StitchError as err:
            out.append(Done(reject=str(err)))
            continue
        writers = stitched.writers
        meta = {
            "boxes": [b.to_json() for b in stitched.boxes],  # [token index, x0, y0, x1, y1] in the image
            "writers": writers,  # the hands of the glyphs, most used first
            "box_writers": [writers.index(g.writer) for g in stitched.glyphs],  # per box, into writers
            # per box: bank (a writer's glyph), composed (of a writer's glyphs), fallback-bank, hershey (a font)
            "glyph_sources": [g.source for g in stitched.glyphs],
        }
        out.append(Done(png=encode_png(stitched.image) if task.png else None, size=(int(stitched.image.shape[0]), int(stitched.image.shape[1])),
                        meta=meta, inkml=stitcher.inkml(stitched, task.latex) if task.ink else None,
                        image=stitched.image if task.image else None))
    return out


def _pid(_: int) -> int:
    return os.getpid()


def _init_worker(stitcher: Stitcher, parent: int) -> None:
    global _worker_stitcher
    _worker_stitcher = stitcher
    # A forked worker shares its task pipe with its siblings, so a parent killed with
    # SIGKILL would leave it waiting for ever: on Linux it is killed with the parent.
    hook = die_with_parent()
    if hook is not None:
        hook()
    if os.getppid() != parent:  # the parent died before the hook was set
        os._exit(1)


class StitchPool:
    """``workers`` processes that stitch, or this process itself when ``workers`` is 0.

    Start it before any thread: the workers are forked at once (a fork copies only the
    forking thread, so no lock of another thread can be inherited held)."""

    def __init__(self, stitcher: Stitcher, workers: int):
        if workers < 0:
            raise ValueError(f"stitch workers must be at least 0, got {workers}")
        self.stitcher = stitcher
        self.workers = workers
        self._pool: concurrent.futures.ProcessPoolExecutor | None = None
        self._local: concurrent.futures.ThreadPoolExecutor | None = None
        if workers and "fork" in mp.get_all_start_methods():
            self._pool = concurrent.futures.ProcessPoolExecutor(
                workers, mp_context=mp.get_context("fork"), initializer=_init_worker, initargs=(stitcher, os.getpid()))
            # every worker forked now, not lazily from a pipeline thread later
            list(self._pool.map(_pid, range(workers * 4)))
        else:
            self._local = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="stitch")

    def submit(self, tasks: Sequence[Task]) -> "concurrent.futures.Future[list[Done]]":
        if self._pool is not None:
            return self._pool.submit(stitch_tasks, list(tasks))
        assert self._local is not None
        return self._local.submit(stitch_tasks, list(tasks), self.stitcher)

    def close(self) -> None:
        for pool in (self._pool, self._local):
            if pool is not None:
                pool.shutdown(cancel_futures=True)
        self._pool = self._local = None
