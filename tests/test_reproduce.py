"""The tiny end-to-end path on real data (CROHME slice -> prepare -> train recognizer -> evaluate),
the reproduction scripts' argument handling, and the report helpers they use."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
from PIL import Image

from formula_gan.cli import main
from formula_gan.reports import plot_curves, read_log, results_table, write_report

SCRIPTS = ["scripts/reproduce_table1.sh", "scripts/reproduce_table2.sh"]


def _slice(src: Path, dst: Path, n: int) -> Path:
    dst.mkdir(parents=True)
    for f in sorted(src.rglob("*.inkml"))[:n]:
        (dst / f.name).symlink_to(f)
    return dst


@pytest.mark.data
def test_crohme_slice_prepare_train_evaluate(crohme_dir, tmp_path, repo_root, monkeypatch):
    monkeypatch.chdir(repo_root)
    train = _slice(crohme_dir / "train" / "expressmatch", tmp_path / "inkml" / "train", 24)
    test = _slice(crohme_dir / "test2014", tmp_path / "inkml" / "test", 8)
    for name, src in (("train", train), ("test", test)):
        assert main(["prepare-crohme", str(src), "--out", str(tmp_path / name), "--normalize", "height128",
                     "--no-progress"]) == 0  # fmt: skip
    assert main([
        "train-recognizer", "--config", "configs/recognizer/tiny.yaml", "--no-progress",
        f"out_dir={tmp_path}/runs/{{name}}", f"data.train=[{{path: {tmp_path / 'train'}}}]",
        f"data.val=[{tmp_path / 'test'}]", "train.max_steps=6", "train.val_every=3", "train.log_every=3",
        "optim.warmup_steps=2",
    ]) == 0  # fmt: skip
    out = tmp_path / "eval.json"
    assert main(["evaluate", "--recognizer", str(tmp_path / "runs" / "tiny" / "best.pt"), str(tmp_path / "test"),
                 "--beam", "2", "--out", str(out), "--no-progress"]) == 0  # fmt: skip
    report = json.loads(out.read_text())
    manifest = json.loads((tmp_path / "test" / "manifest.json").read_text())
    assert report["metrics"]["num_formulas"] == manifest["num_samples"] > 0  # every test formula scored
    # references are the prepared CROHME labels, token for token
    keys = {p["key"] for p in report["predictions"]}
    assert len(keys) == manifest["num_samples"]


@pytest.mark.parametrize("script", SCRIPTS)
def test_scripts_parse_their_options(script, repo_root):
    assert subprocess.run(["bash", "-n", script], cwd=repo_root).returncode == 0
    help_ = subprocess.run(["bash", script, "--help"], cwd=repo_root, capture_output=True, text=True)
    assert help_.returncode == 0 and "--scale tiny" in help_.stdout
    bad = subprocess.run(["bash", script, "--scale", "huge"], cwd=repo_root, capture_output=True, text=True)
    assert bad.returncode == 2 and "--scale must be tiny" in bad.stderr
    bad = subprocess.run(["bash", script, "--frobnicate"], cwd=repo_root, capture_output=True, text=True)
    assert bad.returncode == 2 and "unknown option" in bad.stderr


def test_table2_cpu_scale_takes_its_own_options_after_a_double_dash(repo_root):
    script = "scripts/reproduce_table2.sh"
    stray = subprocess.run(["bash", script, "--scale", "tiny", "--", "--rows", "a"], cwd=repo_root,
                           capture_output=True, text=True)  # fmt: skip
    assert stray.returncode == 2 and "for --scale cpu only" in stray.stderr
    # reaches table2_cpu.py, which checks the row names before any work
    bad_row = subprocess.run(["bash", script, "--scale", "cpu", "--", "--rows", "az"], cwd=repo_root,
                             capture_output=True, text=True)  # fmt: skip
    assert bad_row.returncode == 2 and "unknown row 'z'" in bad_row.stderr


def test_report_helpers(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    events = [{"step": s, "kind": "train", "loss": 3.0 / s} for s in (1, 2, 3)] + [{"step": 3, "kind": "val", "exprate": 0.25}]
    (run / "log.jsonl").write_text("".join(json.dumps(e) + "\n" for e in events))
    assert read_log(run, "train", "loss") == [(1.0, 3.0), (2.0, 1.5), (3.0, 1.0)]
    assert read_log(run, "val", "exprate") == [(3.0, 0.25)]
    png = tmp_path / "loss.png"
    plot_curves({"a": read_log(run, "train", "loss"), "b": [(1, 2.0), (3, 2.5)]}, png, "loss", "ce")
    with Image.open(png) as im:
        assert im.size == (900, 520)
        assert len(im.convert("RGB").getcolors(1 << 20)) > 3  # lines and text were drawn
    table = results_table([("crohme_only", {"exprate": 0.4321, "perplexity": 3.5})], ["exprate", "perplexity"])
    assert table.splitlines()[2] == "| crohme_only | 43.21 | 3.500 |"
    write_report(tmp_path / "t.md", "T", "intro", table, [str(png)])
    assert "![loss](loss.png)" in (tmp_path / "t.md").read_text()
