"""`formula-gan recognize` and the Recognizer API: pictures (clean, photo-like JPEG), InkML, bad files."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image, ImageFilter

from formula_gan.cli import main
from formula_gan.data.images import decode_png
from formula_gan.data.jobs import shard_paths
from formula_gan.data.shards import read_shard
from formula_gan.data.inkml import Ink
from formula_gan.data.rasterize import RasterConfig, rasterize
from formula_gan.errors import FormulaGanError
from formula_gan.recognition import Recognizer, export_recognizer
from formula_gan.recognition.preprocess import prepare_file, prepare_picture

INKML = """<ink xmlns="http://www.w3.org/2003/InkML">
<annotation type="truth">$1-1$</annotation>
<trace id="0">0 0, 0 10, 0 20</trace>
<trace id="1">5 10, 15 10</trace>
<trace id="2">20 0, 20 10, 20 20</trace>
</ink>"""


def a_formula_picture() -> np.ndarray:
    """A handwritten-looking formula (a fraction over a curve, with a superscript) rasterized as the
    training data is: uint8 paper, 128 px high, the training pen."""
    t = np.linspace(0, 2 * np.pi, 40)
    strokes = [
        np.stack([10 + 8 * np.cos(t), 10 + 8 * np.sin(t)], 1),  # an "o"
        np.array([[25.0, 2], [25, 18]]),  # a "1"
        np.array([[0.0, 24], [60, 24]]),  # the fraction bar
        np.stack([5 + 50 * t / (2 * np.pi), 38 + 7 * np.sin(2 * t)], 1),  # a wave under it
        np.array([[62.0, 20], [66, 14], [70, 20]]),  # a small "^" up right
    ]
    ink = Ink(strokes=strokes, truth="", source="test")
    return rasterize(ink, RasterConfig(normalize="height128"))[0]


def photo_like(paper: np.ndarray, seed: int = 0, marker: int = 3) -> bytes:
    """The same ink as a phone photo would give it: 5x larger (``marker`` > 3: a thicker pen), on grey
    paper lit from one side, with sensor noise and a wide border, JPEG-compressed, in colour."""
    rng = np.random.default_rng(seed)
    h, w = paper.shape
    big = Image.fromarray(paper).resize((w * 3, h * 3), Image.BICUBIC).filter(ImageFilter.MinFilter(marker))
    ink = 1.0 - np.asarray(big, dtype=np.float32) / 255.0  # [H, W] 1 = ink
    H, W = ink.shape
    canvas = np.zeros((H + 160, W + 240), dtype=np.float32)
    canvas[80 : 80 + H, 120 : 120 + W] = ink
    light = np.linspace(0.55, 0.9, canvas.shape[1])[None, :] * np.ones((canvas.shape[0], 1))  # shadow on the left
    gray = light * (1.0 - 0.8 * canvas) + rng.normal(0, 0.02, canvas.shape)
    rgb = np.stack([gray * 0.95, gray, gray * 0.9], axis=-1)
    img = Image.fromarray(np.clip(rgb * 255, 0, 255).astype(np.uint8), "RGB")
    buf = io.BytesIO()
    img.save(buf, "JPEG", quality=70)
    return buf.getvalue()


def _blurred(paper: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Ink [h, w] of ``paper`` resized to ``shape`` and blurred by 1 px: compares strokes, forgives 1-px shifts."""
    img = Image.fromarray(paper).resize(shape[::-1], Image.BILINEAR).filter(ImageFilter.GaussianBlur(1))
    return 1.0 - np.asarray(img, dtype=np.float32) / 255.0


def test_a_photo_is_prepared_like_the_clean_image():
    clean = a_formula_picture()
    a = prepare_picture(png_bytes(clean), 64)
    b = prepare_picture(photo_like(clean), 64)
    assert a.shape[0] == b.shape[0] == 64
    assert abs(a.shape[1] - b.shape[1]) <= 6, (a.shape, b.shape)  # the same crop: the border and shadow are gone
    ia, ib = _blurred(a, a.shape), _blurred(b, a.shape)
    assert ib[ia < 0.02].mean() < 0.03  # paper away from the strokes stays paper under the shadow and the noise
    corr = np.corrcoef(ia.ravel(), ib.ravel())[0, 1]
    assert corr > 0.9, corr  # the same strokes in the same places (measured 0.997)
    # the raw photo, only scaled to the same size, is nothing like it: the preparation is what does it
    raw = np.asarray(Image.open(io.BytesIO(photo_like(clean))).convert("L"))
    assert np.corrcoef(ia.ravel(), _blurred(raw, a.shape).ravel())[0, 1] < 0.5  # measured 0.25


