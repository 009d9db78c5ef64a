"""Photos of formulas on paper: the picture generator's effects, the preparation steps for them
(ruling removed, the crop by connected ink, a thick pen thinned without breaking strokes), and
``recognize DIR --out FILE.jsonl``."""

from __future__ import annotations

import io
import json
import math
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw, ImageFilter

from formula_gan.cli import main
from formula_gan.data.inkml import Ink
from formula_gan.data.rasterize import RasterConfig, rasterize
from formula_gan.errors import FormulaGanError
from formula_gan.recognition import morphology as morph
from formula_gan.recognition.batch import ReadingsFile, expand_inputs, reading_json
from formula_gan.recognition.cleanup import remove_ruling
from formula_gan.recognition.paper_photos import PhotoEffects, paper_photo
from formula_gan.recognition.preprocess import PictureSteps, prepare_picture, stroke_width
from formula_gan.recognition.recognizer import Reading

OFF = PhotoEffects(paper="plain", lighting=False, blur=False, perspective=False, small=True, jpeg=False)


def a_wide_formula() -> np.ndarray:
    """'o1 over a wave, ^, + 1' rasterized as the training data is (uint8, 128 px high, ~3 x as wide):
    several separate strokes, a fraction bar, a loop; wider than a 4:3 frame is high."""
    t = np.linspace(0, 2 * np.pi, 40)
    strokes = [
        np.stack([10 + 8 * np.cos(t), 10 + 8 * np.sin(t)], 1),  # an "o"
        np.array([[25.0, 2], [25, 18]]),  # a "1"
        np.array([[0.0, 24], [60, 24]]),  # the fraction bar
        np.stack([5 + 50 * t / (2 * np.pi), 38 + 7 * np.sin(2 * t)], 1),  # a wave under it
        np.array([[62.0, 20], [66, 14], [70, 20]]),  # a small "^" up right
        np.array([[80.0, 24], [96, 24]]), np.array([[88.0, 16], [88, 32]]),  # "+"
        np.array([[104.0, 14], [110, 8], [110, 40]]),  # "1"
    ]  # fmt: skip
    return rasterize(Ink(strokes=strokes, truth="", source="test"), RasterConfig(normalize="height128"))[0]


