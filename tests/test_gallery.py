"""gallery: one static page per shard set, opened in headless Chromium with no network."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from formula_gan.cli import main
from formula_gan.data.images import encode_png
from formula_gan.data.jobs import ShardedJob, ShardResult
from formula_gan.data.shards import Sample
from test_render import require_browser

pytestmark = pytest.mark.browser

FORMULAS = ["x^2+\\frac{1}{2}", "\\sqrt{a+b}", "\\left(y\\right)", "\\sum_{i=1}^{n} i", "e^{i\\pi}"]


@pytest.fixture(scope="module")
def boxed_set(tmp_path_factory) -> Path:
    require_browser()
    root = tmp_path_factory.mktemp("gallery")
    (root / "f.txt").write_text("\n".join(FORMULAS) + "\n", encoding="utf-8")
    assert main(["render", str(root / "f.txt"), "--out", str(root / "set"), "--boxes", "--workers", "1",
                 "--no-progress"]) == 0
    return root / "set"


def open_page(path: Path, script: str):
    """Load the page offline in the project's Chromium; return (script's result, requests, dialogs)."""
    from playwright.sync_api import sync_playwright

    from katex_render.browser import find_chromium, launch_args

    requests: list[str] = []
    dialogs: list[str] = []
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(find_chromium()), args=launch_args())
        try:
            page = browser.new_context(offline=True).new_page()
            page.on("request", lambda r: requests.append(r.url))
            page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
            page.goto(path.as_uri(), wait_until="load")  # the page renders its formulas as it loads
            result = page.evaluate(script)
            page.click("#boxes")
            shown = page.evaluate("() => [...document.querySelectorAll('.box')]"
                                  ".filter((b) => getComputedStyle(b).display !== 'none').length")
        finally:
            browser.close()
    outside = [u for u in requests if not u.startswith(("file:", "data:"))]
    return result, shown, outside, dialogs


def test_the_page_shows_images_formulas_and_boxes_offline(boxed_set: Path, tmp_path: Path, capsys):
    page = tmp_path / "page.html"
    assert main(["gallery", str(boxed_set), "--out", str(page)]) == 0
    assert "gallery: 5 samples" in capsys.readouterr().out
    state, shown, outside, dialogs = open_page(page, """() => ({
        images: document.images.length,
        loaded: [...document.images].filter((i) => i.complete && i.naturalWidth > 0).length,
        katex: document.querySelectorAll('.formula .katex').length,
        errors: document.querySelectorAll('.katex-error').length,
        hidden: [...document.querySelectorAll('.box')].filter((b) => getComputedStyle(b).display === 'none').length,
        texts: [...document.querySelectorAll('.formula annotation')].map((a) => a.textContent),
    })""")
    assert state["images"] == state["loaded"] == 5
    assert state["katex"] == 5 and state["errors"] == 0
    assert sorted(state["texts"]) == sorted(FORMULAS), "each card's LaTeX, as KaTeX read it"
    from formula_gan.data.shards import read_shard

    total = sum(len(s.meta["boxes"]) for s in read_shard(boxed_set / "shard-000000.tar"))
    assert state["hidden"] == total > 0 and shown == total, "boxes hidden until the toggle, then all shown"
    assert outside == [] and dialogs == []


def test_a_formula_is_data_not_markup(tmp_path: Path):
    require_browser()
    hostile = "</script><script>alert(1)</script><img src=x onerror=alert(2)>"
    job = ShardedJob(tmp_path / "set", {"kind": "test"}, 10).open()
    png = encode_png(np.full((20, 30), 255, dtype=np.uint8))
    meta = {"latex": hostile, "tokens": "x", "source": "t:1", "domain": "rendered", "boxes": [[0, 1, 1, 5, 5]]}
    list(job.pending(range(1)))
    job.commit(0, ShardResult([Sample("k1", png, meta)]))
    job.finalize()
    page = tmp_path / "page.html"
    assert main(["gallery", str(tmp_path / "set"), "--out", str(page)]) == 0
    state, shown, outside, dialogs = open_page(page, "() => [document.images.length, document.title]")
    assert dialogs == [] and outside == []
    assert state[0] == 1 and "set" in state[1]
    assert shown == 1


def test_a_label_that_opens_an_html_comment_does_not_swallow_the_scripts(tmp_path: Path):
    """"<!--<script>" in the JSON block put the HTML parser in its "double escaped" state: the
    block's </script> no longer ended it, KaTeX's script and the page's were swallowed, and no
    formula rendered at all."""
    require_browser()
    labels = ["x^2", "a<!--<script>b", "\\frac{1}{2}", "c</script>d\\&e", "<!--", "y>z"]
    job = ShardedJob(tmp_path / "set", {"kind": "test"}, 10).open()
    png = encode_png(np.full((20, 30), 255, dtype=np.uint8))
    list(job.pending(range(1)))
    samples = [Sample(f"k{i}", png, {"latex": latex, "tokens": "x", "source": f"t:{i}", "domain": "rendered"})
               for i, latex in enumerate(labels)]
    job.commit(0, ShardResult(samples))
    job.finalize()
    page = tmp_path / "page.html"
    assert main(["gallery", str(tmp_path / "set"), "--out", str(page)]) == 0
    assert b"<!--" not in page.read_bytes().split(b'id="formulas">')[1].split(b"</script>")[0]
    state, _, outside, dialogs = open_page(page, """() => ({
        katex: document.querySelectorAll('.formula .katex').length,
        texts: [...document.querySelectorAll('.formula annotation')].map((a) => a.textContent),
    })""")
    assert state["katex"] == len(labels), "every formula rendered"
    assert state["texts"] == labels, "each as written: the escapes are JSON's, the text is the label's"
    assert outside == [] and dialogs == []


def test_samples_and_seed_pick_and_bad_arguments_are_errors(boxed_set: Path, tmp_path: Path, capsys):
    page = tmp_path / "p.html"
    assert main(["gallery", str(boxed_set), "--out", str(page), "--samples", "2", "--seed", "3"]) == 0
    first = page.read_bytes()
    assert main(["gallery", str(boxed_set), "--out", str(page), "--samples", "2", "--seed", "3"]) == 0
    assert page.read_bytes() == first and first.count(b'class="card"') == 2
    capsys.readouterr()
    assert main(["gallery", str(tmp_path), "--out", str(page)]) == 2
    assert "manifest.json" in capsys.readouterr().err
    assert main(["gallery", str(boxed_set), "--out", str(tmp_path)]) == 2
    assert "is a folder" in capsys.readouterr().err
    assert main(["gallery", str(boxed_set), "--out", str(page), "--samples", "0"]) == 2
