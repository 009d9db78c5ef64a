"""What a photo of paper needs beyond flat light and contrast: ruling removed, the formula
found among other marks, a thick pen thinned without breaking strokes.

Each function is one step of ``preprocess.prepare_picture`` (switched by ``PictureSteps``)
and works on a darkness map (float [h, w], 0 = paper, 1 = full ink) or an ink mask.
``scripts/bench_paper_photos.py`` measures what each buys on photo-like pictures
(``paper_photos``). All are numpy + pillow and bounded in time: a fixed number of
passes over at most the work-size picture.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
from PIL import Image, ImageFilter

from formula_gan.recognition import morphology as morph

# ---- ruling and grids

RULING_SIDE = 800  # lines are looked for on a copy max-pooled to at most this long side (speed; pooling keeps thin lines)
# A photo is rarely square to the page: lines are followed along these slopes (dy/dx, about +-7 degrees,
# plus the 1 px tolerance of the band below between two slopes; paper_photos' perspective tilts the
# verticals of a 4:3 frame by up to 0.13).
RULING_SLOPES = (-0.12, -0.08, -0.04, 0.0, 0.04, 0.08, 0.12)
RULING_FIT_SLOPES = np.arange(-0.14, 0.1401, 0.005)  # each line's slope is then fitted among these (and refined)
RULING_PER_COMPONENT = 4  # lines fitted in one component at most (writing joined them)
RULING_MIN_DARKNESS = 0.05  # a line is looked for among pixels at least 5 % darker than the paper (and the noise)
RULING_PIECE = 0.1  # a line is chained from straight pieces at least this fraction of the picture long ...
RULING_SPAN = 0.5  # ... and spans at least half the picture: a notebook's lines run edge to edge, writing does not
# ... and is thin: a median run across it of at most 3 % of the picture's height (and 6 px) on the pooled copy (a
# printed line is 1-3 px, blurred a few more; a black blob split by a white line is no ruled paper)
RULING_THICK = 0.03
# Two long lines or more make ruled paper. With fewer than RULING_MANY they must also be lighter than the
# rest of the ink (a tight crop of |x| has two long dark bars that are writing, not ruling).
RULING_MANY = 4
RULING_LIGHTER = 0.75


def remove_ruling(ink: np.ndarray) -> np.ndarray:
    """Darkness map without the ruled lines or grid of the paper (the writing on and across them kept).

    Ruled lines are long, thin and straight and run across the whole page; a stroke of writing may be
    long and straight (a fraction bar) but not across the page, and there are not several of them
    parallel. Lines are found on a max-pooled copy; at full size each is followed along its fitted
    straight centre, its own darkness at each offset from the centre is the median along its length
    (writing covers a small part of a line that crosses the page), and that is divided out as a
    filter's would be: a stroke crossing or lying on a line keeps its own darkness, so none is cut in
    two, and the line alone becomes paper (where grid lines cross, both are divided out)."""
    f = max(1, int(np.ceil(max(ink.shape) / RULING_SIDE)))
    small = _max_pool(ink, f)
    mask = small > _faint_threshold(small)
    horizontal = _long_lines(mask)
    if horizontal.count == 0:
        return ink  # no ruling; a grid without horizontal lines is not paper
    vertical = _long_lines(mask.T)
    light = np.ones_like(ink)  # how much light the ruling lets through at each pixel
    for lines, t in ((horizontal, False), (vertical, True)):
        if lines.count and _is_ruling(lines, mask.T if t else mask, small.T if t else small):
            _divide_out(ink.T if t else ink, light.T if t else light, lines, f)  # transposed views: columns
    return np.clip(1.0 - (1.0 - ink) / light, 0.0, 1.0)


class _Line(NamedTuple):
    """A ruled line on the pooled copy, along its rows: y = intercept + slope * x for x0 <= x < x1."""

    slope: float
    intercept: float
    thickness: float  # pooled px
    x0: int
    x1: int


@dataclass
class _Lines:
    lines: list[_Line]
    pixels: np.ndarray  # bool [h, w]: the mask's pixels on them

    @property
    def count(self) -> int:
        return len(self.lines)


def _divide_out(ink: np.ndarray, light: np.ndarray, lines: _Lines, f: int) -> None:
    """Multiply ``light`` (full size) by each line's own transmission, along its centre."""
    H, W = ink.shape
    c = (f - 1) / 2  # pooled pixel p covers full pixels f p .. f p + f - 1: its centre is f p + c
    for line in lines.lines:
        half = int(np.ceil(line.thickness * f / 2)) + f + 1  # the line and its blurred edges
        cols = np.arange(line.x0 * f, min(W, line.x1 * f))
        centre = f * line.intercept + c + line.slope * (cols - c)
        rows = np.round(centre).astype(int)[None, :] + np.arange(-half, half + 1)[:, None]  # [2 half + 1, n]
        inside = (rows >= 0) & (rows < H)
        samples = np.where(inside, ink[np.clip(rows, 0, H - 1), cols[None, :]], np.nan)
        own = np.zeros(len(samples))  # [2 half + 1]; an offset off the picture everywhere stays 0
        seen = inside.any(axis=1)
        own[seen] = np.minimum(np.nanmedian(samples[seen], axis=1), 0.95)
        cols2 = np.broadcast_to(cols[None, :], rows.shape)
        light[rows[inside], cols2[inside]] *= np.broadcast_to(1.0 - own[:, None], rows.shape)[inside]


