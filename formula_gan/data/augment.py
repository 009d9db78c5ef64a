"""Batched geometric augmentation with ``affine_grid`` / ``grid_sample`` (CPU or GPU, no torchvision).

Per sample, a random affine map is built in pixel coordinates: rotation, shear and
aspect-ratio scaling about the center of the ink's bounding box. The transformed
ink box plus a random white margin (the "padding" augmentation) is then fitted
into the sample's real (masked) region: shrunk if needed, never enlarged, and
centered (a sample whose every transform was skipped is left as it is).
So by construction all ink stays inside the real region with at least
the drawn margin on every side, padding pixels stay empty, and masks do not
change. Each transform is applied with its own probability; all randomness comes
from the caller's ``torch.Generator``, so a seed reproduces a batch exactly.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from formula_gan.data.batch import Batch

INK_THRESHOLD = 0.02  # ink values above this count for the ink bounding box (anti-aliasing fringe included)


@dataclass
class AugmentConfig:
    p_rotate: float = 0.5
    rotate_deg: float = 4.0  # uniform in [-4, 4] degrees (the paper's range)
    p_shear: float = 0.5
    shear_deg: float = 10.0  # horizontal shear angle, uniform in [-10, 10] degrees: handwriting slant
    p_pad: float = 0.5
    pad_px: tuple[int, int] = (10, 20)  # white margin around the ink, uniform in [10, 20] px (at most 1/4 of a side)
    p_scale: float = 0.5
    aspect: tuple[float, float] = (0.8, 1.25)  # width/height stretch factor, log-uniform in this range
    # Photos written with a thick marker: recognize's preparation thins their strokes to a skeleton and
    # redraws them with the training pen (recognition/cleanup.thin_to_pen), but what the marker filled or
    # joined stays so (small loops, strokes written close). scripts/bench_paper_photos.py, by_kind: the
    # CROHME-only recognizer (weights/judge.pt) reads 20 % of the clean formulas and 10 % of their marker
    # photos once prepared (pencil and pen photos: 16 and 18 %). This gives training images the same round
    # trip. Off by default (0: no random draw either, so existing runs are unchanged); no run uses it yet.
    p_marker: float = 0.0
    marker_px: tuple[float, float] = (1.0, 2.5)  # how far the marker spreads past each stroke edge, image px

    def __post_init__(self) -> None:
        for name in ("p_rotate", "p_shear", "p_pad", "p_scale", "p_marker"):
            p = getattr(self, name)
            if not 0.0 <= p <= 1.0:
                raise ValueError(f"{name} must be a probability in [0, 1], got {p}")
        if not (0 <= self.pad_px[0] <= self.pad_px[1]):
            raise ValueError(f"pad_px must be an increasing pair of non-negative ints, got {self.pad_px}")
        if not (0 < self.aspect[0] <= self.aspect[1]):
            raise ValueError(f"aspect must be an increasing pair of positive factors, got {self.aspect}")
        if not (0 <= self.marker_px[0] <= self.marker_px[1]):
            raise ValueError(f"marker_px must be an increasing pair of non-negative px, got {self.marker_px}")


def ink_boxes(images: torch.Tensor, masks: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Ink bounding boxes [b, 4] (x0, y0, x1, y1 in pixel-center coordinates, inclusive) and
    has_ink [b] bool; images [b, 1, h, w], masks [b, h, w]."""
    ink = (images[:, 0] > INK_THRESHOLD) & masks  # [b, h, w]
    cols = ink.any(dim=1)  # [b, w]
    rows = ink.any(dim=2)  # [b, h]
    has = cols.any(dim=1)
    w, h = cols.shape[1], rows.shape[1]
    xs = torch.arange(w, device=images.device)
    ys = torch.arange(h, device=images.device)
    x0 = torch.where(cols, xs, w).amin(1)
    x1 = torch.where(cols, xs, -1).amax(1)
    y0 = torch.where(rows, ys, h).amin(1)
    y1 = torch.where(rows, ys, -1).amax(1)
    return torch.stack([x0, y0, x1, y1], 1).float(), has


def real_sizes(masks: torch.Tensor) -> torch.Tensor:
    """[b, 2] (width, height) of each sample's real region (masks are top-left rectangles)."""
    return torch.stack([masks.any(1).sum(1), masks.any(2).sum(1)], 1).float()


def _uniform(gen: torch.Generator, b: int, lo: float, hi: float) -> torch.Tensor:
    return torch.rand(b, generator=gen, device=gen.device).cpu() * (hi - lo) + lo


def _coin(gen: torch.Generator, b: int, p: float) -> torch.Tensor:
    return torch.rand(b, generator=gen, device=gen.device).cpu() < p


