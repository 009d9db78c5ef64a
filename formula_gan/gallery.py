"""A gallery page of a shard set: one static HTML file to look at samples.

Each card shows the image, its LaTeX rendered by KaTeX, and the sample's source;
a checkbox overlays the per-symbol boxes of samples that have them (``render
--boxes``, ``synthesize --method stitch``), each labelled with its token. The
file holds everything it needs (images as data URIs, KaTeX's script, stylesheet
and fonts inlined): it opens offline, from a mail attachment or a CI artifact.
The LaTeX is data (a JSON block read by the page's script, with no ``<``, ``>`` or
``&`` in it: ``_script_json``) and KaTeX renders it with ``trust: false``.
"""

from __future__ import annotations

import base64
import html
import json
import random
import re
from pathlib import Path
from typing import Any

from formula_gan.data.jobs import load_manifest, shard_paths
from formula_gan.data.shards import Sample, atomic_write_bytes, read_shard
from formula_gan.errors import FormulaGanError

KATEX_DIST = Path(__file__).resolve().parents[1] / "katex_render" / "node_modules" / "katex" / "dist"
_FONT_SRC = re.compile(r'src:url\(fonts/([A-Za-z0-9_-]+)\.woff2\) format\("woff2"\)[^;}]*')

_STYLE = """
body { font-family: sans-serif; margin: 16px; background: #f4f4f4; color: #222; }
header { margin-bottom: 12px; }
.cards { display: flex; flex-wrap: wrap; gap: 12px; }
.card { background: #fff; border: 1px solid #ccc; padding: 8px; max-width: 100%; }
.picture { position: relative; display: inline-block; max-width: 100%; }
.picture img { display: block; max-width: 100%; height: auto; }
.box { position: absolute; border: 1px solid rgba(220, 0, 0, 0.85); box-sizing: border-box; display: none; }
.box span { position: absolute; top: -1.2em; left: 0; font-size: 10px; color: #c00; white-space: nowrap; }
body.show-boxes .box { display: block; }
.formula { margin-top: 6px; font-size: 18px; }
.meta { margin-top: 4px; font-size: 11px; color: #666; }
"""

_SCRIPT = """
(function () {
  var data = JSON.parse(document.getElementById("formulas").textContent);
  document.querySelectorAll(".formula").forEach(function (el, i) {
    try {
      katex.render(data[i], el, {displayMode: false, throwOnError: false, trust: false, strict: "ignore"});
    } catch (e) {
      el.textContent = data[i];
    }
  });
  var toggle = document.getElementById("boxes");
  toggle.addEventListener("change", function () { document.body.classList.toggle("show-boxes", toggle.checked); });
})();
"""


def write_gallery(shard_dir: str | Path, out: str | Path, *, samples: int = 48, seed: int | None = None) -> int:
    """Write the page for ``samples`` samples of a finished shard set (the first ones, or a
    random pick with ``seed``); returns how many it shows."""
    if samples < 1:
        raise FormulaGanError(f"samples must be at least 1, got {samples}")
    manifest = load_manifest(shard_dir)
    chosen = _pick(shard_dir, samples, seed)
    if not chosen:
        raise FormulaGanError(f"{shard_dir}: the shard set holds no sample")
    out = Path(out)
    if out.is_dir():
        raise FormulaGanError(f"--out {out} is a folder; give the page's file name (e.g. gallery.html)")
    out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(out, _page(chosen, manifest, Path(shard_dir)).encode("utf-8"))
    return len(chosen)


def _pick(shard_dir: str | Path, samples: int, seed: int | None) -> list[Sample]:
    """The first ``samples`` samples, or (with a seed) a uniform pick over all of them (reservoir)."""
    out: list[Sample] = []
    rng = random.Random(seed) if seed is not None else None
    seen = 0
    for path in shard_paths(shard_dir):
        for sample in read_shard(path):
            seen += 1
            if len(out) < samples:
                out.append(sample)
            elif rng is None:
                return out
            else:
                k = rng.randrange(seen)
                if k < samples:
                    out[k] = sample
    return out


