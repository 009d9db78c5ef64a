"""One worker of the renderer: a Chromium process, the sandboxed KaTeX page on it, and its captures.

The page (``assets/page.html`` + ``render.js``) gets a batch's formulas as JSON
data (``page.evaluate(fn, arg)``; never spliced into script text), lays each one
out with ``katex.render`` in its own host element (``trust: false``, the
configured ``strict``, ``maxSize`` and ``maxExpand``; a formula KaTeX rejects gets
its error message), and shelf-packs the boxes on sheets. Each sheet is captured
once through the DevTools ``Page.captureScreenshot`` with ``optimizeForSpeed``
(lossless PNG). A page is replaced every ``recycle_every`` batches to keep memory flat.

Sandbox: every request of the page is answered from memory (the page, KaTeX's
script, stylesheet and fonts) or aborted, host names do not resolve, a
Content-Security-Policy forbids everything else, dialogs are dismissed; what the
page attempted is recorded in ``events`` (the security tests read them).
"""

from __future__ import annotations

import asyncio
import base64
import inspect
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from playwright.async_api import BrowserType

from katex_render.boxes import page_scripts
from katex_render.config import RendererConfig
from katex_render.errors import KatexRenderError
from katex_render.process import ChromiumProcess, launch_chromium
from katex_render.sheets import Capture, margin_for
from katex_render.styles import Style

ORIGIN = "http://katex.local"  # the page's own origin: every URL under it is answered from memory
ASSETS = Path(__file__).resolve().parent / "assets"
KATEX_DIR = Path(__file__).resolve().parent / "node_modules" / "katex" / "dist"
# Playwright makes an artifacts folder in TMPDIR for each connection unless given one (recent
# releases take artifacts_dir): inside the profile it goes with it, also after kill -9.
_ARTIFACTS_DIR_OPTION = "artifacts_dir" in inspect.signature(BrowserType.connect_over_cdp).parameters


@dataclass(frozen=True)
class Request:
    """One formula as the page gets it: the exact LaTeX and, for boxes, its tokens and
    where each starts in that LaTeX."""

    latex: str
    style: Style
    given: str  # the formula as given, before the style's font command (its nesting is checked)
    tokens: tuple[str, ...] | None = None
    starts: list[int] | None = None

    def payload(self) -> dict[str, Any]:
        out: dict[str, Any] = {"latex": self.latex, "size": self.style.font_size, "margin": margin_for(self.style.font_size)}
        if self.tokens is not None:
            out.update(tokens=list(self.tokens), starts=self.starts)
        return out


def load_assets() -> dict[str, tuple[bytes, str]]:
    """Everything the page may load, read once into memory: {path: (bytes, mime type)}."""
    needed = [KATEX_DIR / "katex.min.js", KATEX_DIR / "katex.min.css", KATEX_DIR / "fonts"]
    missing = [p for p in needed if not p.exists()]
    if missing:
        raise KatexRenderError(
            f"KaTeX is not installed ({missing[0]} missing); run 'npm ci --prefix katex_render' "
            "(or scripts/setup.sh) in the repository"
        )
    assets = {
        "page.html": ((ASSETS / "page.html").read_bytes(), "text/html; charset=utf-8"),
        "render.js": ((ASSETS / "render.js").read_bytes(), "text/javascript; charset=utf-8"),
        **page_scripts(),
        "katex.min.js": ((KATEX_DIR / "katex.min.js").read_bytes(), "text/javascript; charset=utf-8"),
        "katex.min.css": ((KATEX_DIR / "katex.min.css").read_bytes(), "text/css; charset=utf-8"),
    }
    for font in sorted((KATEX_DIR / "fonts").glob("*.woff2")):
        assets[f"fonts/{font.name}"] = (font.read_bytes(), "font/woff2")
    return assets


