"""``refine``: the stitcher's handwriting, then a generator trained to make it look like one
person's writing (one pen and pressure, consistent size and slant, touching symbols,
the tablet's stroke texture): what stitching cannot give and a small GAN can learn.

    layout: symbol boxes ─► stitch (pixels) ─► frame and scale to the generator's height
        ─► generate ─► encode PNG

A composition, not a subclass: the stitch method's own stages make the input, the
GAN method's generator stage refines it. A sample's JSON holds the stitcher's
boxes, writers and glyph sources (of the stitched input: the refiner moves ink by
a pixel or two, not symbols) and, as its ``generator``, the stitcher's identity
and the generator's hash and step.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import functools
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Iterator, Literal, Mapping

from formula_gan.errors import FormulaGanError
from formula_gan.synthesis.generation import (UNTRAINED_WARNING, LoadedGenerator, generate_stage, load, on_engine,
                                             untrained_generator)
from formula_gan.synthesis.items import Piece
from formula_gan.synthesis.layouts import SymbolBoxes
from formula_gan.synthesis.methods.base import Resources
from formula_gan.synthesis.methods.gan import cpu_threads_for
from formula_gan.synthesis.methods.stitch import StitchMethod
from formula_gan.synthesis.policy import MAX_PIXELS, prepare
from formula_gan.synthesis.stages import Stage
from formula_gan.synthesis.steps import encode_stage, encode_threads
from formula_gan.devices import resolve_device

# The refiner the package ships, when it ships one (its card says how it was trained and measured).
DEFAULT_REFINER = Path(__file__).resolve().parents[2] / "weights" / "refiner.pt"


@dataclass
class RefineSettings:
    # An exported generator trained on stitched inputs (train-gan with data.source_domain: synthetic).
    # None: the packaged refiner.
    generator: str | None = None
    # A randomly initialized generator instead (tests the pipeline; not handwriting).
    untrained: bool = False
    # Stitched formulas wider than max_pixels at the generator's height: skip (a reject) or downscale.
    oversize: Literal["skip", "downscale"] = "skip"
    max_pixels: int = MAX_PIXELS

    def __post_init__(self) -> None:
        if self.generator is not None and self.untrained:
            raise ValueError("give either a generator file or untrained: true, not both")


class RefineMethod:
    name: ClassVar[str] = "refine"
    sections: ClassVar[Mapping[str, type]] = {"stitch": StitchMethod.sections["stitch"], "refine": RefineSettings}
    uses: ClassVar[frozenset[str]] = frozenset({"workers", "device", "batch_size", "cpu_threads", "engine"})

    def __init__(self, stitch: StitchMethod, settings: RefineSettings, gen: LoadedGenerator, resources: Resources) -> None:
        if gen.contract.get("source", "rendered") != "synthetic" and not gen.untrained:
            raise FormulaGanError("this generator translates KaTeX renderings, not stitched handwriting: use it with "
                                  "--method gan, or train a refiner (configs/gan/refine.yaml)")
        self.stitch, self.settings, self.gen, self.resources = stitch, settings, gen, resources

    @classmethod
    def create(cls, sections: Mapping[str, Any], resources: Resources, log: Any) -> "RefineMethod":
        settings: RefineSettings = sections["refine"]
        device = resolve_device(resources.device or ("cpu" if resources.engine == "onnx" else None))
        threads = cpu_threads_for(resources)
        if settings.untrained:
            stand_in = untrained_generator(device)
            gen = dataclasses.replace(stand_in, contract={**stand_in.contract, "frame": True, "source": "synthetic"})
            gen = on_engine(gen, resources.engine, threads)
            print(UNTRAINED_WARNING, file=log)
        else:
            path = settings.generator or (DEFAULT_REFINER if DEFAULT_REFINER.is_file() else None)
            if path is None:
                raise FormulaGanError("no refiner: this installation ships none; give one with --generator FILE "
                                      "(a generator trained on stitched handwriting, configs/gan/refine.yaml)")
            gen = load(path, device, resources.engine, threads)
        stitch = StitchMethod.create({"stitch": sections["stitch"]}, resources, log, pixels=True)
        return cls(stitch, settings, gen, resources)

    def identity(self) -> dict[str, Any]:
        return {"stitch": self.stitch.identity(), "generator": self.gen.identity()}

    def job_identity(self) -> dict[str, Any]:
        refine = dataclasses.asdict(self.settings)
        refine.pop("generator")  # a path: the generator's hash (identity) is what counts
        return {"generator": self.identity(), "stitch": self.stitch.job_identity()["stitch"], "refine": refine}

    def layout(self) -> SymbolBoxes:
        return self.stitch.layout()

    def stages(self) -> list[tuple[str, Stage]]:
        generate = functools.partial(generate_stage, gen=self.gen, batch_size=self.resources.batch_size,
                                     cpu_threads=cpu_threads_for(self.resources))
        return [*self.stitch.stages(), ("frame", self._frame), ("refine", generate),
                ("encode", functools.partial(encode_stage, threads=encode_threads()))]

    def manifest_extra(self) -> dict[str, Any]:
        c = self.gen.contract
        return {"oversize": {"policy": self.settings.oversize, "max_pixels": self.settings.max_pixels, "height": c["height"]}}

    def close(self) -> None:
        self.stitch.close()

    def _frame(self, pieces: Iterator[Piece]) -> Iterator[Piece]:
        """Each stitched image framed and scaled to the generator's height, as in its training."""
        c, s = self.gen.contract, self.settings
        with concurrent.futures.ThreadPoolExecutor(encode_threads(), thread_name_prefix="frame") as pool:
            for piece in pieces:
                todo = [r for r in piece.records if r.reject is None and r.image is not None]
                framed = pool.map(lambda r: prepare(r.image, int(c["height"]), s.oversize, s.max_pixels, bool(c["frame"])), todo)
                for r, p in zip(todo, framed):
                    if p.reject is not None:
                        r.reject, r.stage, r.image = p.reject, "oversize", None
                        continue
                    r.image = p.image
                    if p.downscaled is not None:
                        r.meta["oversize"] = {"policy": "downscale", "scale": p.downscaled}
                yield piece
