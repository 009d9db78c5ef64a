"""Fast batched KaTeX rendering in headless Chromium.

How a batch is rendered (one ``page.evaluate`` and one capture per sheet):

1. the formulas go to the page as JSON data (``page.evaluate(fn, arg)``; never
   spliced into script text) and ``katex.render`` lays each one out in its own
   host element, with ``trust: false``, the configured ``strict``, ``maxSize``
   and ``maxExpand``; a formula KaTeX rejects gets its error message;
2. the page reads every box in one layout pass and shelf-packs them on a
   ``page_width`` x ``sheet_height`` sheet (more sheets when the batch does not fit;
   a formula larger than a sheet gets a sheet of its own), at integer
   coordinates, so a formula rasterizes to the same pixels wherever it lands;
3. each sheet is captured once through the DevTools ``Page.captureScreenshot``
   with ``optimizeForSpeed`` (lossless PNG), then decoded and cut into boxes in a
   thread while the browser renders the next batch; each box is cropped tight
   by an ink threshold and padded by the style's padding.

``render_boxes`` renders normalized tokens the same way and also returns each
visible symbol's box, tied to its token index (``katex_render/boxes.py``); with
``images=False`` it lays out and measures without capturing.

Robustness: each worker owns a Chromium process it launched itself. A batch
that fails (the browser died, the page hung past its time budget, a page error)
is retried on a fresh browser; a batch that keeps failing is split and the
parts retried, down to the single formula that is then rejected with the
reason. Pages are replaced every ``recycle_every`` batches to keep memory flat.

Where the time goes (profile of 2,000 im2latex formulas, one worker, CPU time
of every process involved, ~2.4 ms per formula in all): the page's renderer
process ~55% (KaTeX building the DOM ~15%, style and layout of KaTeX's nested
inline tables ~30%, paint and raster ~10%), the capture ~25% (compositing in
the GPU process, PNG encoding in the browser process), Python ~12% (PNG decode,
crop, Playwright messages), Playwright's driver ~5%. So the cores are the limit:
one worker per core. The compositor runs inside the browser process
(``--in-process-gpu``): a separate GPU process cost ~10% of the throughput on 2
cores; a third worker to fill the gaps while a browser waits on a frame gained
nothing measurable (0-5%, within the noise), nor did ``--num-raster-threads=1``,
a larger Skia glyph cache or ``contain`` on the hosts. ``--disable-frame-rate-limit``
shortens every capture's wait for a frame, but it speeds up one-formula-per-screenshot
rendering far more (13 -> 20/s) than batches, so it buys nothing here. Measured and left out: JPEG captures (no faster, lossy),
WebP lossless (slower), taller or wider sheets (same cost per pixel), a
hand-written PNG unfilter (no faster than Pillow), Chromium raster/GPU flags (no
measurable change), ``renderToString`` + one ``innerHTML`` (a little faster but
it would make KaTeX's output HTML; ``katex.render`` builds DOM nodes and so
cannot inject markup). ``will-change: transform`` gives each formula its own
compositing layer: without it a formula's anti-aliasing (SVG parts such as root signs)
depended on where it landed on the sheet; with it the pixels are the same in
any batch (and it was no slower in an A/B run).

Safety: the page's every request is answered from memory (the page, KaTeX's
script, stylesheet and fonts) or aborted, host names do not resolve, a
Content-Security-Policy forbids everything else, dialogs are dismissed.
"""

from __future__ import annotations

import asyncio
import base64
import concurrent.futures
import ctypes
import inspect
import io
import math
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Literal, Sequence

import numpy as np
from PIL import Image

from katex_render.boxes import Rendered, boxed_latex, measured_only, page_scripts, parse_page_boxes, to_image
from katex_render.browser import find_chromium, launch_args
from katex_render.errors import KatexRenderError
from katex_render.normalize import tokens_to_latex
from katex_render.styles import Style, StyleConfig, check_style

