"""What a synthesis job is: the settings that decide its output (and so its identity).

Everything here goes into ``job.json``; rerunning into a folder with other
values is an error. Settings that change only speed (device, batch size,
render workers) are arguments of ``Synthesizer`` instead, so a job may be
resumed with more workers or on a bigger machine.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Literal

from katex_render.styles import StyleConfig

from formula_gan.synthesis.policy import MAX_PIXELS, WIDTH_MULTIPLE

PAPER_HEIGHT = 128  # the paper trains and synthesizes at 128 px


@dataclass
class SynthesisConfig:
    # Handwritings per formula: each variant gets its own render style and its own z.
    variants: int = 1
    # The job seed: every sample's style and z seeds derive from it and the sample's key.
    seed: int = 0
    # Inputs wider than max_pixels at the working height: "skip" (a reported reject) or
    # "downscale" (drawn smaller on a canvas of the working height, reported in the sample).
    oversize: Literal["skip", "downscale"] = "skip"
    # The generator's working height. None: the height it was trained at (its file's
    # training config; 128, the paper's, when the file does not say).
    height: int | None = None
    # Crop each rendering to its ink with CROHME's margin before scaling (data/framing.py).
    # None: as the generator was trained (its config's data.frame).
    frame: bool | None = None
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
        if self.height is not None:
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

    def for_generator(self, training_config: dict) -> "SynthesisConfig":
        """This config with ``height`` and ``frame`` filled in from a generator's training config."""
        data = training_config.get("data", {}) if isinstance(training_config, dict) else {}
        height = self.height if self.height is not None else int(data.get("height", PAPER_HEIGHT))
        frame = self.frame if self.frame is not None else bool(data.get("frame", False))
        return replace(self, height=height, frame=frame)
