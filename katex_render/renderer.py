"""Fast batched KaTeX rendering in headless Chromium: the ``Renderer``.

A batch is rendered with one ``page.evaluate`` and one capture per sheet: the
page lays every formula out with KaTeX and shelf-packs the boxes on sheets
(``page``), each sheet is captured once and cut into one tight, padded image per
formula in a thread while the browser renders the next batch (``sheets``).
``render_boxes`` renders normalized tokens the same way and also returns each
visible symbol's box, tied to its token index (``boxes``); with ``images=False``
it lays out and measures without capturing.

Each worker owns a Chromium process it launched itself (``process``); the
workers render batches as a pool that retries a failed batch on a fresh browser
and splits one that keeps failing down to the formula to blame (``pool``). The
page is sandboxed: no network, no navigation, no dialogs (``page``). Where the
time goes and what was measured and left out: ``katex_render/README.md``.

This module is the bridge from the caller's threads to the browsers' event loop.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import threading
from pathlib import Path
from typing import Any, Sequence

from playwright.async_api import async_playwright

from katex_render.boxes import Rendered, boxed_latex
from katex_render.browser import find_chromium
from katex_render.config import RenderConfig, RendererConfig
from katex_render.errors import KatexRenderError
from katex_render.normalize import tokens_to_latex
from katex_render.page import RenderPage, Request, load_assets
from katex_render.pool import COUNTERS, PagePool
from katex_render.process import remove_stale_profiles
from katex_render.sheets import RenderResult
from katex_render.styles import Style, check_style

__all__ = ["RenderConfig", "RenderResult", "Renderer", "RendererConfig"]  # the configs: importable from here too


class Renderer:
    """Renders (LaTeX, Style) pairs to grayscale images with a pool of Chromium processes.

    >>> with Renderer(workers=2) as renderer:
    ...     [(image, error)] = renderer.render([(r"\\frac{a}{b}", Style("\\mathrm", 32, 4))])

    ``image`` is uint8 [h, w], dark ink on white, cropped tight then padded by
    ``style.padding``; or ``None`` with the reason in ``error``. The same formula and
    style give the same pixels whatever batch, worker or page they land in.
    Thread-safe: ``render``/``submit`` may be called from any thread.
    """

    def __init__(self, workers: int | None = None, timeout_s: float | None = None,
                 config: RendererConfig | None = None, executable: str | Path | None = None, **overrides: Any):
        cfg = config or RendererConfig()
        changes = dict(overrides)
        if workers is not None:
            changes["workers"] = workers
        if timeout_s is not None:
            changes["timeout_s"] = timeout_s
        if changes:
            cfg = RendererConfig(**{**cfg.__dict__, **changes})
        self.config = cfg
        self.executable = Path(executable) if executable else find_chromium()
        self.events: list[dict[str, Any]] = []  # requests, dialogs, navigations the page attempted
        self._assets = load_assets()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._pw_manager: Any = None
        self._pw: Any = None
        self._pages: list[RenderPage] = []
        self._pool: PagePool | None = None
        self._decoder = concurrent.futures.ThreadPoolExecutor(max_workers=max(1, cfg.workers),
                                                              thread_name_prefix="katex-decode")

    # ---- life cycle -----------------------------------------------------------------
    def __enter__(self) -> "Renderer":
        self.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def start(self) -> None:
        if self._loop is not None:
            return
        remove_stale_profiles()
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="katex-render", daemon=True)
        self._thread.start()
        try:
            self._call(self._start())
        except BaseException:
            self.close()
            raise

    def close(self) -> None:
        if self._loop is None:
            return
        try:
            self._call(self._stop())
        finally:
            self._loop.call_soon_threadsafe(self._loop.stop)
            assert self._thread is not None
            self._thread.join(10)
            self._loop.close()
            self._loop = None
            self._decoder.shutdown(wait=True)

    async def _start(self) -> None:
        self._pw_manager = async_playwright()
        self._pw = await self._pw_manager.start()
        self._pages = [RenderPage(self._pw, self.config, self.executable, self._assets, self.events)
                       for _ in range(self.config.workers)]
        await asyncio.gather(*(page.start() for page in self._pages))
        self._pool = PagePool(self.config, self._pages, self._decoder)

    async def _stop(self) -> None:
        # Batches still in flight (the caller was interrupted, or gave up on a result) are
        # cancelled and awaited first: a coroutine left pending on a closed loop prints
        # "Event loop is closed" tracebacks when it is collected.
        pending = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)
        await asyncio.gather(*(page.close() for page in self._pages), return_exceptions=True)
        if self._pw_manager is not None:
            await self._pw_manager.__aexit__(None, None, None)
            self._pw_manager = self._pw = None

    def _call(self, coro: Any) -> Any:
        if self._loop is None:
            raise KatexRenderError("the renderer is not started (use it as a context manager)")
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result()

    @property
    def stats(self) -> dict[str, int]:
        """Counters: batches rendered, retries, splits, browser restarts, page recycles, launches."""
        pool = self._pool.stats if self._pool is not None else dict.fromkeys(COUNTERS, 0)
        return {**pool, "recycles": sum(page.recycles for page in self._pages),
                "launches": sum(page.launches for page in self._pages)}

    def browser_pids(self) -> list[int]:
        """The pids of the worker browsers now running (tests kill them to show recovery)."""
        return [pid for page in self._pages if (pid := page.pid) is not None]

    # ---- rendering ------------------------------------------------------------------
    def render(self, items: Sequence[tuple[str, Style]]) -> list[RenderResult]:
        """Render every (latex, style); results in the same order."""
        return self.submit(items).result()

    def submit(self, items: Sequence[tuple[str, Style]]) -> "concurrent.futures.Future[list[RenderResult]]":
        """Start rendering and return at once (render the next chunk while the caller
        writes the previous one)."""
        for latex, style in items:
            if not isinstance(latex, str) or not isinstance(style, Style):
                raise TypeError(f"Renderer takes (str, Style) pairs, got ({type(latex).__name__}, {type(style).__name__})")
            check_style(style)
        if self._loop is None:
            raise KatexRenderError("the renderer is not started (use it as a context manager)")
        return asyncio.run_coroutine_threadsafe(self._render_all(list(items)), self._loop)

    def render_boxes(self, items: Sequence[tuple[Sequence[str], Style]], images: bool = True) -> list[Rendered]:
        """Render normalized tokens with per-symbol boxes (see ``katex_render.boxes``):
        one ``Rendered`` per (tokens, style), in order. ``images=False``: boxes only."""
        return self.submit_boxes(items, images).result()

    def submit_boxes(self, items: Sequence[tuple[Sequence[str], Style]],
                     images: bool = True) -> "concurrent.futures.Future[list[Rendered]]":
        """``render_boxes`` that returns at once."""
        requests = []
        for tokens, style in items:
            if isinstance(tokens, str) or not all(isinstance(t, str) for t in tokens) or not isinstance(style, Style):
                raise TypeError("render_boxes takes (token sequence, Style) pairs")
            check_style(style)
            latex, starts = boxed_latex(tokens, style)
            requests.append(Request(latex, style, tokens_to_latex(list(tokens)), tuple(tokens), starts))
        if self._loop is None:
            raise KatexRenderError("the renderer is not started (use it as a context manager)")
        mode = "boxes" if images else "measure"
        return asyncio.run_coroutine_threadsafe(self._render_all(requests, mode), self._loop)

    async def _render_all(self, items: list[Any], mode: str = "plain") -> list[Any]:
        """``items``: (latex, style) pairs in plain mode, else ready ``Request``s."""
        assert self._pool is not None
        requests = [Request(style.wrap(latex), style, latex) for latex, style in items] if mode == "plain" else items
        return await self._pool.render(requests, mode)