ORIGIN = "http://katex.local"
ASSETS = Path(__file__).resolve().parent / "assets"
KATEX_DIR = Path(__file__).resolve().parent / "node_modules" / "katex" / "dist"
# Browser profiles are temporary folders named after the process that owns them, so that
# the next renderer can remove those of a process that was killed (kill -9 runs no cleanup).
PROFILE_PREFIX = "katex-render-"


def _has_artifacts_dir_option() -> bool:
    """Whether this Playwright's connect_over_cdp takes artifacts_dir (recent releases do)."""
    from playwright.async_api import BrowserType

    return "artifacts_dir" in inspect.signature(BrowserType.connect_over_cdp).parameters

RenderResult = tuple["np.ndarray | None", "str | None"]  # (uint8 [h, w] dark ink on white, None) or (None, reason)


@dataclass
class RendererConfig:
    # Browser processes working in parallel (one per core is the sweet spot:
    # each keeps a core busy with layout, rasterization and PNG encoding).
    workers: int = 2
    # Formulas per page.evaluate; with the defaults a batch fills about one sheet.
    batch_size: int = 192
    # Sheet size in CSS px (= image px). Wider sheets pack better; every pixel
    # is rasterized, encoded and decoded, so an empty one is pure cost.
    page_width: int = 1800
    sheet_height: int = 2000
    # A batch may take timeout_s + per_formula_timeout_s * len(batch) seconds
    # before its browser is killed and the batch split to isolate the culprit.
    timeout_s: float = 10.0
    per_formula_timeout_s: float = 0.1
    # Browser launch (and page load) budget.
    launch_timeout_s: float = 30.0
    # A fresh page every this many batches keeps the renderer's memory flat.
    recycle_every: int = 50
    # Retries of a whole batch on a fresh browser before it is split.
    max_retries: int = 2
    # KaTeX options. trust is always false. strict: "ignore" | "warn" | "error".
    strict: Literal["ignore", "warn", "error"] = "ignore"
    max_size: float = 20.0  # em; caps user-given sizes (\rule{1000em}{1em}, \kern)
    max_expand: int = 1000  # macro expansions per formula (\def loops end here)
    display_mode: bool = True  # display style, so that \textstyle is a real choice
    # Deeper {...} nesting is refused before KaTeX sees it: where KaTeX's
    # recursion overflows the JS stack depends on the engine's state, not the input.
    max_group_depth: int = 100
    # A formula (without padding) larger than this in either direction is rejected.
    max_side: int = 8000
    # A formula whose box (without padding) covers more pixels than this is rejected
    # by the page before it is captured: a few hundred characters of \def-built matrix
    # lay out at 7,000 x 6,000 px (~1 GB to capture and decode). 4 Mpx is ten times
    # the largest of 100,000 im2latex formulas at 50 px.
    max_pixels: int = 4_000_000
    # Pixels darker than this are ink (the tight crop keeps every pixel that
    # differs visibly from white paper).
    ink_threshold: int = 250

    def __post_init__(self) -> None:
        # (name, value, low, high): every setting has a range, checked before any work
        ranges = [
            ("workers", self.workers, 1, 64), ("batch_size", self.batch_size, 1, 100_000),
            ("page_width", self.page_width, 64, 16_384), ("sheet_height", self.sheet_height, 64, 16_384),
            ("timeout_s", self.timeout_s, 0.001, 86_400), ("per_formula_timeout_s", self.per_formula_timeout_s, 0, 3600),
            ("launch_timeout_s", self.launch_timeout_s, 0.1, 3600), ("recycle_every", self.recycle_every, 1, 10**9),
            ("max_retries", self.max_retries, 0, 100), ("max_size", self.max_size, 0.001, 10_000),
            ("max_expand", self.max_expand, 0, 10**9), ("max_group_depth", self.max_group_depth, 1, 10_000),
            ("max_side", self.max_side, 1, 65_535), ("max_pixels", self.max_pixels, 1, 10**9),
            ("ink_threshold", self.ink_threshold, 1, 255),
        ]
        for name, value, low, high in ranges:
            if not low <= value <= high:  # also false for NaN
                raise ValueError(f"{name} must be in {low}..{high}, got {value}")


