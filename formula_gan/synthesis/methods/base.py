"""What a handwriting method is: the seam between the one synthesizer and the ways it can write.

The synthesizer does what every method shares (read and normalize formulas,
keys and seeds, lay them out in Chromium, write shards, manifest, rejects,
preview, resume, splits). A method says the rest:

* ``sections``: its typed config sections (dataclasses), by name. A composed
  method has its parts' sections too (``refine``: ``stitch`` and ``refine``).
  A section of another method in a job's config is an error naming the key.
* ``uses``: which :class:`Resources` it reads (``engine``: it runs a generator); one that it does not read,
  given explicitly, is an error (``--device`` means nothing to the stitcher).
* ``create(sections, resources, log)``: the method, ready (files loaded, pools
  started); everything wrong with its set-up is an error here, before any work.
* ``identity()``: what makes its output (weights' hashes, its config). It goes
  into the job's identity (a folder made with another is refused) and into each
  sample's ``generator``.
* ``layout()``: what the browser does for its records (:mod:`.layouts`).
* ``stages()``: the stages that turn laid-out records into samples, each a
  function over a stream of pieces (``steps`` has the shared helpers). When they
  end, every record that is not a reject has ``png`` and ``size``; a method adds
  its per-sample metadata to ``record.meta``, extra members (``inkml``) to
  ``record.members``, and the images the preview shows to ``record.preview``.
* ``manifest_extra()``: what the manifest says about it; ``close()``.

A method that takes another's output as input composes it (holds the other
method and extends its stages), it does not subclass it.
"""

from __future__ import annotations

import concurrent.futures
from dataclasses import dataclass
from typing import Any, ClassVar, Mapping, Protocol

from formula_gan.synthesis.items import Piece, Record
from formula_gan.synthesis.stages import Stage



@dataclass(frozen=True)
class Resources:
    """How fast, never what: settings that do not change a sample, so a job may resume with others."""

    device: str | None = None  # a generator's device (None: cuda when present, else cpu)
    batch_size: int = 32  # generator batch size
    cpu_threads: int | None = None  # torch threads of a CPU generator (None: the cores the browsers leave)
    workers: int | None = None  # processes of a CPU-bound stage such as stitching (None: one per core)
    render_workers: int = 2  # Chromium processes (every method lays out formulas)
    # What runs a generator: "torch", or "onnx" (ONNX Runtime, CPU; the extra formula-gan[onnx]).
    # Speed only, as the device is: the outputs agree within 1e-4 of ink (synthesis/generation.py).
    engine: str = "torch"

    def __post_init__(self) -> None:
        if self.engine not in ("torch", "onnx"):
            raise ValueError(f"engine must be torch or onnx, got {self.engine!r}")
        if self.batch_size < 1 or self.render_workers < 1:
            raise ValueError("batch size and render workers must be at least 1")
        if self.cpu_threads is not None and self.cpu_threads < 1:
            raise ValueError(f"cpu threads must be at least 1, got {self.cpu_threads}")
        if self.workers is not None and self.workers < 0:
            raise ValueError(f"workers must be at least 0, got {self.workers}")


class Layout(Protocol):
    """What the browser does for a method's records (``layouts.RenderedImages``, ``layouts.SymbolBoxes``)."""

    def prepare(self, record: Record) -> None:
        """Adjust a normalized record before layout (its style, say)."""

    def submit(self, renderer: Any, todo: list[Record]) -> Any:
        """Start laying out these records; returns a future of their results."""

    def finish(self, piece: Piece, todo: list[Record], future: Any,
               pool: concurrent.futures.ThreadPoolExecutor) -> Piece:
        """Fill the records from the results (or mark their rejects)."""


class Method(Protocol):
    name: ClassVar[str]
    sections: ClassVar[Mapping[str, type]]
    uses: ClassVar[frozenset[str]]

    @classmethod
    def create(cls, sections: Mapping[str, Any], resources: Resources, log: Any) -> "Method": ...

    def identity(self) -> dict[str, Any]: ...

    def layout(self) -> Layout: ...

    def stages(self) -> list[tuple[str, Stage]]: ...

    def manifest_extra(self) -> dict[str, Any]: ...

    def close(self) -> None: ...