def sample_params(cfg: AugmentConfig, b: int, generator: torch.Generator) -> dict[str, torch.Tensor]:
    """Random parameters per sample (always drawn in the same order, so a seed fixes them all)."""
    rot = torch.where(_coin(generator, b, cfg.p_rotate), _uniform(generator, b, -cfg.rotate_deg, cfg.rotate_deg), torch.zeros(b))
    shear = torch.where(_coin(generator, b, cfg.p_shear), _uniform(generator, b, -cfg.shear_deg, cfg.shear_deg), torch.zeros(b))
    pad_lo, pad_hi = cfg.pad_px
    pad = torch.where(_coin(generator, b, cfg.p_pad), _uniform(generator, b, pad_lo, pad_hi + 1).floor(), torch.zeros(b))
    lo, hi = math.log(cfg.aspect[0]), math.log(cfg.aspect[1])
    aspect = torch.where(_coin(generator, b, cfg.p_scale), _uniform(generator, b, lo, hi).exp(), torch.ones(b))
    params = {"rotate_deg": rot, "shear_deg": shear, "pad_px": pad, "aspect": aspect}
    if cfg.p_marker > 0:  # drawn last, and only when on: a seed gives the other parameters as before
        spread = _uniform(generator, b, cfg.marker_px[0], cfg.marker_px[1])
        params["marker_px"] = torch.where(_coin(generator, b, cfg.p_marker), spread, torch.zeros(b))
    return params


