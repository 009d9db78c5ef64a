"""What a photo of paper needs beyond flat light and contrast: ruling removed, the formula
found among other marks, a thick pen thinned without breaking strokes.

Each function is one step of ``preprocess.prepare_picture`` (switched by ``PictureSteps``)
and works on a darkness map (float [h, w], 0 = paper, 1 = full ink) or an ink mask.
``scripts/bench_paper_photos.py`` measures what each buys on photo-like pictures
(``paper_photos``). All are numpy + pillow and bounded in time: a fixed number of
passes over at most the work-size picture.
"""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageFilter

from formula_gan.recognition import morphology as morph

# ---- ruling and grids

RULING_SIDE = 800  # lines are looked for on a copy max-pooled to at most this long side (speed; pooling keeps thin lines)
# A photo is rarely square to the page: lines are followed along these slopes (dy/dx, about +-5 degrees,
# plus the 1 px tolerance of the band below between two slopes).
RULING_SLOPES = (-0.08, -0.04, 0.0, 0.04, 0.08)
RULING_PIECE = 0.1  # a line is chained from straight pieces at least this fraction of the picture long ...
RULING_SPAN = 0.5  # ... and spans at least half the picture: a notebook's lines run edge to edge, writing does not
# ... and is thin: on average at most 3 % of the picture's height (and 6 px) thick on the pooled copy (a printed
# line is 1-3 px, blurred a few more; a black blob split by a white line is no ruled paper)
RULING_THICK = 0.03
# Two long lines or more make ruled paper. With fewer than RULING_MANY they must also be lighter than the
# rest of the ink (a tight crop of |x| has two long dark bars that are writing, not ruling).
RULING_MANY = 4
RULING_LIGHTER = 0.75
# A line's own darkness: the grey-level opening along it over 15 px: longer than a pencil or pen stroke crossing
# it is wide, short enough that a line tilted by the perspective (slope 0.1) stays within its width over it.
# A wider marker stroke crossing a line survives the opening, but the cap below leaves it its darkness.
RULING_OPEN_PX = 15
RULING_CAP = 1.25  # ... capped at this x the lines' median darkness (the lines of one page are alike)


def remove_ruling(ink: np.ndarray) -> np.ndarray:
    """Darkness map without the ruled lines or grid of the paper (the writing on and across them kept).

    Ruled lines are long, thin and straight and run across the whole page; a stroke of writing may be
    long and straight (a fraction bar) but not across the page, and there are not several of them
    parallel. Lines are found on a max-pooled copy. At full size, each line's own darkness is what a
    grey-level opening along it leaves (a stroke crossing the line is short in that direction and
    goes), and it is divided out as a filter's would be: a pen or pencil stroke crossing the line
    keeps its darkness, so no stroke is cut in two; the line alone becomes paper."""
    f = max(1, int(np.ceil(max(ink.shape) / RULING_SIDE)))
    small = _max_pool(ink, f)
    t = max(0.06, 0.5 * otsu(small))
    mask = small > t
    horizontal = _long_lines(mask)
    if not horizontal.any():
        return ink  # no ruling; a grid without horizontal lines is not paper
    vertical = _long_lines(mask.T).T
    light = np.ones_like(ink)  # how much light the ruling lets through at each pixel
    for lines, across in ((horizontal, 0), (vertical, 1)):
        if lines.any() and _is_ruling(lines, mask, small):
            zone = morph.dilate_along(_upsample(lines, f, ink.shape), 1, across)  # with the lines' blurred edges
            own = np.where(zone, morph.grey_open_along(ink, RULING_OPEN_PX, 1 - across), 0.0)
            # a pen stroke along a line (a fraction bar written on it) survives the opening too: no more
            # than the ruling's typical darkness is divided out, so the stroke's excess stays
            on_line = own[zone & (own > t)]
            if on_line.size:
                own = np.minimum(own, RULING_CAP * float(np.median(on_line)))
            light *= 1.0 - np.minimum(own, 0.95)
    return np.clip(1.0 - (1.0 - ink) / light, 0.0, 1.0)


def _long_lines(mask: np.ndarray) -> np.ndarray:
    """Pixels of ``mask`` on lines along its rows that span at least RULING_SPAN of its width
    (tilted within RULING_SLOPES, chained from straight pieces); none when fewer than two."""
    h, w = mask.shape
    band = morph.dilate_along(mask, 1, 0)  # a tilted 1 px line is a staircase: one row of slack
    piece = max(8, int(RULING_PIECE * w))
    straight = np.zeros_like(mask)
    for slope in RULING_SLOPES:
        straight |= morph.runs_at_least(band, piece, slope)
    comps = morph.components(straight & mask)
    spans = comps.boxes[:, 2] - comps.boxes[:, 0]
    thin = comps.areas <= max(6.0, RULING_THICK * h) * np.maximum(spans, 1)  # mean thickness: area / length
    long = np.flatnonzero((spans >= RULING_SPAN * w) & thin) + 1
    if len(long) < 2:
        return np.zeros_like(mask)
    return np.isin(comps.labels, long)


def _is_ruling(lines: np.ndarray, mask: np.ndarray, darkness: np.ndarray) -> bool:
    """Many long lines are ruling; two or three only when lighter than the other ink."""
    if _count(lines) >= RULING_MANY:
        return True
    rest = mask & ~morph.dilate_along(lines, 1, 0) & ~morph.dilate_along(lines, 1, 1)
    if not rest.any():
        return True
    return float(np.median(darkness[lines])) < RULING_LIGHTER * float(np.median(darkness[rest]))


def _count(lines: np.ndarray) -> int:
    return len(morph.components(lines))


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
    heights = boxes[:, 3] - boxes[:, 1]
    # a symbol's height: the tallest of the five largest components (the largest may be a fraction bar)
    symbol = float(max(heights[: min(5, len(heights))].max(), 2 * pen))
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
