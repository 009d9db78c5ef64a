"""Settings: ``RendererConfig`` (the renderer's) and ``RenderConfig``, the schema of
``configs/render.yaml`` (style sampling + renderer).

Every setting has a range, checked when the config is made (before any browser starts).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from katex_render.styles import StyleConfig


@dataclass
class RendererConfig:
    # Browser processes working in parallel (one per core is the sweet spot:
    # each keeps a core busy with layout, rasterization and PNG encoding).
    workers: int = 2
    # Formulas per page.evaluate; with the defaults a batch fills about one sheet.
    batch_size: int = 192
    # Sheet size in CSS px (= image px). Wider sheets pack better; every pixel
    # is rasterized, encoded and decoded, so an empty one is pure cost.
    page_width: int = 1800
    sheet_height: int = 2000
    # A batch may take timeout_s + per_formula_timeout_s * len(batch) seconds
    # before its browser is killed and the batch split to isolate the culprit.
    timeout_s: float = 10.0
    per_formula_timeout_s: float = 0.1
    # Browser launch (and page load) budget.
    launch_timeout_s: float = 30.0
    # A fresh page every this many batches keeps the renderer's memory flat.
    recycle_every: int = 50
    # Retries of a whole batch on a fresh browser before it is split.
    max_retries: int = 2
    # KaTeX options. trust is always false. strict: "ignore" | "warn" | "error".
    strict: Literal["ignore", "warn", "error"] = "ignore"
    max_size: float = 20.0  # em; caps user-given sizes (\rule{1000em}{1em}, \kern)
    max_expand: int = 1000  # macro expansions per formula (\def loops end here)
    display_mode: bool = True  # display style, so that \textstyle is a real choice
    # Deeper {...} nesting is refused before KaTeX sees it: where KaTeX's
    # recursion overflows the JS stack depends on the engine's state, not the input.
    max_group_depth: int = 100
    # A formula (without padding) larger than this in either direction is rejected.
    max_side: int = 8000
    # A formula whose box (without padding) covers more pixels than this is rejected
    # by the page before it is captured: a few hundred characters of \def-built matrix
    # lay out at 7,000 x 6,000 px (~1 GB to capture and decode). 4 Mpx is ten times
    # the largest of 100,000 im2latex formulas at 50 px.
    max_pixels: int = 4_000_000
    # Pixels darker than this are ink (the tight crop keeps every pixel that
    # differs visibly from white paper).
    ink_threshold: int = 250

    def __post_init__(self) -> None:
        # (name, value, low, high): every setting has a range, checked before any work
        ranges = [
            ("workers", self.workers, 1, 64), ("batch_size", self.batch_size, 1, 100_000),
            ("page_width", self.page_width, 64, 16_384), ("sheet_height", self.sheet_height, 64, 16_384),
            ("timeout_s", self.timeout_s, 0.001, 86_400), ("per_formula_timeout_s", self.per_formula_timeout_s, 0, 3600),
            ("launch_timeout_s", self.launch_timeout_s, 0.1, 3600), ("recycle_every", self.recycle_every, 1, 10**9),
            ("max_retries", self.max_retries, 0, 100), ("max_size", self.max_size, 0.001, 10_000),
            ("max_expand", self.max_expand, 0, 10**9), ("max_group_depth", self.max_group_depth, 1, 10_000),
            ("max_side", self.max_side, 1, 65_535), ("max_pixels", self.max_pixels, 1, 10**9),
            ("ink_threshold", self.ink_threshold, 1, 255),
        ]
        for name, value, low, high in ranges:
            if not low <= value <= high:  # also false for NaN
                raise ValueError(f"{name} must be in {low}..{high}, got {value}")


@dataclass
class RenderConfig:
    """The schema of ``configs/render.yaml``."""

    style: StyleConfig = field(default_factory=StyleConfig)
    renderer: RendererConfig = field(default_factory=RendererConfig)
