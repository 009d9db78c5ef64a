"""Any picture of a formula -> the image the recognizer was trained on.

The recognizer learned from CROHME strokes rasterized by ``formula_gan.data.rasterize``:
thin dark ink on pure white, cropped to the ink, with a fixed white margin, scaled
to a fixed height. A scan or a phone photo differs in every one of those: uneven
light, grey or ruled paper, faint or thick ink, a wide border. ``prepare_picture``
undoes that in these steps, all numpy + pillow:

1. **grayscale** (EXIF orientation applied, transparency composited on white);
2. **flatten the light**: the paper brightness is estimated by a grey-level
   closing (max filter) at a scale well above a stroke's width, on a reduced
   copy, and every pixel is divided by it: shadows and gradients vanish, the
   paper becomes 1.0 and ink a fraction of it;
3. **remove the ruling** (``cleanup.remove_ruling``): the long parallel lines of
   ruled or squared paper, not the writing on or across them;
4. **find the ink**: Otsu's threshold on the darkness; contrast is stretched so
   that the darkest ink becomes full ink and everything below half the
   threshold pure paper (sensor noise, paper texture); whether anything is
   written is judged on a smoothed copy (a small formula far away is a few
   hundred pixels of a large picture; grain is not ink); a picture that is
   mostly ink (black, or light writing on a dark board) is refused;
5. **crop to the formula** (``cleanup.crop_to_components``): the group of
   connected ink around the largest stroke; specks, the page's edge and marks
   away from the formula do not widen the crop;
6. **match the pen**: the stroke width is estimated (twice the ink area over
   its boundary length); a marker much thicker than the training pen at the
   final scale is thinned to its skeleton and redrawn with that pen
   (``cleanup.thin_to_pen``: strokes stay connected, loops stay open), a pen
   much thinner is thickened by grey-level dilation (a bounded number of passes);
7. **scale** so that the ink is as high as in the training images at the
   model's height, with the training data's margin; a flat crop (a "-") is
   not blown up past the rasterizer's ``MAX_ASPECT``, as in the training data.

``PictureSteps`` switches steps 3, 5, 6 (skeleton) and 4 (smoothed judgement) off
to give the preparation as it was before them: ``scripts/bench_paper_photos.py``
measures what each buys. InkML files skip all that: their strokes are rasterized
exactly as the training data was.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageFilter, ImageOps, UnidentifiedImageError

from formula_gan.data.inkml import InkmlError, parse_inkml
from formula_gan.data.loader import resize_paper
from formula_gan.data.rasterize import MAX_ASPECT, RasterConfig, rasterize
from formula_gan.errors import FormulaGanError
from formula_gan.recognition.cleanup import crop_to_components, otsu, remove_ruling, thin_to_pen

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp", ".gif"}
MAX_FILE_BYTES = 50 * 2**20  # a formula photo is a few MB; anything larger is refused before decoding
MAX_PIXELS = 40_000_000  # decompression bombs: refused by size before the pixels are decoded
WORK_SIDE = 1600  # pictures are reduced to at most this many pixels per side first (speed)
TRAINING_HEIGHT = 128  # the training images' rasterization height ...
TRAINING_PADDING = 8  # ... and margin: ink fills (128 - 2*8) / 128 of the height
TRAINING_PEN = 3.0  # ... and pen width in px at that height (rasterize.DEFAULT_PEN_WIDTH)
PEN_TOLERANCE = 1.6  # a pen within this factor of the training pen is left as it is
# Each 3 x 3 pass moves every ink edge by 1 px. At the largest work size (a 1600 px high
# crop) the training pen is 3 * 1600 / 112 = 43 px, and a marker 2.5 x as thick needs
# (2.5 - 1) * 43 / 2 = 32 passes; a larger estimate is a filled area, not a pen, and each
# pass costs ~50 ms there (an all-black 400 x 128 picture used to take 51,200 passes).
MAX_PEN_STEPS = 32
# Writing covers little of its paper. Measured after binarization on the pictures of
# tests/test_recognize.py: 6 % of a clean rasterized formula, 4 % of its photo, 14 % of the
# same photo written with a 25 px marker. More than half of the picture inked is not dark
# writing on light paper (an all-black picture, chalk on a board, a photo of a dark object).
MAX_INK_FRACTION = 0.5


@dataclass(frozen=True)
class PictureSteps:
    """Which of the steps added for photos of paper run (all by default). ``PictureSteps.none()``
    is the preparation as it was before them, kept so that a benchmark can measure each one."""

    ruling: bool = True  # remove ruled lines and grids (cleanup.remove_ruling)
    contrast: bool = True  # denoise the darkness first (pencil grain, sensor noise); a small formula is not "no ink"
    components: bool = True  # crop to the formula's connected ink, not every dark pixel's box
    thinning: bool = True  # thin a thick pen to a skeleton and redraw it, not grey-level erosion

    @classmethod
    def none(cls) -> "PictureSteps":
        return cls(ruling=False, contrast=False, components=False, thinning=False)


def prepare_picture(data: bytes, height: int, name: str = "image", steps: PictureSteps = PictureSteps()) -> np.ndarray:
    """Encoded image bytes (PNG, JPEG, ...) -> uint8 paper [height, w]: dark ink on white, ready for the model."""
    gray = _decode_gray(data, name)  # float [h, w], 1 = white
    ink = _flatten_light(gray)  # float [h, w], 1 = full ink
    if steps.contrast:
        ink = _smooth(ink)
    if steps.ruling:
        ink = remove_ruling(ink)
    ink = _stretch(ink, name, smoothed=steps.contrast)
    _refuse_mostly_ink(ink, name)
    if steps.components:
        crop = crop_to_components(ink, stroke_width(_to_paper(ink)))
        if crop is None:
            raise FormulaGanError(f"{name}: no ink found (a blank or nearly uniform image)")
        ink = _crop_to_ink(crop, name)
    else:
        ink = _crop_to_ink(ink, name)
    paper = _to_paper(ink)
    paper = _match_pen(paper, height, skeleton=steps.thinning)
    paper = 255 - (255 * _crop_to_ink((255 - paper) / 255.0, name)).astype(np.uint8)  # thinning moved the ink's edges
    return _fit_height(paper, height)


def _to_paper(ink: np.ndarray) -> np.ndarray:
    """Darkness [0, 1] -> uint8 dark ink on white."""
    return np.clip(255.0 * (1.0 - ink), 0, 255).astype(np.uint8)


def prepare_inkml(data: bytes, height: int, name: str = "inkml") -> np.ndarray:
    """InkML bytes -> uint8 paper [height, w], rasterized as the training data was (height128), then scaled.
    A file without a label is read all the same (reading it is the point)."""
    try:
        ink = parse_inkml(data, source=name, labelled=False)
        paper, _ = rasterize(ink, RasterConfig(normalize="height128"))
    except InkmlError as err:  # its reason names no file: the batch's error line must
        raise InkmlError(err.kind, f"{name}: {err.reason}") from err
    return resize_paper(paper, height, None)


def prepare_file(path: str | Path, height: int) -> np.ndarray:
    """A picture or an .inkml file -> uint8 paper [height, w]; any problem is a FormulaGanError naming the file."""
    path = Path(path)
    if not path.is_file():
        raise FormulaGanError(f"{path}: no such file")
    size = path.stat().st_size
    if size > MAX_FILE_BYTES:
        raise FormulaGanError(f"{path}: {size} bytes, more than the {MAX_FILE_BYTES} accepted for one formula")
    data = path.read_bytes()
    if path.suffix.lower() == ".inkml":
        return prepare_inkml(data, height, str(path))
    return prepare_picture(data, height, str(path))


def _decode_gray(data: bytes, name: str) -> np.ndarray:
    try:
        with Image.open(io.BytesIO(data)) as img:
            if img.width * img.height > MAX_PIXELS:
                raise FormulaGanError(f"{name}: {img.width} x {img.height} pixels, more than {MAX_PIXELS} accepted")
            img = ImageOps.exif_transpose(img)
            if img.mode in ("RGBA", "LA", "PA") or (img.mode == "P" and "transparency" in img.info):
                rgba = img.convert("RGBA")
                white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
                img = Image.alpha_composite(white, rgba)
            img = img.convert("L")
            if max(img.size) > WORK_SIDE:
                img.thumbnail((WORK_SIDE, WORK_SIDE), Image.LANCZOS)
            gray = np.asarray(img, dtype=np.float32) / 255.0
    except FormulaGanError:
        raise
    except UnidentifiedImageError as err:  # its text is "cannot identify image file <_io.BytesIO object at 0x...>"
        raise FormulaGanError(f"{name}: not a readable image (no image format pillow knows, or a damaged header)") from err
    except (OSError, ValueError, Image.DecompressionBombError, SyntaxError) as err:
        raise FormulaGanError(f"{name}: not a readable image ({err})") from err
    if gray.size == 0:
        raise FormulaGanError(f"{name}: the image is empty")
    return gray


def _flatten_light(gray: np.ndarray) -> np.ndarray:
    """Darkness relative to the local paper brightness, in [0, 1] (0 = paper)."""
    h, w = gray.shape
    # The paper estimate works on a copy reduced so its long side is ~200 px: a max filter of
    # 7 px there spans ~1/30 of the picture, wider than any pen stroke of a formula photo.
    scale = min(1.0, 200.0 / max(h, w))
    small = Image.fromarray((gray * 255).astype(np.uint8))
    if scale < 1.0:
        small = small.resize((max(1, round(w * scale)), max(1, round(h * scale))), Image.BILINEAR)
    paper = small.filter(ImageFilter.MaxFilter(7)).filter(ImageFilter.MinFilter(3)).filter(ImageFilter.BoxBlur(3))
    paper = paper.resize((w, h), Image.BILINEAR)
    light = np.maximum(np.asarray(paper, dtype=np.float32) / 255.0, 1e-3)
    return np.clip(1.0 - gray / light, 0.0, 1.0)


NOTHING_WRITTEN = 0.08  # nothing anywhere 8 % darker than the paper: nothing written
INK_PIXELS = 20  # ... at the 99.9th percentile, or the 20th darkest pixel of a 3 x 3 smoothed copy (a formula
# far away is a few hundred pixels, under the 0.1 % that the percentile needs; smoothing keeps noise out)


def _smooth(ink: np.ndarray) -> np.ndarray:
    """3 x 3 mean of the darkness. Sensor noise, JPEG blocks and a pencil's grain are pixel-sized; a stroke
    is several pixels wide at the work size. Unsmoothed, a dim photo's noise reached Otsu's threshold and
    was stretched into speckles as dark as the pencil strokes (the later reduction to the model's height
    is far coarser than this blur)."""
    p = np.pad(ink, 1, mode="edge")
    h, w = ink.shape
    return sum(p[i : i + h, j : j + w] for i in range(3) for j in range(3)) / 9.0


def _stretch(ink: np.ndarray, name: str, smoothed: bool = True) -> np.ndarray:
    """Contrast normalization: strong ink -> 1, paper noise -> 0."""
    peak = float(np.percentile(ink, 99.9))
    if smoothed:  # or a few hundred pixels of a small formula in a large picture
        flat = ink.ravel()
        k = max(0, flat.size - INK_PIXELS)
        peak = max(peak, float(np.partition(flat, k)[k]))
    if peak < NOTHING_WRITTEN:
        raise FormulaGanError(f"{name}: no ink found (a blank or nearly uniform image)")
    t = max(otsu(ink), 0.05)  # a clean scan is almost all 0: a floor keeps paper texture out
    strong = ink[ink > t]
    top = float(np.percentile(strong, 90)) if strong.size else peak
    lo = 0.5 * t
    return np.clip((ink - lo) / max(top - lo, 1e-3), 0.0, 1.0)


def _refuse_mostly_ink(ink: np.ndarray, name: str) -> None:
    """A picture more ink than paper is not a formula written on paper (see MAX_INK_FRACTION)."""
    fraction = float((ink > 0.5).mean())
    if fraction > MAX_INK_FRACTION:
        raise FormulaGanError(
            f"{name}: not a formula picture: {100 * fraction:.0f} % of it is ink (dark writing on light paper "
            f"covers far less; a black picture, or light writing on a dark board?)"
        )


def _crop_to_ink(ink: np.ndarray, name: str) -> np.ndarray:
    """The bounding box of the ink; isolated single pixels (noise, dust) do not extend it."""
    mask = ink > 0.5
    if not mask.any():  # pen matching can thin away strokes narrower than the typical one
        raise FormulaGanError(f"{name}: no ink left to read once the pen was matched (specks or hairlines only)")
    # a pixel counts when a 3 x 3 neighbourhood holds at least 3 ink pixels
    counts = np.asarray(
        Image.fromarray(mask.astype(np.uint8) * 28).filter(ImageFilter.BoxBlur(1)), dtype=np.float32
    ) * 9 / 28
    solid = mask & (counts >= 2.5)
    if not solid.any():
        solid = mask
    rows, cols = np.flatnonzero(solid.any(1)), np.flatnonzero(solid.any(0))
    return ink[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1]


def stroke_width(paper: np.ndarray) -> float:
    """Typical stroke width in px of a uint8 paper image: 2 x ink area / ink boundary length
    (a stroke of width w and length L has area w*L and two edges of length L)."""
    ink = paper < 128
    area = int(ink.sum())
    if area == 0:
        return 0.0
    # Outside the picture is paper: ink at the image edge has a boundary there too (counted as
    # inner, an all-black picture had no boundary and an estimated width of twice its area).
    out = np.pad(ink, 1)
    inner = out[1:-1, 1:-1] & out[:-2, 1:-1] & out[2:, 1:-1] & out[1:-1, :-2] & out[1:-1, 2:]
    boundary = area - int(inner.sum())
    return 2.0 * area / max(boundary, 1)


def _match_pen(paper: np.ndarray, height: int, skeleton: bool = True) -> np.ndarray:
    """Thin a thick marker or thicken a fine pen towards the training pen at the final scale."""
    scale = _model_scale(paper.shape, height)  # crop px -> model px
    target = TRAINING_PEN * height / TRAINING_HEIGHT / scale  # the training pen, in crop px
    width = stroke_width(paper)
    if width <= 0 or target / PEN_TOLERANCE <= width <= target * PEN_TOLERANCE:
        return paper
    if width > target and skeleton:
        # thinned and redrawn at twice the model's scale (the skeleton is cheap there; the final
        # LANCZOS reduction smooths its steps): the training pen is 2 x its model-scale width
        work = max(8, round(2 * scale * paper.shape[0]))
        return thin_to_pen(paper, work, 2 * TRAINING_PEN * height / TRAINING_HEIGHT)
    steps = min(int(round(abs(width - target) / 2)), MAX_PEN_STEPS)  # a 3 x 3 filter moves each edge by one px
    if width > target:
        steps = min(steps, max(0, int(width / 2) - 1))  # never erase a stroke
    img = Image.fromarray(paper)
    grow = ImageFilter.MinFilter(3) if width < target else ImageFilter.MaxFilter(3)  # on paper: min = more ink
    for _ in range(steps):
        img = img.filter(grow)
    return np.asarray(img, dtype=np.uint8)


def _padding(height: int) -> int:
    """The training data's white margin at the model's ``height``."""
    return max(1, round(height * TRAINING_PADDING / TRAINING_HEIGHT))


def _model_scale(shape: tuple[int, ...], height: int) -> float:
    """Crop px -> model px: the ink as high as the training images' (112/128 of the height), but a
    flat crop no wider than MAX_ASPECT times that, as the rasterizer limits flat expressions."""
    inner = height - 2 * _padding(height)
    h, w = shape
    return min(inner / h, inner * MAX_ASPECT / w)


def _fit_height(paper: np.ndarray, height: int) -> np.ndarray:
    """Ink crop -> ``height`` rows with the training data's margin, centered vertically when flat."""
    pad = _padding(height)
    scale = _model_scale(paper.shape, height)
    h, w = paper.shape
    nh, nw = max(1, min(height - 2 * pad, round(h * scale))), max(1, round(w * scale))
    scaled = np.asarray(Image.fromarray(paper).resize((nw, nh), Image.LANCZOS), dtype=np.uint8)
    out = np.full((height, nw + 2 * pad), 255, dtype=np.uint8)
    top = (height - nh) // 2
    out[top : top + nh, pad : pad + nw] = scaled
    return out
