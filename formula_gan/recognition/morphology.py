"""Binary image operations for preparing pictures, in numpy alone (no scipy, no OpenCV).

* ``runs_at_least``: morphological opening with a straight line of ``length`` px, along
  a slope (a ruled line seen at an angle is still one straight run);
* ``dilate_along`` / ``close_along``: 1-D dilation and closing along rows or columns;
* ``components``: 8-connected components (labels and boxes), by run-length union-find:
  a Python loop over runs of ink, not pixels (a formula photo has a few thousand);
* ``thin``: Zhang-Suen thinning, which removes only pixels whose removal keeps every
  stroke connected and every loop a loop (topology), a bounded number of passes.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


def _window_sums(mask: np.ndarray, length: int, axis: int) -> np.ndarray:
    """Sum of ``mask`` over the window of ``length`` px starting at each position along ``axis``
    (the last ``length - 1`` positions see past the end: 0 there)."""
    m = np.moveaxis(mask.astype(np.int32), axis, -1)
    c = np.concatenate([np.zeros(m.shape[:-1] + (1,), np.int32), np.cumsum(m, -1)], -1)
    n = m.shape[-1]
    out = np.zeros_like(m)
    if length <= n:
        out[..., : n - length + 1] = c[..., length:] - c[..., : n - length + 1]
    return np.moveaxis(out, -1, axis)


def dilate_along(mask: np.ndarray, radius: int, axis: int) -> np.ndarray:
    """1-D dilation by ``radius`` px both ways along ``axis``."""
    if radius <= 0:
        return mask.copy()
    pad = [(0, 0)] * mask.ndim
    pad[axis] = (radius, radius)
    padded = np.pad(mask, pad)
    return _window_sums(padded, 2 * radius + 1, axis).take(range(mask.shape[axis]), axis) > 0


def erode_along(mask: np.ndarray, radius: int, axis: int) -> np.ndarray:
    """1-D erosion by ``radius`` px both ways along ``axis`` (outside the image counts as ink:
    a stroke running out of the picture is not eaten from its cut end)."""
    if radius <= 0:
        return mask.copy()
    pad = [(0, 0)] * mask.ndim
    pad[axis] = (radius, radius)
    padded = np.pad(mask, pad, constant_values=True)
    k = 2 * radius + 1
    return _window_sums(padded, k, axis).take(range(mask.shape[axis]), axis) == k


def close_along(mask: np.ndarray, radius: int, axis: int) -> np.ndarray:
    """1-D closing: gaps of up to ``2 * radius`` px along ``axis`` filled."""
    return erode_along(dilate_along(mask, radius, axis), radius, axis)


def _extreme_along(a: np.ndarray, length: int, axis: int, fn) -> np.ndarray:
    """fn (np.minimum or np.maximum) over the centered window of ``length`` px along ``axis``, by
    doubling (log2(length) array operations); the image edge repeats its last value."""
    half = length // 2
    pad = [(0, 0)] * a.ndim
    pad[axis] = (half, length - 1 - half)
    out = np.pad(a, pad, mode="edge")
    n = out.shape[axis]
    span = 1
    while span < length:  # out[i] holds fn over [i, i + span)
        step = min(span, length - span)
        head = out.take(range(0, n - step), axis)
        tail = out.take(range(step, n), axis)
        out = np.concatenate([fn(head, tail), out.take(range(n - step, n), axis)], axis)
        span += step
    return out.take(range(a.shape[axis]), axis)


def grey_open_along(a: np.ndarray, length: int, axis: int) -> np.ndarray:
    """Grey-level opening with a 1-D line of ``length`` px along ``axis``: what is dark over the whole
    length stays, anything narrower along that direction (a stroke crossing a ruled line) is removed."""
    return _extreme_along(_extreme_along(a, length, axis, np.minimum), length, axis, np.maximum)


def _runs_straight(mask: np.ndarray, length: int) -> np.ndarray:
    """Pixels of horizontal runs of at least ``length`` px (opening with a 1 x length line)."""
    starts = _window_sums(mask, length, 1) == length  # a full window starts here
    # every pixel covered by some full window: a full window starts within length - 1 px to its left
    return _window_sums(np.pad(starts, ((0, 0), (length - 1, 0))), length, 1)[:, : mask.shape[1]] > 0


def runs_at_least(mask: np.ndarray, length: int, slope: float = 0.0) -> np.ndarray:
    """Pixels of straight runs of at least ``length`` px along the direction of ``slope``
    (dy/dx, |slope| < 1): rows are shifted so that such a line becomes horizontal, opened,
    and shifted back."""
    h, w = mask.shape
    if length > w:
        return np.zeros_like(mask)
    if slope == 0.0:
        return _runs_straight(mask, length)
    shift = np.round(slope * (np.arange(w) - w / 2)).astype(int)  # [w] row offset of each column
    lo, hi = int(min(0, shift.min())), int(max(0, shift.max()))
    padded = np.zeros((h + hi - lo, w), bool)
    padded[-lo : -lo + h] = mask
    rows = np.arange(h + hi - lo)[:, None] + shift[None, :]  # sheared[r, x] = padded[r + shift[x], x]
    cols = np.broadcast_to(np.arange(w)[None, :], rows.shape)
    valid = (rows >= 0) & (rows < h + hi - lo)
    sheared = np.zeros_like(padded)
    sheared[valid] = padded[rows[valid], cols[valid]]
    opened = _runs_straight(sheared, length)
    back = np.zeros_like(padded)
    back[rows[valid], cols[valid]] = opened[valid]  # one sheared pixel per padded pixel: no clash
    return back[-lo : -lo + h]


@dataclass
class Components:
    labels: np.ndarray  # int32 [h, w]: 0 = background, 1..n = component
    boxes: np.ndarray  # int64 [n, 4]: x0, y0, x1, y1 (exclusive ends), row i is label i + 1
    areas: np.ndarray  # int64 [n]

    def __len__(self) -> int:
        return len(self.areas)


def components(mask: np.ndarray) -> Components:
    """8-connected components of a boolean image."""
    h, w = mask.shape
    padded = np.zeros((h, w + 2), np.int8)
    padded[:, 1:-1] = mask
    d = np.diff(padded, axis=1)  # +1 where a run starts, -1 one past where it ends
    r_start, c_start = np.nonzero(d == 1)
    r_end, c_end = np.nonzero(d == -1)  # same order as the starts (row-major, runs disjoint)
    n = len(r_start)
    if n == 0:
        return Components(np.zeros((h, w), np.int32), np.zeros((0, 4), np.int64), np.zeros(0, np.int64))
    stride = w + 2
    key_start = r_start * stride + c_start
    key_end = r_end * stride + c_end  # exclusive end
    # run b in the next row touches run a (8-connected) when start_b <= end_a and end_b >= start_a
    lo = np.searchsorted(key_end, (r_start + 1) * stride + c_start, side="left")
    hi = np.searchsorted(key_start, (r_start + 1) * stride + c_end, side="right")
    parent = list(range(n))

    def find(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    for a in np.flatnonzero(hi > lo):
        ra = find(int(a))
        for b in range(int(lo[a]), int(hi[a])):
            rb = find(b)
            if rb != ra:
                parent[max(ra, rb)] = min(ra, rb)
                ra = min(ra, rb)
    roots = np.array([find(i) for i in range(n)])
    uniq, run_label = np.unique(roots, return_inverse=True)
    run_label = run_label + 1
    lengths = c_end - c_start
    labels = np.zeros(h * w, np.int32)
    flat = np.repeat(r_start * w + c_start, lengths) + (np.arange(lengths.sum()) - np.repeat(np.cumsum(lengths) - lengths, lengths))
    labels[flat] = np.repeat(run_label, lengths)
    k = len(uniq)
    boxes = np.zeros((k, 4), np.int64)
    boxes[:, 0] = w
    boxes[:, 1] = h
    np.minimum.at(boxes[:, 0], run_label - 1, c_start)
    np.minimum.at(boxes[:, 1], run_label - 1, r_start)
    np.maximum.at(boxes[:, 2], run_label - 1, c_end)
    np.maximum.at(boxes[:, 3], run_label - 1, r_start + 1)
    areas = np.bincount(run_label - 1, weights=lengths, minlength=k).astype(np.int64)
    return Components(labels.reshape(h, w), boxes, areas)


def thin(mask: np.ndarray, max_passes: int) -> np.ndarray:
    """Zhang-Suen thinning (1984) to a one-pixel skeleton, at most ``max_passes`` passes (each pass
    peels at most one pixel off each side of a stroke: a stroke w px wide needs ~w/2)."""
    img = np.pad(mask.astype(np.uint8), 1)
    for _ in range(max_passes):
        changed = False
        for step in (0, 1):
            c = img[1:-1, 1:-1]
            p2, p3, p4 = img[:-2, 1:-1], img[:-2, 2:], img[1:-1, 2:]
            p5, p6, p7 = img[2:, 2:], img[2:, 1:-1], img[2:, :-2]
            p8, p9 = img[1:-1, :-2], img[:-2, :-2]
            ring = (p2, p3, p4, p5, p6, p7, p8, p9, p2)
            neighbours = sum(p.astype(np.int32) for p in ring[:8])
            transitions = sum(((ring[i] == 0) & (ring[i + 1] == 1)).astype(np.int32) for i in range(8))
            if step == 0:
                side = (p2 * p4 * p6 == 0) & (p4 * p6 * p8 == 0)
            else:
                side = (p2 * p4 * p8 == 0) & (p2 * p6 * p8 == 0)
            remove = (c == 1) & (neighbours >= 2) & (neighbours <= 6) & (transitions == 1) & side
            if remove.any():
                c[remove] = 0
                changed = True
        if not changed:
            break
    return img[1:-1, 1:-1].astype(bool)