@dataclass
class RenderConfig:
    """The schema of ``configs/render.yaml``."""

    style: StyleConfig = field(default_factory=StyleConfig)
    renderer: RendererConfig = field(default_factory=RendererConfig)


def margin_for(font_size: int) -> int:
    """Room around a KaTeX box for glyph ink that overhangs it; neighbours never
    share it. Measured on 3,000 im2latex formulas in all seven fonts: ink reaches
    at most 0.12 em past the box sideways (italic capitals) and 0.11 em vertically."""
    return int(math.ceil(0.15 * font_size)) + 2


@dataclass(frozen=True)
class _Request:
    """One formula as the page gets it: the exact LaTeX and, for boxes, its tokens and
    where each starts in that LaTeX."""

    latex: str
    style: Style
    source: str  # the formula as given, before the style's font command (its nesting is checked)
    tokens: tuple[str, ...] | None = None
    starts: list[int] | None = None

    def payload(self) -> dict[str, Any]:
        out: dict[str, Any] = {"latex": self.latex, "size": self.style.font_size, "margin": margin_for(self.style.font_size)}
        if self.tokens is not None:
            out.update(tokens=list(self.tokens), starts=self.starts)
        return out


def _failed(reason: str, mode: str) -> Any:
    """A formula that gave nothing, as the caller's mode reports it."""
    return (None, reason) if mode == "plain" else Rendered(None, error=reason)


@dataclass
class _Capture:
    """What the page produced for a batch: per item an error or a crop box, and the sheets' images."""

    items: list[dict[str, Any]]
    sheets: list[bytes]


