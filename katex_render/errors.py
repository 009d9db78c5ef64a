"""Errors of the rendering stage that a user can act on."""


class KatexRenderError(Exception):
    """Base class: a missing browser or KaTeX install, a bad input file, a bad style config."""
