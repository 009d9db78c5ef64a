"""What the discriminator sees: one view of real and generated images, the same in both steps.

    images [b, 1, h, w] + masks -> (crop) -> (translate) -> (cutout) -> D

* **Crop** (``crop_width`` > 0): a window of ``crop_width`` columns at a random
  position inside each image's own region (images narrower than the window are
  padded with background). Real and generated formulas differ in width for
  reasons G cannot change (a rendering's aspect ratio is the renderer's), and D
  sum-pools, so on whole images width alone separates the domains. On windows
  of one size it cannot, and each image gives D a fresh sample every step.
* **Translate** and **cutout**: DiffAugment (Zhao et al. 2020), differentiable,
  applied to real and generated images alike, in D's step and in G's step: D
  cannot memorize the few thousand real formulas pixel by pixel, and G learns
  through the same augmentation D saw. Translation shifts by up to
  ``translation`` of each side, filling with background; cutout blanks a
  rectangle of ``cutout`` of each side.

Background is ink 0, so padding, shifting in and cutting out all write paper.
All randomness comes from the caller's generator (a resumed run draws the same).
Without a crop, the caller pads real and generated images to one canvas
(``canvas``/``pad_to``) in both steps.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F


@dataclass(frozen=True)
class DView:
    crop_width: int = 0  # 0: whole images on a shared canvas (the paper)
    translation: float = 0.0  # max shift as a fraction of height and width (DiffAugment: 1/8)
    cutout: float = 0.0  # cutout rectangle as a fraction of height and width (DiffAugment: 1/2)

    def __post_init__(self) -> None:
        if self.crop_width < 0 or self.crop_width % 16:
            raise ValueError(f"crop_width must be 0 or a positive multiple of 16, got {self.crop_width}")
        if not 0.0 <= self.translation < 0.5 or not 0.0 <= self.cutout < 1.0:
            raise ValueError(f"translation must be in [0, 0.5) and cutout in [0, 1), got {self.translation}, {self.cutout}")


def canvas(*batches: torch.Tensor) -> tuple[int, int]:
    """The smallest (h, w) holding every batch of images [b, 1, h_i, w_i]."""
    return max(x.shape[-2] for x in batches), max(x.shape[-1] for x in batches)


def pad_to(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Pad [b, 1, h, w] at the bottom/right with background (ink 0) to ``size``."""
    return F.pad(x, (0, size[1] - x.shape[-1], 0, size[0] - x.shape[-2]))


def d_view(
    images: torch.Tensor, masks: torch.Tensor, view: DView, gen: torch.Generator, size: tuple[int, int] | None = None
) -> torch.Tensor:
    """images [b, 1, h, w] (ink 1), masks [b, h, w] -> what D is shown: [b, 1, h, crop_width] with a crop,
    else padded to ``size``; then translated and cut out when the view asks for it."""
    if view.crop_width:
        x = crop_windows(images, masks, view.crop_width, gen)
    else:
        x = pad_to(images, size or images.shape[-2:])
    if view.translation > 0:
        x = translate(x, view.translation, gen)
    if view.cutout > 0:
        x = cutout(x, view.cutout, gen)
    return x


def crop_windows(images: torch.Tensor, masks: torch.Tensor, width: int, gen: torch.Generator) -> torch.Tensor:
    """A window of ``width`` columns per image at a random offset inside its real region -> [b, 1, h, width]."""
    b, _, h, w = images.shape
    if w < width:
        images = F.pad(images, (0, width - w))
        w = width
    real_w = masks.any(dim=1).sum(dim=1).cpu()  # [b] columns of each image's own region
    room = (real_w - width).clamp_min(0) + 1  # [b] possible offsets
    offset = (torch.rand(b, generator=gen) * room).long().clamp_max(w - width)  # [b]
    cols = offset.to(images.device).unsqueeze(1) + torch.arange(width, device=images.device)  # [b, width]
    index = cols.view(b, 1, 1, width).expand(b, 1, h, width)
    return images.gather(3, index)


def translate(x: torch.Tensor, ratio: float, gen: torch.Generator) -> torch.Tensor:
    """Shift each image by up to ``ratio`` of its height and width (independently), filling with background."""
    b, c, h, w = x.shape
    sh, sw = int(h * ratio + 0.5), int(w * ratio + 0.5)
    dy = torch.randint(-sh, sh + 1, (b, 1, 1), generator=gen).to(x.device)
    dx = torch.randint(-sw, sw + 1, (b, 1, 1), generator=gen).to(x.device)
    rows = (torch.arange(h, device=x.device).view(1, h, 1) + dy + sh).expand(b, h, w)  # [b, h, w] in padded coords
    cols = (torch.arange(w, device=x.device).view(1, 1, w) + dx + sw).expand(b, h, w)
    padded = F.pad(x, (sw, sw, sh, sh))  # [b, c, h + 2sh, w + 2sw]
    flat = padded.flatten(2)  # [b, c, (h + 2sh)(w + 2sw)]
    index = (rows * (w + 2 * sw) + cols).view(b, 1, h * w).expand(b, c, h * w)
    return flat.gather(2, index).view(b, c, h, w)


def cutout(x: torch.Tensor, ratio: float, gen: torch.Generator) -> torch.Tensor:
    """Blank (ink 0) one rectangle of ``ratio`` of the height and width per image, centred at random."""
    b, _, h, w = x.shape
    ch, cw = max(1, int(h * ratio + 0.5)), max(1, int(w * ratio + 0.5))
    cy = torch.randint(0, h + (1 - ch % 2), (b, 1, 1), generator=gen).to(x.device)
    cx = torch.randint(0, w + (1 - cw % 2), (b, 1, 1), generator=gen).to(x.device)
    ys = torch.arange(h, device=x.device).view(1, h, 1)
    xs = torch.arange(w, device=x.device).view(1, 1, w)
    inside = ((ys - cy).abs() <= ch // 2) & ((xs - cx).abs() <= cw // 2)  # [b, h, w]
    return x * (~inside).unsqueeze(1).to(x.dtype)
