"""formula-gan: realistic synthetic handwritten formula images from LaTeX.

``from formula_gan import Synthesizer`` is the Python form of ``formula-gan synthesize``,
``from formula_gan import Recognizer`` the one of ``formula-gan recognize``; each is imported on first use, so that importing the package (and ``formula-gan --help``)
does not pay for torch.
"""

from typing import Any

__version__ = "0.1.0"
__all__ = ["Recognizer", "Synthesizer", "SynthesisConfig", "__version__"]


def __getattr__(name: str) -> Any:
    if name in ("Synthesizer", "SynthesisConfig"):
        from formula_gan import synthesis

        return getattr(synthesis, name)
    if name == "Recognizer":
        from formula_gan.recognition import Recognizer

        return Recognizer
    raise AttributeError(f"module 'formula_gan' has no attribute {name!r}")
