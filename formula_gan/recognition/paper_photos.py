"""Clean handwriting -> a photo of it on paper, to measure (and test) how ``recognize`` reads photos.

A phone photo of a formula written on paper differs from the training images in
many ways at once; each is one switchable effect here, so that a measurement can
say which of them costs the reading and a test can check each one alone:

* ``pen``: ``"pen"`` (the ink as given), ``"marker"`` (a thick felt marker: the
  strokes dilated to 2.5-4 x their width) or ``"pencil"`` (light grey graphite with
  grain: 35-60 % dark, speckled);
* ``paper``: ``"plain"``, ``"ruled"`` (horizontal lines) or ``"squared"`` (a grid),
  lines light blue or grey, spaced like a notebook's against the writing;
* ``lighting``: a smooth shadow gradient across the page and uneven illumination;
* ``blur``: a slightly defocused camera;
* ``perspective``: the phone not quite parallel to the page;
* ``small``: the formula takes 30-55 % of the frame's width, with paper around it;
* ``jpeg``: sensor noise and JPEG compression.

numpy + pillow only. Every random draw is made, in the same order, whatever the
switches: turning one effect off leaves the others exactly as they were.
"""

from __future__ import annotations

import io
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
from PIL import Image, ImageFilter

Pen = Literal["pen", "marker", "pencil"]
Paper = Literal["plain", "ruled", "squared"]

PAPER_WHITE = (0.97, 0.96, 0.92)  # notebook paper is a little warm, never pure white
RULING_COLOURS = ((0.55, 0.70, 0.92), (0.62, 0.66, 0.72))  # light blue or grey lines
INK_COLOURS = {"pen": ((0.08, 0.10, 0.35), (0.10, 0.10, 0.12)), "marker": ((0.06, 0.06, 0.08),),
               "pencil": ((0.30, 0.30, 0.32),)}  # fmt: skip


@dataclass(frozen=True)
class PhotoEffects:
    """Which effects a photo has (all on by default)."""

    pen: Pen = "pen"
    paper: Paper = "ruled"
    lighting: bool = True
    blur: bool = True
    perspective: bool = True
    small: bool = True
    jpeg: bool = True
    ink_height: tuple[int, int] = (90, 160)  # the writing's height in the photo, px (the clean image's 128 px scaled)


@dataclass
class PaperPhoto:
    rgb: np.ndarray  # uint8 [H, W, 3]
    box: tuple[int, int, int, int]  # the clean image's place in the frame before perspective: x0, y0, x1, y1
    params: dict[str, float | str] = field(default_factory=dict)  # what was drawn, for a report

    def jpeg_bytes(self, quality: int = 90) -> bytes:
        """The photo as a file would hold it (its JPEG artefacts, if any, are already in ``rgb``)."""
        buf = io.BytesIO()
        Image.fromarray(self.rgb, "RGB").save(buf, "JPEG", quality=quality)
        return buf.getvalue()


