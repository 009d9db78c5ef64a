"""Token utilities: normalized tokens back to LaTeX, filters, vocabulary files, reasons.

Pure functions over token lists and strings; none of them starts a process.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

from katex_render.errors import KatexRenderError

# --- tokens back to LaTeX --------------------------------------------------------------
# Commands whose braced argument is text: there a space is a visible space, so the
# characters of the argument are written next to each other.
TEXT_COMMANDS = frozenset({
    "\\text", "\\textrm", "\\textsf", "\\texttt", "\\textnormal", "\\textbf", "\\textmd", "\\textit",
    "\\textup", "\\emph", "\\fbox", "\\angl",
})
_CONTROL_WORD = re.compile(r"\\[A-Za-z@]+\*?")


def tokens_to_latex(tokens: list[str]) -> str:
    """The LaTeX to render for normalized tokens: joined by spaces, except inside
    text arguments (``\\text { A . }`` -> ``\\text {A.}``), where KaTeX would draw
    each separating space. Normalizing the result gives the same tokens again;
    ``" ".join(tokens)`` is also valid KaTeX, with spaced-out text."""
    modes = ["math"]  # per open brace: "math", "text", or "textmath" ($...$ inside text)
    out: list[str] = []
    prev = ""
    for i, tok in enumerate(tokens):
        if i > 0:
            glue = modes[-1] == "text" and not _CONTROL_WORD.fullmatch(prev)
            out.append("" if glue else " ")
        out.append(tok)
        if tok == "{":
            if prev in TEXT_COMMANDS and modes[-1] != "text":
                # the argument of \\text (a "{" inside text is a plain group: push text)
                modes.append("text")
            else:
                modes.append(modes[-1] if modes[-1] != "textmath" else "math")
            # the glue before the first character was decided above, in the outer mode
        elif tok == "}" and len(modes) > 1:
            modes.pop()
        elif tok == "$" and modes[-1] in ("text", "textmath"):
            modes[-1] = "textmath" if modes[-1] == "text" else "text"
        prev = tok
    return "".join(out)


def group_depth(latex: str) -> int:
    """The deepest ``{...}`` nesting in ``latex`` (escaped braces do not count).

    KaTeX recurses once per group, and where that overflows the JavaScript stack
    depends on the engine's state (a fresh page goes deeper than a warm one), so
    the renderer refuses formulas deeper than ``max_group_depth`` before KaTeX sees
    them: the same input always gets the same answer."""
    depth = deepest = 0
    escaped = False
    for char in latex:
        if escaped:
            escaped = False
        elif char == "\\":
            escaped = True
        elif char == "{":
            depth += 1
            deepest = max(deepest, depth)
        elif char == "}":
            depth -= 1
    return deepest


# --- filters -------------------------------------------------------------------------
def filter_tokens(tokens: list[str], vocab: set[str] | None, max_tokens: int | None) -> str | None:
    """The reason these tokens are kept out (too long, outside the vocabulary), or None."""
    if max_tokens is not None and len(tokens) > max_tokens:
        return f"too many tokens: {len(tokens)} > {max_tokens}"
    if vocab is not None:
        unknown = sorted({t for t in tokens if t not in vocab})
        if unknown:
            shown = " ".join(unknown[:8]) + (" ..." if len(unknown) > 8 else "")
            return f"tokens not in the vocabulary: {shown}"
    return None


def load_vocab(path: str | Path) -> set[str]:
    """A vocabulary file: JSON (a list of tokens, or an object with a "tokens" list)
    or text with one token per line."""
    path = Path(path)
    if not path.is_file():
        raise KatexRenderError(f"vocabulary file not found: {path}")
    text = path.read_text(encoding="utf-8")
    if path.suffix.lower() == ".json":
        try:
            data = json.loads(text)
        except json.JSONDecodeError as err:
            raise KatexRenderError(f"{path}: not valid JSON: {err}") from err
        tokens = data.get("tokens") if isinstance(data, dict) else data
        if not isinstance(tokens, list) or not all(isinstance(t, str) for t in tokens):
            raise KatexRenderError(f'{path}: expected a JSON list of tokens or an object with a "tokens" list')
        return set(tokens)
    return {line.strip() for line in text.splitlines() if line.strip()}


_POSITION = re.compile(r" at (?:position|end of input).*$")


def reason_category(reason: str) -> str:
    """A reason without the part that differs per formula (KaTeX's position and
    excerpt, token lists), for counting the top reasons."""
    reason = _POSITION.sub("", reason)
    for prefix in ("too long", "too many tokens", "tokens not in the vocabulary", "normalized form is not stable",
                   "normalized form does not parse", "not valid UTF-8", "control character", "bad JSON:",
                   "too wide", "render: timeout", "oversize"):
        if reason.startswith(prefix):
            return prefix
    return reason[:120]
