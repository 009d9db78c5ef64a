"""What a synthesis job is: the settings that decide its output (and so its identity).

Everything here goes into ``job.json``; rerunning into a folder with other
values is an error. Settings that change only speed (device, batch size,
render workers) are arguments of ``Synthesizer`` instead, so a job may be
resumed with more workers or on a bigger machine.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from katex_render.styles import StyleConfig

from formula_gan.synthesis.policy import MAX_PIXELS, WIDTH_MULTIPLE


@dataclass
class SynthesisConfig:
    # Handwritings per formula: each variant gets its own render style and its own z.
    variants: int = 1
    # The job seed: every sample's style and z seeds derive from it and the sample's key.
    seed: int = 0
    # Inputs wider than max_pixels at the working height: "skip" (a reported reject) or
    # "downscale" (drawn smaller on a canvas of the working height, reported in the sample).
    oversize: Literal["skip", "downscale"] = "skip"
    # The generator's working height (the paper trains at 128 px).
    height: int = 128
    # The paper's limit on width x height of a generator input.
    max_pixels: int = MAX_PIXELS
    # Formulas with more tokens are rejected (None: no limit). The paper trains on <= 50.
    max_tokens: int | None = None
    # Samples (items) per shard: the unit of resume and of split. ~1000 handwritten
    # images of 128 px are ~10 MB, a size that streams well and loses little on a kill.
    samples_per_shard: int = 1000
    # Font command, font size and padding ranges of the renderings (as `render`).
    style: StyleConfig = field(default_factory=StyleConfig)

    def __post_init__(self) -> None:
        if self.variants < 1:
            raise ValueError("variants must be at least 1")
        if self.height < WIDTH_MULTIPLE or self.height % WIDTH_MULTIPLE:
            raise ValueError(f"height must be a positive multiple of {WIDTH_MULTIPLE}, got {self.height}")
        if self.max_pixels < self.height * WIDTH_MULTIPLE:
            raise ValueError(f"max_pixels {self.max_pixels} is below one {WIDTH_MULTIPLE}-px column at height {self.height}")
        if self.max_tokens is not None and self.max_tokens < 1:
            raise ValueError("max_tokens must be at least 1 (or null)")
        if self.samples_per_shard < 1:
            raise ValueError("samples_per_shard must be at least 1")
        if self.oversize not in ("skip", "downscale"):
            raise ValueError(f"oversize must be skip or downscale, got {self.oversize!r}")