def paper_photo(clean: np.ndarray, seed: int, effects: PhotoEffects = PhotoEffects()) -> PaperPhoto:
    """uint8 [h, w] dark ink on white (a stitched or rasterized formula) -> a photo of it on paper."""
    if clean.ndim != 2 or clean.dtype != np.uint8:
        raise ValueError(f"expected a uint8 grayscale image, got {clean.dtype} {clean.shape}")
    rng = np.random.default_rng(seed)
    draw = _draws(rng)  # every random number, drawn whatever the switches

    scale = (effects.ink_height[0] + draw["height"] * (effects.ink_height[1] - effects.ink_height[0])) / 128
    h, w = clean.shape
    nh, nw = max(1, round(h * scale)), max(1, round(w * scale))
    ink = 1.0 - np.asarray(Image.fromarray(clean).resize((nw, nh), Image.BICUBIC), np.float32) / 255.0
    ink = np.clip(ink, 0.0, 1.0)
    ink, ink_rgb = _pen(ink, effects.pen, draw, rng, scale)

    # the frame: the formula small in it (or with a narrow margin), at a random place
    fill = 0.30 + 0.25 * draw["fill"] if effects.small else 0.85
    W = max(nw + 8, round(nw / fill))
    H = max(nh + 8, round(W * 0.75), round(nh / (0.6 if effects.small else 0.9)))
    x0 = round((W - nw) * (0.2 + 0.6 * draw["x"]))
    y0 = round((H - nh) * (0.2 + 0.6 * draw["y"]))
    canvas = np.zeros((H, W), np.float32)
    canvas[y0 : y0 + nh, x0 : x0 + nw] = ink

    paper = _paper(H, W, effects.paper, draw, nh, rng)  # [H, W, 3]
    rgb = paper * (1.0 - canvas[..., None]) + np.asarray(ink_rgb, np.float32) * canvas[..., None]
    if effects.perspective:
        rgb = _perspective(rgb, draw)
    if effects.lighting:
        rgb = rgb * _lighting(H, W, draw)[..., None]
    img = Image.fromarray(np.clip(rgb * 255, 0, 255).astype(np.uint8), "RGB")
    if effects.blur:
        img = img.filter(ImageFilter.GaussianBlur(0.6 + 1.2 * draw["blur"]))
    if effects.jpeg:
        noisy = np.asarray(img, np.float32) + draw["noise_field"](img.size[1], img.size[0]) * (2 + 5 * draw["noise"])
        img = Image.fromarray(np.clip(noisy, 0, 255).astype(np.uint8), "RGB")
        buf = io.BytesIO()
        img.save(buf, "JPEG", quality=int(50 + 35 * draw["quality"]))
        img = Image.open(io.BytesIO(buf.getvalue())).convert("RGB")
    params: dict[str, float | str] = {"pen": effects.pen, "paper": effects.paper, "ink_px": nh, "fill": nw / W}
    return PaperPhoto(np.asarray(img, np.uint8).copy(), (x0, y0, x0 + nw, y0 + nh), params)


def _draws(rng: np.random.Generator) -> dict:
    """All of a photo's random parameters as uniforms in [0, 1) (and a few arrays), in a fixed order."""
    d: dict = {k: float(rng.random()) for k in (
        "height", "fill", "x", "y", "marker", "pencil", "ink_colour", "ruling_colour", "spacing", "line_width",
        "phase_x", "phase_y", "shadow_angle", "shadow_depth", "shadow_edge", "blur", "noise", "quality")}  # fmt: skip
    d["corners"] = rng.uniform(-1, 1, size=(4, 2))
    d["illumination"] = rng.uniform(-1, 1, size=(4, 5))
    grain_seed, noise_seed = (int(s) for s in rng.integers(0, 2**31, size=2))
    d["grain_seed"] = grain_seed
    d["noise_field"] = lambda h, w: np.random.default_rng(noise_seed).normal(0, 1, (h, w, 1)).astype(np.float32)
    return d


def _pen(ink: np.ndarray, pen: Pen, draw: dict, rng: np.random.Generator, scale: float):
    """The strokes as ``pen`` draws them, and the ink's colour."""
    colours = INK_COLOURS[pen]
    colour = colours[int(draw["ink_colour"] * len(colours))]
    if pen == "marker":
        # the clean pen is 3 px at 128 px high; a marker is 2.5-4 x as thick
        grow = max(1, round(3 * scale * (1.5 + 1.5 * draw["marker"]) / 2))
        img = Image.fromarray((ink * 255).astype(np.uint8))
        for _ in range(grow):
            img = img.filter(ImageFilter.MaxFilter(3))
        ink = np.asarray(img.filter(ImageFilter.GaussianBlur(0.7)), np.float32) / 255.0
    elif pen == "pencil":
        grain = np.random.default_rng(draw["grain_seed"]).random(ink.shape).astype(np.float32)
        grain = np.asarray(Image.fromarray((grain * 255).astype(np.uint8)).filter(ImageFilter.GaussianBlur(0.6)),
                           np.float32) / 255.0  # fmt: skip
        strength = 0.35 + 0.25 * draw["pencil"]
        ink = ink * strength * np.clip(0.4 + 1.2 * grain, 0.0, 1.0)
    return ink, colour


