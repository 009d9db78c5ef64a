"""`synthesize` end to end: real KaTeX in Chromium, a real (tiny, untrained) generator file, real shards.

Small on purpose: a working height of 32 px and a generator of width 1/16, so
that a run takes seconds on two busy cores. The claims shown here: schema and
preview, every item accounted for once, split = whole, kill -9 + rerun =
uninterrupted run (byte for byte), one sample regenerated alone from its
metadata, the oversize policies, and the clear errors before any work.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from formula_gan.cli import main as cli_main
from formula_gan.data.images import decode_png
from formula_gan.data.jobs import load_manifest, shard_paths, verify
from formula_gan.data.shards import read_shard
from formula_gan.hashing import sha256_file

pytestmark = pytest.mark.browser

FORMULAS = [
    "x^2 + y^2 = z^2",
    "\\frac{a}{b}",
    "",  # a blank line: a reader reject
    "\\frac{1}{",  # does not parse: a normalize reject
    "e^{i\\pi} + 1 = 0",
    "\\sqrt{2}",
    "\\alpha + \\beta",
    "\\int_0^1 x \\, dx",
    "a_{n+1} = a_n + 1",
    "\\sum_{i=1}^{n} i",
    "(a+b)^2",
    "\\lim_{x \\to 0} f(x)",
]
HEIGHT = 32
PER_SHARD = 4
VARIANTS = 2
N_ITEMS = 1 + (len(FORMULAS) - 1) * VARIANTS  # the blank line is one item; every formula is VARIANTS


@pytest.fixture(scope="module", autouse=True)
def _browser():
    from katex_render.browser import find_chromium
    from katex_render.errors import KatexRenderError

    try:
        find_chromium()
    except KatexRenderError as err:
        pytest.skip(f"no Chromium: {err}")


@pytest.fixture(scope="module")
def work(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("synth")


@pytest.fixture(scope="module")
def formulas(work: Path) -> Path:
    path = work / "formulas.txt"
    path.write_text("\n".join(FORMULAS) + "\n", encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def generator(work: Path) -> Path:
    """A tiny generator, saved the way `formula-gan export-generator` saves one."""
    from formula_gan.models.generator import Generator
    from formula_gan.models.generator_io import save_generator

    torch.manual_seed(0)
    path = work / "tiny.pt"
    save_generator(Generator(width=0.0625), path, step=123, config={"test": "tiny"})
    return path


def _synth(generator: Path, variants: int = VARIANTS, **gan):
    from formula_gan.synthesis import Resources, SynthesisConfig, Synthesizer

    config = SynthesisConfig(variants=variants, samples_per_shard=PER_SHARD)
    settings = {"gan": {"generator": str(generator), "height": HEIGHT, **gan}}
    # One browser per run: tests start many short runs, and a browser launch is the costly part.
    return Synthesizer("gan", config, settings=settings, progress=False,
                       resources=Resources(device="cpu", batch_size=4, render_workers=1))


def _cli(formulas: Path, generator: Path | None, out: Path, *extra: str) -> list[str]:
    gen = ["--generator", str(generator)] if generator is not None else []
    return [str(formulas), "--method", "gan", *gen, "--out", str(out), "--variants", str(VARIANTS), "--height", str(HEIGHT),
            "--samples-per-shard", str(PER_SHARD), "--batch-size", "4", "--render-workers", "1", "--device", "cpu",
            "--no-progress", *extra]


def _tars(out: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(out.glob("shard-*.tar"))}


@pytest.fixture(scope="module")
def reference(work: Path, formulas: Path, generator: Path):
    """One uninterrupted run: the dataset the other runs must reproduce."""
    out = work / "reference"
    report = _synth(generator).run([formulas], out, rank=0, world_size=1)
    return out, report


def test_end_to_end_schema_preview_and_accounting(reference, generator: Path):
    import webdataset as wds

    out, report = reference
    manifest = load_manifest(out)
    verify(out)  # every shard's size and checksum as the manifest says
    assert manifest["num_items"] == N_ITEMS
    assert manifest["num_samples"] + manifest["num_rejected"] == N_ITEMS  # each item exactly once
    assert manifest["num_shards"] == -(-N_ITEMS // PER_SHARD)
    assert report.samples_written == manifest["num_samples"] >= 2 * 9
    gen_sha = sha256_file(generator)
    assert manifest["generator"] == {"sha256": gen_sha, "step": 123} and manifest["method"] == "gan"

    rejects = [json.loads(line) for line in (out / "rejects.jsonl").read_text().splitlines()]
    assert len(rejects) == manifest["num_rejected"]
    by_stage = {r["stage"] for r in rejects}
    assert {"read", "normalize"} <= by_stage
    bad = [r for r in rejects if r["input"] == "\\frac{1}{"]
    assert len(bad) == VARIANTS and all(r["line"] == 4 and r["reason"] for r in bad)

    samples = []
    ds = wds.WebDataset([str(p) for p in shard_paths(out)], shardshuffle=False, empty_check=False)
    for s in ds:
        meta = json.loads(s["json"])
        image = decode_png(s["png"])
        samples.append((s["__key__"], meta, image))
    assert len(samples) == manifest["num_samples"]
    keys = [k for k, _, _ in samples]
    assert len(set(keys)) == len(keys)
    for key, meta, image in samples:
        assert {"latex", "tokens", "source", "domain", "style", "seed", "z_seed", "variant", "generator"} <= set(meta)
        assert meta["domain"] == "synthetic" and meta["method"] == "gan"
        assert meta["generator"] == {"sha256": gen_sha, "step": 123}
        assert set(meta["style"]) == {"font", "font_size", "padding"}
        assert meta["source"].startswith("formulas.txt:") and key.endswith(f"-v{meta['variant']}")
        assert image.dtype == np.uint8 and image.shape[0] == HEIGHT and list(image.shape) == meta["size"]
        assert meta["latex"] in FORMULAS
    # two variants of one formula: other style or z, other image
    v = {(m["source"], m["variant"]): img for _, m, img in samples}
    a, b = v[("formulas.txt:1", 0)], v[("formulas.txt:1", 1)]
    assert a.shape != b.shape or (a != b).any()
    # the vocabulary, as the `render` job records it
    assert "\\frac" in manifest["shards"][0]["stats"]["token_counts"] and "\\frac" in manifest["vocab"]
    # the input of each sample is the `render` job's rendering of the same formula, seed and variant
    from formula_gan.data.render_job import derive_seed

    assert all(m["seed"] == derive_seed(0, m["source"], m["latex"], m["variant"]) for _, m, _ in samples)

    preview = decode_png((out / "preview.png").read_bytes())
    assert preview.shape[0] >= 2 * HEIGHT and preview.min() < 128 and preview.max() == 255


def test_split_jobs_write_exactly_the_whole_job(reference, work: Path, formulas: Path, generator: Path, monkeypatch):
    ref_out, _ = reference
    out = work / "split"
    first = _synth(generator).run([formulas], out, rank=0, world_size=2)
    assert first.manifest is None  # the other half is missing
    monkeypatch.setenv("RANK", "1")  # the second half as torchrun would start it
    monkeypatch.setenv("WORLD_SIZE", "2")
    second = _synth(generator).run([formulas], out)
    assert second.manifest is not None
    assert first.shards_written + second.shards_written == second.manifest["num_shards"]
    assert _tars(out) == _tars(ref_out)  # byte for byte
    assert load_manifest(out) == load_manifest(ref_out)
    assert (out / "rejects.jsonl").read_bytes() == (ref_out / "rejects.jsonl").read_bytes()


def test_a_sample_is_regenerated_alone_from_its_metadata(reference, generator: Path):
    """Batch composition does not matter: one sample rendered and generated alone gives the same bytes."""
    from formula_gan.data.images import encode_png
    from formula_gan.synthesis.generation import BatchRunner, load
    from formula_gan.synthesis.policy import padded_width, prepare
    from katex_render.renderer import Renderer
    from katex_render.styles import Style

    out, _ = reference
    sample = next(s for s in read_shard(out / "shard-000001.tar"))
    meta = sample.meta
    with Renderer(workers=1) as renderer:
        [(rendered, err)] = renderer.render([(meta["tokens"], Style(**meta["style"]))])
    assert err is None
    prepared = prepare(rendered, HEIGHT, "skip")
    runner = BatchRunner(load(generator, torch.device("cpu")))
    [image] = runner.run([prepared.image], [meta["z_seed"]], padded_width(prepared.image.shape[1], 16))
    assert encode_png(image) == sample.png


def test_kill_9_and_rerun_gives_the_uninterrupted_dataset(reference, work: Path, formulas: Path, generator: Path):
    ref_out, _ = reference
    out = work / "killed"
    cmd = [sys.executable, "-m", "formula_gan", "synthesize", *_cli(formulas, generator, out)]
    # TMPDIR: a killed run cannot remove its browser profiles; keep them inside the test's folder
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "TMPDIR": str(work)}
    kills = 0
    for wanted in ("shard-000000.json", "shard-000002.json"):  # kill after one shard, then mid-way
        proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True)
        deadline = time.monotonic() + 120
        while not (out / wanted).exists() and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.02)
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)  # the whole group: Chromium and node die too
            kills += 1
        proc.wait(timeout=30)
        proc.stderr.close()
    assert kills >= 1, "the run finished before it could be killed"
    assert not (out / "manifest.json").exists()
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "shards:" in done.stdout and "preview:" in done.stdout
    verify(out)
    listed = {p.name for p in shard_paths(out)}
    assert {p.name for p in out.glob("shard-*.tar")} == listed  # no stray or truncated shard
    assert _tars(out) == _tars(ref_out)
    assert load_manifest(out) == load_manifest(ref_out)
    assert (out / "preview.png").is_file()


def test_oversize_skip_and_downscale_are_reported(work: Path, formulas: Path, generator: Path):
    limit = HEIGHT * 96  # formulas wider than 96 px at height 32 are "oversize" here
    skipped = _synth(generator, max_pixels=limit, variants=1).run([formulas], work / "skip", rank=0, world_size=1)
    rejects = [json.loads(line) for line in (work / "skip" / "rejects.jsonl").read_text().splitlines()]
    oversize = [r for r in rejects if r["stage"] == "oversize"]
    assert oversize and all(r["reason"].startswith("oversize:") for r in oversize)
    for s in (s for p in shard_paths(work / "skip") for s in read_shard(p)):
        assert s.meta["size"][1] * HEIGHT <= limit

    shrunk = _synth(generator, max_pixels=limit, variants=1, oversize="downscale").run(
        [formulas], work / "downscale", rank=0, world_size=1
    )
    assert shrunk.downscaled == len(oversize)
    assert shrunk.samples_written == skipped.samples_written + len(oversize)
    manifest = load_manifest(work / "downscale")
    listed = [k for s in manifest["shards"] for k in s["stats"]["downscaled"]]
    assert sorted(listed) == sorted(r["key"] for r in oversize)
    assert manifest["oversize"]["policy"] == "downscale"
    for s in (s for p in shard_paths(work / "downscale") for s in read_shard(p)):
        h, w = decode_png(s.png).shape
        assert h == HEIGHT and w * h <= limit
        assert ("oversize" in s.meta) == (s.key in listed)


# ---- clear errors before any work ------------------------------------------------------
def _run_cli(args: list[str], capsys) -> tuple[int, str]:
    code = cli_main(["synthesize", *args])
    return code, capsys.readouterr().err


def test_a_generator_with_nan_weights_is_refused_before_any_work(tmp_path: Path, formulas: Path, capsys):
    """It used to synthesize all-black images with exit 0."""
    from formula_gan.models.generator import Generator
    from formula_gan.models.generator_io import save_generator

    broken = Generator(width=0.0625)
    with torch.no_grad():
        broken.out_conv.bias.fill_(float("nan"))  # a diverged training run
    save_generator(broken, tmp_path / "nan.pt", step=9, config={})
    code, err = _run_cli(_cli(formulas, tmp_path / "nan.pt", tmp_path / "out"), capsys)
    assert code == 2 and "nan.pt" in err and "NaN or infinite" in err and "Traceback" not in err
    assert not (tmp_path / "out").exists()


def test_missing_or_wrong_generator_file_is_a_clear_error(tmp_path: Path, formulas: Path, capsys):
    code, err = _run_cli(_cli(formulas, tmp_path / "nope.pt", tmp_path / "out"), capsys)
    assert code == 2 and "generator file not found" in err and "nope.pt" in err
    wrong = tmp_path / "wrong.pt"
    wrong.write_text("not a generator\n")
    code, err = _run_cli(_cli(formulas, wrong, tmp_path / "out"), capsys)
    assert code == 2 and "wrong.pt" in err and "Traceback" not in err
    other = tmp_path / "other.pt"
    torch.save({"format": "something-else", "weights": torch.zeros(3)}, other)
    code, err = _run_cli(_cli(formulas, other, tmp_path / "out"), capsys)
    assert code == 2 and "not a formula-gan generator file" in err
    assert not (tmp_path / "out").exists()  # nothing was started or written


def test_no_generator_asks_for_one_or_for_the_explicit_untrained_stand_in(tmp_path: Path, formulas: Path, capsys,
                                                                          monkeypatch):
    """An installation whose packaged generator is missing (a damaged or trimmed install)."""
    import formula_gan.synthesis.generation as generation

    monkeypatch.setattr(generation, "DEFAULT_GENERATOR", tmp_path / "weights" / "generator.pt")
    assert generation.default_generator() is None
    code, err = _run_cli(_cli(formulas, None, tmp_path / "out"), capsys)
    assert code == 2 and "--generator" in err and "--untrained-generator" in err
    assert not (tmp_path / "out").exists()


def test_without_generator_the_packaged_one_is_used(tmp_path: Path, formulas: Path, capsys):
    from formula_gan.synthesis.generation import DEFAULT_GENERATOR

    if not DEFAULT_GENERATOR.is_file():
        pytest.fail(f"the package ships {DEFAULT_GENERATOR}; it is missing from this checkout")
    code, err = _run_cli(_cli(formulas, None, tmp_path / "out"), capsys)
    assert code == 0, err
    manifest = load_manifest(tmp_path / "out")
    assert manifest["generator"]["sha256"] == sha256_file(DEFAULT_GENERATOR)
    assert not manifest["generator"].get("untrained")


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")
def test_missing_device_is_a_clear_error(tmp_path: Path, formulas: Path, generator: Path, capsys):
    args = _cli(formulas, generator, tmp_path / "out")
    args[args.index("--device") + 1] = "cuda"
    code, err = _run_cli(args, capsys)
    assert code == 2 and "no CUDA device" in err and "--device cpu" in err
    assert not (tmp_path / "out").exists()


def test_an_output_folder_of_another_job_is_refused_untouched(reference, formulas: Path, generator: Path, capsys):
    out, _ = reference
    before = {p.name: p.stat().st_mtime_ns for p in out.iterdir()}
    code, err = _run_cli(_cli(formulas, generator, out, "--seed", "7"), capsys)
    assert code == 2 and "holds a different job" in err and "seed" in err
    assert {p.name: p.stat().st_mtime_ns for p in out.iterdir()} == before


def test_untrained_generator_says_so_and_is_recorded(tmp_path: Path, capsys):
    small = tmp_path / "two.txt"
    small.write_text("x+1\n\\frac{1}{2}\n", encoding="utf-8")
    code = cli_main(["synthesize", str(small), "--method", "gan", "--untrained-generator", "--out", str(tmp_path / "u"), "--height",
                     str(HEIGHT), "--device", "cpu", "--render-workers", "1", "--no-progress"])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    assert "NOT handwriting" in captured.err
    manifest = load_manifest(tmp_path / "u")
    assert manifest["generator"]["untrained"] is True and manifest["num_samples"] == 2


def test_missing_browser_is_a_clear_error_before_any_work(tmp_path: Path, formulas: Path, generator: Path, capsys, monkeypatch):
    monkeypatch.setenv("FORMULA_GAN_CHROMIUM", str(tmp_path / "no-such-chromium"))
    code, err = _run_cli(_cli(formulas, generator, tmp_path / "out"), capsys)
    assert code == 2 and "no-such-chromium" in err
    assert not (tmp_path / "out").exists()


def test_a_bad_config_key_or_value_is_named_before_any_work(tmp_path: Path, formulas: Path, generator: Path, capsys):
    code, err = _run_cli(_cli(formulas, generator, tmp_path / "out", "--set", "style.font_sise=[20,30]"), capsys)
    assert code == 2 and "style.font_sise" in err
    cfg = tmp_path / "synth.yaml"
    cfg.write_text("gan:\n  oversize: squeeze\n")
    code, err = _run_cli(_cli(formulas, generator, tmp_path / "out", "--config", str(cfg)), capsys)
    assert code == 2 and "oversize" in err and "squeeze" in err
    assert not (tmp_path / "out").exists()


def test_two_inputs_of_one_name_are_refused(tmp_path: Path, formulas: Path, generator: Path, capsys):
    twin = tmp_path / "other" / formulas.name
    twin.parent.mkdir()
    twin.write_text("x+1\n")
    code, err = _run_cli([str(twin), *_cli(formulas, generator, tmp_path / "out")], capsys)
    assert code == 2 and "distinct name" in err
    assert not (tmp_path / "out").exists()
