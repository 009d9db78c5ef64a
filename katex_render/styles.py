"""Rendering styles: which font command, font size and padding a formula gets.

As in the paper, each rendered formula gets a font command drawn from
``\\mathsf \\mathtt \\mathit \\mathbf \\mathrm \\mathnormal \\textstyle``, a font
size of 16-50 px and a padding of 0-15 px; every range is configurable
(``configs/render.yaml``). Sampling is a pure function of a seed (callers derive
the seed from the formula, its source and its variant), so the same job gives
the same styles on any machine, in any order, on any number of workers.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field

from katex_render.errors import KatexRenderError

PAPER_FONTS = ("\\mathsf", "\\mathtt", "\\mathit", "\\mathbf", "\\mathrm", "\\mathnormal", "\\textstyle")
# Commands that take the formula as an argument: \mathsf{...}. \textstyle is a
# switch and is written as a group prefix instead: {\textstyle ...}.
_SWITCHES = frozenset({"\\textstyle", "\\displaystyle", "\\scriptstyle", "\\scriptscriptstyle"})
_ARGUMENT_FONTS = frozenset(
    {"\\mathsf", "\\mathtt", "\\mathit", "\\mathbf", "\\mathrm", "\\mathnormal", "\\mathcal", "\\mathbb",
     "\\mathfrak", "\\mathscr", "\\boldsymbol", "\\bm", "\\mathsfit"}
)


@dataclass(frozen=True)
class Style:
    font: str        # a font command, e.g. "\\mathsf" (see PAPER_FONTS)
    font_size: int   # CSS px of KaTeX's main font (1 em)
    padding: int     # white px added on every side after the tight crop

    def to_json(self) -> dict[str, object]:
        return {"font": self.font, "font_size": self.font_size, "padding": self.padding}

    def wrap(self, latex: str) -> str:
        """The LaTeX actually rendered: ``latex`` under this style's font command."""
        if self.font in _SWITCHES:
            return f"{{{self.font} {latex}}}"
        return f"{self.font}{{{latex}}}"


@dataclass
class StyleConfig:
    # The paper's seven font commands; any KaTeX font command or style switch works.
    fonts: list[str] = field(default_factory=lambda: list(PAPER_FONTS))
    # Inclusive range of the font size in px (the paper: 16-50).
    font_size: tuple[int, int] = (16, 50)
    # Inclusive range of the padding in px around the tight crop (the paper: 0-15).
    padding: tuple[int, int] = (0, 15)

    def __post_init__(self) -> None:
        if not self.fonts:
            raise ValueError("fonts: give at least one font command")
        for font in self.fonts:
            if font not in _SWITCHES and font not in _ARGUMENT_FONTS:
                known = ", ".join(sorted(_SWITCHES | _ARGUMENT_FONTS))
                raise ValueError(f"fonts: unknown font command {font!r} (known: {known})")
        lo, hi = self.font_size
        if not 1 <= lo <= hi <= 1000:
            raise ValueError(f"font_size: expected 1 <= low <= high <= 1000, got {list(self.font_size)}")
        lo, hi = self.padding
        if not 0 <= lo <= hi <= 1000:
            raise ValueError(f"padding: expected 0 <= low <= high <= 1000, got {list(self.padding)}")


def check_style(style: Style) -> None:
    """Raise ``KatexRenderError`` for a style the renderer cannot honour."""
    if style.font not in _SWITCHES and style.font not in _ARGUMENT_FONTS:
        raise KatexRenderError(f"unknown font command {style.font!r}")
    if not 1 <= style.font_size <= 1000 or not 0 <= style.padding <= 1000:
        raise KatexRenderError(f"font size {style.font_size} / padding {style.padding} out of range")


def sample_style(cfg: StyleConfig, seed: int) -> Style:
    """A style drawn uniformly from ``cfg``'s ranges; the same seed gives the same style."""
    rng = random.Random(seed)  # its own generator: no global random state is read or changed
    font = cfg.fonts[rng.randrange(len(cfg.fonts))]
    font_size = rng.randint(*cfg.font_size)
    padding = rng.randint(*cfg.padding)
    return Style(font=font, font_size=font_size, padding=padding)
