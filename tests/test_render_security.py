"""Formulas are data: nothing in one can reach the network, open a dialog, navigate, or run script."""

from __future__ import annotations

import pytest

from katex_render.page import ORIGIN
from katex_render.renderer import Renderer
from katex_render.styles import Style
from test_render import require_browser

pytestmark = pytest.mark.browser

HOSTILE = [
    r"\href{javascript:alert(1)}{x}",
    r"\href{http://example.com/leak}{click}",
    r"\url{http://example.com/leak}",
    r"\htmlId{x}{y}",
    r"\htmlClass{x}{y}",
    r"\htmlStyle{background:url(http://example.com/leak)}{y}",
    r"\htmlData{foo=bar}{y}",
    r"\includegraphics[height=1em]{http://example.com/leak.png}",
    "'); alert(1); //",
    '"); alert(1); //',
    "`); alert(1); //${alert(1)}",
    "</script><script>alert(1)</script>",
    "<img src=x onerror=alert(1)>",
    r"\text{<img src=http://example.com/leak.png onerror=alert(1)>}",
    "}); window.location='http://example.com/'; ({",
]


@pytest.fixture(scope="module")
def renderer():
    require_browser()
    with Renderer(workers=1, batch_size=32) as r:
        yield r


def _page_state(renderer):
    page = renderer._pages[0].page

    async def state():
        return await page.evaluate(
            "() => ({url: location.href, links: document.querySelectorAll('a[href], img, script:not([src])').length,"
            " marker: typeof window.__pwned})")

    return renderer._call(state())


def test_hostile_formulas_do_nothing_harmful(renderer):
    style = Style("\\mathrm", 30, 2)
    results = renderer.render([(latex, style) for latex in HOSTILE])
    assert len(results) == len(HOSTILE)
    for (image, error), latex in zip(results, HOSTILE):
        assert image is not None or error, latex  # rendered as text, or rejected with a reason
    assert renderer.events == [], "no request, dialog, navigation or popup"
    state = _page_state(renderer)
    assert state["url"] == f"{ORIGIN}/page.html"
    assert state["links"] == 0  # trust: false -> no <a href>, <img>; no inline script injected
    assert state["marker"] == "undefined"


def test_the_event_recorder_does_record(renderer):
    """The negative result above means something: the same recorder sees a navigation
    attempt (blocked, never reaching the network) and a dialog."""
    page = renderer._pages[0].page

    async def provoke():
        await page.evaluate("() => alert('hello')")
        try:
            await page.goto("http://example.com/", timeout=5000)
        except Exception as err:  # noqa: BLE001 - the request is aborted: that is the point
            return str(err)
        return ""

    try:
        blocked = renderer._call(provoke())
        kinds = {e["event"] for e in renderer.events}
        assert "blocked" in kinds and "dialog" in kinds, renderer.events
        assert "ERR_BLOCKED_BY_CLIENT" in blocked
    finally:
        renderer.events.clear()
        renderer._call(renderer._pages[0].new_page())  # leave a clean page for other tests