class _Browser:
    """One Chromium process (launched here, so its pid is known and killable),
    one context and page on it, and the DevTools session used for captures."""

    def __init__(self, pw: Any, cfg: RendererConfig, executable: Path, assets: dict[str, tuple[bytes, str]],
                 events: list[dict[str, Any]]):
        self.pw, self.cfg, self.executable, self.assets, self.events = pw, cfg, executable, assets, events
        self.proc: subprocess.Popen | None = None
        self.profile: str | None = None
        self.browser: Any = None
        self.context: Any = None
        self.page: Any = None
        self.cdp: Any = None
        self.batches_on_page = 0
        self.launches = 0
        self.recycles = 0

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc is not None and self.proc.poll() is None else None

    async def start(self) -> None:
        self.profile = tempfile.mkdtemp(prefix=f"{PROFILE_PREFIX}{os.getpid()}-")
        port_file = Path(self.profile) / "DevToolsActivePort"
        cmd = [str(self.executable), "--headless", "--remote-debugging-port=0", "--remote-debugging-address=127.0.0.1",
               f"--user-data-dir={self.profile}", *launch_args(), "about:blank"]
        log = open(Path(self.profile) / "chromium.log", "wb")
        try:
            # Own process group (killpg ends renderers and helpers too); on Linux the
            # browser is also killed when this process dies, even by SIGKILL, so an
            # interrupted job leaves no browser behind.
            self.proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=log, stderr=log, start_new_session=True,
                                         preexec_fn=_die_with_parent())
        finally:
            log.close()
        self.launches += 1
        deadline = time.monotonic() + self.cfg.launch_timeout_s
        while not port_file.exists() or not port_file.read_text().strip():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                tail = (Path(self.profile) / "chromium.log").read_bytes()[-600:].decode("utf-8", "replace")
                await self.close()
                raise KatexRenderError(f"Chromium ({self.executable}) did not start: {tail.strip() or 'no output'}")
            await asyncio.sleep(0.02)
        port = int(port_file.read_text().split()[0])
        # Playwright makes an artifacts folder in TMPDIR for each connection unless given one:
        # inside the profile it goes with it (also after kill -9, with the stale profile).
        artifacts = {"artifacts_dir": str(Path(self.profile) / "artifacts")} if _has_artifacts_dir_option() else {}
        self.browser = await self.pw.chromium.connect_over_cdp(f"http://127.0.0.1:{port}",
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
    async def capture(self, payload: list[dict[str, Any]], images: bool = True) -> _Capture:
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
        return _Capture(layout["items"], sheets)

    async def close(self) -> None:
        """Close the connection and end the process (killing it if it does not go quietly)."""
        if self.browser is not None:
            try:
                await asyncio.wait_for(self.browser.close(), 5.0)
            except Exception:  # noqa: BLE001 - a dead or hung browser: it is killed below
                pass
        self.browser = self.context = self.page = self.cdp = None
        if self.proc is not None:
            if self.proc.poll() is None:
                try:
                    os.killpg(self.proc.pid, signal.SIGKILL)  # its whole process group (renderers, gpu, zygote)
                except ProcessLookupError:
                    pass
            await asyncio.get_running_loop().run_in_executor(None, self.proc.wait)
            self.proc = None
        if self.profile is not None:
            remove_profile(Path(self.profile))
            self.profile = None

    async def restart(self) -> None:
        await self.close()
        await self.start()


def group_depth(latex: str) -> int:
    """The deepest ``{...}`` nesting in ``latex`` (escaped braces do not count).

    KaTeX recurses once per group, and where that overflows the JavaScript stack
    depends on the engine's state (a fresh page goes deeper than a warm one), so
    formulas deeper than ``max_group_depth`` are refused before KaTeX sees them:
    the same input always gets the same answer."""
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


def _die_with_parent() -> Callable[[], None] | None:
    """A pre-exec hook asking Linux to SIGKILL the child when its parent dies (else None)."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        prctl = ctypes.CDLL(None, use_errno=True).prctl  # resolved before fork: the hook only calls it
    except (OSError, AttributeError):
        return None
    pr_set_pdeathsig = 1

    def hook() -> None:
        prctl(pr_set_pdeathsig, signal.SIGKILL)

    return hook


def remove_stale_profiles(tmp_dir: str | Path | None = None) -> list[Path]:
    """Delete the browser profiles left by renderer processes that no longer run (a job
    killed with SIGKILL runs no cleanup). A profile whose owner still runs, or that
    belongs to another user, is left alone."""
    removed = []
    for path in Path(tmp_dir or tempfile.gettempdir()).glob(f"{PROFILE_PREFIX}*-*"):
        owner = path.name[len(PROFILE_PREFIX):].split("-", 1)[0]
        if not owner.isdigit() or int(owner) == os.getpid() or _is_running(int(owner)):
            continue
        try:
            if path.lstat().st_uid != os.getuid() or not path.is_dir():
                continue
        except FileNotFoundError:
            continue  # another renderer removed it first
        remove_profile(path)
        removed.append(path)
    return removed


def remove_profile(profile: Path) -> None:
    """Delete a browser profile and the folder of Chromium's singleton socket, which
    Chromium makes in the temporary folder (``org.chromium.Chromium.*``; the socket's
    path is too long for a Unix socket inside the profile) and links from the profile."""
    try:
        socket_dir = Path(os.readlink(profile / "SingletonSocket")).parent
    except OSError:
        socket_dir = None  # never started, or already gone
    if socket_dir is not None and socket_dir.name.startswith("org.chromium.Chromium."):
        shutil.rmtree(socket_dir, ignore_errors=True)  # ignore_errors: removal may race another renderer's
    shutil.rmtree(profile, ignore_errors=True)


def _is_running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # someone else's process
    return True


def _load_assets() -> dict[str, tuple[bytes, str]]:
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


def crop_sheet(sheet: np.ndarray, box: dict[str, Any], padding: int, threshold: int,
               ink: np.ndarray | None = None) -> RenderResult:
    """Cut one formula's box out of a sheet, crop it tight to its ink, pad it.

    sheet: uint8 [H, W] grayscale (``ink``: its ``sheet < threshold`` mask, when the
    caller computed it once for all boxes); returns uint8 [h + 2p, w + 2p] dark ink on white."""
    image, reason, _ = crop_sheet_at(sheet, box, padding, threshold, ink)
    return image, reason


def crop_sheet_at(sheet: np.ndarray, box: dict[str, Any], padding: int, threshold: int,
                  ink: np.ndarray | None = None) -> tuple[np.ndarray | None, str | None, tuple[int, int]]:
    """``crop_sheet``, plus the sheet (column, row) where the crop's ink begins."""
    x, y, w, h = int(box["x"]), int(box["y"]), int(box["w"]), int(box["h"])
    mask = (sheet[y:y + h, x:x + w] < threshold) if ink is None else ink[y:y + h, x:x + w]  # [h, w]
    rows = np.flatnonzero(mask.any(axis=1))
    if rows.size == 0:
        return None, "renders no visible ink", (x, y)
    cols = np.flatnonzero(mask[rows[0]:rows[-1] + 1].any(axis=0))
    top, left = y + rows[0], x + cols[0]
    th, tw = rows[-1] - rows[0] + 1, cols[-1] - cols[0] + 1
    out = np.full((th + 2 * padding, tw + 2 * padding), 255, dtype=np.uint8)
    out[padding:padding + th, padding:padding + tw] = sheet[top:top + th, left:left + tw]
    return out, None, (int(left), int(top))


def _decode_sheet(data: bytes) -> np.ndarray:
    """PNG bytes of a capture -> uint8 [H, W] grayscale (zlib dominates; Pillow is as fast as
    a hand-written unfilter here)."""
    with Image.open(io.BytesIO(data)) as img:
        if img.mode != "L":
            img = img.convert("L")
        return np.asarray(img)  # [H, W] uint8


def _cut(capture: _Capture, paddings: Sequence[int], threshold: int, max_side: int,
         max_pixels: int, boxed: bool = False) -> list[RenderResult] | list[Rendered]:
    """The images (and with ``boxed``, the per-symbol boxes: ``Rendered``) of a capture."""
    sheets = [_decode_sheet(data) for data in capture.sheets]
    masks = [sheet < threshold for sheet in sheets]  # once per sheet, not once per box
    out: list[Any] = []
    for item, padding in zip(capture.items, paddings):
        image, origin = None, (0, 0)
        if "error" in item:
            reason = f"KaTeX: {item['error']}"
        elif "oversize" in item:  # refused by the page before capture (max_side, max_pixels)
            w, h = item["oversize"]
            reason = f"too large: {w} x {h} px (max_side {max_side}, max_pixels {max_pixels})"
        elif item["sheet"] < 0:  # laid out and measured, not captured
            out.append(measured_only(item, padding))
            continue
        else:
            image, reason, origin = crop_sheet_at(sheets[item["sheet"]], item, padding, threshold, masks[item["sheet"]])
            if image is not None and max(image.shape) - 2 * padding > max_side:
                reason = (f"too large: {image.shape[1] - 2 * padding} x {image.shape[0] - 2 * padding} px "
                          f"(max_side {max_side}, max_pixels {max_pixels})")
                image = None
        if not boxed:
            out.append((image, reason))
        elif image is None:
            out.append(Rendered(None, error=reason))
        else:
            boxes = to_image(parse_page_boxes(item["boxes"]), *origin, padding) if item.get("boxes") else None
            out.append(Rendered(image, boxes=boxes, boxes_error=item.get("boxesError"), size=image.shape))
    return out


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
        self._stats = {"batches": 0, "retries": 0, "splits": 0, "restarts": 0}
        self._assets = _load_assets()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._pw_manager: Any = None
        self._pw: Any = None
        self._browsers: list[_Browser] = []
        self._free: asyncio.Queue[_Browser] | None = None
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
        from playwright.async_api import async_playwright  # heavy; only when a renderer starts

        self._pw_manager = async_playwright()
        self._pw = await self._pw_manager.start()
        self._browsers = [_Browser(self._pw, self.config, self.executable, self._assets, self.events)
                          for _ in range(self.config.workers)]
        await asyncio.gather(*(b.start() for b in self._browsers))
        self._free = asyncio.Queue()
        for b in self._browsers:
            self._free.put_nowait(b)

    async def _stop(self) -> None:
        # Batches still in flight (the caller was interrupted, or gave up on a result) are
        # cancelled and awaited first: a coroutine left pending on a closed loop prints
        # "Event loop is closed" tracebacks when it is collected.
        pending = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)
        await asyncio.gather(*(b.close() for b in self._browsers), return_exceptions=True)
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
        return {**self._stats, "recycles": sum(b.recycles for b in self._browsers),
                "launches": sum(b.launches for b in self._browsers)}

    def browser_pids(self) -> list[int]:
        """The pids of the worker browsers now running (tests kill them to show recovery)."""
        return [pid for b in self._browsers if (pid := b.pid) is not None]

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
            requests.append(_Request(latex, style, tokens_to_latex(list(tokens)), tuple(tokens), starts))
        if self._loop is None:
            raise KatexRenderError("the renderer is not started (use it as a context manager)")
        mode = "boxes" if images else "measure"
        return asyncio.run_coroutine_threadsafe(self._render_all(requests, mode), self._loop)

    async def _render_all(self, items: list[Any], mode: str = "plain") -> list[Any]:
        size = self.config.batch_size
        requests = [_Request(style.wrap(latex), style, latex) for latex, style in items] if mode == "plain" else items
        batches = [requests[i:i + size] for i in range(0, len(requests), size)]
        parts = await asyncio.gather(*(self._render_batch(b, mode) for b in batches))
        return [result for part in parts for result in part]

    async def _render_batch(self, batch: list[_Request], mode: str) -> list[Any]:
        """Refuse formulas nested too deep, render the rest (in order)."""
        refused = {i: f"groups nested {depth} deep (more than {self.config.max_group_depth})"
                   for i, request in enumerate(batch)
                   if (depth := group_depth(request.source)) > self.config.max_group_depth}
        if not refused:
            return await self._render_checked(batch, mode)
        rendered = iter(await self._render_checked([item for i, item in enumerate(batch) if i not in refused], mode)
                        if len(refused) < len(batch) else [])
        return [_failed(refused[i], mode) if i in refused else next(rendered) for i in range(len(batch))]

    async def _render_checked(self, batch: list[_Request], mode: str) -> list[Any]:
        """Render one batch on whichever browser is free; retry, then split, on failure."""
        assert self._free is not None
        cfg = self.config
        budget = cfg.timeout_s + cfg.per_formula_timeout_s * len(batch)
        payload = [request.payload() for request in batch]
        paddings = [request.style.padding for request in batch]
        reason = ""
        for attempt in range(cfg.max_retries + 1):
            browser = await self._free.get()
            try:
                try:
                    capture = await asyncio.wait_for(browser.capture(payload, mode != "measure"), budget)
                except asyncio.TimeoutError:
                    reason = f"timed out: the page took more than {budget:.1f} s"
                    self._stats["restarts"] += 1
                    await browser.restart()
                    break  # a hang repeats: do not retry the same batch, split it
                except Exception as err:  # noqa: BLE001 - browser death or page error: classified below
                    died = browser.pid is None or not (browser.browser and browser.browser.is_connected())
                    reason = ("the browser died while rendering" if died
                              else f"page error: {str(err).splitlines()[0][:200]}")
                    self._stats["restarts"] += 1
                    self._stats["retries"] += 1
                    await browser.restart()
                    continue
            finally:
                self._free.put_nowait(browser)
            self._stats["batches"] += 1
            loop = asyncio.get_running_loop()
            # Decode and crop in a thread: the browser is already free for the next batch.
            return await loop.run_in_executor(self._decoder, _cut, capture, paddings, cfg.ink_threshold, cfg.max_side,
                                              cfg.max_pixels, mode != "plain")
        if len(batch) == 1:
            return [_failed(reason, mode)]
        self._stats["splits"] += 1
        step = max(1, math.ceil(len(batch) / 8))  # eight parts: few timeouts to isolate one culprit
        parts = [batch[i:i + step] for i in range(0, len(batch), step)]
        results: list[Any] = []
        for part in parts:
            results.extend(await self._render_checked(part, mode))
        return results
