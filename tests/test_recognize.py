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


def _save(path: Path, paper: np.ndarray) -> Path:
    Image.fromarray(paper).save(path)
    return path


def test_an_all_black_picture_is_refused_not_thinned_for_hours(tmp_path):
    """An all-black 400 x 128 picture took ~52 s (51,200 max-filter passes: the image edge counted as
    inner ink, so its pen looked 100,000 px wide); 1600 x 1200 would have taken hours."""
    from formula_gan.recognition.preprocess import stroke_width

    for shape in [(128, 400), (1200, 1600)]:
        black = _save(tmp_path / f"black-{shape[1]}.png", np.zeros(shape, np.uint8))
        with pytest.raises(FormulaGanError, match=rf"black-{shape[1]}.png: not a formula picture: 100 % of it is ink"):
            prepare_file(black, 64)
    # the edge of the picture is a boundary: a filled 128 x 400 block is as wide as 2 x area / perimeter
    assert stroke_width(np.zeros((128, 400), np.uint8)) == pytest.approx(2 * 128 * 400 / (2 * (128 + 400) - 4))
    # a thick marker on paper is far from the limit: read, not refused
    assert prepare_picture(photo_like(a_formula_picture(), marker=25), 64).shape[0] == 64


def _degenerate_files(tmp_path: Path) -> tuple[list[Path], list[Path]]:
    """(files that are read, files that are refused): the cases that killed a whole batch."""
    stroke = np.full((200, 200), 255, np.uint8)
    stroke[20:180, 99:103] = 0  # one vertical stroke: 9 px wide at 64 px, too narrow for the encoder's pooling
    blob = np.full((200, 200), 255, np.uint8)
    blob[10:190, 10:190] = 0
    blob[100, 10:190] = 255  # a black blob with a white line through it
    one_stroke = tmp_path / "one-stroke.inkml"  # no label either: reading it is the point
    one_stroke.write_text('<ink xmlns="http://www.w3.org/2003/InkML"><trace id="0">0 0, 0 10, 0 20</trace></ink>')
    dot = tmp_path / "dot.inkml"
    dot.write_text('<ink xmlns="http://www.w3.org/2003/InkML"><trace id="0">5 5</trace></ink>')
    junk = tmp_path / "junk.png"
    junk.write_bytes(b"not a picture at all")
    read = [_save(tmp_path / "stroke.png", stroke), one_stroke]
    refused = [_save(tmp_path / "blob.png", blob), dot, junk]
    return read, refused


def test_degenerate_files_are_read_or_refused_one_line_each_and_the_batch_goes_on(exported, tmp_path, capsys):
    """One vertical stroke (PNG or InkML) died in avg_pool and a black blob in _crop_to_ink, taking
    every other file's reading with them."""
    good_png = tmp_path / "good.png"
    good_png.write_bytes(png_bytes(a_formula_picture()))
    good_ink = tmp_path / "good.inkml"
    good_ink.write_text(INKML, encoding="utf-8")
    read, refused = _degenerate_files(tmp_path)
    files = [good_png, *read, *refused, good_ink]
    # one file per batch: the narrow ones are not padded by a wider neighbour
    rc = main(["recognize", "--recognizer", str(exported), "--beam", "2", "--batch-size", "1", *map(str, files)])
    out, err = capsys.readouterr()
    assert rc == 1
    lines = out.strip().splitlines()
    assert [line.split("\t")[0] for line in lines] == [str(f) for f in [good_png, *read, good_ink]]
    errors = err.strip().splitlines()
    assert len(errors) == len(refused) and "Traceback" not in err
    for line, path in zip(errors, refused):
        assert line.startswith(f"formula-gan recognize: error: {path}: "), line
    assert "not a formula picture" in errors[0] and "0x0" in errors[1] and "not a readable image" in errors[2]
    assert "<_io." not in err  # pillow's "cannot identify image file <_io.BytesIO object at 0x...>"


def test_inkml_errors_name_the_file(exported, tmp_path, capsys):
    bad = tmp_path / "broken.inkml"
    bad.write_text("<ink><trace>1 2,", encoding="utf-8")
    with pytest.raises(FormulaGanError, match=r"broken.inkml: malformed XML"):
        prepare_file(bad, 32)
    assert main(["recognize", "--recognizer", str(exported), str(bad)]) == 1
    assert f"error: {bad}: malformed XML" in capsys.readouterr().err


def test_a_pickled_checkpoint_is_refused_without_torch_advice(exported, tmp_path, capsys):
    """torch's refusal advises loading with weights_only=False (running the file's code): never relayed."""
    payload = torch.load(exported, weights_only=True)
    payload["extra"] = Image.new("L", (2, 2))  # a Python object: a pickle GLOBAL
    evil = tmp_path / "evil.pt"
    torch.save(payload, evil)
    assert main(["recognize", "--recognizer", str(evil), str(tmp_path / "x.png")]) == 2
    [line] = capsys.readouterr().err.strip().splitlines()
    assert line == (f"formula-gan recognize: error: {evil}: not a plain-data recognizer checkpoint "
                    "(it holds pickled Python objects, which could run code): refused")
