"""Synthesis: formulas in, a sharded dataset of handwriting out (see ``synthesizer`` and ``methods``)."""

from formula_gan.synthesis.config import SynthesisConfig
from formula_gan.synthesis.methods import method_class, method_names
from formula_gan.synthesis.methods.base import Resources
from formula_gan.synthesis.synthesizer import SynthesisReport, Synthesizer

__all__ = ["Resources", "SynthesisConfig", "SynthesisReport", "Synthesizer", "method_class", "method_names"]