class RenderPage:
    """One Chromium process (launched here, so its pid is known and killable),
    one context and page on it, and the DevTools session used for captures."""

    def __init__(self, pw: Any, cfg: RendererConfig, executable: Path, assets: dict[str, tuple[bytes, str]],
                 events: list[dict[str, Any]]):
        self.pw, self.cfg, self.executable, self.assets, self.events = pw, cfg, executable, assets, events
        self.process: ChromiumProcess | None = None
        self.browser: Any = None
        self.context: Any = None
        self.page: Any = None
        self.cdp: Any = None
        self.batches_on_page = 0
        self.launches = 0
        self.recycles = 0

    @property
    def pid(self) -> int | None:
        """The browser's pid while it runs."""
        return self.process.pid if self.process is not None else None

    async def start(self) -> None:
        self.launches += 1
        self.process = await launch_chromium(self.executable, self.cfg.launch_timeout_s)
        artifacts = {"artifacts_dir": str(self.process.profile / "artifacts")} if _ARTIFACTS_DIR_OPTION else {}
        self.browser = await self.pw.chromium.connect_over_cdp(f"http://127.0.0.1:{self.process.port}",
                                                               timeout=self.cfg.launch_timeout_s * 1000, **artifacts)
        await self.new_page()

    async def new_page(self) -> None:
        if self.context is not None:
            await self.context.close()
        cfg = self.cfg
        self.context = await self.browser.new_context(
            viewport={"width": cfg.page_width, "height": cfg.sheet_height},
            device_scale_factor=1, java_script_enabled=True, offline=True,
        )
        await self.context.route("**/*", self._route)
        self.context.on("request", self._on_request)
        page = await self.context.new_page()
        page.on("dialog", self._on_dialog)
        page.on("framenavigated", self._on_navigated)
        page.on("popup", self._on_popup)
        await page.goto(f"{ORIGIN}/page.html", wait_until="load", timeout=cfg.launch_timeout_s * 1000)
        info = await page.evaluate("() => formulaGan.warmUp()")
        if not info or info.get("faces", 0) < 1:
            raise KatexRenderError(f"the KaTeX page did not load its fonts ({info})")
        self.page = page
        self.cdp = await self.context.new_cdp_session(page)
        self.batches_on_page = 0

    # ---- what the page tries to do (recorded: the security test reads them) ----------
    async def _route(self, route: Any) -> None:
        url = route.request.url
        if url.startswith(ORIGIN + "/"):
            asset = self.assets.get(url[len(ORIGIN) + 1:].split("?")[0])
            if asset is not None:
                await route.fulfill(status=200, body=asset[0], content_type=asset[1])
                return
        self.events.append({"event": "blocked", "url": url})
        await route.abort("blockedbyclient")

    def _on_request(self, request: Any) -> None:
        url = request.url
        if not (url.startswith(ORIGIN + "/") and url[len(ORIGIN) + 1:].split("?")[0] in self.assets):
            self.events.append({"event": "request", "url": url})

    def _on_dialog(self, dialog: Any) -> None:
        self.events.append({"event": "dialog", "type": dialog.type, "message": dialog.message})
        asyncio.ensure_future(dialog.dismiss())

    def _on_navigated(self, frame: Any) -> None:
        if frame.url != f"{ORIGIN}/page.html":
            self.events.append({"event": "navigation", "url": frame.url})

    def _on_popup(self, page: Any) -> None:
        self.events.append({"event": "popup", "url": page.url})

    # ---- rendering ------------------------------------------------------------------
    async def capture(self, payload: list[dict[str, Any]], images: bool = True) -> Capture:
        cfg = self.cfg
        if self.batches_on_page >= cfg.recycle_every:
            self.recycles += 1
            await self.new_page()
        self.batches_on_page += 1
        arg = {
            "items": payload,
            "options": {"displayMode": cfg.display_mode, "strict": cfg.strict, "maxSize": cfg.max_size,
                        "maxExpand": cfg.max_expand},
            "pageWidth": cfg.page_width,
            "sheetHeight": cfg.sheet_height,
            "maxSide": cfg.max_side,
            "maxPixels": cfg.max_pixels,
            "capture": images,  # false: lay out and measure boxes only (no sheets come back)
        }
        layout = await self.page.evaluate("(arg) => formulaGan.renderBatch(arg)", arg)
        sheets: list[bytes] = []
        for k, sheet in enumerate(layout["sheets"]):
            width, height = int(sheet["width"]), int(sheet["height"])
            oversize = width > cfg.page_width or height > cfg.sheet_height
            if k > 0:
                await self.page.evaluate("(k) => formulaGan.showSheet(k)", k)
            # An oversize sheet (one formula larger than the page) is captured beyond the
            # viewport: slower, and rare.
            shot = await self.cdp.send("Page.captureScreenshot", {
                "format": "png",
                "clip": {"x": 0, "y": 0, "width": width, "height": max(height, 1), "scale": 1},
                "optimizeForSpeed": True,
                "captureBeyondViewport": oversize,
            })
            sheets.append(base64.b64decode(shot["data"]))
        return Capture(layout["items"], sheets)

    async def close(self) -> None:
        """Close the connection and end the process (killing it if it does not go quietly)."""
        if self.browser is not None:
            try:
                await asyncio.wait_for(self.browser.close(), 5.0)
            except Exception:  # noqa: BLE001 - a dead or hung browser: it is killed below
                pass
        self.browser = self.context = self.page = self.cdp = None
        if self.process is not None:
            await self.process.end()
            self.process = None

    async def restart(self) -> None:
        await self.close()
        await self.start()
