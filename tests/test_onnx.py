"""ONNX export and the onnx engine: parity with torch, the files' checks, and the engine in use.

Parity: the generator's outputs equal torch's within ``onnx_generator.TOLERANCE`` (1e-4 of ink;
measured ~3e-6) on a fixed batch, which in 8-bit pixels is at most a rounding flip of one gray
level; the recognizer's greedy and beam readings are identical (tokens) on a fixed set of
images, with scores equal within 1e-4. Bad inputs: a file of the wrong kind, a modified file,
an opset the runtime cannot run, a step graph that is missing or of another export, and no
onnxruntime at all are each one line, with nothing written.

Skipped, with the reason, where onnx / onnxruntime are not installed (the extra
``formula-gan[onnx]``; scripts/setup.sh installs it, so CI runs these).
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image, ImageDraw, ImageFont

pytest.importorskip("onnx", reason="onnx is not installed: pip install 'formula-gan[onnx]'")
pytest.importorskip("onnxruntime", reason="onnxruntime is not installed: pip install 'formula-gan[onnx]'")

from formula_gan.cli import main  # noqa: E402
from formula_gan.errors import FormulaGanError  # noqa: E402
from formula_gan.models.generator import Generator  # noqa: E402
from formula_gan.models.generator_io import save_generator  # noqa: E402
from formula_gan.models.onnx_generator import TOLERANCE  # noqa: E402
from formula_gan.synthesis.generation import BatchRunner, load  # noqa: E402

CPU = torch.device("cpu")
PACKAGED_GENERATOR = Path(__file__).resolve().parents[1] / "formula_gan" / "weights" / "generator.pt"
PACKAGED_RECOGNIZER = Path(__file__).resolve().parents[1] / "formula_gan" / "weights" / "recognizer.pt"
# Strings the parity readings are made of: the tiny recognizer's training strings and others it
# never saw (its readings of those are unsure, so near-ties between tokens are likely there).
READ = ["12", "305", "7", "4+8", "96", "1-5", "0=2", "83", "5", "777", "2-9", "61+0", "48", "3=3"]


# ---- generator ------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def generators(tmp_path_factory) -> dict[str, Path]:
    """Tiny generators saved as export-generator saves them: the paper's (sigmoid, spectral norm)
    and one shaped like the packaged one (skips, residual, clamp)."""
    out = tmp_path_factory.mktemp("gens")
    torch.manual_seed(0)
    paper = Generator(width=0.0625)
    shipped_like = Generator(width=0.0625, z_dim=40, class_dim=32, skip=True, residual=True, output="clamp")
    with torch.no_grad():  # a residual G starts as the identity: give its last conv something to do
        shipped_like.out_conv.weight.normal_(0, 0.05)
    paths = {"paper": out / "paper.pt", "shipped-like": out / "shipped.pt"}
    save_generator(paper, paths["paper"], step=7, config={"test": "tiny"})
    save_generator(shipped_like, paths["shipped-like"], step=8, config={"data": {"height": 32, "frame": True}})
    return paths


def _batch(z_dim: int, height: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    x = (torch.rand(3, 1, height, 80, generator=g) > 0.8).float()  # ink strokes on paper
    return x, torch.ones(3, dtype=torch.long), torch.randn(3, z_dim, generator=g)


@pytest.mark.parametrize("name", ["paper", "shipped-like", "packaged"])
def test_generator_outputs_equal_torch_within_tolerance(name, generators, tmp_path):
    source = PACKAGED_GENERATOR if name == "packaged" else generators[name]
    if not source.is_file():
        pytest.skip(f"{source} is not in this installation")
    assert main(["export-generator", str(source), "--onnx", str(tmp_path / "g.onnx")]) == 0
    torch_gen = load(source, CPU)
    onnx_gen = load(tmp_path / "g.onnx", CPU, engine="onnx", threads=1)
    in_memory = load(source, CPU, engine="onnx", threads=1)  # a torch file converted at load, nothing written
    # the same contract and identity: samples name the same generator whichever engine made them
    assert onnx_gen.contract == torch_gen.contract and onnx_gen.identity() == torch_gen.identity() == in_memory.identity()
    x, domain, z = _batch(torch_gen.z_dim, int(torch_gen.contract["height"]))
    with torch.inference_mode():
        want = torch_gen.model(x, domain, z)
    for gen in (onnx_gen, in_memory):
        got = gen.model(x, domain, z)
        assert got.shape == want.shape and float((got - want).abs().max()) <= TOLERANCE
    # in 8-bit paper images: at most a rounding flip, on a handful of pixels
    papers = [np.full((int(torch_gen.contract["height"]), w), 255, dtype=np.uint8) for w in (40, 80, 13)]
    for p in papers:
        p[:, ::3] = 0
    a, b = BatchRunner(torch_gen).run(papers, [1, 2, 3], 80), BatchRunner(onnx_gen).run(papers, [1, 2, 3], 80)
    for x8, y8 in zip(a, b):
        assert x8.shape == y8.shape and np.abs(x8.astype(int) - y8).max() <= 1 and (x8 != y8).mean() < 0.01


def test_generator_export_from_a_training_checkpoint_needs_out(generators, tmp_path, capsys):
    """--onnx alone takes a generator file; a training checkpoint needs --out too (the torch file is
    what the ONNX file names as its generator); neither flag is an error."""
    assert main(["export-generator", str(generators["paper"])]) == 2
    assert "--out" in capsys.readouterr().err
    torch.save({"format": "formula-gan-gan-checkpoint"}, tmp_path / "ckpt.pt")
    assert main(["export-generator", str(tmp_path / "ckpt.pt"), "--onnx", str(tmp_path / "g.onnx")]) == 2
    err = capsys.readouterr().err
    assert "training checkpoint" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "g.onnx").exists()


# ---- recognizer -----------------------------------------------------------------------------
def _papers(strings: list[str], height: int) -> list[np.ndarray]:
    """Fixed pictures: strings drawn with PIL's font (as the tiny recognizer's data), at ``height``."""
    font = ImageFont.load_default()
    out = []
    for i, s in enumerate(strings):
        im = Image.new("L", (24 + 12 * len(s), 32), 255)
        ImageDraw.Draw(im).text((4 + i % 3, 8), " ".join(s), fill=0, font=font)
        w = max(16, round(im.width * height / 32))
        out.append(np.array(im.resize((w, height), Image.BILINEAR)))
    return out


@pytest.fixture(scope="module")
def onnx_recognizer(trained, tmp_path_factory) -> Path:
    from formula_gan.recognition.onnx import export_recognizer_onnx, step_path

    out = tmp_path_factory.mktemp("onnx-rec") / "rec.onnx"
    info = export_recognizer_onnx(trained / "best.pt", out)
    assert out.is_file() and step_path(out).is_file() and info["step_file"] == "rec.step.onnx"
    return out


@pytest.mark.parametrize("beam", [1, 3, 10])
def test_recognizer_readings_are_identical_greedy_and_beam(trained, onnx_recognizer, beam):
    from formula_gan.recognition import Recognizer

    torch_rec = Recognizer(trained / "best.pt", beam=beam, batch_size=4)
    papers = _papers(READ, torch_rec.height)
    want = torch_rec.read_arrays(papers)
    for source in (onnx_recognizer, trained / "best.pt"):  # an exported file, and a torch file converted in memory
        got = Recognizer(source, beam=beam, batch_size=4, engine="onnx", threads=1).read_arrays(papers)
        assert [r.tokens for r in got] == [r.tokens for r in want]
        assert all(abs(a.score - b.score) <= 1e-4 for a, b in zip(got, want))


@pytest.mark.parametrize("coverage", [True, False])
def test_random_recognizers_read_long_formulas_identically(coverage, tmp_path):
    """The tiny trained recognizer reads short strings; random weights read long, varied token
    sequences (up to max_len), so every step, coverage update and beam reordering is compared."""
    from formula_gan.config import load_config, to_dict
    from formula_gan.models.recognizer import RecognizerModel
    from formula_gan.recognition import Recognizer
    from formula_gan.recognition.config import RecognizerRunConfig

    cfg = load_config(RecognizerRunConfig, Path(__file__).resolve().parents[1] / "configs/recognizer/tiny.yaml",
                      [f"model.coverage={str(coverage).lower()}", "model.max_len=40"])
    vocab = [str(d) for d in range(10)] + ["+", "-", "=", "x", "y", "\\frac", "{", "}"]
    torch.manual_seed(1)
    model = RecognizerModel(4 + len(vocab), cfg.model).eval()
    with torch.no_grad():  # at its initial scale the output hardly depends on the image: make it
        for p in model.parameters():
            if p.dim() > 1:
                p.mul_(4.0)
    ckpt = {"kind": "formula-gan-recognizer/1", "model": model.state_dict(), "config": to_dict(cfg), "vocab": vocab, "step": 0}
    torch.save(ckpt, tmp_path / "random.pt")
    papers = _papers(READ, cfg.data.height)
    for beam in (1, 5):
        want = Recognizer(tmp_path / "random.pt", beam=beam, batch_size=4).read_arrays(papers)
        got = Recognizer(tmp_path / "random.pt", beam=beam, batch_size=4, engine="onnx", threads=1).read_arrays(papers)
        assert [r.tokens for r in got] == [r.tokens for r in want]
        assert all(abs(a.score - b.score) <= 1e-4 for a, b in zip(got, want))
        assert len({" ".join(r.tokens) for r in want}) > 1 and max(len(r.tokens) for r in want) > 10  # not trivial


def test_packaged_recognizer_reads_alike_with_either_engine():
    from formula_gan.recognition import Recognizer

    if not PACKAGED_RECOGNIZER.is_file():
        pytest.skip("no packaged recognizer in this installation")
    papers = _papers(["x+1", "27", "a=b", "3-4", "y=2x", "10", "(a)", "b-c"], 64)
    for beam in (1, 10):
        want = Recognizer(beam=beam).read_arrays(papers)
        got = Recognizer(beam=beam, engine="onnx", threads=1).read_arrays(papers)
        assert [r.tokens for r in got] == [r.tokens for r in want]


def test_recognize_cli_engine_onnx_reads_as_torch(trained, tmp_path, capsys):
    """export-recognizer --onnx, then recognize --engine onnx on PNG files: the same lines as torch."""
    from formula_gan.recognition import Recognizer

    height = Recognizer(trained / "best.pt").height
    for i, paper in enumerate(_papers(READ[:6], height)):
        Image.fromarray(paper).save(tmp_path / f"p{i}.png")
    assert main(["export-recognizer", str(trained / "best.pt"), "--onnx", str(tmp_path / "r.onnx")]) == 0
    assert (tmp_path / "r.onnx").is_file() and (tmp_path / "r.step.onnx").is_file()
    capsys.readouterr()
    assert main(["recognize", str(tmp_path), "--recognizer", str(trained / "best.pt"), "--beam", "3"]) == 0
    want = capsys.readouterr().out
    assert main(["recognize", str(tmp_path), "--recognizer", str(tmp_path / "r.onnx"), "--beam", "3",
                 "--engine", "onnx"]) == 0
    assert capsys.readouterr().out == want and len(want.splitlines()) == 6


def test_export_recognizer_needs_somewhere_to_write(trained, tmp_path, capsys):
    assert main(["export-recognizer", str(trained / "best.pt")]) == 2
    assert "give --out FILE, --onnx FILE or both" in capsys.readouterr().err
    assert not list(tmp_path.iterdir())


def test_the_files_carry_the_torch_contract(trained, onnx_recognizer, generators, tmp_path):
    from formula_gan.models.onnx_files import read_onnx
    from formula_gan.recognition.files import load_recognizer

    loaded = load_recognizer(trained / "best.pt")
    enc = read_onnx(onnx_recognizer, ("recognizer-encoder",))
    assert enc.meta["vocab"] == list(loaded.vocab.tokens) and enc.meta["height"] == loaded.height
    assert enc.meta["stride"] == loaded.model.encoder.stride and enc.meta["step"] == loaded.step
    assert main(["export-generator", str(generators["paper"]), "--onnx", str(tmp_path / "g.onnx")]) == 0
    gen = read_onnx(tmp_path / "g.onnx", ("generator",))
    assert gen.meta["contract"] == load(generators["paper"], CPU).contract and gen.meta["step"] == 7


# ---- bad inputs: one line each, nothing written -------------------------------------------
def _one_line(err: BaseException | str) -> str:
    text = str(err)
    assert "\n" not in text.strip() and "Traceback" not in text
    return text


def test_a_file_of_the_wrong_kind_is_refused_by_name(generators, onnx_recognizer, tmp_path):
    from formula_gan.recognition import Recognizer
    from formula_gan.recognition.onnx import step_path

    assert main(["export-generator", str(generators["paper"]), "--onnx", str(tmp_path / "g.onnx")]) == 0
    with pytest.raises(FormulaGanError) as err:
        Recognizer(tmp_path / "g.onnx", engine="onnx")
    assert "holds a generator, not a recognizer" in _one_line(err.value)
    with pytest.raises(FormulaGanError) as err:
        Recognizer(step_path(onnx_recognizer), engine="onnx")
    assert "step graph" in _one_line(err.value) and "encoder file" in str(err.value)
    with pytest.raises(FormulaGanError) as err:
        load(onnx_recognizer, CPU, engine="onnx")
    assert "holds a recognizer" in _one_line(err.value) and "not a generator" in str(err.value)
    with pytest.raises(FormulaGanError) as err:  # an ONNX file to the torch engine: says which engine
        load(tmp_path / "g.onnx", CPU)
    assert "--engine onnx" in _one_line(err.value)
    with pytest.raises(FormulaGanError) as err:
        Recognizer(onnx_recognizer)
    assert "--engine onnx" in _one_line(err.value)
    (tmp_path / "junk.onnx").write_bytes(b"\x08\x07 this is not a model")
    with pytest.raises(FormulaGanError) as err:
        load(tmp_path / "junk.onnx", CPU, engine="onnx")
    assert "junk.onnx" in _one_line(err.value)


def _rewrite(src: Path, dst: Path, change) -> Path:
    import onnx

    model = onnx.load(str(src))
    change(model)
    onnx.save(model, str(dst))
    return dst


def test_a_modified_file_fails_its_checksum(generators, onnx_recognizer, tmp_path):
    from onnx import numpy_helper

    from formula_gan.recognition import Recognizer

    def flip(model):  # one weight changed, as a bad copy or an edit would
        t = max(model.graph.initializer, key=lambda t: int(np.prod(t.dims)))
        a = numpy_helper.to_array(t).copy()
        a.flat[0] += 1.0
        t.CopyFrom(numpy_helper.from_array(a, t.name))

    assert main(["export-generator", str(generators["paper"]), "--onnx", str(tmp_path / "g.onnx")]) == 0
    with pytest.raises(FormulaGanError) as err:
        load(_rewrite(tmp_path / "g.onnx", tmp_path / "bad.onnx", flip), CPU, engine="onnx")
    assert "do not match their checksum" in _one_line(err.value)
    bad = _rewrite(onnx_recognizer, tmp_path / "rec.onnx", flip)
    _rewrite(onnx_recognizer.with_name("rec.step.onnx"), tmp_path / "rec.step.onnx", lambda m: None)
    with pytest.raises(FormulaGanError) as err:
        Recognizer(bad, engine="onnx")
    assert "checksum" in _one_line(err.value)


def test_a_step_graph_missing_or_of_another_export_is_refused(trained, onnx_recognizer, tmp_path):
    import shutil

    from formula_gan.recognition import Recognizer
    from formula_gan.recognition.onnx import export_recognizer_onnx

    shutil.copy(onnx_recognizer, tmp_path / "rec.onnx")
    with pytest.raises(FormulaGanError) as err:
        Recognizer(tmp_path / "rec.onnx", engine="onnx")
    assert "is missing" in _one_line(err.value)
    # the step graph of another export (other weights) beside it
    ckpt = torch.load(trained / "best.pt", weights_only=True)
    ckpt["model"]["decoder.out.3.bias"] += 0.5
    ckpt.pop("weights_sha256", None)
    torch.save(ckpt, tmp_path / "other.pt")
    export_recognizer_onnx(tmp_path / "other.pt", tmp_path / "other.onnx")
    shutil.copy(tmp_path / "other.step.onnx", tmp_path / "rec.step.onnx")
    with pytest.raises(FormulaGanError) as err:
        Recognizer(tmp_path / "rec.onnx", engine="onnx")
    assert "not the step graph exported with" in _one_line(err.value)


def test_an_opset_the_runtime_cannot_run_is_one_line(generators, tmp_path):
    def newer(model):
        for o in model.opset_import:
            if o.domain in ("", "ai.onnx"):
                o.version = 99

    assert main(["export-generator", str(generators["paper"]), "--onnx", str(tmp_path / "g.onnx")]) == 0
    with pytest.raises(FormulaGanError) as err:
        load(_rewrite(tmp_path / "g.onnx", tmp_path / "new.onnx", newer), CPU, engine="onnx")
    assert "opset 99" in _one_line(err.value) and "onnxruntime" in str(err.value)


def test_without_onnxruntime_the_engine_says_how_to_get_it(generators, trained, tmp_path, monkeypatch, capsys):
    """A fault that cannot be caused otherwise here: the import alone is made to fail."""
    from formula_gan.recognition import Recognizer

    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # `import onnxruntime` raises ImportError
    with pytest.raises(FormulaGanError) as err:
        load(generators["paper"], CPU, engine="onnx")
    assert "pip install 'formula-gan[onnx]'" in _one_line(err.value)
    with pytest.raises(FormulaGanError) as err:
        Recognizer(trained / "best.pt", engine="onnx")
    assert "onnxruntime" in _one_line(err.value) and "formula-gan[onnx]" in str(err.value)
    assert main(["export-generator", str(generators["paper"]), "--onnx", str(tmp_path / "g.onnx")]) == 2
    err_text = capsys.readouterr().err
    assert "formula-gan[onnx]" in err_text and len(err_text.strip().splitlines()) == 1
    assert not (tmp_path / "g.onnx").exists()


# ---- synthesize --engine onnx end to end -------------------------------------------------
FORMULAS = ["x^2 + y^2 = z^2", "\\frac{a}{b}", "\\sqrt{2}", "a_{n+1} = a_n + 1", "\\sum_{i=1}^{n} i"]


@pytest.mark.browser
def test_synthesize_with_the_onnx_engine_matches_torch(generators, tmp_path, capsys):
    from katex_render.browser import find_chromium
    from katex_render.errors import KatexRenderError

    try:
        find_chromium()
    except KatexRenderError as err:
        pytest.skip(f"no Chromium: {err}")
    from formula_gan.data.png import decode_png
    from formula_gan.data.shards import read_shard

    formulas = tmp_path / "f.txt"
    formulas.write_text("\n".join(FORMULAS) + "\n", encoding="utf-8")
    common = [str(formulas), "--method", "gan", "--height", "32", "--samples-per-shard", "3", "--batch-size", "4",
              "--render-workers", "1", "--no-progress"]
    gen = ["--generator", str(generators["paper"])]
    assert main(["synthesize", *common, *gen, "--out", str(tmp_path / "torch")]) == 0
    assert main(["synthesize", *common, *gen, "--engine", "onnx", "--out", str(tmp_path / "onnx")]) == 0

    def samples(d: Path) -> dict:
        return {s.key: s for p in sorted(d.glob("shard-*.tar")) for s in read_shard(p)}

    a, b = samples(tmp_path / "torch"), samples(tmp_path / "onnx")
    assert set(a) == set(b) and len(a) == len(FORMULAS)
    for key in a:
        assert a[key].meta == b[key].meta  # same generator identity, seeds, style: the engine is speed only
        x, y = decode_png(a[key].png).astype(int), decode_png(b[key].png).astype(int)
        assert x.shape == y.shape and np.abs(x - y).max() <= 1
    # an ONNX generator file works the same, and a job made with torch resumes with onnx (same job)
    assert main(["export-generator", str(generators["paper"]), "--onnx", str(tmp_path / "g.onnx")]) == 0
    assert main(["synthesize", *common, "--generator", str(tmp_path / "g.onnx"), "--engine", "onnx",
                 "--out", str(tmp_path / "torch")]) == 0
    capsys.readouterr()
    # bad inputs before any work: a recognizer's graph as the generator, an ONNX file without the engine,
    # the engine for a method that runs no generator
    assert main(["synthesize", *common, "--generator", str(tmp_path / "g.onnx"), "--out", str(tmp_path / "x")]) == 2
    assert "--engine onnx" in capsys.readouterr().err
    assert main(["synthesize", str(formulas), "--engine", "onnx", "--out", str(tmp_path / "x")]) == 2
    assert "not used by method 'stitch'" in capsys.readouterr().err
    assert not (tmp_path / "x").exists()
