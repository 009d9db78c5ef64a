"""The renderer's pages as a pool: each batch on whichever page is free, with retry and split.

A batch that fails (the browser died, the page hung past its time budget, a page
error) is retried on a fresh browser; a batch that keeps failing, or hangs once
(a hang repeats), is split into eight parts and the parts rendered the same way,
down to the single formula that is then rejected with the reason. So one bad
formula costs its batch a few retries, never the batch's other formulas.

Modes: ``plain`` gives ``(image, reason)`` pairs, ``boxes`` gives ``Rendered`` with
per-symbol boxes, ``measure`` gives ``Rendered`` boxes without capturing images.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import math
from typing import Any

from katex_render.boxes import Rendered
from katex_render.config import RendererConfig
from katex_render.normalize import group_depth
from katex_render.page import RenderPage, Request
from katex_render.sheets import cut_capture


COUNTERS = ("batches", "retries", "splits", "restarts")


def failed(reason: str, mode: str) -> Any:
    """A formula that gave nothing, as the caller's mode reports it."""
    return (None, reason) if mode == "plain" else Rendered(None, error=reason)


class PagePool:
    """Renders batches of requests on ``pages``; decodes and crops in ``decoder``'s threads."""

    def __init__(self, cfg: RendererConfig, pages: list[RenderPage], decoder: concurrent.futures.Executor):
        self.cfg, self.pages, self.decoder = cfg, pages, decoder
        self.stats = dict.fromkeys(COUNTERS, 0)
        self._free: asyncio.Queue[RenderPage] = asyncio.Queue()  # made on the event loop that uses it
        for page in pages:
            self._free.put_nowait(page)

    async def render(self, requests: list[Request], mode: str) -> list[Any]:
        """Every request's result, in order: the batches run concurrently, one per free page."""
        size = self.cfg.batch_size
        batches = [requests[i:i + size] for i in range(0, len(requests), size)]
        parts = await asyncio.gather(*(self._render_batch(b, mode) for b in batches))
        return [result for part in parts for result in part]

    async def _render_batch(self, batch: list[Request], mode: str) -> list[Any]:
        """Refuse formulas nested too deep, render the rest (in order)."""
        limit = self.cfg.max_group_depth
        refused = {i: f"groups nested {depth} deep (more than {limit})"
                   for i, request in enumerate(batch) if (depth := group_depth(request.given)) > limit}
        if not refused:
            return await self._render_checked(batch, mode)
        rendered = iter(await self._render_checked([item for i, item in enumerate(batch) if i not in refused], mode)
                        if len(refused) < len(batch) else [])
        return [failed(refused[i], mode) if i in refused else next(rendered) for i in range(len(batch))]

    async def _render_checked(self, batch: list[Request], mode: str) -> list[Any]:
        """Render one batch on whichever page is free; retry, then split, on failure."""
        cfg = self.cfg
        budget = cfg.timeout_s + cfg.per_formula_timeout_s * len(batch)
        payload = [request.payload() for request in batch]
        paddings = [request.style.padding for request in batch]
        reason = ""
        for attempt in range(cfg.max_retries + 1):
            page = await self._free.get()
            try:
                try:
                    capture = await asyncio.wait_for(page.capture(payload, mode != "measure"), budget)
                except asyncio.TimeoutError:
                    reason = f"timed out: the page took more than {budget:.1f} s"
                    self.stats["restarts"] += 1
                    await page.restart()
                    break  # a hang repeats: do not retry the same batch, split it
                except Exception as err:  # noqa: BLE001 - browser death or page error: classified below
                    died = page.pid is None or not (page.browser and page.browser.is_connected())
                    reason = ("the browser died while rendering" if died
                              else f"page error: {str(err).splitlines()[0][:200]}")
                    self.stats["restarts"] += 1
                    self.stats["retries"] += 1
                    await page.restart()
                    continue
            finally:
                self._free.put_nowait(page)
            self.stats["batches"] += 1
            loop = asyncio.get_running_loop()
            # Decode and crop in a thread: the browser is already free for the next batch.
            return await loop.run_in_executor(self.decoder, cut_capture, capture, paddings, cfg.ink_threshold,
                                              cfg.max_side, cfg.max_pixels, mode != "plain")
        if len(batch) == 1:
            return [failed(reason, mode)]
        self.stats["splits"] += 1
        step = max(1, math.ceil(len(batch) / 8))  # eight parts: few timeouts to isolate one culprit
        parts = [batch[i:i + step] for i in range(0, len(batch), step)]
        results: list[Any] = []
        for part in parts:
            results.extend(await self._render_checked(part, mode))
        return results
