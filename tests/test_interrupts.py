"""Interrupting a job loses nothing and leaks nothing: Ctrl-C and SIGTERM print one line and
clean up (browsers, their profiles and Chromium's temporary folders); after kill -9, which
runs no cleanup, the next run removes what the killed one left. Real `render` processes with
their own TMPDIR, so that what they leave is seen exactly."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from formula_gan.data.jobs import STALE_AFTER_S, ShardedJob, load_manifest, verify
from test_render import require_browser

REPO = Path(__file__).resolve().parents[1]
SAMPLE = REPO / "datasets" / "samples" / "formulas.txt"


def _start(out: Path, tmp: Path, variants: int = 6) -> subprocess.Popen:
    args = ["render", str(SAMPLE), "--out", str(out), "--workers", "1", "--variants", str(variants),
            "--shard-size", "100", "--no-progress", "renderer.batch_size=64"]
    return subprocess.Popen([sys.executable, "-m", "formula_gan", *args], cwd=REPO, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env={**os.environ, "PYTHONPATH": str(REPO), "TMPDIR": str(tmp)})


def _wait_for_a_shard(proc: subprocess.Popen, out: Path) -> None:
    deadline = time.monotonic() + 300
    while not (out / "shard-000000.json").exists():
        assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()
        time.sleep(0.05)


def _leftovers(tmp: Path) -> list[str]:
    return sorted(p.name for p in tmp.iterdir())


@pytest.fixture
def tmp() -> Path:
    """The jobs' TMPDIR: short, because Chromium's singleton socket lives in it and a Unix
    socket path may not exceed 107 bytes (pytest's own folders come close)."""
    path = Path(tempfile.mkdtemp(prefix="fg-"))
    yield path
    shutil.rmtree(path)


@pytest.mark.browser
@pytest.mark.parametrize("signame", ["SIGINT", "SIGTERM"])
def test_sigint_and_sigterm_stop_cleanly_and_the_rerun_resumes(signame: str, tmp: Path, tmp_path: Path) -> None:
    """Ctrl-C printed its line and then ~75 lines of "Event loop is closed" tracebacks, and left
    each browser's profile behind; SIGTERM killed the job with no cleanup at all."""
    require_browser()
    out = tmp_path / "out"
    proc = _start(out, tmp)
    try:
        _wait_for_a_shard(proc, out)
        proc.send_signal(getattr(signal, signame))
        _, err = proc.communicate(timeout=120)
    finally:
        proc.kill()
    verb = "interrupted" if signame == "SIGINT" else "terminated"
    assert err.strip().splitlines() == [f"formula-gan render: {verb}; rerun the same command to resume"]
    assert proc.returncode == 128 + getattr(signal, signame)
    assert _leftovers(tmp) == [], "browser profiles and Chromium's socket folders are removed"
    assert not [p.name for p in out.iterdir() if ".tmp-" in p.name]
    # the rerun finishes the job from where it stopped (fewer variants would be another job)
    rerun = _start(out, tmp)
    _, err = rerun.communicate(timeout=600)
    assert rerun.returncode == 0, err
    verify(out)
    assert load_manifest(out)["num_samples"] == 346 * 6
    assert _leftovers(tmp) == [], "a finished run leaves nothing in the temporary folder either"


@pytest.mark.browser
def test_what_a_killed_run_leaves_is_removed_by_the_next_run(tmp: Path, tmp_path: Path) -> None:
    """kill -9 runs no cleanup: its browser profile (2.4 MB each) and Chromium's socket folder
    stay, and used to stay for ever. The next renderer removes those of dead processes."""
    require_browser()
    out = tmp_path / "out"
    proc = _start(out, tmp)
    try:
        _wait_for_a_shard(proc, out)
        proc.send_signal(signal.SIGKILL)
        proc.communicate(timeout=60)
    finally:
        proc.kill()
    left = _leftovers(tmp)
    assert any(name.startswith(f"katex-render-{proc.pid}-") for name in left), left  # what kill -9 leaves
    (out / ".manifest.json.tmp-999999999").write_text("{")  # as if killed while writing the manifest
    stale = time.time() - 2 * STALE_AFTER_S
    os.utime(out / ".manifest.json.tmp-999999999", (stale, stale))
    rerun = _start(out, tmp)
    _, err = rerun.communicate(timeout=600)
    assert rerun.returncode == 0, err
    assert _leftovers(tmp) == []
    assert not [p.name for p in out.iterdir() if ".tmp-" in p.name]
    verify(out)


def test_stale_temporaries_of_dead_writers_are_removed_and_live_ones_kept(tmp_path: Path) -> None:
    """A killed run's .job.json/.manifest.json/.rejects.jsonl temporaries were never removed.
    Another rank may be writing its own right now: only those of a dead process, old enough, go."""
    ShardedJob(tmp_path, {"kind": "test"}, 4).open()
    stale = time.time() - 2 * STALE_AFTER_S
    dead = 999999999  # no such process
    names = {f".manifest.json.tmp-{dead}": True, f".rejects.jsonl.tmp-{dead}": True, f".job.json.tmp-{dead}": True,
             f".vocab.json.tmp-{dead}": True,
             f".manifest.json.tmp-{os.getpid()}": False,  # a live writer (this process)
             f".rejects.jsonl.tmp-{dead + 1}": False}  # recent: perhaps another machine's live writer
    for name, old in names.items():
        (tmp_path / name).write_text("half")
        if old or name.endswith(str(os.getpid())):
            os.utime(tmp_path / name, (stale, stale))
    ShardedJob(tmp_path, {"kind": "test"}, 4).open()
    assert sorted(p.name for p in tmp_path.glob(".*.tmp-*")) == sorted(n for n, gone in names.items() if not gone)