def _faint_threshold(darkness: np.ndarray) -> float:
    """Darker than this is a mark on the paper, however faint: four noise deviations above the paper
    (the median pixel). The noise is measured on differences of horizontal neighbours (the median
    absolute difference): a grid's lines, a sixth of the pixels, do not inflate it as they do the
    spread of the values themselves. Ruling is light: the ink's Otsu threshold left a pale blue line
    under it when the writing was a black marker."""
    median = float(np.median(darkness))
    sigma = float(np.median(np.abs(np.diff(darkness, axis=1)))) / (0.6745 * np.sqrt(2.0))
    return max(RULING_MIN_DARKNESS, median + 4.0 * sigma)


def _long_lines(mask: np.ndarray) -> _Lines:
    """The lines of ``mask`` along its rows that span at least RULING_SPAN of its width (tilted
    within RULING_SLOPES, chained from straight pieces); none when fewer than two. Writing can join
    two lines into one component (a marker "0" touching two lines of a grid): each component's
    lines are fitted one after the other, each the strongest straight line left in it."""
    h, w = mask.shape
    band = morph.dilate_along(mask, 1, 0)  # a tilted 1 px line is a staircase: one row of slack
    band = morph.close_along(band, 2, 1)  # a faint line is dashed where the noise lightened it: gaps of 4 px closed
    piece = max(8, int(RULING_PIECE * w))
    straight = np.zeros_like(mask)
    for slope in RULING_SLOPES:
        straight |= morph.runs_at_least(band, piece, slope)
    comps = morph.components(straight & band)  # on the band: the dashes of a faint tilted line join up
    spans = comps.boxes[:, 2] - comps.boxes[:, 0]
    thick = max(6.0, RULING_THICK * h)
    found: list[_Line] = []
    pixels = np.zeros_like(mask)
    # a component with more pixels than RULING_PER_COMPONENT lines of the largest thickness across the picture
    # is a dark region, not lines (and fitting it would cost in proportion)
    plausible = comps.areas <= RULING_PER_COMPONENT * (thick + 2) * w
    for k in np.flatnonzero((spans >= RULING_SPAN * w) & plausible) + 1:
        x0, y0, x1, y1 = comps.boxes[k - 1]
        ys, xs = np.nonzero((comps.labels[y0:y1, x0:x1] == k) & mask[y0:y1, x0:x1])
        ys, xs = ys + y0, xs + x0
        for _ in range(RULING_PER_COMPONENT):
            line, on = _fit_line(mask, xs, ys, RULING_SPAN * w, thick)
            if line is None:
                break
            if line.thickness <= thick:
                found.append(line)
                pixels[ys[on], xs[on]] = True
            xs, ys = xs[~on], ys[~on]
    if len(found) < 2:
        return _Lines([], np.zeros_like(mask))
    return _Lines(found, pixels)