def test_a_thick_marker_is_thinned_to_the_training_pen():
    from formula_gan.recognition.preprocess import stroke_width

    clean = prepare_picture(png_bytes(a_formula_picture()), 64)
    marker = prepare_picture(photo_like(a_formula_picture(), marker=15), 64)
    unmatched = Image.open(io.BytesIO(photo_like(a_formula_picture(), marker=15)))
    assert stroke_width(marker) < 1.5 * stroke_width(clean), (stroke_width(marker), stroke_width(clean))
    assert abs(marker.shape[1] - clean.shape[1]) <= 6
    assert unmatched.size[0] > 0  # (the photo itself decodes)


def png_bytes(paper: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(paper).save(buf, "PNG")
    return buf.getvalue()


def test_bad_pictures_are_clear_errors(tmp_path):
    blank = tmp_path / "blank.png"
    Image.new("L", (200, 80), 240).save(blank)
    with pytest.raises(FormulaGanError, match="no ink"):
        prepare_file(blank, 32)
    corrupt = tmp_path / "corrupt.jpg"
    corrupt.write_bytes(b"\xff\xd8\xff\xe0 this is not a JPEG")
    with pytest.raises(FormulaGanError, match="not a readable image"):
        prepare_file(corrupt, 32)
    with pytest.raises(FormulaGanError, match="no such file"):
        prepare_file(tmp_path / "missing.png", 32)
    bad_ink = tmp_path / "bad.inkml"
    bad_ink.write_text("<ink><trace>1 2,", encoding="utf-8")
    with pytest.raises(FormulaGanError):
        prepare_file(bad_ink, 32)


@pytest.fixture(scope="module")
def exported(trained, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("rec") / "recognizer.pt"
    info = export_recognizer(trained / "best.pt", out)
    assert set(info) >= {"weights_sha256", "config", "vocab", "step"} and "model" not in info
    return out


def test_export_is_small_checked_and_reads_like_the_checkpoint(trained, exported, tmp_path):
    assert exported.stat().st_size < (trained / "best.pt").stat().st_size  # no optimizer state
    png = tmp_path / "f.png"
    png.write_bytes(png_bytes(a_formula_picture()))
    a = Recognizer(trained / "best.pt", beam=3).read_file(png)
    b = Recognizer(exported, beam=3).read_file(png)
    assert (a.tokens, a.score) == (b.tokens, b.score)
    # one flipped weight is caught by the checksum, not read silently
    ckpt = torch.load(exported, weights_only=True)
    name = next(k for k, v in ckpt["model"].items() if v.dtype == torch.float32 and v.numel() > 10)
    ckpt["model"][name].view(-1)[3] += 1.0
    damaged = tmp_path / "damaged.pt"
    torch.save(ckpt, damaged)
    with pytest.raises(FormulaGanError, match="checksum"):
        Recognizer(damaged)


def test_recognize_cli_one_line_per_input_and_errors_per_file(exported, tmp_path, capsys):
    clean = a_formula_picture()
    files = [tmp_path / "clean.png", tmp_path / "photo.jpg", tmp_path / "ink.inkml", tmp_path / "corrupt.png",
             tmp_path / "missing.png"]  # fmt: skip
    files[0].write_bytes(png_bytes(clean))
    files[1].write_bytes(photo_like(clean))
    files[2].write_text(INKML, encoding="utf-8")
    files[3].write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    rc = main(["recognize", "--recognizer", str(exported), "--beam", "2", *map(str, files)])
    out, err = capsys.readouterr()
    assert rc == 1  # some files failed
    lines = out.strip().splitlines()
    assert [line.split("\t")[0] for line in lines] == [str(f) for f in files[:3]]  # in input order
    assert all(len(line.split("\t")) == 2 for line in lines)
    assert "corrupt.png: not a readable image" in err and "missing.png: no such file" in err

    rc = main(["recognize", "--recognizer", str(exported), "--json", str(files[0]), str(files[3])])
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert rc == 1 and [r["source"] for r in rows] == [str(files[0]), str(files[3])]
    assert rows[0]["error"] is None and isinstance(rows[0]["latex"], str) and rows[0]["tokens"] is not None
    assert rows[1]["latex"] is None and "not a readable image" in rows[1]["error"]
    # the API gives what the command printed
    api = Recognizer(exported, beam=10).read_file(files[0])
    assert api.latex == rows[0]["latex"]


def test_recognize_refuses_bad_settings(exported, tmp_path, capsys):
    assert main(["recognize", "--recognizer", str(exported), "--beam", "0", "x.png"]) == 2
    assert "argument --beam: must be at least 1" in capsys.readouterr().err
    assert main(["recognize", "--recognizer", str(tmp_path / "none.pt"), "x.png"]) == 2
    assert "not found" in capsys.readouterr().err
