"""Batched augmentation: every transform keeps all ink inside the real region (with its
margin), leaves padding empty, is reproducible from a seed, and runs wherever the batch is."""

from __future__ import annotations

import pytest
import torch

from formula_gan.data.augment import AugmentConfig, augment_batch, ink_boxes, sample_params
from formula_gan.data.batch import Batch

OFF = dict(p_rotate=0.0, p_shear=0.0, p_pad=0.0, p_scale=0.0)
ONLY = {
    "rotate": AugmentConfig(**{**OFF, "p_rotate": 1.0}),
    "shear": AugmentConfig(**{**OFF, "p_shear": 1.0}),
    "pad": AugmentConfig(**{**OFF, "p_pad": 1.0}),
    "scale": AugmentConfig(**{**OFF, "p_scale": 1.0}),
    "all": AugmentConfig(p_rotate=1.0, p_shear=1.0, p_pad=1.0, p_scale=1.0),
}


def make_batch(device: str = "cpu") -> Batch:
    """Four samples of different real sizes in one padded canvas; ink reaches the real edges."""
    sizes = [(64, 160), (64, 60), (40, 160), (64, 64)]  # (h, w)
    H, W = 64, 160
    g = torch.Generator().manual_seed(0)
    images = torch.zeros(4, 1, H, W)
    masks = torch.zeros(4, H, W, dtype=torch.bool)
    for i, (h, w) in enumerate(sizes):
        masks[i, :h, :w] = True
        strokes = (torch.rand(h, w, generator=g) > 0.7).float()  # scattered ink up to the border
        strokes[0, :] = strokes[-1, :] = 1.0  # top and bottom rows and
        strokes[:, 0] = strokes[:, -1] = 1.0  # left and right columns: ink touches every edge
        images[i, 0, :h, :w] = strokes
    tokens = torch.ones(4, 3, dtype=torch.long)
    return Batch(images.to(device), masks.to(device), tokens.to(device), torch.full((4,), 3).to(device),
                 torch.ones(4, dtype=torch.long).to(device), ["a", "b", "c", "d"])


def devices() -> list[str]:
    return ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


@pytest.mark.parametrize("device", devices())
@pytest.mark.parametrize("name", sorted(ONLY))
def test_ink_stays_inside_with_margin(name: str, device: str) -> None:
    cfg = ONLY[name]
    for seed in range(5):
        batch = make_batch(device)
        gen = torch.Generator(device=device).manual_seed(seed)
        params = sample_params(cfg, 4, torch.Generator(device=device).manual_seed(seed))
        out = augment_batch(batch, cfg, gen)
        assert out.images.shape == batch.images.shape and torch.equal(out.masks, batch.masks)
        assert out.images[~out.masks[:, None]].abs().sum() == 0  # padding stays empty
        box, has = ink_boxes(out.images, out.masks)
        assert has.all()
        for i in range(4):
            h = int(batch.masks[i].any(1).sum())
            w = int(batch.masks[i].any(0).sum())
            pad = int(params["pad_px"][i])  # 0 unless padding was drawn
            # the margin drawn, capped at a quarter of the side (the bilinear fringe may use 1 px)
            mx, my = min(pad, w // 4 - 1), min(pad, h // 4 - 1)
            x0, y0, x1, y1 = box[i].tolist()
            assert x0 >= mx and y0 >= my, (name, seed, i, box[i], pad)
            assert x1 <= w - 1 - mx and y1 <= h - 1 - my, (name, seed, i, box[i], pad)
            assert x0 >= 0 and y0 >= 0 and x1 <= w - 1 and y1 <= h - 1
            if name == "pad":
                assert 10 <= pad <= 20
        # no ink was lost at the borders: content never touches the region's edge, and the
        # ink mass is what the (shrink-only) fit leaves of it
        assert out.images.sum() > 0.2 * batch.images.sum()


def test_changes_only_what_was_drawn() -> None:
    batch = make_batch()
    same = augment_batch(batch, AugmentConfig(**OFF), torch.Generator().manual_seed(0))
    assert torch.equal(same.images, batch.images)
    moved = augment_batch(batch, ONLY["rotate"], torch.Generator().manual_seed(0))
    assert not torch.equal(moved.images, batch.images)


def test_reproducible_from_seed() -> None:
    batch = make_batch()
    a = augment_batch(batch, ONLY["all"], torch.Generator().manual_seed(7))
    b = augment_batch(batch, ONLY["all"], torch.Generator().manual_seed(7))
    c = augment_batch(batch, ONLY["all"], torch.Generator().manual_seed(8))
    assert torch.equal(a.images, b.images)
    assert not torch.equal(a.images, c.images)


def test_ranges_are_respected() -> None:
    cfg = AugmentConfig(p_rotate=1.0, p_shear=1.0, p_pad=1.0, p_scale=1.0)
    p = sample_params(cfg, 2000, torch.Generator().manual_seed(0))
    assert p["rotate_deg"].abs().max() <= 4.0 and p["rotate_deg"].abs().max() > 3.9
    assert p["shear_deg"].abs().max() <= 10.0
    assert p["pad_px"].min() == 10 and p["pad_px"].max() == 20
    assert p["aspect"].min() >= 0.8 - 1e-6 and p["aspect"].max() <= 1.25 + 1e-6
    half = sample_params(AugmentConfig(p_rotate=0.5), 4000, torch.Generator().manual_seed(1))
    assert abs((half["rotate_deg"] != 0).float().mean().item() - 0.5) < 0.04


def test_bad_config() -> None:
    with pytest.raises(ValueError):
        AugmentConfig(p_rotate=1.5)
    with pytest.raises(ValueError):
        AugmentConfig(pad_px=(20, 10))