def _fit_line(
    mask: np.ndarray, xs: np.ndarray, ys: np.ndarray, min_columns: float, max_thickness: float
) -> tuple[_Line | None, np.ndarray]:
    """The strongest straight line through the points (a Hough vote over RULING_FIT_SLOPES, 2 px
    intercept bins, refined by least squares), and which points are on it; None when it crosses fewer
    than ``min_columns`` columns. Its thickness is the mask's median run across it (counted up to
    just over ``max_thickness``)."""
    on = np.zeros(len(xs), bool)
    if len(xs) < min_columns:
        return None, on
    slopes = RULING_FIT_SLOPES
    bins = np.floor((ys[None, :] - slopes[:, None] * xs[None, :]) / 2).astype(np.int64)  # [slopes, n]
    bins -= bins.min()
    width = int(bins.max()) + 1
    votes = np.bincount((np.arange(len(slopes))[:, None] * width + bins).ravel(), minlength=len(slopes) * width)
    s, b = divmod(int(np.argmax(votes)), width)
    slope = float(slopes[s])
    residual = ys - slope * xs
    intercept = float(np.median(residual[bins[s] == b]))
    near = np.abs(residual - intercept) <= 4
    if len(np.unique(xs[near])) >= 2:
        slope, intercept = (float(v) for v in np.polyfit(xs[near], ys[near], 1))
    residual = ys - (intercept + slope * xs)
    cols = np.unique(xs[np.abs(residual) <= 4])
    if len(cols) < min_columns:
        return None, on
    thickness = _thickness(mask, cols, np.round(intercept + slope * cols).astype(int), max_thickness)
    on = np.abs(residual) <= thickness / 2 + 1.5
    return _Line(slope, intercept, thickness, int(xs[on].min()), int(xs[on].max()) + 1), on


def _thickness(mask: np.ndarray, cols: np.ndarray, rows: np.ndarray, limit: float) -> float:
    """Median over the columns of the run of ``mask`` through (rows, cols), counted up to limit + 1 each way
    (so that anything thicker than ``limit`` reads thicker than it)."""
    h = mask.shape[0]
    reach = np.arange(1, int(limit) + 2)[:, None]
    centre = mask[np.clip(rows, 0, h - 1), cols] & (rows >= 0) & (rows < h)
    runs = centre.astype(np.int64)
    for direction in (-1, 1):
        r = rows[None, :] + direction * reach
        seen = mask[np.clip(r, 0, h - 1), cols[None, :]] & (r >= 0) & (r < h)
        runs += np.cumprod(seen, axis=0).sum(axis=0) * centre
    return float(np.median(runs[centre])) if centre.any() else 0.0


def _is_ruling(lines: _Lines, mask: np.ndarray, darkness: np.ndarray) -> bool:
    """Many long lines are ruling; two or three only when lighter than the other ink."""
    if lines.count >= RULING_MANY:
        return True
    px = lines.pixels
    rest = mask & ~morph.dilate_along(px, 1, 0) & ~morph.dilate_along(px, 1, 1)
    if not rest.any():
        return True
    return float(np.median(darkness[px])) < RULING_LIGHTER * float(np.median(darkness[rest]))


