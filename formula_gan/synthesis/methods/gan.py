"""``gan``: the paper's pipeline. Each formula's KaTeX rendering, scaled to the height the
generator was trained at, is translated into handwriting by a trained generator.

    layout: rendered images (oversize policy) ─► generate (batches by width) ─► encode PNG
"""

from __future__ import annotations

import dataclasses
import functools
import os
from dataclasses import dataclass
from typing import Any, ClassVar, Literal, Mapping

from formula_gan.config import to_dict
from formula_gan.devices import resolve_device
from formula_gan.errors import FormulaGanError
from formula_gan.synthesis.generation import (
    UNTRAINED_WARNING,
    LoadedGenerator,
    default_generator,
    generate_stage,
    load,
    on_engine,
    untrained_generator,
)
from formula_gan.synthesis.layouts import RenderedImages
from formula_gan.synthesis.methods.base import Resources
from formula_gan.synthesis.policy import MAX_PIXELS
from formula_gan.synthesis.stages import Stage
from formula_gan.synthesis.steps import encode_stage, encode_threads


@dataclass
class GanSettings:
    # An exported generator file (formula-gan export-generator); None: the packaged one.
    generator: str | None = None
    # A randomly initialized generator instead: runs the pipeline, writes no handwriting.
    untrained: bool = False
    # The generator's working height. None: the height its file states (it was trained at).
    height: int | None = None
    # Crop each rendering to its ink with CROHME's margin before scaling. None: as its file states.
    frame: bool | None = None
    # Inputs wider than max_pixels at the working height: "skip" (a reported reject) or
    # "downscale" (drawn smaller on a canvas of the working height, reported in the sample).
    oversize: Literal["skip", "downscale"] = "skip"
    # The paper's limit on width x height of a generator input.
    max_pixels: int = MAX_PIXELS

    def __post_init__(self) -> None:
        if self.generator is not None and self.untrained:
            raise ValueError("give either a generator file or untrained: true, not both")
        if self.height is not None and self.height < 1:
            raise ValueError(f"height must be positive, got {self.height}")
        if self.oversize not in ("skip", "downscale"):
            raise ValueError(f"oversize must be skip or downscale, got {self.oversize!r}")


def load_generator_setting(generator: str | None, untrained: bool, resources: Resources) -> LoadedGenerator:
    """The generator a setting names (the packaged one for None), on the resources' device and engine
    (the onnx engine: on the CPU, unless a device is named, which is then an error)."""
    device = resolve_device(resources.device or ("cpu" if resources.engine == "onnx" else None))
    if untrained:
        return on_engine(untrained_generator(device), resources.engine, cpu_threads_for(resources))
    path = generator or default_generator()
    if path is None:
        raise FormulaGanError(
            "no generator: this installation ships no trained default generator. Give one with "
            "--generator FILE (from `formula-gan export-generator`), or ask for --untrained-generator "
            "explicitly to try the pipeline (random weights: the output is NOT handwriting)"
        )
    return load(path, device, resources.engine, cpu_threads_for(resources))


def cpu_threads_for(resources: Resources) -> int:
    """Threads of a CPU generator. Torch's: the cores the browsers leave, at least one (more make
    OpenMP spin against Chromium: on a busy 2-core machine 1 thread is ~2x faster than 2). ONNX
    Runtime's idle threads sleep (onnx_engine: no spinning), so a second one only takes the time
    the browsers leave: at least two (measured, same run, 400 formulas, 2 busy cores: 1 thread
    87.8 and 88.6 samples/s, 2 threads 106.6 and 92.8)."""
    cores = os.cpu_count() or 1
    if resources.cpu_threads:
        return resources.cpu_threads
    if resources.engine == "onnx":
        return min(cores, max(2, cores - resources.render_workers))
    return max(1, cores - resources.render_workers)


class GanMethod:
    name: ClassVar[str] = "gan"
    source: ClassVar[str] = "rendered"  # what its generator was trained to translate
    sections: ClassVar[Mapping[str, type]] = {"gan": GanSettings}
    uses: ClassVar[frozenset[str]] = frozenset({"device", "batch_size", "cpu_threads", "engine"})

    def __init__(self, settings: GanSettings, gen: LoadedGenerator, resources: Resources) -> None:
        self.gen = gen
        # the working height and framing the generator states, unless the settings say
        contract = gen.contract
        if contract.get("source", "rendered") != self.source:
            raise FormulaGanError(f"this generator was trained on {contract.get('source')} inputs, not on "
                                  f"{self.source} ones: use --method {'refine' if self.source == 'rendered' else 'gan'}")
        self.settings = dataclasses.replace(
            settings,
            height=settings.height if settings.height is not None else int(contract["height"]),
            frame=settings.frame if settings.frame is not None else bool(contract["frame"]),
        )
        height, stride = self.settings.height, int(contract["stride"])
        if height % stride:
            raise FormulaGanError(f"gan.height must be a multiple of the generator's stride {stride}, got {height}")
        if self.settings.max_pixels < height * stride:
            raise FormulaGanError(f"gan.max_pixels {self.settings.max_pixels} is below one {stride}-px column "
                                  f"at height {height}")
        self.resources = resources

    @classmethod
    def create(cls, sections: Mapping[str, Any], resources: Resources, log: Any) -> "GanMethod":
        settings: GanSettings = sections["gan"]
        gen = load_generator_setting(settings.generator, settings.untrained, resources)
        if gen.untrained:
            print(UNTRAINED_WARNING, file=log)
        return cls(settings, gen, resources)

    def identity(self) -> dict[str, Any]:
        """What each sample records about what made it: the generator's hash and step."""
        return self.gen.identity()

    def job_identity(self) -> dict[str, Any]:
        settings = to_dict(self.settings)
        settings.pop("generator")  # a path: the generator's hash (identity) is what counts
        return {"generator": self.identity(), "gan": settings}

    def layout(self) -> RenderedImages:
        s = self.settings
        return RenderedImages(height=s.height, frame=s.frame, oversize=s.oversize, max_pixels=s.max_pixels)  # type: ignore[arg-type]

    def stages(self) -> list[tuple[str, Stage]]:
        generate = functools.partial(generate_stage, gen=self.gen, batch_size=self.resources.batch_size,
                                     cpu_threads=cpu_threads_for(self.resources))
        encode = functools.partial(encode_stage, threads=encode_threads())
        return [("generate", generate), ("encode", encode)]

    def manifest_extra(self) -> dict[str, Any]:
        s = self.settings
        return {"oversize": {"policy": s.oversize, "max_pixels": s.max_pixels, "height": s.height}}

    def close(self) -> None:
        return None

