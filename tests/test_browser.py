"""Finding Chromium: the override, the system browser, Playwright's cache, and the error when none is there."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from katex_render import browser
from katex_render.errors import KatexRenderError


def _fake_exe(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("#!/bin/sh\nexit 0\n")
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return path


@pytest.fixture
def no_browser(tmp_path, monkeypatch):
    """An environment where no browser can be found."""
    monkeypatch.delenv(browser.ENV_VAR, raising=False)
    monkeypatch.setenv("PATH", str(tmp_path / "empty-bin"))
    monkeypatch.setenv("PLAYWRIGHT_BROWSERS_PATH", str(tmp_path / "ms-playwright"))
    return tmp_path


def test_none_found_says_what_is_missing_and_how_to_install(no_browser):
    with pytest.raises(KatexRenderError) as info:
        browser.find_chromium()
    message = str(info.value)
    assert "no Chromium found" in message and "apt-get install chromium" in message
    assert "playwright install chromium" in message and browser.ENV_VAR in message
    assert browser.main(["--check"]) == 1


def test_playwright_managed_browser_is_found(no_browser):
    exe = _fake_exe(no_browser / "ms-playwright" / "chromium-1234" / "chrome-linux64" / "chrome")
    assert browser.find_chromium() == exe


def test_system_browser_comes_before_playwright(no_browser, monkeypatch):
    _fake_exe(no_browser / "ms-playwright" / "chromium-1234" / "chrome-linux64" / "chrome")
    system = _fake_exe(no_browser / "bin" / "chromium")
    monkeypatch.setenv("PATH", str(system.parent))
    assert browser.find_chromium() == system


def test_override_wins_and_must_be_executable(no_browser, monkeypatch):
    chosen = _fake_exe(no_browser / "my" / "chrome")
    monkeypatch.setenv(browser.ENV_VAR, str(chosen))
    assert browser.find_chromium() == chosen
    monkeypatch.setenv(browser.ENV_VAR, str(no_browser / "missing"))
    with pytest.raises(KatexRenderError, match=browser.ENV_VAR):
        browser.find_chromium()


def test_check_command_prints_the_path(no_browser, monkeypatch, repo_root):
    chosen = _fake_exe(no_browser / "my" / "chrome")
    env = {**os.environ, browser.ENV_VAR: str(chosen)}
    done = subprocess.run([sys.executable, "-m", "katex_render.browser", "--check"], cwd=repo_root, env=env,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0 and done.stdout.strip() == str(chosen)
    env[browser.ENV_VAR] = str(no_browser / "missing")
    done = subprocess.run([sys.executable, "-m", "katex_render.browser", "--check"], cwd=repo_root, env=env,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 1 and "not an executable file" in done.stderr


def test_launch_flags_keep_the_browser_offline():
    args = browser.launch_args()
    for flag in ("--disable-background-networking", "--disable-component-update", "--disable-sync", "--no-first-run"):
        assert flag in args
    assert any(a.startswith("--host-resolver-rules=") for a in args)
