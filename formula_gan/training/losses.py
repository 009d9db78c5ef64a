"""Hinge losses of the GAN (computed in float32 whatever the autocast dtype)."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def d_hinge(d_real: torch.Tensor, d_fake: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(E[relu(1 − D(real))], E[relu(1 + D(fake))]); L_D is their sum."""
    return F.relu(1.0 - d_real.float()).mean(), F.relu(1.0 + d_fake.float()).mean()


def g_hinge(d_fake: torch.Tensor) -> torch.Tensor:
    """L_G = −E[D(G(x, z), c)]."""
    return -d_fake.float().mean()
