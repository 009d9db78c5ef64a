"""Synthesis: formulas in, a sharded dataset of generated handwriting out (see ``synthesizer``)."""

from formula_gan.synthesis.config import SynthesisConfig
from formula_gan.synthesis.synthesizer import SynthesisReport, Synthesizer

__all__ = ["SynthesisConfig", "SynthesisReport", "Synthesizer"]
