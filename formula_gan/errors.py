"""Errors a user can act on. The command line prints them as one clear line
(no traceback); anything else is a bug and keeps its traceback."""


class FormulaGanError(Exception):
    """Base class of the errors that are the user's input's fault, with a message that says what to do."""
