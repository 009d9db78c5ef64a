"""The ``formula-gan`` command: argument parsing and dispatch, no logic of its own.

Each module of this package registers the sub-commands of one part of the
pipeline (``register(subparsers)``); heavy imports happen inside the handlers so
that ``formula-gan --help`` stays instant.
"""

from __future__ import annotations

import argparse
import importlib
import math
import pkgutil
import signal
import sys
import threading
from typing import Any, Callable, Sequence

from formula_gan import __version__
from formula_gan.errors import FormulaGanError
from katex_render.errors import KatexRenderError


def number(kind: type[int] | type[float], low: float | None = None, high: float | None = None) -> Callable[[str], Any]:
    """An argparse ``type`` for a numeric option with a range, so that a bad value is
    argparse's one-line error naming the option, before any work
    (``--workers 0`` -> "argument --workers: must be at least 1, got 0")."""

    def parse(text: str) -> int | float:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {'an integer' if kind is int else 'a number'}, got {text!r}") from None
        if not math.isfinite(value):
            raise argparse.ArgumentTypeError(f"must be a finite number, got {text}")
        if low is not None and value < low:
            raise argparse.ArgumentTypeError(f"must be at least {low}, got {text}")
        if high is not None and value > high:
            raise argparse.ArgumentTypeError(f"must be at most {high}, got {text}")
        return value

    parse.__name__ = kind.__name__  # argparse names the type in its messages
    return parse


def method_overrides(method: Any, args: argparse.Namespace, options: dict[str, str]) -> list[str]:
    """``section.key=value`` overrides for the options of a handwriting method that were given
    (``options``: argparse dest -> the key it sets); an option that none of ``method``'s sections
    has is an error naming the option (``--symbols`` given to the GAN)."""
    from formula_gan.config import ConfigError
    from formula_gan.synthesis.config import section_overrides

    overrides = []
    for option, key in options.items():
        try:
            overrides += section_overrides(method.name, method.sections, {key: getattr(args, option)})
        except ConfigError:
            raise FormulaGanError(f"--{option.replace('_', '-')}: not a setting of method {method.name!r}") from None
    return overrides


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


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised in the main thread: the command unwinds as on Ctrl-C (browsers,
    Node and temporary files are cleaned up by the same ``finally`` blocks)."""


def _raise_terminated(signum: int, frame: object) -> None:
    raise Terminated()


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as stop:  # --help, --version, or argparse's one-line error (printed already)
        return int(stop.code or 0)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    previous = None
    if threading.current_thread() is threading.main_thread():  # signal handlers live in the main thread
        previous = signal.signal(signal.SIGTERM, _raise_terminated)
    try:
        return int(args.func(args) or 0)
    except (FormulaGanError, KatexRenderError) as err:
        print(f"formula-gan {args.command}: error: {err}", file=sys.stderr)
        return 2
    except Terminated:
        print(f"formula-gan {args.command}: terminated; rerun the same command to resume", file=sys.stderr)
        return 128 + signal.SIGTERM
    except KeyboardInterrupt:
        print(f"formula-gan {args.command}: interrupted; rerun the same command to resume", file=sys.stderr)
        return 130
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)


if __name__ == "__main__":
    sys.exit(main())