def _max_pool(a: np.ndarray, f: int) -> np.ndarray:
    if f == 1:
        return a
    h, w = a.shape
    H, W = -(-h // f) * f, -(-w // f) * f
    p = np.zeros((H, W), a.dtype)
    p[:h, :w] = a
    return p.reshape(H // f, f, W // f, f).max(axis=(1, 3))


def _upsample(mask: np.ndarray, f: int, shape: tuple[int, int]) -> np.ndarray:
    if f == 1:
        return mask
    return np.repeat(np.repeat(mask, f, 0), f, 1)[: shape[0], : shape[1]]


def otsu(values: np.ndarray) -> float:
    """Otsu's threshold of values in [0, 1] (256 bins)."""
    hist, edges = np.histogram(values, bins=256, range=(0.0, 1.0))
    hist = hist.astype(np.float64)
    centers = (edges[:-1] + edges[1:]) / 2
    w0 = np.cumsum(hist)
    w1 = w0[-1] - w0
    m0 = np.cumsum(hist * centers)
    mean0 = m0 / np.maximum(w0, 1e-12)
    mean1 = (m0[-1] - m0) / np.maximum(w1, 1e-12)
    between = w0 * w1 * (mean0 - mean1) ** 2
    return float(centers[int(np.argmax(between))])


# ---- cropping to the formula

SPECK_AREA = 0.25  # a component of fewer pixels than this x the pen width squared is a speck (a dot is ~0.8)
STROKE_AREA = 4.0  # a component of at least this x the pen width squared is a stroke (a dot, a speck is less)
CLUSTER_GAP = 1.5  # strokes within this many symbol heights of the formula's box belong to it ...
DOT_GAP = 0.5  # ... and dots within this many
MAX_COMPONENTS = 2000  # the largest ones are considered (a grainy page has thousands of specks)


def crop_to_components(ink: np.ndarray, pen: float) -> np.ndarray | None:
    """The formula: the cluster of ink components around the largest one, cropped, and other marks
    inside the crop erased. None when there is no ink.

    The bounding box of every dark pixel is widened by any speck, page edge or shadow border anywhere
    in the picture; a formula is one tight group of strokes. Specks (under SPECK_AREA pen widths
    squared) are dropped; the group starts from the largest component away from the picture's edge
    (an edge-touching one is the page's border or a shadow, unless nothing else is there) and takes
    in every component within CLUSTER_GAP symbol heights of its box, until none is left that near."""
    mask = ink > 0.5
    comps = morph.components(mask)
    if len(comps) == 0:
        return None
    h, w = mask.shape
    order = np.argsort(-comps.areas)[:MAX_COMPONENTS]
    order = order[comps.areas[order] >= max(3.0, SPECK_AREA * pen * pen)]
    if len(order) == 0:
        order = np.argsort(-comps.areas)[:1]
    boxes = comps.boxes[order]
    strokes = comps.areas[order] >= STROKE_AREA * pen * pen
    strokes[0] = True  # the largest always
    edge = (boxes[:, 0] == 0) | (boxes[:, 1] == 0) | (boxes[:, 2] == w) | (boxes[:, 3] == h)
    seed = int(np.flatnonzero(~edge & strokes)[0]) if (~edge & strokes).any() else 0
    heights = (boxes[:, 3] - boxes[:, 1])[~edge] if (~edge).any() else boxes[:, 3] - boxes[:, 1]
    # a symbol's height: the tallest of the five largest components off the edge (the largest may be a
    # fraction bar; the page's edge is as tall as the picture)
    symbol = float(max(heights[:5].max(), 2 * pen))
    member = np.zeros(len(order), bool)
    member[seed] = True
    box = boxes[seed].copy()
    # strokes join while any is near the group's box; then dots near it (a dot never extends the reach:
    # a speckled page would chain its specks across the picture)
    for candidates, gap, repeat in ((strokes, CLUSTER_GAP * symbol, True), (~strokes, DOT_GAP * symbol, False)):
        while True:
            near = candidates & ~member & _within(boxes, box, gap)
            if not near.any():
                break
            member |= near
            sel = boxes[member]
            box = np.array([sel[:, 0].min(), sel[:, 1].min(), sel[:, 2].max(), sel[:, 3].max()])
            if not repeat:
                break
    x0, y0, x1, y1 = (int(v) for v in box)
    keep = np.isin(comps.labels[y0:y1, x0:x1], order[member] + 1)
    crop = ink[y0:y1, x0:x1].copy()
    # the faint fringe of kept strokes (darkness under 0.5) stays; other components' pixels go
    near_kept = morph.dilate_along(morph.dilate_along(keep, 2, 0), 2, 1)
    crop[~near_kept] = 0.0
    return crop


def _within(boxes: np.ndarray, box: np.ndarray, gap: float) -> np.ndarray:
    """[n] whether each box is at most ``gap`` px away from ``box``, both ways."""
    dx = np.maximum(0, np.maximum(box[0] - boxes[:, 2], boxes[:, 0] - box[2]))
    dy = np.maximum(0, np.maximum(box[1] - boxes[:, 3], boxes[:, 1] - box[3]))
    return (dx <= gap) & (dy <= gap)


# ---- pen

SKELETON_PASSES = 24  # thinning passes at the work scale below (a stroke up to ~48 px wide there)


def thin_to_pen(paper: np.ndarray, work_height: int, pen: float) -> np.ndarray:
    """uint8 paper of a thick pen -> the same writing at ``work_height`` px high, thinned to a skeleton and
    redrawn with a ``pen`` px round pen: strokes keep their connections and loops, which grey-level
    erosion does not (it cuts a stroke where it is thinner than the passes and empties small loops)."""
    h, w = paper.shape
    scale = work_height / h
    size = (max(1, round(w * scale)), max(1, work_height))
    small = np.asarray(Image.fromarray(paper).resize(size, Image.BILINEAR), np.uint8)
    skeleton = morph.thin(small < 128, SKELETON_PASSES)
    radius = max(0, int(round((pen - 1) / 2)))
    drawn = skeleton
    for i in range(radius):  # alternating square and cross: a roughly round pen
        if i % 2 == 0:
            drawn = morph.dilate_along(morph.dilate_along(drawn, 1, 0), 1, 1)
        else:
            drawn = morph.dilate_along(drawn, 1, 0) | morph.dilate_along(drawn, 1, 1)
    img = Image.fromarray(np.where(drawn, 0, 255).astype(np.uint8)).filter(ImageFilter.GaussianBlur(0.6))
    return np.asarray(img, np.uint8)
