"""Finding a Chromium binary and the flags the renderer launches it with.

Order of preference: ``FORMULA_GAN_CHROMIUM`` (an explicit choice wins and must
exist), a system browser on ``PATH`` (``chromium``, ``chromium-browser``,
``google-chrome``), then a browser that Playwright downloaded into its own cache
(``python -m playwright install chromium``). When none is found the error says
what is missing and how to install it.

``python -m katex_render.browser --check`` prints the path and exits 0, or prints
the message and exits 1 (the set-up script uses it to decide whether to install one).
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
from pathlib import Path

from katex_render.errors import KatexRenderError

ENV_VAR = "FORMULA_GAN_CHROMIUM"
SYSTEM_NAMES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
# Executables inside Playwright's browser cache, newest layouts first.
_PLAYWRIGHT_GLOBS = (
    "chromium-*/chrome-linux*/chrome",
    "chromium_headless_shell-*/chrome-headless-shell-linux*/chrome-headless-shell",
    "chromium_headless_shell-*/chrome-linux*/headless_shell",
    "chromium-*/chrome-mac*/Chromium.app/Contents/MacOS/Chromium",
    "chromium-*/chrome-win*/chrome.exe",
)

INSTALL_HINT = (
    "install one with 'apt-get install chromium' (Debian/Ubuntu), or "
    "'python -m playwright install chromium', or point FORMULA_GAN_CHROMIUM at a Chromium/Chrome binary"
)


def launch_args() -> list[str]:
    """Flags for a quiet, offline, deterministic headless Chromium.

    Without the background-networking flags Chromium phones home (updates, sync,
    field trials) at start; the renderer needs no network at all. ``--disable-lcd-text``
    keeps text anti-aliasing grayscale (no colour fringes to convert away), and a
    fixed device scale factor keeps one CSS pixel = one image pixel.
    """
    args = [
        "--disable-gpu",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-first-run",
        "--disable-default-apps",
        "--disable-extensions",
        "--mute-audio",
        "--disable-lcd-text",
        "--force-device-scale-factor=1",
        "--font-render-hinting=none",
        # The compositor in the browser process instead of a GPU process of its own:
        # with no GPU it only copies frames for captures, and on a 2-core machine the
        # extra process and its IPC cost ~10% of the batched renderer's throughput.
        "--in-process-gpu",
        # Defence in depth: the page's own requests are answered from memory or
        # aborted by the renderer; anything else cannot resolve a host name.
        "--host-resolver-rules=MAP * ~NOTFOUND",
    ]
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        args.append("--no-sandbox")  # Chromium refuses to start its sandbox as root
    return args


def _playwright_cache_dirs() -> list[Path]:
    env = os.environ.get("PLAYWRIGHT_BROWSERS_PATH")
    if env and env != "0":
        return [Path(env)]
    home = Path.home()
    if sys.platform == "darwin":
        return [home / "Library" / "Caches" / "ms-playwright"]
    if sys.platform.startswith("win"):
        return [Path(os.environ.get("LOCALAPPDATA", home)) / "ms-playwright"]
    return [Path(os.environ.get("XDG_CACHE_HOME", home / ".cache")) / "ms-playwright"]


def _playwright_managed() -> Path | None:
    for base in _playwright_cache_dirs():
        if not base.is_dir():
            continue
        for pattern in _PLAYWRIGHT_GLOBS:
            found = sorted(base.glob(pattern), reverse=True)  # newest revision first
            for path in found:
                if os.access(path, os.X_OK):
                    return path
    return None


def find_chromium() -> Path:
    """The Chromium binary to launch, or a ``KatexRenderError`` that says how to get one."""
    explicit = os.environ.get(ENV_VAR)
    if explicit:
        path = Path(explicit)
        if not (path.is_file() and os.access(path, os.X_OK)):
            raise KatexRenderError(f"{ENV_VAR}={explicit} is not an executable file; {INSTALL_HINT}")
        return path
    for name in SYSTEM_NAMES:
        which = shutil.which(name)
        if which:
            return Path(which)
    managed = _playwright_managed()
    if managed is not None:
        return managed
    looked = ", ".join(str(d) for d in _playwright_cache_dirs())
    raise KatexRenderError(
        f"no Chromium found ({ENV_VAR} unset; none of {', '.join(SYSTEM_NAMES)} on PATH; "
        f"no Playwright-managed browser under {looked}); {INSTALL_HINT}"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m katex_render.browser", description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true", help="print the browser's path (exit 0) or what is missing (exit 1)")
    parser.parse_args(argv)
    try:
        path = find_chromium()
    except KatexRenderError as err:
        print(f"katex_render: {err}", file=sys.stderr)
        return 1
    print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
