"""Handwriting methods are plug-ins: a new one is one module plus one registry line, and it runs
end to end through ``formula-gan synthesize`` (shards, manifest, rejects, preview, resume)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from formula_gan.cli import main as cli_main
from formula_gan.data.jobs import load_manifest, shard_paths, verify
from formula_gan.data.png import decode_png
from formula_gan.data.shards import read_shard
from formula_gan.data.prepare_symbols import prepare_symbols
from formula_gan.synthesis.methods import BUILTIN
from symbol_files import write_symbol_files
from test_render import require_browser

pytestmark = pytest.mark.browser
FORMULAS = ["x + 1 = 2", "\\frac{a}{b}", "", "\\frac{1}{", "a_1 + b^2", "x y z"]


@pytest.fixture()
def toy(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(BUILTIN, "toy", "toy_method:ToyMethod")  # the one registry line


@pytest.fixture(scope="module")
def formulas(tmp_path_factory) -> Path:
    require_browser()
    path = tmp_path_factory.mktemp("methods") / "f.txt"
    path.write_text("\n".join(FORMULAS) + "\n", encoding="utf-8")
    return path


def _args(formulas: Path, out: Path, *extra: str) -> list[str]:
    return ["synthesize", str(formulas), "--method", "toy", "--out", str(out), "--samples-per-shard", "2",
            "--render-workers", "1", "--no-progress", *extra]


def test_a_toy_method_runs_end_to_end_and_resumes(toy, formulas: Path, tmp_path: Path):
    out = tmp_path / "toy"
    assert cli_main(_args(formulas, out, "--set", "toy.gray=80")) == 0
    manifest = load_manifest(out)
    verify(out)
    assert manifest["method"] == "toy" and manifest["toy"] is True
    assert manifest["generator"] == {"toy": 1, "gray": 80}
    assert manifest["num_samples"] + manifest["num_rejected"] == len(FORMULAS)
    samples = [s for p in shard_paths(out) for s in read_shard(p)]
    assert len(samples) == 4
    for s in samples:
        image = decode_png(s.png)
        assert s.meta["method"] == "toy" and s.meta["boxes_filled"] > 0
        assert image.min() == 80 and list(image.shape) == s.meta["size"]
    rejects = [json.loads(line) for line in (out / "rejects.jsonl").read_text().splitlines()]
    assert {r["stage"] for r in rejects} == {"read", "normalize"}
    assert (out / "preview.png").is_file()
    # resume: a lost shard is written again, byte for byte
    before = {p.name: p.read_bytes() for p in shard_paths(out)}
    lost = shard_paths(out)[1]
    lost.unlink()
    lost.with_suffix(".json").unlink()
    (out / "manifest.json").unlink()
    assert cli_main(_args(formulas, out, "--set", "toy.gray=80")) == 0
    assert {p.name: p.read_bytes() for p in shard_paths(out)} == before


def test_a_methods_typed_section_refuses_what_it_does_not_have(toy, formulas: Path, tmp_path: Path, capsys):
    for extra, message in ((["--set", "toy.gray=300"], "toy: gray must be in 0..255"),
                           (["--set", "toy.colour=1"], "toy.colour"),
                           (["--symbols", "bank"], "--symbols: not a setting of method 'toy'"),
                           (["--device", "cpu"], "--device: not used by method 'toy'"),
                           (["--set", "stitch.spread=0.1"], "stitch: settings of method 'stitch'")):
        assert cli_main(_args(formulas, tmp_path / "o", *extra)) == 2
        assert message in capsys.readouterr().err
        assert not (tmp_path / "o").exists()


def test_the_stitch_path_imports_no_torch(formulas: Path, tmp_path: Path):
    write_symbol_files(tmp_path / "inkml")
    prepare_symbols(tmp_path / "inkml", tmp_path / "bank", progress=False)
    code = ("import sys\nfrom formula_gan.cli import main\n"
            f"rc = main(['synthesize', {str(formulas)!r}, '--method', 'stitch', '--symbols', {str(tmp_path / 'bank')!r}, "
            f"'--out', {str(tmp_path / 'out')!r}, '--render-workers', '1', '--stitch-workers', '0', '--no-progress'])\n"
            "assert rc == 0, rc\nprint(sorted(m for m in sys.modules if m == 'torch' or m.startswith('torch.')))\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip().splitlines()[-1] == "[]"
    assert load_manifest(tmp_path / "out")["num_samples"] > 0
    assert np.asarray(decode_png((tmp_path / "out" / "preview.png").read_bytes())).size > 0


def test_refine_composes_the_stitcher_and_a_generator_trained_on_stitched_inputs(formulas: Path, tmp_path: Path, capsys):
    import torch

    from formula_gan.models.generator import Generator
    from formula_gan.models.generator_io import save_generator

    write_symbol_files(tmp_path / "inkml")
    prepare_symbols(tmp_path / "inkml", tmp_path / "bank", progress=False)
    torch.manual_seed(0)
    refiner, renderer_gan = tmp_path / "refiner.pt", tmp_path / "gan.pt"
    save_generator(Generator(width=0.0625, residual=True, output="clamp", skip=True), refiner, step=3,
                   config={"data": {"source_domain": "synthetic", "height": 32, "frame": True}})
    save_generator(Generator(width=0.0625), renderer_gan, step=4, config={"data": {"height": 32}})
    common = ["--symbols", str(tmp_path / "bank"), "--render-workers", "1", "--stitch-workers", "0", "--device", "cpu",
              "--no-progress"]
    out = tmp_path / "refined"
    assert cli_main(["synthesize", str(formulas), "--method", "refine", "--generator", str(refiner), "--out", str(out),
                     *common]) == 0
    manifest = load_manifest(out)
    assert manifest["method"] == "refine" and manifest["generator"]["generator"]["step"] == 3
    samples = [s for p in shard_paths(out) for s in read_shard(p)]
    assert samples and all(decode_png(s.png).shape[0] == 32 for s in samples), "at the generator's height"
    assert all("glyph_sources" in s.meta and "z_seed" in s.meta for s in samples)
    # a generator of renderings is not a refiner, and a refiner is not a generator of renderings
    assert cli_main(["synthesize", str(formulas), "--method", "refine", "--generator", str(renderer_gan),
                     "--out", str(tmp_path / "x"), *common]) == 2
    assert "translates KaTeX renderings, not stitched handwriting" in capsys.readouterr().err
    assert cli_main(["synthesize", str(formulas), "--method", "gan", "--generator", str(refiner), "--out",
                     str(tmp_path / "y"), "--render-workers", "1", "--device", "cpu", "--no-progress"]) == 2
    assert "use --method refine" in capsys.readouterr().err
    assert not (tmp_path / "x").exists() and not (tmp_path / "y").exists()
