"""formula-gan render / prepare-formulas end to end: real KaTeX, real Chromium, real shards
read back with webdataset; determinism, resume, rejects."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from formula_gan.cli import main
from formula_gan.data.jobs import load_manifest, shard_paths, verify
from formula_gan.data.render_job import derive_seed, sample_key
from test_render import require_browser

pytestmark = pytest.mark.browser

GOOD = [
    r"\frac{1}{2}", r"x^2+y^2=z^2", r"\sqrt{a+b}", r"\sum_{i=1}^{n} i", r"\alpha+\beta",
    r"\int_0^1 f(x)dx", r"a_{n+1}=a_n+d", r"\lim_{x\to0}\frac{\sin x}{x}", r"e^{i\pi}+1=0", r"\frac{a}{b}-c",
    r"\begin{matrix} a & b \\ c & d \end{matrix}", r"x \leq y",
]
BAD = {
    13: r"\undefinedmacro{x}",   # KaTeX parse error
    14: "",                       # blank line
    15: r"x^{",                   # unbalanced group
}
LONG = " + ".join(f"x_{{{i}}}" for i in range(40))  # many tokens and very wide
WIDE = "a+b+c+d+e+f+g+h+i+j+k+l"  # few tokens, but wider than 400 px at height 128
LINES = GOOD + [BAD[13], BAD[14], BAD[15], LONG, WIDE]


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("corpus") / "formulas.txt"
    path.write_text("\n".join(LINES) + "\n", encoding="utf-8")
    return path


def _render(corpus: Path, out: Path, *extra: str) -> int:
    return main(["render", str(corpus), "--out", str(out), "--workers", "1", "--shard-size", "5",
                 "--no-progress", *extra, "renderer.batch_size=16"])


def _read_back(out: Path) -> list[dict]:
    import webdataset as wds

    ds = wds.WebDataset([str(p) for p in shard_paths(out)], shardshuffle=False)
    return [{"key": s["__key__"], "png": s["png"], "meta": json.loads(s["json"])} for s in ds]


def _checksums(out: Path) -> list[tuple[str, str]]:
    return [(s["name"], s["sha256"]) for s in load_manifest(out)["shards"]]


@pytest.fixture(scope="module")
def rendered(corpus, tmp_path_factory) -> Path:
    require_browser()
    out = tmp_path_factory.mktemp("render") / "out"
    assert _render(corpus, out, "--variants", "2", "--seed", "7") == 0
    return out


def test_render_writes_the_sample_schema(rendered, corpus, capsys):
    samples = _read_back(rendered)
    manifest = load_manifest(rendered)
    verify(rendered)
    accepted = len(GOOD) + 2  # LONG and WIDE render in `render` (no filters)
    assert len(samples) == manifest["num_samples"] == 2 * accepted
    assert manifest["num_rejected"] == len(BAD)
    assert manifest["domain"] == "rendered"
    assert manifest["num_items"] == 2 * accepted + len(BAD)
    keys = set()
    for s in samples:
        meta = s["meta"]
        assert set(meta) >= {"latex", "tokens", "source", "domain", "style", "seed"}
        assert meta["domain"] == "rendered"
        assert meta["source"].startswith("formulas.txt:")
        line = int(meta["source"].split(":")[1])
        assert meta["latex"] == LINES[line - 1]
        assert s["key"] == sample_key(meta["source"], meta["latex"], meta["variant"])
        assert meta["seed"] == derive_seed(7, meta["source"], meta["latex"], meta["variant"])
        assert set(meta["style"]) == {"font", "font_size", "padding"}
        assert 16 <= meta["style"]["font_size"] <= 50 and 0 <= meta["style"]["padding"] <= 15
        assert set(meta["tokens"].split()) <= set(manifest["vocab"])
        with Image.open(io.BytesIO(s["png"])) as img:
            assert img.mode == "L" and img.format == "PNG"
            pixels = np.asarray(img)
        assert pixels.min() < 80 and np.median(pixels) == 255
        keys.add(s["key"])
    assert len(keys) == len(samples)
    # variants of one formula differ in style
    by_formula: dict[str, set] = {}
    for s in samples:
        by_formula.setdefault(s["meta"]["source"], set()).add(json.dumps(s["meta"]["style"], sort_keys=True))
    assert sum(len(v) == 2 for v in by_formula.values()) >= accepted - 1


def test_rejects_report_names_line_input_and_reason(rendered):
    records = [json.loads(line) for line in (rendered / "rejects.jsonl").read_text(encoding="utf-8").splitlines()]
    assert [r["line"] for r in records] == sorted(BAD)
    for r in records:
        assert set(r) >= {"source", "line", "input", "reason"}
        assert r["input"] == BAD[r["line"]] and r["reason"]
    reasons = {r["line"]: r["reason"] for r in records}
    assert "Undefined control sequence" in reasons[13]
    assert "blank" in reasons[14]
    assert sum(load_manifest(rendered)["reject_reasons"].values()) == len(BAD)


def test_same_seed_gives_byte_identical_shards(rendered, corpus, tmp_path):
    again = tmp_path / "again"
    assert _render(corpus, again, "--variants", "2", "--seed", "7") == 0
    assert _checksums(again) == _checksums(rendered)
    assert (again / "rejects.jsonl").read_bytes() == (rendered / "rejects.jsonl").read_bytes()


def test_seeds_decide_styles_and_keys_do_not_depend_on_them():
    from katex_render.styles import StyleConfig, sample_style

    seeds = {derive_seed(s, "f.txt:1", "x^2", 0) for s in range(50)}
    assert len(seeds) == 50 and all(0 <= s < 2**63 for s in seeds)
    assert len({sample_style(StyleConfig(), s) for s in seeds}) > 40
    assert derive_seed(7, "f.txt:1", "x^2", 0) != derive_seed(7, "f.txt:1", "x^2", 1)
    assert derive_seed(7, "f.txt:1", "x^2", 0) != derive_seed(7, "f.txt:2", "x^2", 0)
    assert sample_key("f.txt:1", "x^2", 3) == sample_key("f.txt:1", "x^2", 3)
    assert sample_key("f.txt:1", "x^2", 3).endswith("-v3") and "." not in sample_key("a.b:1", "x.y", 0)


def test_resume_rewrites_only_missing_shards_identically(rendered, corpus, tmp_path, capsys):
    import shutil

    out = tmp_path / "resumed"
    shutil.copytree(rendered, out)
    (out / "shard-000002.tar").unlink()
    (out / "shard-000002.json").unlink()
    (out / "manifest.json").unlink()
    capsys.readouterr()
    assert _render(corpus, out, "--variants", "2", "--seed", "7") == 0
    line = capsys.readouterr().out
    assert "1 shards written" in line and str(out) in line
    assert _checksums(out) == _checksums(rendered)
    verify(out)
    # a finished job: nothing to do, nothing rewritten
    before = {p.name: p.stat().st_mtime_ns for p in out.glob("shard-*")}
    assert _render(corpus, out, "--variants", "2", "--seed", "7") == 0
    assert "0 shards written" in capsys.readouterr().out
    assert {p.name: p.stat().st_mtime_ns for p in out.glob("shard-*")} == before


def test_a_rerun_redoes_a_damaged_shard(rendered, corpus, tmp_path, capsys):
    """A shard with a flipped byte was kept by the rerun, which exited 0 over a damaged set."""
    import shutil

    out = tmp_path / "damaged"
    shutil.copytree(rendered, out)
    data = bytearray((out / "shard-000001.tar").read_bytes())
    data[data.index(b'"latex": "') + 11] ^= 0x01  # a label's character: same size, another sha256
    (out / "shard-000001.tar").write_bytes(bytes(data))
    capsys.readouterr()
    assert _render(corpus, out, "--variants", "2", "--seed", "7") == 0
    captured = capsys.readouterr()
    [line] = captured.err.strip().splitlines()
    assert line == f"{out / 'shard-000001.tar'}: sha256 differs from its sidecar's (modified or corrupt); the shard is done again"
    assert "1 shards written" in captured.out
    assert _checksums(out) == _checksums(rendered)
    assert (out / "shard-000001.tar").read_bytes() == (rendered / "shard-000001.tar").read_bytes()


def test_rerun_with_other_settings_into_the_same_folder_is_refused(rendered, corpus, capsys):
    assert _render(corpus, rendered, "--variants", "3", "--seed", "7") == 2
    assert "different job" in capsys.readouterr().err


def test_prepare_formulas_applies_the_paper_filters(corpus, rendered, tmp_path):
    out = tmp_path / "prepared"
    code = main(["prepare-formulas", str(corpus), "--out", str(out), "--workers", "1", "--no-progress",
                 "--max-tokens", "30", "--max-width", "400", "--vocab", str(rendered), "renderer.batch_size=16"])
    assert code == 0
    manifest = load_manifest(out)
    records = [json.loads(line) for line in (out / "rejects.jsonl").read_text(encoding="utf-8").splitlines()]
    reasons = {r["line"]: r["reason"] for r in records}
    assert reasons[LINES.index(LONG) + 1].startswith("too many tokens")
    assert reasons[LINES.index(WIDE) + 1].startswith("too wide")
    for s in _read_back(out):
        with Image.open(io.BytesIO(s["png"])) as img:
            assert img.width * 128 / img.height <= 400
    assert manifest["num_samples"] + len(records) == len(LINES)
    assert manifest["filters"] == {"vocab": str(rendered), "max_tokens": 30, "max_width": 400, "height": 128}


def test_bad_arguments_are_one_line_errors(corpus, tmp_path, capsys):
    assert main(["render", str(tmp_path / "missing.txt"), "--out", str(tmp_path / "o")]) == 2
    assert "not found" in capsys.readouterr().err
    assert main(["render", str(corpus), "--out", str(tmp_path / "o"), "renderer.nope=1"]) == 2
    assert "renderer.nope" in capsys.readouterr().err
    assert main(["render", str(corpus), "--out", str(tmp_path / "o"), "--variants", "0"]) == 2
    assert "--variants" in capsys.readouterr().err


def test_prepare_formulas_renders_the_labels_of_a_crohme_folder(crohme_dir, tmp_path):
    """A folder of InkML files is read as its truth labels: the rendered domain paired with the handwriting."""
    require_browser()
    inkml = tmp_path / "inkml"
    inkml.mkdir()
    files = sorted((crohme_dir / "test2014").glob("*.inkml"))[:6]
    for f in files:
        (inkml / f.name).write_bytes(f.read_bytes())
    (inkml / "broken.inkml").write_text("<ink><trace>1 2,</ink")  # not well-formed: a reject, not a crash
    out = tmp_path / "out"
    assert main(["prepare-formulas", str(inkml), "--out", str(out), "--workers", "1", "--no-progress",
                 "--max-width", "100000", "--max-tokens", "200", "renderer.batch_size=16"]) == 0
    manifest = load_manifest(out)
    assert manifest["num_samples"] + manifest["num_rejected"] == len(files) + 1
    rejects = [json.loads(line) for line in (out / "rejects.jsonl").read_text().splitlines()]
    assert any(r["source"].startswith("broken.inkml") for r in rejects)
    samples = _read_back(out)
    assert {s["meta"]["source"].split(":")[0] for s in samples} <= {f.name for f in files}
    assert len(samples) >= len(files) - 1  # CROHME test labels almost all parse


def test_settings_that_would_reject_everything_are_errors_before_any_work(corpus, tmp_path, capsys):
    """renderer.timeout_s=-1 rejected every formula as timed out with exit 0, and the folder then
    counted as complete; --workers 0 left job.json and a traceback."""
    for args, message in ((["renderer.timeout_s=-1"], "timeout_s must be in 0.001..86400, got -1.0"),
                          (["renderer.max_pixels=0"], "max_pixels must be in 1..1000000000, got 0"),
                          (["--workers", "0"], "argument --workers: must be at least 1, got 0"),
                          (["--shard-size", "-3"], "argument --shard-size: must be at least 1, got -3")):
        assert _render(corpus, tmp_path / "o", *args) == 2
        err = capsys.readouterr().err
        assert message in err and "Traceback" not in err, err
    assert not (tmp_path / "o").exists()
    (tmp_path / "file").write_text("not a folder")
    assert _render(corpus, tmp_path / "file") == 2
    assert "is a file, not a folder" in capsys.readouterr().err
    assert (tmp_path / "file").read_text() == "not a folder"


def test_timed_out_shards_are_retried_by_the_rerun(tmp_path, capsys):
    """Timeouts depend on the machine's load, not on the formula, and are no part of the job's
    identity: a shard with timeout rejects is redone by the next run instead of being final."""
    corpus = tmp_path / "three.txt"
    corpus.write_text("x^2\n\\frac{a}{b}\n\\sqrt{2}\n", encoding="utf-8")
    out = tmp_path / "out"

    def render(*extra: str) -> int:
        return main(["render", str(corpus), "--out", str(out), "--workers", "1", "--shard-size", "2", "--no-progress",
                     *extra])

    assert render("renderer.timeout_s=0.001", "renderer.per_formula_timeout_s=0", "renderer.max_retries=0") == 0
    records = [json.loads(line) for line in (out / "rejects.jsonl").read_text().splitlines()]
    assert len(records) == 3 and all(r["reason"].startswith("render: timed out") and r["retryable"] for r in records)
    capsys.readouterr()
    assert render() == 0  # an unloaded machine: the same job, the default time budget
    assert "2 shards written, 0 already complete" in capsys.readouterr().out
    manifest = load_manifest(out)
    assert manifest["num_samples"] == 3 and manifest["num_rejected"] == 0
    verify(out)
    assert (out / "rejects.jsonl").read_text() == ""
    assert render() == 0  # nothing retryable left: complete
    assert "0 shards written, 2 already complete" in capsys.readouterr().out


def test_a_line_nested_too_deep_is_a_reject_and_the_job_completes(tmp_path):
    """It used to be a RecursionError that left a folder holding only job.json."""
    corpus = tmp_path / "deep.jsonl"
    corpus.write_bytes(b'{"latex": "x^2"}\n' + b"[" * 100_000 + b"\n" + b'{"latex": "y^2"}\n')
    out = tmp_path / "out"
    assert main(["render", str(corpus), "--out", str(out), "--workers", "1", "--no-progress"]) == 0
    manifest = load_manifest(out)
    assert manifest["num_samples"] == 2 and manifest["num_rejected"] == 1
    [record] = [json.loads(line) for line in (out / "rejects.jsonl").read_text().splitlines()]
    assert record["line"] == 2 and record["reason"] == "bad JSON: nested too deep"