def augment_batch(batch: Batch, cfg: AugmentConfig, generator: torch.Generator) -> Batch:
    """Randomly rotate, shear, stretch and pad every image of ``batch`` inside its real region."""
    images, masks = batch.images, batch.masks  # [b, 1, H, W], [b, H, W]
    b, _, H, W = images.shape
    dev = images.device
    p = {k: v.to(dev) for k, v in sample_params(cfg, b, generator).items()}
    if "marker_px" in p and bool((p["marker_px"] > 0).any()):
        images = marker_round_trip(images, masks, p["marker_px"])
    box, has_ink = ink_boxes(images, masks)  # [b, 4]
    size = real_sizes(masks)  # [b, 2] (w, h)

    # forward linear map A (about the ink center): aspect stretch, then shear, then rotation
    th = torch.deg2rad(p["rotate_deg"])
    sh = torch.tan(torch.deg2rad(p["shear_deg"]))
    s = p["aspect"].sqrt()  # stretch x by sqrt(a), squeeze y by sqrt(a): area kept
    cos, sin = torch.cos(th), torch.sin(th)
    R = torch.stack([torch.stack([cos, -sin], -1), torch.stack([sin, cos], -1)], -2)  # [b, 2, 2]
    S = torch.zeros(b, 2, 2, device=dev)
    S[:, 0, 0], S[:, 0, 1], S[:, 1, 1] = 1.0, sh, 1.0
    D = torch.diag_embed(torch.stack([s, 1.0 / s], -1))  # [b, 2, 2]
    A = R @ S @ D  # [b, 2, 2]

    # the ink box (pixel extents: centers +- 0.5) and its image under A
    c_in = (box[:, :2] + box[:, 2:]) / 2  # [b, 2]
    half = (box[:, 2:] - box[:, :2]) / 2 + 0.5  # [b, 2]
    corners = torch.tensor([[-1.0, -1.0], [1.0, -1.0], [1.0, 1.0], [-1.0, 1.0]], device=dev)  # [4, 2]
    pts = corners[None] * half[:, None]  # [b, 4, 2]
    tpts = pts @ A.transpose(1, 2)  # [b, 4, 2]
    ext = tpts.amax(1) - tpts.amin(1)  # [b, 2] transformed box width, height
    tmid = (tpts.amax(1) + tpts.amin(1)) / 2  # [b, 2] its center relative to c_in
    # fit (box + 2 * margin) into the real region: shrink only. One extra pixel per side
    # absorbs the bilinear filter's spread.
    # On a small canvas the margin is capped at a quarter of the side, so that at least half
    # of it is left for the ink (a 20 px margin on a 32 px image would leave nothing).
    margin = torch.minimum(p["pad_px"][:, None] + 1.0, size / 4)  # [b, 2]
    room = (size - 2 * margin).clamp(min=1.0)  # [b, 2]
    k = torch.minimum(torch.ones(b, device=dev), (room / ext.clamp(min=1e-6)).amin(1))  # [b]
    # the transformed box's center lands on the real region's center
    c_out = size / 2 - 0.5  # [b, 2] (pixel-center coordinates)

    # inverse map for grid_sample. Forward: out = c_out + k (A (in - c_in) - tmid), hence
    # in = M out + t with M = A^-1 / k and t = c_in + A^-1 tmid - M c_out
    Ainv = torch.linalg.inv(A)  # [b, 2, 2]
    M = Ainv / k[:, None, None]
    t = c_in[:, :, None] + (Ainv @ tmid[:, :, None]) - M @ c_out[:, :, None]  # [b, 2, 1]
    # samples without ink, or whose every transform was skipped, are left exactly as they are
    untouched = (p["rotate_deg"] == 0) & (p["shear_deg"] == 0) & (p["pad_px"] == 0) & (p["aspect"] == 1)
    identity = ~has_ink | untouched
    eye = torch.eye(2, device=dev).expand(b, 2, 2)
    M = torch.where(identity[:, None, None], eye, M)
    t = torch.where(identity[:, None, None], torch.zeros_like(t), t)

    # pixel -> normalized coordinates (align_corners=False): n = (2x + 1) / W - 1
    N = torch.tensor([[2.0 / W, 0.0, 1.0 / W - 1.0], [0.0, 2.0 / H, 1.0 / H - 1.0], [0.0, 0.0, 1.0]], device=dev)
    Ninv = torch.linalg.inv(N)
    P = torch.zeros(b, 3, 3, device=dev)
    P[:, :2, :2], P[:, :2, 2:], P[:, 2, 2] = M, t, 1.0
    theta = (N @ P @ Ninv)[:, :2]  # [b, 2, 3] output normalized -> input normalized
    grid = F.affine_grid(theta.to(images.dtype), [b, 1, H, W], align_corners=False)
    out = F.grid_sample(images * masks[:, None], grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    out = out * masks[:, None]  # padding stays empty
    out = torch.where(identity[:, None, None, None], images, out)  # untouched samples: bit-exact
    return Batch(out, masks, batch.tokens, batch.lengths, batch.domains, list(batch.keys))


def marker_round_trip(images: torch.Tensor, masks: torch.Tensor, spread_px: torch.Tensor) -> torch.Tensor:
    """[b, 1, H, W] ink images as recognize prepares a photo of them written with a thick marker: each
    stroke edge grown by ``spread_px`` [b] (0: the sample is left as it is), thinned to a skeleton and
    redrawn with a pen as wide as the strokes were. Done at twice the size, as the preparation thins at
    twice the model's scale and then reduces."""
    todo = torch.nonzero(spread_px > 0).flatten()
    if len(todo) == 0:
        return images
    x = images[todo]
    big = F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=False) > 0.5  # [n, 1, 2H, 2W]
    grown = torch.zeros_like(big)
    radius = (2 * spread_px[todo]).round().long()  # at twice the size
    for r in radius.unique().tolist():
        sel = radius == r
        grown[sel] = F.max_pool2d(big[sel].float(), 2 * r + 1, stride=1, padding=r) > 0 if r > 0 else big[sel]
    skeleton = _thin(grown, passes=int(radius.max()) + 4)  # a stroke of 3 + 2r px: (3 + 2r) / 2 passes
    pen = F.max_pool2d(skeleton.float(), 3, stride=1, padding=1)  # 3 px at twice the size: the pen of 1.5
    out = images.clone()
    out[todo] = F.avg_pool2d(pen, 2) * masks[todo, None]
    return out


def _thin(mask: torch.Tensor, passes: int) -> torch.Tensor:
    """Zhang-Suen thinning of a bool [n, 1, h, w] batch (as recognition.morphology.thin, in torch):
    strokes to one-pixel skeletons with their joins and loops, at most ``passes`` passes."""
    img = mask.to(torch.int32)
    for _ in range(passes):
        changed = False
        for step in (0, 1):
            p = F.pad(img, (1, 1, 1, 1))
            n = [p[..., :-2, 1:-1], p[..., :-2, 2:], p[..., 1:-1, 2:], p[..., 2:, 2:],
                 p[..., 2:, 1:-1], p[..., 2:, :-2], p[..., 1:-1, :-2], p[..., :-2, :-2]]  # fmt: skip  # p2 .. p9
            count = sum(n)
            transitions = sum(((n[i] == 0) & (n[(i + 1) % 8] == 1)).to(torch.int32) for i in range(8))
            if step == 0:
                side = (n[0] * n[2] * n[4] == 0) & (n[2] * n[4] * n[6] == 0)
            else:
                side = (n[0] * n[2] * n[6] == 0) & (n[0] * n[4] * n[6] == 0)
            remove = (img == 1) & (count >= 2) & (count <= 6) & (transitions == 1) & side
            if bool(remove.any()):
                img = img * (~remove).to(torch.int32)
                changed = True
        if not changed:
            break
    return img.bool()
