"""The renderer survives a killed browser, formulas that hang or explode, and long runs."""

from __future__ import annotations

import os
import signal
import time

import numpy as np
import pytest

from katex_render.renderer import Renderer
from katex_render.styles import Style, StyleConfig, sample_style
from test_render import FORMULAS, require_browser

pytestmark = pytest.mark.browser


def _items(n: int, seed: int = 0):
    cfg = StyleConfig()
    return [(FORMULAS[i % len(FORMULAS)] + f" + {i}", sample_style(cfg, seed + i)) for i in range(n)]


@pytest.fixture(scope="module")
def pool():
    """Two workers, small batches: shared by the tests that need no special settings."""
    require_browser()
    with Renderer(workers=2, batch_size=20) as renderer:
        yield renderer


def test_two_workers_render_in_order(pool):
    items = _items(60)
    assert len(set(pool.browser_pids())) == 2
    parallel = pool.render(items)
    serial = [pool.render(items[i:i + 1])[0] for i in range(0, 60, 11)]
    for (a, _), (b, _) in zip(parallel[::11], serial):
        assert np.array_equal(a, b)


def test_killed_browser_costs_nothing(pool):
    """SIGKILL a browser while it renders: its batch is retried on a fresh browser and
    every formula comes back exactly once, with the same pixels as an undisturbed run."""
    items = _items(240, seed=100)  # 12 batches: the kill lands while they render, even on a fast machine
    reference = pool.render(items)
    restarts = pool.stats["restarts"]
    victim = pool.browser_pids()[0]
    future = pool.submit(items)
    time.sleep(0.05)  # batches are being laid out or captured
    os.kill(victim, signal.SIGKILL)
    results = future.result(timeout=120)
    assert pool.stats["restarts"] > restarts
    assert victim not in pool.browser_pids() and len(pool.browser_pids()) == 2
    assert len(results) == len(items)
    for (a, ea), (b, eb) in zip(reference, results):
        assert ea is None and eb is None
        assert np.array_equal(a, b)
    assert all(image is not None for image, _ in pool.render(items[:4]))  # and it keeps working


EXPLODING = [
    (r"\def\a{\a}\a", "Too many expansions"),  # an endless \def loop ends at maxExpand
    (r"\def\b{\c\c}\def\c{\d\d}\def\d{\e\e}\def\e{\f\f}\def\f{\g\g}\def\g{\h\h}\def\h{\i\i}"
     r"\def\i{\j\j}\def\j{\k\k}\def\k{xx}\b", "Too many expansions"),  # exponential macro bomb
    ("{" * 3000 + "x" + "}" * 3000, "nested 3000 deep"),  # deeper than the JS stack, refused up front
    ("{" * 101 + "x" + "}" * 101, "nested 101 deep"),
]


def test_exploding_formulas_are_rejected_with_a_reason(pool):
    items = _items(6)
    batch = items[:3] + [(f, items[0][1]) for f, _ in EXPLODING] + items[3:]
    results = pool.render(batch)
    n = len(EXPLODING)
    for (image, error), (_, reason) in zip(results[3:3 + n], EXPLODING):
        assert image is None and error and reason in error
    assert all(image is not None for image, _ in results[:3] + results[3 + n:])
    assert pool.render([("{" * 100 + "x" + "}" * 100, items[0][1])])[0][0] is not None  # the limit itself is fine


def test_huge_sizes_are_capped_or_rejected(pool):
    style = _items(1)[0][1]
    chain = "x" + "".join(r"\underbrace{" for _ in range(40)) + "y" + "}_{k}" * 40
    (rule, e1), (braces, e2) = pool.render([(r"\rule{1000em}{0.5em}", style), (chain, style)])
    max_size = pool.config.max_size
    assert e1 is None and rule.shape[1] <= max_size * style.font_size + 2 * style.padding + 2  # maxSize caps \rule
    side = pool.config.max_side + 2 * style.padding
    assert (braces is None and "too large" in e2) or (braces is not None and max(braces.shape) <= side)


def test_a_formula_over_the_pixel_cap_is_rejected_with_its_size_before_capture(pool):
    r"""125 characters of \def-built matrix lay out at ~2,600 x 6,000 px (under max_side, 16 Mpx):
    rejected with its size by the page, before a capture that would cost hundreds of MB;
    the rest of the batch renders."""
    row = r"\def\c{xxxxxxxxxx}\def\r{\c&\c&\c&\c&\c&\c&\c&\c\\}\def\m{\r\r\r\r\r\r\r\r\r\r}"
    matrix = row + r"\begin{matrix}\m\m\m\m\m\m\m\m\m\m\end{matrix}"
    items = _items(4)
    results = pool.render(items[:2] + [(matrix, Style("\\mathrm", 50, 0))] + items[2:])
    image, error = results[2]
    assert image is None and error.startswith("too large: ")
    w, h = (int(n) for n in error.split(": ")[1].split(" px")[0].split(" x "))
    assert w * h > pool.config.max_pixels and max(w, h) <= pool.config.max_side  # the area cap decided
    assert all(image is not None for image, _ in results[:2] + results[3:])


def test_hanging_formula_is_rejected_without_losing_the_others():
    r"""A formula that never finishes (an endless \def loop with no expansion cap)
    times out: the batch is split, the culprit isolated and rejected, the rest rendered."""
    require_browser()
    items = _items(7)
    batch = items[:3] + [(r"\def\loop{\loop}\loop", items[0][1])] + items[3:]
    with Renderer(workers=1, batch_size=8, max_expand=10**9, timeout_s=2.0, per_formula_timeout_s=0.0) as renderer:
        started = time.monotonic()
        results = renderer.render(batch)
        elapsed = time.monotonic() - started
        assert results[3][0] is None and results[3][1].startswith("timed out")
        assert all(image is not None for image, _ in results[:3] + results[4:])
        assert renderer.stats["splits"] == 1, "eight-way split: one level isolates the culprit"
        assert elapsed < 60
        assert all(image is not None for image, _ in renderer.render(items[:2]))  # healthy afterwards


def test_pages_are_recycled_and_results_do_not_change():
    require_browser()
    items = _items(12)
    with Renderer(workers=1, batch_size=6, recycle_every=1) as renderer:
        first = renderer.render(items[:6])
        renderer.render(items[6:])
        again = renderer.render(items[:6])
        assert renderer.stats["recycles"] == 2
    for (a, _), (b, _) in zip(first, again):
        assert np.array_equal(a, b)


def test_browsers_die_with_a_killed_job(tmp_path, repo_root):
    """kill -9 of the process that renders (an interrupted job) leaves no browser behind."""
    import subprocess
    import sys

    require_browser()
    if not sys.platform.startswith("linux"):
        pytest.skip("parent-death signal is Linux only")
    script = ("import sys, time\n"
              "from katex_render.renderer import Renderer\n"
              "r = Renderer(workers=1).__enter__()\n"
              "print(r.browser_pids()[0], flush=True)\n"
              "time.sleep(120)\n")
    # TMPDIR: the killed job cannot remove its browser profile; keep that inside the test's folder
    env = {**os.environ, "TMPDIR": str(tmp_path)}
    job = subprocess.Popen([sys.executable, "-c", script], cwd=repo_root, stdout=subprocess.PIPE, text=True, env=env)
    try:
        pid = int(job.stdout.readline())
        os.kill(pid, 0)  # the browser runs
    finally:
        job.kill()
        job.wait()
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.1)
    os.kill(pid, signal.SIGKILL)
    pytest.fail(f"browser {pid} outlived its killed parent")
