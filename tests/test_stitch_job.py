"""`synthesize --method stitch` end to end: real KaTeX layouts, a real symbol bank, real shards.

The same job machinery as the GAN path: schema and preview, every item accounted for
once (a missing glyph is a reject naming the token), split = whole, kill -9 + rerun =
the uninterrupted dataset, strokes beside the images with --ink, the clear errors."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from formula_gan.cli import main as cli_main
from formula_gan.data.images import decode_png
from formula_gan.data.inkml import parse_inkml
from formula_gan.data.jobs import load_manifest, shard_paths, verify
from formula_gan.data.shards import read_shard
from formula_gan.data.prepare_symbols import prepare_symbols
from symbol_files import write_symbol_files
from test_render import require_browser

pytestmark = pytest.mark.browser

FORMULAS = [
    "x + 1 = 2",
    "\\frac{a}{b} - y",
    "",  # a reader reject
    "\\sqrt{x} + (a)",
    "\\clubsuit = 1",  # in no bank and no font: a stitch reject naming it
    "\\frac{1}{",  # a normalize reject
    "x^2 = y_1",
    "a < b",
    "2x - 1",
]
PER_SHARD = 3
VARIANTS = 2
N_ITEMS = 1 + (len(FORMULAS) - 1) * VARIANTS


@pytest.fixture(scope="module")
def work(tmp_path_factory) -> Path:
    require_browser()
    root = tmp_path_factory.mktemp("stitchjob")
    write_symbol_files(root / "inkml")
    prepare_symbols(root / "inkml", root / "bank", progress=False)
    (root / "formulas.txt").write_text("\n".join(FORMULAS) + "\n", encoding="utf-8")
    return root


def _args(work: Path, out: Path, *extra: str) -> list[str]:
    return ["synthesize", str(work / "formulas.txt"), "--method", "stitch", "--symbols", str(work / "bank"),
            "--out", str(out), "--variants", str(VARIANTS), "--samples-per-shard", str(PER_SHARD),
            "--render-workers", "1", "--stitch-workers", "1", "--no-progress", *extra]


def _tars(out: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(out.glob("shard-*.tar"))}


@pytest.fixture(scope="module")
def reference(work: Path):
    out = work / "reference"
    assert cli_main(_args(work, out, "--ink")) == 0
    return out


def test_schema_preview_rejects_and_accounting(reference: Path):
    manifest = load_manifest(reference)
    assert manifest["num_items"] == N_ITEMS
    assert manifest["num_samples"] + manifest["num_rejected"] == N_ITEMS
    assert manifest["method"] == "stitch" and manifest["domain"] == "synthetic"
    assert manifest["generator"]["method"] == "stitch" and manifest["generator"]["ink"] is True
    rejects = [json.loads(line) for line in (reference / "rejects.jsonl").read_text().splitlines()]
    stages = {(r["input"], r["stage"]) for r in rejects}
    assert ("\\clubsuit = 1", "stitch") in stages and ("\\frac{1}{", "normalize") in stages and ("", "read") in stages
    assert all("no glyph for token \\clubsuit" in r["reason"] for r in rejects if r["stage"] == "stitch")
    assert manifest["num_rejected"] == 1 + 2 * VARIANTS
    verify(reference)
    samples = [s for p in shard_paths(reference) for s in read_shard(p)]
    assert len(samples) == manifest["num_samples"]
    for s in samples:
        meta = s.meta
        tokens = meta["tokens"].split()
        image = decode_png(s.png)
        assert image.shape[0] == 128 and meta["size"] == list(image.shape)
        assert meta["domain"] == "synthetic" and meta["method"] == "stitch"
        assert meta["source"].startswith("formulas.txt:") and meta["generator"] == manifest["generator"]
        assert meta["writers"] and len(meta["box_writers"]) == len(meta["boxes"])
        assert all(0 <= w < len(meta["writers"]) for w in meta["box_writers"])
        for token, x0, y0, x1, y1 in meta["boxes"]:
            assert 0 <= token < len(tokens) and 0 <= x0 < x1 <= image.shape[1] and 0 <= y0 < y1 <= image.shape[0]
            assert (image[y0:y1, x0:x1] < 200).any(), f"the box of {tokens[token]} holds ink"
        [(ext, data)] = s.extra
        ink = parse_inkml(data)
        assert ext == "inkml" and ink.truth == meta["latex"] and len(ink.trace_groups) == len(meta["boxes"])
    preview = decode_png((reference / "preview.png").read_bytes())
    assert preview.shape[0] > 128 and preview.shape[1] > 2 * 100


def test_the_loader_reads_stitched_shards(reference: Path):
    from formula_gan.data.loader import ShardSource, make_loader
    from formula_gan.data.vocab import Vocab

    vocab = Vocab.from_manifest(reference)
    keys = [k for batch in make_loader([ShardSource(str(reference))], vocab, 4, shuffle=False, seed=0) for k in batch.keys]
    assert len(keys) == load_manifest(reference)["num_samples"]


def test_split_jobs_write_exactly_the_whole_job(reference: Path, work: Path):
    out = work / "split"
    for index in ("1", "0"):
        assert cli_main(_args(work, out, "--ink", "--num-shards", "2", "--shard-index", index)) == 0
    assert _tars(out) == _tars(reference)
    assert load_manifest(out) == load_manifest(reference)


def test_kill_9_and_rerun_gives_the_uninterrupted_dataset(reference: Path, work: Path):
    out = work / "killed"
    cmd = [sys.executable, "-m", "formula_gan", *_args(work, out, "--ink")]
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "TMPDIR": str(work)}
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 120
    while not (out / "shard-000001.json").exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    killed = proc.poll() is None
    children = _children(proc.pid)
    if killed:
        os.kill(proc.pid, signal.SIGKILL)  # the main process only: its stitching workers must follow
    proc.wait(timeout=30)
    proc.stderr.close()
    assert killed, "the run finished before it could be killed"
    deadline = time.monotonic() + 10
    while any(_alive(pid) for pid in children) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not [pid for pid in children if _alive(pid)], "a worker outlived its killed parent"
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert _tars(out) == _tars(reference)


def test_a_rerun_of_a_finished_job_writes_nothing(reference: Path, work: Path, capsys):
    before = {p.name: p.stat().st_mtime_ns for p in reference.glob("shard-*.tar")}
    assert cli_main(_args(work, reference, "--ink")) == 0
    assert {p.name: p.stat().st_mtime_ns for p in reference.glob("shard-*.tar")} == before
    assert "0 samples in 0 new shards" in capsys.readouterr().err


def test_without_ink_no_strokes_and_another_job(reference: Path, work: Path, capsys):
    out = work / "no-ink"
    assert cli_main(_args(work, out)) == 0
    sample = next(read_shard(shard_paths(out)[0]))
    assert sample.extra == ()
    plain = {s.key: s.png for p in shard_paths(out) for s in read_shard(p)}
    inked = {s.key: s.png for p in shard_paths(reference) for s in read_shard(p)}
    assert plain == inked, "--ink adds the strokes, it does not change the images"
    assert cli_main(_args(work, out, "--ink")) == 2
    assert "holds a different job" in capsys.readouterr().err


@pytest.mark.parametrize("extra, message", [
    (["--generator", "g.pt"], "--generator: not a setting of method 'stitch'"),
    (["--height", "64"], "--height: not a setting of method 'stitch'"),
    (["--device", "cpu"], "--device: not used by method 'stitch'"),
    (["--set", "gan.oversize=downscale"], "gan: settings of method 'gan', not of this job's method 'stitch'"),
    (["--set", "stitch.aspect_limit=0.5"], "aspect_limit"),
    (["--set", "stitch.nope=1"], "nope"),
])
def test_bad_options_are_named_before_any_work(work: Path, tmp_path: Path, capsys, extra, message):
    out = tmp_path / "out"
    assert cli_main(_args(work, out, *extra)) == 2
    assert message in capsys.readouterr().err
    assert not out.exists()


def test_the_packaged_bank_is_the_default_and_a_bank_is_checked(work: Path, tmp_path: Path, capsys):
    from formula_gan.data.symbol_bank import SymbolBank
    from formula_gan.synthesis.methods.stitch import DEFAULT_BANK

    args = _args(work, tmp_path / "out")
    without = args[:args.index("--symbols")] + args[args.index("--symbols") + 2:]
    assert cli_main(without) == 0
    assert load_manifest(tmp_path / "out")["generator"]["symbols"] == SymbolBank(DEFAULT_BANK).digest
    args[args.index("--out") + 1] = str(tmp_path / "out2")
    args[args.index("--symbols") + 1] = str(tmp_path)
    assert cli_main(args) == 2
    assert "no symbol bank" in capsys.readouterr().err
    gan = ["synthesize", str(work / "formulas.txt"), "--method", "gan", "--untrained-generator", "--out",
           str(tmp_path / "o"), "--ink"]
    assert cli_main(gan) == 2
    assert "--ink: not a setting of method 'gan'" in capsys.readouterr().err


def _children(pid: int) -> list[int]:
    try:
        out = subprocess.run(["ps", "-o", "pid=", "--ppid", str(pid)], capture_output=True, text=True, timeout=10).stdout
    except (OSError, subprocess.SubprocessError):
        return []
    return [int(x) for x in out.split()]


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(")")[-1].split()[0] != "Z"
    except OSError:
        return False
