"""formula-gan: realistic synthetic handwritten formula images from LaTeX.

``from formula_gan import Synthesizer`` is the Python form of ``formula-gan synthesize``;
it is imported on first use, so that importing the package (and ``formula-gan --help``)
does not pay for torch.
"""

from typing import Any

__version__ = "0.1.0"
__all__ = ["Synthesizer", "SynthesisConfig", "__version__"]


def __getattr__(name: str) -> Any:
    if name in ("Synthesizer", "SynthesisConfig"):
        from formula_gan import synthesis

        return getattr(synthesis, name)
    raise AttributeError(f"module 'formula_gan' has no attribute {name!r}")
