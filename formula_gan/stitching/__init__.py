"""Handwriting from real strokes: CROHME's handwritten symbols placed at the positions
KaTeX gives them (``stitcher``), without training. The symbol bank is made by
``formula-gan prepare-symbols`` (``formula_gan.data.symbol_bank``); the dataset job is
``formula-gan synthesize --method stitch`` (``formula_gan.synthesis.methods.stitch``)."""

from formula_gan.stitching.stitcher import StitchConfig, StitchError, Stitched, Stitcher

__all__ = ["StitchConfig", "StitchError", "Stitched", "Stitcher"]
