"""The handwriting methods, by name.

A method is one module with one class that follows ``base.Method``; it becomes a
choice of ``formula-gan synthesize --method``, of the scorecard and of the
Python API by one line in ``BUILTIN`` (the class named as ``module:Class``, so
that choosing one method never imports another: the stitch path stays free of
torch). A method outside the package is named the same way on the command line
(``--method mypackage.mymethod:MyMethod``).
"""

from __future__ import annotations

import importlib
from typing import Any

from formula_gan.errors import FormulaGanError

BUILTIN: dict[str, str] = {
    "gan": "formula_gan.synthesis.methods.gan:GanMethod",
    "stitch": "formula_gan.synthesis.methods.stitch:StitchMethod",
    "refine": "formula_gan.synthesis.methods.refine:RefineMethod",
}


def method_names() -> list[str]:
    """The methods the package has, for help texts and argument choices."""
    return sorted(BUILTIN)


def method_class(name: str) -> Any:
    """The class of a method given by name (``BUILTIN``) or as ``module:Class``."""
    target = BUILTIN.get(name, name)
    module_name, sep, attr = target.partition(":")
    if not sep:
        raise FormulaGanError(f"unknown method {name!r}: choose one of {', '.join(method_names())} "
                              "(or name a class as module:Class)")
    try:
        cls = getattr(importlib.import_module(module_name), attr)
    except (ImportError, AttributeError) as err:
        raise FormulaGanError(f"method {name!r}: cannot import {target} ({err})") from err
    for needed in ("name", "sections", "uses", "create"):
        if not hasattr(cls, needed):
            raise FormulaGanError(f"method {name!r}: {target} is not a handwriting method (it has no {needed!r})")
    return cls
