"""The staged pipeline and the pieces of synthesis that need no browser or generator."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time

import numpy as np
import pytest

from formula_gan.data.images import decode_png
from formula_gan.synthesis.policy import padded_width, prepare
from formula_gan.synthesis.preview import preview_grid, write_preview
from formula_gan.synthesis.stages import Pipeline


def _double(xs):
    for x in xs:
        yield 2 * x


def _pairs(xs):
    buf = []
    for x in xs:
        buf.append(x)
        if len(buf) == 2:
            yield tuple(buf)
            buf = []
    if buf:
        yield tuple(buf)


def test_pipeline_keeps_order_and_lets_stages_batch():
    with Pipeline(range(7), [("double", _double), ("pairs", _pairs)], depth=1) as p:
        out = list(p)
    assert out == [(0, 2), (4, 6), (8, 10), (12,)]
    assert [s.messages_out for s in p.stats] == [7, 7, 4]


def test_a_failing_stage_stops_all_and_is_raised_and_resources_are_released():
    closed = threading.Event()

    def hold_resource(xs):
        try:
            for x in xs:
                yield x
        finally:
            closed.set()  # a `with Renderer()` block would exit here

    def boom(xs):
        for x in xs:
            if x == 3:
                raise ValueError("bad item 3")
            yield x

    def endless():
        i = 0
        while True:  # the source must be stopped too, not run forever
            yield i
            i += 1

    got = []
    with pytest.raises(ValueError, match="bad item 3"):
        with Pipeline(endless(), [("hold", hold_resource), ("boom", boom)], depth=2) as p:
            for x in p:
                got.append(x)
    assert got == [0, 1, 2]
    assert closed.is_set()
    assert not [t for t in threading.enumerate() if t.name.startswith("stage-")]


def test_consumer_error_stops_the_stages():
    with pytest.raises(KeyError):
        with Pipeline(iter(range(10**9)), [("double", _double)], depth=2) as p:
            for x in p:
                if x == 10:
                    raise KeyError(x)
    assert not [t for t in threading.enumerate() if t.name.startswith("stage-")]


def test_bounded_queues_block_a_fast_producer():
    produced = []

    def source():
        for i in range(100):
            produced.append(i)
            yield i

    with Pipeline(source(), [("double", _double)], depth=2) as p:
        it = iter(p)
        next(it)
        time.sleep(0.3)  # the consumer stalls; the source may run ahead only by the queue depths
        ahead = len(produced)
        rest = list(it)
    # 1 consumed + 1 in the consumer's hands + 2 per queue + 1 held by each thread
    assert ahead <= 8, ahead
    assert len(rest) == 99


_RSS_CHILD = r"""
import json, resource, sys
import numpy as np
from formula_gan.synthesis.stages import Pipeline

n = int(sys.argv[1])
def source():
    for i in range(n):
        yield np.full((128, 1024), i % 251, dtype=np.uint8)  # 128 KiB, like a working-height image
def work(xs):
    for x in xs:
        yield (x.astype(np.float32) / 255.0)  # 512 KiB
def shrink(xs):
    for x in xs:
        yield float(x.mean())
total = 0.0
with Pipeline(source(), [("work", work), ("shrink", shrink)], depth=4) as p:
    for v in p:
        total += v
print(json.dumps({"n": n, "maxrss_kb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss}))
"""


def _child_rss(n: int) -> int:
    out = subprocess.run([sys.executable, "-c", _RSS_CHILD, str(n)], capture_output=True, text=True, check=True, timeout=120)
    return json.loads(out.stdout)["maxrss_kb"]


def test_peak_memory_does_not_grow_with_the_stream():
    small, large = _child_rss(500), _child_rss(5000)  # 64 MB vs 640 MB of images passed through
    # Unbounded queues would hold a large part of 5000 x 640 KiB (~3 GB); bounded ones hold a handful.
    assert large < small + 30_000, (small, large)


# ---- working height and oversize policy -------------------------------------------------
def test_prepare_scales_to_the_working_height_keeping_the_aspect_ratio():
    paper = np.full((40, 100), 255, np.uint8)
    paper[10:30, 10:90] = 0
    p = prepare(paper, 128, "skip")
    assert p.reject is None and p.downscaled is None
    assert p.image.shape == (128, 320) and p.image.dtype == np.uint8
    assert p.image[64, 160] < 50 and p.image[2, 2] > 200  # ink stays ink, paper stays paper
    assert padded_width(320, 16) == 320 and padded_width(321, 16) == 336 and padded_width(1, 16) == 16


def test_oversize_skip_is_a_reject_with_the_measured_size():
    paper = np.full((20, 1000), 255, np.uint8)  # 6400 x 128 = 819,200 px > 640,000
    p = prepare(paper, 128, "skip")
    assert p.image is None
    assert p.reject.startswith("oversize:") and "6400x128" in p.reject and "640,000" in p.reject


def test_oversize_downscale_fits_the_limit_and_keeps_the_height():
    paper = np.full((20, 1000), 255, np.uint8)
    paper[5:15, :] = 0
    p = prepare(paper, 128, "downscale")
    h, w = p.image.shape
    assert h == 128 and w * h <= 640_000 and w == 5000
    assert p.downscaled == pytest.approx(5000 / 6400, rel=1e-4)
    rows = np.flatnonzero((p.image < 128).any(axis=1))
    assert 0 < rows[0] and rows[-1] < 127  # drawn smaller, centred: blank rows above and below
    at_limit = np.full((128, 5000), 255, np.uint8)  # exactly the limit: untouched
    assert prepare(at_limit, 128, "skip").image.shape == (128, 5000)


def test_preview_grid_puts_input_beside_output(tmp_path):
    a = np.full((128, 64), 255, np.uint8)
    a[:, :8] = 0
    b = np.full((128, 96), 255, np.uint8)
    b[:, -8:] = 0
    grid = preview_grid([(a, b), (b, a)])
    assert grid.dtype == np.uint8 and grid.shape[0] >= 256 and grid.shape[1] >= 64 + 96
    write_preview(tmp_path / "p.png", [(a, b)])
    back = decode_png((tmp_path / "p.png").read_bytes())
    assert back.shape[1] == 8 + 64 + 8 + 96 + 8
    assert back[20, 8:16].max() < 20 and back[20, 8 + 64 + 8 + 96 - 8 : 8 + 64 + 8 + 96].max() < 20


def test_preview_scales_a_long_formula_down_instead_of_cutting_its_end():
    long = np.full((128, 2000), 255, np.uint8)
    long[40:90, -100:] = 0  # ink at the very end of the formula
    grid = preview_grid([(long, long)], max_width=500)
    assert grid.shape[1] == 8 + 500 + 8 + 500 + 8
    left = grid[:, 8 : 8 + 500]
    assert left[:, -20:].min() < 60  # the end of the formula is still on the sheet
