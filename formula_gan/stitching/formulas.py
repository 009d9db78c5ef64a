"""Stitch a list of LaTeX formulas from Python (normalize, lay out, stitch) without a job.

    from formula_gan.stitching.formulas import stitch_formulas
    results = stitch_formulas([r"\\frac{a}{b}", r"x^2"], "datasets/prepared/symbols", seed=0)
    # each: a Stitched (.image, .boxes, .writers, .glyphs) or the reason it could not be written

The dataset job (``synthesize --method stitch``) does the same per sample, with
its seeds derived from the job seed and each sample's key.
"""

from __future__ import annotations

from typing import Sequence

from formula_gan.data.render_job import derive_seed
from formula_gan.data.symbol_bank import SymbolBank
from formula_gan.stitching.stitcher import StitchConfig, StitchError, Stitched, Stitcher
from katex_render.normalize import Normalizer
from katex_render.renderer import Renderer
from katex_render.styles import Style


def stitch_formulas(formulas: Sequence[str], symbols: SymbolBank | str | Stitcher, *, seed: int = 0,
                    config: StitchConfig | None = None, font: str = "\\mathnormal",
                    render_workers: int = 1) -> list[Stitched | str]:
    """One result per formula, in order: its ``Stitched``, or why it has none (a reason
    from the normalizer, the renderer or the stitcher). Formula ``i`` uses the seed
    ``derive_seed(seed, str(i), formula, 0)``: the same list and seed give the same images."""
    stitcher = symbols if isinstance(symbols, Stitcher) else Stitcher(symbols, config)
    with Normalizer() as normalizer:
        normalized = normalizer.normalize(list(formulas))
    style = Style(font, stitcher.config.layout_px, 0)
    todo = [i for i, (tokens, _) in enumerate(normalized) if tokens]
    results: list[Stitched | str] = [f"normalize: {error}" for _, error in normalized]
    if not todo:
        return results
    with Renderer(workers=render_workers) as renderer:
        layouts = renderer.render_boxes([(normalized[i][0], style) for i in todo], images=False)
    for i, layout in zip(todo, layouts):
        tokens = normalized[i][0]
        assert tokens is not None
        if layout.error is not None or not layout.boxes:
            results[i] = f"render: {layout.error or layout.boxes_error}"
            continue
        try:
            results[i] = stitcher.stitch(tokens, layout.boxes, derive_seed(seed, str(i), formulas[i], 0), formulas[i])
        except StitchError as err:
            results[i] = f"stitch: {err}"
    return results
