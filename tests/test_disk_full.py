"""A full disk mid-job: one line naming the folder and the space needed, no half-written file
left to keep the disk full, finished shards intact, and a rerun that resumes once space is
freed. On a real small tmpfs (mounting one needs root; skipped with a message elsewhere),
with the real `render` and `synthesize` commands in their own processes."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from formula_gan.data.jobs import load_manifest, verify
from formula_gan.hashing import sha256_file
from test_render import require_browser

pytestmark = pytest.mark.browser
REPO = Path(__file__).resolve().parents[1]
FORMULAS = [r"\frac{1}{2}", r"x^2+y^2=z^2", r"\sqrt{a+b}", r"\sum_{i=1}^{n} i", r"\alpha+\beta", r"\int_0^1 f(x)dx",
            r"a_{n+1}=a_n+d", r"e^{i\pi}+1=0", r"\frac{a}{b}-c", r"x \leq y", r"\lim_{x\to0}\frac{\sin x}{x}", r"(a+b)^2"]
DISK = 1 << 20  # the tmpfs; tmpfs counts whole 4 kB pages per file


@pytest.fixture
def small_disk(tmp_path: Path):
    if not shutil.which("mount") or os.geteuid() != 0:
        pytest.skip("mounting a small tmpfs needs root and mount(8); the disk-full tests need one")
    mnt = tmp_path / "disk"
    mnt.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={DISK}", "tmpfs", str(mnt)], capture_output=True, text=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here ({done.stderr.strip()}); the disk-full tests need one")
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=True)


COMMANDS = {  # case: (subcommand, its arguments)
    "render": ("render", ["{corpus}", "--out", "{out}", "--workers", "1", "--shard-size", "6", "--variants", "4",
                          "--no-progress", "renderer.batch_size=16"]),
    "synthesize-gan": ("synthesize", ["{corpus}", "--method", "gan", "--untrained-generator", "--out", "{out}",
                                      "--variants", "4", "--height", "32", "--samples-per-shard", "6",
                                      "--batch-size", "8", "--render-workers", "1", "--device", "cpu",
                                      "--no-progress"]),
    # the default method: the stitcher with the packaged symbol bank
    "synthesize-stitch": ("synthesize", ["{corpus}", "--out", "{out}", "--variants", "4",
                                         "--samples-per-shard", "6", "--render-workers", "1", "--no-progress"]),
}


def _run(case: str, corpus: Path, out: Path) -> subprocess.CompletedProcess:
    command, template = COMMANDS[case]
    args = [a.format(corpus=corpus, out=out) for a in template]
    return subprocess.run([sys.executable, "-m", "formula_gan", command, *args], cwd=REPO, capture_output=True, text=True,
                          timeout=600, env={**os.environ, "PYTHONPATH": str(REPO)})


def _used(folder: Path) -> int:
    """Bytes the folder takes on a tmpfs (whole pages)."""
    return sum(-(-p.stat().st_size // 4096) * 4096 for p in folder.rglob("*") if p.is_file())


@pytest.mark.parametrize("case", sorted(COMMANDS))
def test_a_full_disk_is_one_clear_error_and_the_rerun_resumes(case: str, small_disk: Path, tmp_path: Path):
    require_browser()
    command = COMMANDS[case][0]
    corpus = tmp_path / "formulas.txt"
    corpus.write_text("\n".join(FORMULAS) + "\n", encoding="utf-8")
    reference = tmp_path / "reference"
    done = _run(case, corpus, reference)
    assert done.returncode == 0, done.stderr
    want = {s["name"]: s["sha256"] for s in load_manifest(reference)["shards"]}
    assert len(want) == 8  # 12 formulas x 4 variants, 6 a shard: every formula written
    # Leave room for about half of the job's files
    filler = small_disk / "filler"
    filler.write_bytes(b"\0" * (DISK - _used(reference) // 2))
    out = small_disk / "out"

    full = _run(case, corpus, out)
    assert full.returncode == 2, full.stderr
    [line] = [l for l in full.stderr.strip().splitlines() if not l.startswith("WARNING: --untrained-generator")]
    assert line.startswith(f"formula-gan {command}: error: no space left in {out} for ")
    assert "free, it needs about" in line and "rerun the same command to resume" in line
    assert not [p.name for p in out.iterdir() if ".tmp-" in p.name], "no half-written file keeps the disk full"
    finished = [json.loads(p.read_text())["name"] for p in out.glob("shard-*.json")]
    assert 0 < len(finished) < len(want)
    assert all(sha256_file(out / name) == want[name] for name in finished)  # finished shards are intact

    filler.unlink()
    again = _run(case, corpus, out)
    assert again.returncode == 0, again.stderr
    if command == "render":
        assert f"{len(finished)} already complete" in again.stdout
    verify(out)
    assert {s["name"]: s["sha256"] for s in load_manifest(out)["shards"]} == want  # as an uninterrupted run