def _katex_assets() -> tuple[str, str]:
    """KaTeX's script and its stylesheet with the fonts inlined (woff2 only: every browser
    that runs KaTeX reads it)."""
    script_path, css_path = KATEX_DIST / "katex.min.js", KATEX_DIST / "katex.min.css"
    if not script_path.is_file() or not css_path.is_file():
        raise FormulaGanError(f"KaTeX is not installed ({KATEX_DIST}); run 'bash scripts/setup.sh'")

    def inline(match: re.Match) -> str:
        font = (KATEX_DIST / "fonts" / f"{match.group(1)}.woff2").read_bytes()
        return f'src:url(data:font/woff2;base64,{base64.b64encode(font).decode()}) format("woff2")'

    css = _FONT_SRC.sub(inline, css_path.read_text(encoding="utf-8"))
    # text that lands inside <script> must not close it
    return script_path.read_text(encoding="utf-8").replace("</", "<\\/"), css


def _card(sample: Sample) -> str:
    png = base64.b64encode(sample.png).decode()
    meta = sample.meta
    width, height = _png_size(sample.png)
    boxes = []
    tokens = str(meta.get("tokens", "")).split()
    for row in meta.get("boxes") or []:
        token, x0, y0, x1, y1 = row
        label = tokens[token] if 0 <= token < len(tokens) else str(token)
        boxes.append(f'<div class="box" style="left:{100 * x0 / width:.3f}%;top:{100 * y0 / height:.3f}%;'
                     f'width:{100 * (x1 - x0) / width:.3f}%;height:{100 * (y1 - y0) / height:.3f}%">'
                     f"<span>{html.escape(label)}</span></div>")
    details = [str(meta.get("source", "")), str(meta.get("domain", ""))]
    if meta.get("method"):
        details.append(str(meta["method"]))
    if meta.get("writers"):
        details.append("writers: " + ", ".join(map(str, meta["writers"])))
    return ('<div class="card">'
            f'<div class="picture"><img alt="{html.escape(sample.key)}" width="{width}" height="{height}" '
            f'src="data:image/png;base64,{png}">{"".join(boxes)}</div>'
            f'<div class="formula"></div><div class="meta">{html.escape(" · ".join(d for d in details if d))}</div></div>')


def _page(chosen: list[Sample], manifest: dict[str, Any], shard_dir: Path) -> str:
    script, css = _katex_assets()
    formulas = _script_json([str(s.meta.get("latex", "")) for s in chosen])
    with_boxes = sum(1 for s in chosen if s.meta.get("boxes"))
    title = f"{shard_dir.name}: {len(chosen)} of {manifest.get('num_samples', '?')} samples"
    return ("<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\">"
            f"<title>{html.escape(title)}</title><style>{css}</style><style>{_STYLE}</style></head><body>"
            f"<header><b>{html.escape(title)}</b> · domain {html.escape(str(manifest.get('domain', '?')))}"
            f' · <label><input type="checkbox" id="boxes"> show the boxes ({with_boxes} samples have them)</label>'
            "</header>"
            f'<div class="cards">{"".join(_card(s) for s in chosen)}</div>'
            f'<script type="application/json" id="formulas">{formulas}</script>'
            f"<script>{script}</script><script>{_SCRIPT}</script></body></html>\n")


def _script_json(value: Any) -> str:
    """JSON safe inside a <script> element. Escaping "</" is not enough: "<!--" followed by
    "<script" puts the HTML parser in the "double escaped" state, where the block's own
    </script> no longer ends it and the page's scripts after it are swallowed. With every
    "<" (and ">", "&") as a \\u escape, no markup can appear, and JSON.parse gives the same text."""
    text = json.dumps(value, ensure_ascii=False)
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def _png_size(png: bytes) -> tuple[int, int]:
    """(width, height) from a PNG's IHDR chunk."""
    if png[:8] != b"\x89PNG\r\n\x1a\n":
        raise FormulaGanError("a sample's image is not a PNG")
    return int.from_bytes(png[16:20], "big"), int.from_bytes(png[20:24], "big")