def _paper(H: int, W: int, paper: Paper, draw: dict, ink_px: int, rng: np.random.Generator) -> np.ndarray:
    """[H, W, 3] the paper's colour, with ruled lines or a grid."""
    rgb = np.ones((H, W, 3), np.float32) * np.asarray(PAPER_WHITE, np.float32)
    if paper == "plain":
        return rgb
    colour = np.asarray(RULING_COLOURS[int(draw["ruling_colour"] * len(RULING_COLOURS))], np.float32)
    lw = 1 + int(draw["line_width"] * 3)  # 1-3 px
    # a notebook's lines are ~8 mm apart, its squares ~5 mm; writing is ~ one line high
    spacing = ink_px * ((0.45 + 0.35 * draw["spacing"]) if paper == "ruled" else (0.3 + 0.2 * draw["spacing"]))
    line = np.zeros((H, W), np.float32)
    rows = _line_profile(H, spacing, draw["phase_y"], lw)
    line = np.maximum(line, rows[:, None])
    if paper == "squared":
        line = np.maximum(line, _line_profile(W, spacing, draw["phase_x"], lw)[None, :])
    return rgb * (1.0 - line[..., None]) + (rgb * colour) * line[..., None]


def _line_profile(n: int, spacing: float, phase: float, width: int) -> np.ndarray:
    """[n] 1 on the lines (``width`` px every ``spacing`` px from ``phase`` of a period), 0 between."""
    pos = (np.arange(n, dtype=np.float32) - phase * spacing) % max(spacing, 2.0)
    return (pos < width).astype(np.float32)


def _perspective(rgb: np.ndarray, draw: dict) -> np.ndarray:
    """The page seen at a slight angle: each corner moved by up to 5 % of the frame."""
    H, W = rgb.shape[:2]
    src = np.array([[0, 0], [W, 0], [W, H], [0, H]], np.float64)
    dst = src + draw["corners"] * 0.05 * np.array([W, H])
    coeffs = _perspective_coeffs(dst, src)  # PIL maps output -> input pixels
    fill = tuple(int(255 * c) for c in PAPER_WHITE)
    channels = []
    for c in range(3):
        img = Image.fromarray(np.clip(rgb[..., c] * 255, 0, 255).astype(np.uint8))
        img = img.transform((W, H), Image.PERSPECTIVE, coeffs, Image.BICUBIC, fillcolor=fill[c])
        channels.append(np.asarray(img, np.float32) / 255.0)
    return np.stack(channels, -1)


def _perspective_coeffs(out_pts: np.ndarray, in_pts: np.ndarray) -> tuple[float, ...]:
    """The 8 coefficients of PIL's PERSPECTIVE transform taking ``out_pts`` to ``in_pts``."""
    rows, rhs = [], []
    for (x, y), (u, v) in zip(out_pts, in_pts):
        rows.append([x, y, 1, 0, 0, 0, -u * x, -u * y])
        rows.append([0, 0, 0, x, y, 1, -v * x, -v * y])
        rhs += [u, v]
    return tuple(float(c) for c in np.linalg.solve(np.asarray(rows), np.asarray(rhs)))


def _lighting(H: int, W: int, draw: dict) -> np.ndarray:
    """[H, W] light falling on the page: a soft shadow across it and smooth uneven illumination."""
    yy, xx = np.mgrid[0:H, 0:W].astype(np.float32)
    angle = 2 * np.pi * draw["shadow_angle"]
    t = ((xx - W / 2) * np.cos(angle) + (yy - H / 2) * np.sin(angle)) / max(H, W)  # -0.7 .. 0.7 across the page
    edge = (draw["shadow_edge"] - 0.5) * 0.6
    shadow = 1.0 / (1.0 + np.exp(-(t - edge) / 0.08))  # 0 in the shadow, 1 in the light, a soft edge
    light = 1.0 - (0.2 + 0.3 * draw["shadow_depth"]) * (1.0 - shadow)
    bumps = Image.fromarray(((draw["illumination"] + 1) * 127.5).astype(np.uint8)).resize((W, H), Image.BICUBIC)
    light *= 0.9 + 0.1 * (np.asarray(bumps, np.float32) / 255.0)  # +-5 % slowly varying
    return light.astype(np.float32)
