"""A toy handwriting method for the plug-in tests: each symbol's KaTeX box filled with gray.

Everything a method needs is here, in one module; the test adds one line to the
registry (``methods.BUILTIN``). It writes no handwriting, only proves the seam.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar, Iterator, Mapping

import numpy as np

from formula_gan.synthesis.items import Piece
from formula_gan.synthesis.layouts import SymbolBoxes
from formula_gan.synthesis.methods.base import Resources
from formula_gan.synthesis.steps import encode_stage


@dataclass(frozen=True)
class ToySettings:
    gray: int = 96  # the fill of every box (0 black .. 255 paper)
    layout_px: int = 20

    def __post_init__(self) -> None:
        if not 0 <= self.gray <= 255:
            raise ValueError(f"gray must be in 0..255, got {self.gray}")


class ToyMethod:
    name: ClassVar[str] = "toy"
    sections: ClassVar[Mapping[str, type]] = {"toy": ToySettings}
    uses: ClassVar[frozenset[str]] = frozenset()

    def __init__(self, settings: ToySettings) -> None:
        self.settings = settings

    @classmethod
    def create(cls, sections: Mapping[str, Any], resources: Resources, log: Any) -> "ToyMethod":
        return cls(sections["toy"])

    def identity(self) -> dict[str, Any]:
        return {"toy": 1, "gray": self.settings.gray}

    def job_identity(self) -> dict[str, Any]:
        return {"generator": self.identity()}

    def layout(self) -> SymbolBoxes:
        return SymbolBoxes(self.settings.layout_px)

    def stages(self) -> list[tuple[str, Any]]:
        return [("fill", self.fill), ("encode", lambda pieces: encode_stage(pieces, threads=1))]

    def manifest_extra(self) -> dict[str, Any]:
        return {"toy": True}

    def close(self) -> None:
        return None

    def fill(self, pieces: Iterator[Piece]) -> Iterator[Piece]:
        for piece in pieces:
            for r in piece.records:
                if r.reject is not None or r.boxes is None:
                    continue
                h = max(b.y1 for b in r.boxes) + 2
                w = max(b.x1 for b in r.boxes) + 2
                image = np.full((h, w), 255, dtype=np.uint8)
                for b in r.boxes:
                    image[b.y0 : b.y1, b.x0 : b.x1] = self.settings.gray
                r.output = image
                r.meta["boxes_filled"] = len(r.boxes)
            yield piece
