"""Discriminator: per-sample projection (the released code's batch-sum bug is not reproduced)."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from formula_gan.models.discriminator import Discriminator
from test_gan_support import one_thread  # noqa: F401


def others_unchanged(D: nn.Module, train: bool) -> bool:
    """Change sample 2 of a batch of 4 (image and domain); are the scores of samples 0, 1, 3 the same?

    D has no BatchNorm, so a sample's score depends on that sample alone in both modes. In
    training mode every forward runs one spectral-norm power iteration, which changes σ
    slightly between two calls; so each call gets a fresh copy of the same D."""
    torch.manual_seed(1)
    x = torch.rand(4, 1, 32, 64)
    c = torch.tensor([0, 1, 0, 1])
    x2, c2 = x.clone(), c.clone()
    x2[2] = torch.rand(1, 32, 64)
    c2[2] = 1 - c2[2]
    a_model, b_model = (copy.deepcopy(D).train(train) for _ in range(2))
    with torch.no_grad():
        a, b = a_model(x, c), b_model(x2, c2)
    assert not torch.allclose(a[2], b[2])  # the changed sample's own score moves
    keep = [0, 1, 3]
    return torch.allclose(a[keep], b[keep], rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("train", [False, True])
@pytest.mark.parametrize("attention", [True, False])
def test_projection_is_per_sample(train: bool, attention: bool) -> None:
    torch.manual_seed(0)
    assert others_unchanged(Discriminator(width=0.125, attention=attention), train)


class BatchSummedProjection(Discriminator):
    """The released code's bug: the projection term summed over the whole batch."""

    def forward(self, x: torch.Tensor, domain: torch.Tensor) -> torch.Tensor:
        h = self.features(x)
        return self.linear(h).squeeze(1) + (self.embed(domain) * h).sum()


def test_the_check_catches_a_batch_summed_projection() -> None:
    torch.manual_seed(0)
    assert not others_unchanged(BatchSummedProjection(width=0.125), train=False)


def test_scores_shape_dtype_and_domain_matters() -> None:
    torch.manual_seed(0)
    D = Discriminator(width=0.125).eval()
    x = torch.rand(3, 1, 48, 32)
    with torch.no_grad():
        s0, s1 = D(x, torch.zeros(3, dtype=torch.long)), D(x, torch.ones(3, dtype=torch.long))
    assert s0.shape == (3,) and s0.dtype == torch.float32
    assert not torch.allclose(s0, s1)
    assert not any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in D.modules())
