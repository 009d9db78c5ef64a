"""Each InkML dialect's label -> LaTeX that KaTeX's parser reads.

CROHME label spellings mapped before normalization (``premap_label``), each
because KaTeX cannot parse it or because it would split one handwritten symbol
into several tokens:

* ``$ ... $`` delimiters are removed: the labels are math already.
* control spaces (``\\ `` followed by white space) become plain spaces: spacing is
  dropped by the normalizer anyway, and ``$ ... \\ $`` (two test 2014 files) would
  otherwise leave a dangling backslash once the ``$`` is gone.
* ``\\mbox{X}`` and ``\\mathrm{X}`` -> ``X``: CROHME writes some letters upright
  (``\\mbox { z }``: 1,845 times in train); in handwriting upright and italic are
  the same symbol, and the symbol-level ground truth (trace groups) says ``z``.
  KaTeX would otherwise give ``\\text { z }``, three tokens for one symbol.
* ``\\ltN`` -> ``< N`` (and any ``\\lt``/``\\gt`` glued to an uppercase letter):
  a missing space in one extension file; as written it is an undefined command.
* labels holding the words ``ABOVE`` / ``BELOW`` (a few CROHME 2014 test files
  carry a layout description instead of LaTeX there) are rejected, not read as
  the letters A B O V E.

``\\lt``, ``\\gt``, ``\\ldots``, ``\\lbrack`` ... are parsed by KaTeX and given one
canonical token each by the normalizer itself.

MathWriting's ``normalizedLabel`` is LaTeX already (its authors canonicalized
synonyms and braces); only its white space is made single.
"""

from __future__ import annotations

import re
from pathlib import Path

from formula_gan.data.inkml import CROHME, MATHWRITING, InkmlError, read_header

PREMAP_VERSION = 2  # bump when a mapping changes: a resumed job must not mix two mappings

_WRAPPER_RE = re.compile(r"\\(?:mbox|mathrm)\s*\{")
_GLUED_REL_RE = re.compile(r"\\(lt|gt)(?=[A-Z])")
_LAYOUT_WORDS_RE = re.compile(r"\b(ABOVE|BELOW)\b")
_CONTROL_SPACE_RE = re.compile(r"(?<!\\)\\(?=\s|$)")


def label_latex(label: str, dialect: str) -> str:
    """A file's label as written -> LaTeX for the normalizer, by the file's dialect."""
    if dialect == CROHME:
        return premap_label(label)
    if dialect == MATHWRITING:
        return " ".join(label.split())
    raise InkmlError("bad-label", f"unknown InkML dialect {dialect!r}")


def read_label(path: str | Path) -> str:
    """The LaTeX of one file's label (no stroke parsing)."""
    label, dialect, _ = read_header(path)
    return label_latex(label, dialect)


def premap_label(truth: str) -> str:
    """A CROHME ``truth`` label -> LaTeX that KaTeX's parser reads (see the module docstring).
    Raises ``InkmlError("bad-label", ...)`` for labels that are not LaTeX at all."""
    if _LAYOUT_WORDS_RE.search(truth):
        raise InkmlError("bad-label", "unparseable label: it holds the layout words ABOVE/BELOW, not LaTeX")
    latex = _CONTROL_SPACE_RE.sub(" ", truth.replace("$", " "))
    latex = _GLUED_REL_RE.sub(lambda m: "< " if m.group(1) == "lt" else "> ", latex)
    return " ".join(_unwrap(latex).split())


def _unwrap(latex: str) -> str:
    """``\\mbox{...}`` / ``\\mathrm{...}`` -> their content (recursively)."""
    m = _WRAPPER_RE.search(latex)
    if m is None:
        return latex
    depth, j = 1, m.end()
    while j < len(latex) and depth:
        if latex[j] in "{}" and latex[j - 1] != "\\":
            depth += 1 if latex[j] == "{" else -1
        j += 1
    if depth:
        raise InkmlError("bad-label", f"unparseable label: unbalanced braces after {m.group(0)!r}")
    inner = _unwrap(latex[m.end() : j - 1])
    return latex[: m.start()] + " " + inner + " " + _unwrap(latex[j:])
