"""The ``formula-gan`` command: argument parsing and dispatch, no logic of its own.

Each module of this package registers the sub-commands of one part of the
pipeline (``register(subparsers)``); heavy imports happen inside the handlers so
that ``formula-gan --help`` stays instant.
"""

from __future__ import annotations

import argparse
import importlib
import pkgutil
import sys
from typing import Sequence

from formula_gan import __version__
from formula_gan.errors import FormulaGanError
from katex_render.errors import KatexRenderError


class IntermixedParser(argparse.ArgumentParser):
    """A sub-command parser that lets ``KEY=VALUE`` overrides and options come in any order
    (``render IN --out DIR a.b=c --seed 1 d=e``); plain argparse hands every positional
    its turn at the first positional word it meets."""

    _inside = False

    def parse_known_args(self, args=None, namespace=None):  # type: ignore[override]
        if self._inside:  # parse_known_intermixed_args calls back into this method
            return super().parse_known_args(args, namespace)
        self._inside = True
        try:
            return self.parse_known_intermixed_args(args, namespace)
        finally:
            self._inside = False


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="formula-gan",
        description=(
            "Turn LaTeX into realistic handwritten formula images: normalize and render "
            "formulas with KaTeX, prepare CROHME handwriting, train the self-attention GAN, "
            "synthesize datasets, and measure them with a downstream recognizer."
        ),
    )
    parser.add_argument("--version", action="version", version=f"formula-gan {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=IntermixedParser)
    for module in sorted(pkgutil.iter_modules(__path__), key=lambda m: m.name):
        importlib.import_module(f"{__name__}.{module.name}").register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except (FormulaGanError, KatexRenderError) as err:
        print(f"formula-gan {args.command}: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"formula-gan {args.command}: interrupted; rerun the same command to resume", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
