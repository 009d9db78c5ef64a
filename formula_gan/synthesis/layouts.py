"""What the browser does for a method's records: render images, or measure per-symbol boxes.

A layout has three parts (``methods.base.Layout``): ``prepare`` a normalized
record (its style), ``submit`` a piece's records to the renderer (a future),
``finish`` them from the results: fill in what the method's stages need, or a
reject with the render stage's reason. Both layouts put the KaTeX rendering of
the records kept for the preview into ``record.preview`` (the sheet's first column).
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
from dataclasses import dataclass
from typing import Any

from formula_gan.synthesis.items import Piece, Record
from formula_gan.synthesis.policy import OversizePolicy, prepare
from formula_gan.synthesis.preview import kept_for_preview
from katex_render.renderer import Renderer


@dataclass(frozen=True)
class RenderedImages:
    """Each record rendered in its style, scaled to ``height`` by the oversize policy
    (``record.image``): the input of a generator that translates renderings."""

    height: int
    frame: bool
    oversize: OversizePolicy
    max_pixels: int

    def prepare(self, record: Record) -> None:
        return None  # the style sampled for the record is the rendering's

    def submit(self, renderer: Renderer, todo: list[Record]) -> "concurrent.futures.Future[Any]":
        return renderer.submit([(r.rendering.rendered_latex, r.rendering.style) for r in todo])  # type: ignore[union-attr]

    def finish(self, piece: Piece, todo: list[Record], future: Any,
               pool: concurrent.futures.ThreadPoolExecutor) -> Piece:
        if future is None:
            return piece
        results = future.result()
        # Scaling releases the GIL (pillow): a few threads keep up with many browsers.
        prepared = pool.map(lambda res: None if res[0] is None else
                            prepare(res[0], self.height, self.oversize, self.max_pixels, self.frame), results)
        for r, (image, reason), p in zip(todo, results, prepared):
            if image is None:
                r.reject, r.stage = f"render: {reason}", "render"  # as the `render` job words it
                continue
            if p.reject is not None:
                r.reject, r.stage = p.reject, "oversize"
                continue
            r.image = p.image
            if p.downscaled is not None:
                r.meta["oversize"] = {"policy": "downscale", "scale": p.downscaled,
                                      "rendered_size": [int(image.shape[0]), int(image.shape[1])]}
            if kept_for_preview(r):
                r.preview.append(p.image)
        return piece


@dataclass(frozen=True)
class SymbolBoxes:
    """Each record laid out by KaTeX at ``layout_px`` (its style's font command, no padding), its
    visible symbols measured (``record.boxes``); nothing is captured but the preview's pictures."""

    layout_px: int

    def prepare(self, record: Record) -> None:
        if record.rendering is not None:  # the layout's own size; the method's drawing sets the image's
            style = dataclasses.replace(record.rendering.style, font_size=self.layout_px, padding=0)
            record.rendering = dataclasses.replace(record.rendering, style=style)

    def submit(self, renderer: Renderer, todo: list[Record]) -> "_BoxesAndPictures":
        items = [(r.rendering.tokens, r.rendering.style) for r in todo]  # type: ignore[union-attr]
        shown = [kept_for_preview(r) for r in todo]
        boxes = renderer.submit_boxes(items, images=False)
        pictures = renderer.submit_boxes([it for it, s in zip(items, shown) if s]) if any(shown) else None
        return _BoxesAndPictures(boxes, pictures, shown)

    def finish(self, piece: Piece, todo: list[Record], future: Any,
               pool: concurrent.futures.ThreadPoolExecutor) -> Piece:
        if future is None:
            return piece
        for r, (layout, picture) in zip(todo, future.result()):
            if layout.error is not None:
                r.reject, r.stage = f"render: {layout.error}", "render"
            elif not layout.boxes:
                r.reject, r.stage = f"render: no symbol boxes: {layout.boxes_error}", "render"
            else:
                r.boxes = tuple(layout.boxes)
                if picture is not None and picture.image is not None:
                    r.preview.append(picture.image)
        return piece


class _BoxesAndPictures:
    """The layout boxes of a piece and the pictures of its preview records, as one future."""

    def __init__(self, boxes: Any, pictures: Any, shown: list[bool]):
        self.boxes, self.pictures, self.shown = boxes, pictures, shown

    def result(self) -> list[tuple[Any, Any]]:
        layouts = self.boxes.result()
        pictures = iter(self.pictures.result() if self.pictures is not None else ())
        return [(layout, next(pictures) if shown else None) for layout, shown in zip(layouts, self.shown)]

    def cancel(self) -> None:
        for future in (self.boxes, self.pictures):
            if future is not None:
                future.cancel()