def png(paper: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(paper).save(buf, "PNG")
    return buf.getvalue()


def luminance(rgb: np.ndarray) -> np.ndarray:
    return np.asarray(Image.fromarray(rgb, "RGB").convert("L"), np.float32)


def darkness(rgb: np.ndarray) -> np.ndarray:
    """0 = the paper (its brightest tenth), 1 = black: for photos without the lighting effect."""
    lum = luminance(rgb)
    return np.clip(1.0 - lum / np.percentile(lum, 90), 0.0, 1.0)


def _blurred(paper: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    img = Image.fromarray(paper).resize(shape[::-1], Image.BILINEAR).filter(ImageFilter.GaussianBlur(1.5))
    return 1.0 - np.asarray(img, np.float32) / 255.0


# ---- the picture generator


def test_photos_are_seeded_and_one_switch_changes_only_its_effect():
    clean = a_wide_formula()
    a, b = paper_photo(clean, 3), paper_photo(clean, 3)
    assert np.array_equal(a.rgb, b.rgb) and a.box == b.box
    assert not np.array_equal(a.rgb, paper_photo(clean, 4).rgb)
    # every draw is made whatever the switches: the same frame, the same place, the same ruling
    sharp = paper_photo(clean, 3, replace(PhotoEffects(), blur=False))
    assert sharp.rgb.shape == a.rgb.shape and sharp.box == a.box
    assert a.rgb.ndim == 3 and a.rgb.shape[2] == 3 and a.rgb.dtype == np.uint8
    with pytest.raises(ValueError, match="uint8 grayscale"):
        paper_photo(clean.astype(np.float32), 0)


def test_ruled_paper_adds_horizontal_lines_and_squared_paper_a_grid():
    clean = a_wide_formula()
    rows_cols = {}
    for paper in ("plain", "ruled", "squared"):
        photo = paper_photo(clean, 1, replace(OFF, paper=paper))
        dark = darkness(photo.rgb) > 0.1
        x0, y0, x1, y1 = photo.box
        dark[y0:y1, x0:x1] = False  # the writing aside
        rows = dark.mean(axis=1) > 0.95  # rows dark across the picture: horizontal lines
        cols = dark.mean(axis=0) > 0.95
        rows_cols[paper] = (_runs(rows), _runs(cols))
    assert rows_cols["plain"] == (0, 0)
    assert rows_cols["ruled"][0] >= 3 and rows_cols["ruled"][1] == 0, rows_cols
    assert rows_cols["squared"][0] >= 3 and rows_cols["squared"][1] >= 3, rows_cols


def _runs(flags: np.ndarray) -> int:
    """How many separate runs of True."""
    return int(np.sum(np.diff(np.concatenate([[0], flags.astype(int)])) == 1))


def test_the_formula_is_small_in_the_frame_unless_switched_off():
    clean = a_wide_formula()
    for seed in range(3):
        photo = paper_photo(clean, seed)
        x0, y0, x1, y1 = photo.box
        H, W = photo.rgb.shape[:2]
        assert 0.25 <= (x1 - x0) / W <= 0.56 and (x1 - x0) * (y1 - y0) / (W * H) < 0.2
        assert 90 <= y1 - y0 <= 160  # PhotoEffects.ink_height
        wide = paper_photo(clean, seed, replace(PhotoEffects(), small=False))
        assert (wide.box[2] - wide.box[0]) / wide.rgb.shape[1] > 0.8


def test_pens_lighting_blur_perspective_and_jpeg_each_do_what_they_say():
    clean = a_wide_formula()

    def ink_stats(effects: PhotoEffects) -> tuple[float, float]:
        photo = paper_photo(clean, 5, effects)
        lum = luminance(photo.rgb)
        x0, y0, x1, y1 = photo.box
        box = lum[y0:y1, x0:x1]
        return stroke_width(np.where(box < 160, 0, 255).astype(np.uint8)), float(np.percentile(box, 1))

    pen_width, pen_dark = ink_stats(OFF)
    marker_width, _ = ink_stats(replace(OFF, pen="marker"))
    _, pencil_dark = ink_stats(replace(OFF, pen="pencil"))
    assert marker_width > 2 * pen_width, (marker_width, pen_width)  # a thick marker
    assert pen_dark < 70 and pencil_dark > pen_dark + 60, (pen_dark, pencil_dark)  # pencil is light grey

    def paper_spread(effects: PhotoEffects) -> float:
        photo = paper_photo(clean, 5, effects)
        lum = luminance(photo.rgb)
        x0, y0, x1, y1 = photo.box
        lum[y0:y1, x0:x1] = np.nan
        return float(np.nanpercentile(lum, 95) - np.nanpercentile(lum, 5))

    assert paper_spread(OFF) < 3 and paper_spread(replace(OFF, lighting=True)) > 25  # a shadow across the page

    def sharpness(effects: PhotoEffects) -> float:
        lum = luminance(paper_photo(clean, 5, effects).rgb)
        return float(np.abs(np.diff(lum, axis=1)).max())

    assert sharpness(replace(OFF, blur=True)) < 0.7 * sharpness(OFF)

    def line_rows(effects: PhotoEffects) -> tuple[np.ndarray, np.ndarray]:
        dark = darkness(paper_photo(clean, 5, effects).rgb)
        w = dark.shape[1]
        return dark[:, : w // 20].mean(1) > 0.1, dark[:, -w // 20 :].mean(1) > 0.1  # left and right edges

    left, right = line_rows(replace(OFF, paper="ruled"))
    assert np.array_equal(left, right)  # square to the page: lines at the same height on both sides
    left, right = line_rows(replace(OFF, paper="ruled", perspective=True))
    assert not np.array_equal(left, right)  # seen at an angle: they are not

    plain = paper_photo(clean, 5, OFF).rgb.astype(np.float32)
    jpeg = paper_photo(clean, 5, replace(OFF, jpeg=True)).rgb.astype(np.float32)
    assert 0.5 < np.abs(jpeg - plain).mean() < 10  # noise and compression: close, not equal


# ---- preparing such photos


@pytest.mark.parametrize("pen", ["pen", "pencil", "marker"])
@pytest.mark.parametrize("paper", ["ruled", "squared"])
def test_ruling_is_removed_and_the_writing_kept(pen, paper):
    """The ruling's pixels (known from a photo of the same paper with nothing written, same seed) are
    paper after remove_ruling, and the writing's pixels keep their darkness."""
    clean = a_wide_formula()
    effects = PhotoEffects(pen=pen, paper=paper, lighting=False)  # blur, perspective, JPEG on
    photo = paper_photo(clean, 2, effects)
    blank = paper_photo(np.full_like(clean, 255), 2, effects)
    assert photo.box == blank.box
    before, empty = darkness(photo.rgb), darkness(blank.rgb)
    x0, y0, x1, y1 = photo.box
    away = np.ones(before.shape, bool)
    away[max(0, y0 - 15) : y1 + 15, max(0, x0 - 15) : x1 + 15] = False
    lines = (empty > 0.15) & away
    writing = before > empty + 0.2  # ink where the empty paper has none or a line
    assert lines.sum() > 500 and writing.sum() > 200
    assert (before[lines] > 0.1).mean() > 0.95  # the lines are there (the test can fail) ...
    after = remove_ruling(before)
    assert (after[lines] > 0.1).mean() < 0.03, (after[lines] > 0.1).mean()  # ... and gone
    kept = after[writing] >= 0.6 * before[writing]
    assert kept.mean() > 0.9, kept.mean()  # the writing on and across them is not

    # the whole preparation: the formula is cropped as the clean image is, not the page
    ref = prepare_picture(png(clean), 64)
    new = prepare_picture(photo.jpeg_bytes(), 64)
    old = prepare_picture(photo.jpeg_bytes(), 64, steps=PictureSteps.none())
    assert abs(new.shape[1] - ref.shape[1]) <= 0.1 * ref.shape[1], (new.shape, ref.shape)
    if pen != "marker":  # (a black marker's Otsu threshold left pale lines out even before)
        assert abs(old.shape[1] - ref.shape[1]) > 0.25 * ref.shape[1], (old.shape, ref.shape)  # it was the page
    corr = np.corrcoef(_blurred(ref, ref.shape).ravel(), _blurred(new, ref.shape).ravel())[0, 1]
    assert corr > 0.6, corr


def test_a_fraction_bar_on_a_ruled_line_is_kept():
    """A stroke along a line survives the line's removal (only the ruling's own darkness is divided out)."""
    paper = np.full((400, 600), 0.02, np.float32)
    for y in range(20, 400, 40):
        paper[y : y + 2, :] = 0.3  # light ruling, 40 px apart
    paper[99:104, 200:400] = 0.9  # a pen bar written over the line at y = 100
    paper[60:98, 290:294] = 0.9  # a stroke above it, crossing the line at y = 60
    out = remove_ruling(paper)
    assert out[20:22, :].max() < 0.05 and out[140:142, :100].max() < 0.05  # lines gone
    assert out[100:102, 210:390].min() > 0.8  # the bar kept where it lies on the line
    assert out[60:62, 290:294].min() > 0.8  # the stroke crossing a line is not cut


def test_two_long_dark_bars_of_a_tight_crop_are_writing_not_ruling():
    """|x| cropped tightly: two long vertical bars as dark as the rest of the ink, and no horizontal ruling."""
    paper = np.zeros((200, 160), np.float32)
    paper[5:195, 10:14] = 0.9
    paper[5:195, 146:150] = 0.9
    paper[60:140, 40:120] = np.eye(80, dtype=np.float32)[:, ::-1] * 0.9 + np.eye(80, dtype=np.float32) * 0.9
    assert np.array_equal(remove_ruling(paper), paper)
    wide = np.zeros((200, 600), np.float32)  # two long horizontal bars (= across the picture) as dark as an x
    wide[60:64, 10:590] = 0.9
    wide[120:124, 10:590] = 0.9
    wide[80:110, 280:310] = np.eye(30, dtype=np.float32) * 0.9
    assert np.array_equal(remove_ruling(wide), wide)


def test_a_speck_and_the_page_edge_far_away_do_not_widen_the_crop_a_dot_nearby_does():
    clean = a_wide_formula()
    h, w = clean.shape
    page = np.full((700, 1100), 255, np.uint8)
    page[150 : 150 + h, 200 : 200 + w] = clean
    ref = prepare_picture(png(page), 64)
    specked = page.copy()
    specked[600:606, 1000:1006] = 0  # a speck of dust far away
    specked[:, 1090:1094] = 60  # the page's edge along the right border
    specked[20:23, 30:60] = 0  # a pen mark far away, larger than a speck
    new = prepare_picture(png(specked), 64)
    old = prepare_picture(png(specked), 64, steps=replace(PictureSteps(), components=False))
    assert abs(new.shape[1] - ref.shape[1]) <= 2, (new.shape, ref.shape)
    assert abs(old.shape[1] - ref.shape[1]) > 0.3 * ref.shape[1]  # the box of every dark pixel: the page
    dotted = page.copy()
    dotted[150 + h // 2 : 150 + h // 2 + 5, 200 + w + 20 : 200 + w + 25] = 0  # a dot just right of the formula
    assert prepare_picture(png(dotted), 64).shape[1] > ref.shape[1] + 3  # part of the formula: kept


def _topology(paper: np.ndarray) -> tuple[int, int]:
    """(ink components, holes) of a uint8 paper thresholded at 128."""
    ink = paper < 128
    holes = morph.components(~np.pad(ink, 1))  # the outside is one component, each hole another
    return len(morph.components(ink)), len(holes) - 1


def test_a_thick_marker_is_thinned_without_breaking_strokes_or_loops():
    """A marker ring with a narrow neck and a stroke thinner where it joins a blob: grey-level erosion
    by the typical width cut the neck (the ring opened); the skeleton keeps it."""
    img = Image.new("L", (500, 420), 255)
    d = ImageDraw.Draw(img)
    d.ellipse((40, 40, 300, 380), outline=0, width=40)  # a thick "0"
    d.rectangle((258, 190, 300, 230), fill=255)
    d.rectangle((262, 190, 276, 230), fill=0)  # its right side narrowed to 14 px
    d.line((330, 200, 470, 200), fill=0, width=40)  # a thick "-"
    marker = np.asarray(img, np.uint8)
    assert _topology(marker) == (2, 1)
    new = prepare_picture(png(marker), 64)
    old = prepare_picture(png(marker), 64, steps=replace(PictureSteps(), thinning=False))
    assert _topology(new) == (2, 1), _topology(new)
    assert _topology(old) != (2, 1), _topology(old)  # erosion broke the ring (the test can fail)
    # and the pen is the training pen's at the model's height, as a clean picture's
    clean = prepare_picture(png(a_wide_formula()), 64)
    assert stroke_width(new) < 1.6 * stroke_width(clean), (stroke_width(new), stroke_width(clean))


def test_clean_pictures_are_prepared_as_before():
    """On a clean rasterized formula the new steps change nothing (no ruling, one group, the training pen)
    but the denoising's slight softening of the edges."""
    data = png(a_wide_formula())
    before = prepare_picture(data, 64, steps=PictureSteps.none())
    assert np.array_equal(prepare_picture(data, 64, steps=replace(PictureSteps(), contrast=False)), before)
    now = prepare_picture(data, 64)
    assert now.shape == before.shape and np.abs(now.astype(int) - before).mean() < 3  # measured 1.7 of 255


# ---- recognize DIR --out FILE.jsonl


INKML = """<ink xmlns="http://www.w3.org/2003/InkML">
<trace id="0">0 0, 0 10, 0 20</trace>
<trace id="1">5 10, 15 10</trace>
</ink>"""


def test_recognize_a_folder_into_a_jsonl_file(trained, tmp_path, capsys):
    folder = tmp_path / "photos"
    folder.mkdir()
    clean = a_wide_formula()
    (folder / "b-photo.jpg").write_bytes(paper_photo(clean, 0, PhotoEffects(pen="marker", paper="squared")).jpeg_bytes())
    (folder / "a-clean.png").write_bytes(png(clean))
    (folder / "c-ink.inkml").write_text(INKML, encoding="utf-8")
    (folder / "d-broken.png").write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    (folder / "notes.txt").write_text("not a picture")  # left out: not a picture or InkML suffix
    (folder / ".hidden.png").write_bytes(png(clean))  # left out: hidden
    (folder / "sub").mkdir()
    (folder / "sub" / "deeper.png").write_bytes(png(clean))  # left out: not recursive
    out = tmp_path / "readings.jsonl"
    rc = main(["recognize", "--recognizer", str(trained / "best.pt"), "--beam", "2", str(folder), "--out", str(out)])
    printed, err = capsys.readouterr()
    assert rc == 1  # one file failed, the others were read
    names = ["a-clean.png", "b-photo.jpg", "c-ink.inkml", "d-broken.png"]

    def strict(text: str) -> object:
        raise AssertionError(f"not strict JSON: {text}")

    rows = [json.loads(line, parse_constant=strict) for line in out.read_text(encoding="utf-8").splitlines()]
    assert [Path(r["source"]).name for r in rows] == names  # sorted, one object per file
    assert all(set(r) == {"source", "latex", "tokens", "score", "error"} for r in rows)
    assert all(r["error"] is None and isinstance(r["latex"], str) for r in rows[:3])
    assert rows[3]["latex"] is None and "not a readable image" in rows[3]["error"]
    assert [Path(line.split("\t")[0]).name for line in printed.splitlines()] == names[:3]  # printed alongside
    assert "d-broken.png: not a readable image" in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["photos", "readings.jsonl"]  # no temporary left

    # --quiet: the file only; the same readings
    again = tmp_path / "again.jsonl"
    rc = main(["recognize", "--recognizer", str(trained / "best.pt"), "--beam", "2", "--quiet", str(folder),
               "--out", str(again)])  # fmt: skip
    printed, err = capsys.readouterr()
    assert rc == 1 and printed == "" and "d-broken.png" in err
    assert again.read_text(encoding="utf-8") == out.read_text(encoding="utf-8")


def test_recognize_refuses_a_missing_or_empty_folder_and_an_out_that_is_a_folder(trained, tmp_path, capsys):
    ckpt = str(trained / "best.pt")
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "notes.txt").write_text("x")
    full = tmp_path / "full"
    full.mkdir()
    (full / "x.png").write_bytes(png(a_wide_formula()))
    cases = [
        ([str(tmp_path / "nowhere")], f"{tmp_path / 'nowhere'}: no such file or folder"),
        ([str(empty)], f"{empty}: no picture or InkML file in this folder"),
        ([str(full), "--out", str(tmp_path)], f"--out {tmp_path}: is a folder"),
        ([str(full), "--out", str(tmp_path / "no" / "f.jsonl")], "does not exist"),
    ]
    for args, message in cases:
        assert main(["recognize", "--recognizer", ckpt, *args]) == 2, args
        [line] = capsys.readouterr().err.strip().splitlines()
        assert line.startswith("formula-gan recognize: error: ") and message in line, line
    assert sorted(p.name for p in tmp_path.iterdir()) == ["empty", "full"]  # nothing written


def test_expand_inputs_and_the_readings_file(tmp_path):
    (tmp_path / "b.PNG").write_bytes(b"")
    (tmp_path / "a.inkml").write_text("")
    assert [p.name for p in expand_inputs([tmp_path, tmp_path / "missing.jpg"])] == ["a.inkml", "b.PNG", "missing.jpg"]
    with pytest.raises(FormulaGanError, match="no such file or folder"):
        expand_inputs([tmp_path / "missing-folder"])
    # a NaN score is written as null (strict JSON); an interrupted write leaves nothing behind
    assert json.loads(reading_json(Reading("f.png", "x", ["x"], math.nan)))["score"] is None
    out = tmp_path / "r.jsonl"
    with pytest.raises(KeyboardInterrupt):
        with ReadingsFile(out) as f:
            f.write(Reading("f.png", "x", ["x"], -0.1))
            raise KeyboardInterrupt
    assert not out.exists() and not list(tmp_path.glob(".r.jsonl*"))


# ---- training toward such pictures: the marker round trip of the data layer's augmentation


def test_the_torch_thinning_is_the_numpy_one():
    import torch

    from formula_gan.data.augment import _thin

    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[:60, :80]
    blobs = np.zeros((60, 80), bool)
    for _ in range(12):
        y, x, r = rng.integers(5, 55), rng.integers(5, 75), rng.integers(2, 6)
        blobs |= (yy - y) ** 2 + (xx - x) ** 2 < r * r
    assert np.array_equal(_thin(torch.tensor(blobs)[None, None], 30)[0, 0].numpy(), morph.thin(blobs, 30))


@pytest.fixture
def one_thread():
    """Small tensors: one thread (two threads on a busy two-core machine spent seconds in each op)."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def test_marker_augmentation_makes_training_images_like_prepared_marker_photos(one_thread):
    import torch

    from formula_gan.data.augment import AugmentConfig, augment_batch, marker_round_trip, sample_params
    from formula_gan.data.batch import Batch
    from formula_gan.data.loader import resize_paper

    clean = a_wide_formula()
    train = resize_paper(clean, 64, None)  # a training image at the model's height
    ink = torch.tensor(1.0 - train / 255.0, dtype=torch.float32)[None, None]
    masks = torch.ones(1, *train.shape, dtype=torch.bool)
    out = marker_round_trip(ink, masks, torch.tensor([1.75]))[0, 0].numpy()
    augmented = (255 * (1.0 - out)).astype(np.uint8)
    for seed in range(2):
        prepared = prepare_picture(paper_photo(clean, seed, replace(OFF, pen="marker")).jpeg_bytes(), 64)
        ref = _blurred(prepared, prepared.shape).ravel()
        near = np.corrcoef(ref, _blurred(augmented, prepared.shape).ravel())[0, 1]
        far = np.corrcoef(ref, _blurred(train, prepared.shape).ravel())[0, 1]
        assert near > far + 0.005, (near, far)  # measured 0.972 vs 0.945, 0.981 vs 0.964
    assert stroke_width(augmented) < 1.3 * stroke_width(train)  # the training pen, not the marker's
    # off by default, and then not even a random draw: existing runs are unchanged
    gen = torch.Generator().manual_seed(0)
    assert "marker_px" not in sample_params(AugmentConfig(), 4, gen)
    batch = Batch(ink.repeat(4, 1, 1, 1), masks.repeat(4, 1, 1), torch.ones(4, 2, dtype=torch.long),
                  torch.full((4,), 2), torch.ones(4, dtype=torch.long), list("abcd"))  # fmt: skip
    on = AugmentConfig(p_rotate=0, p_shear=0, p_pad=0, p_scale=0, p_marker=1.0)
    a = augment_batch(batch, on, torch.Generator().manual_seed(3))
    b = augment_batch(batch, on, torch.Generator().manual_seed(3))
    assert torch.equal(a.images, b.images) and not torch.equal(a.images, batch.images)
    with pytest.raises(ValueError, match="p_marker"):
        AugmentConfig(p_marker=1.5)
