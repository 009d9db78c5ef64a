"""GAN layers: spectral norm, orthogonal init, conditional BatchNorm, self-attention, residual blocks."""

from __future__ import annotations

import functools

import pytest
import torch

from formula_gan.models.layers import ConditionalBatchNorm2d, DownBlock, GBlock, SelfAttention, channels, conv2d, layer_factories, linear
from test_gan_support import one_thread  # noqa: F401


def test_spectral_norm_bounds_the_largest_singular_value() -> None:
    torch.manual_seed(0)
    lin = linear(64, 32)
    x = torch.randn(8, 64)
    for _ in range(30):  # power iterations run in training mode
        lin(x)
    lin.eval()
    sigma = torch.linalg.matrix_norm(lin.weight.detach(), ord=2)
    assert sigma == pytest.approx(1.0, abs=0.02)
    plain = linear(64, 32, sn=False)
    assert not hasattr(plain, "parametrizations")


def test_orthogonal_init() -> None:
    conv = conv2d(16, 32, sn=False)
    w = conv.weight.detach().flatten(1)  # [32, 144] rows orthonormal
    assert torch.allclose(w @ w.T, torch.eye(32), atol=1e-5)
    assert torch.count_nonzero(conv.bias) == 0


def test_conditional_batchnorm_depends_on_the_condition() -> None:
    torch.manual_seed(0)
    _, which_linear = layer_factories(sn=False)
    bn = ConditionalBatchNorm2d(8, 6, which_linear)
    x = torch.randn(4, 8, 5, 5)
    y = torch.randn(4, 6)
    a = bn(x, y)
    y2 = y.clone()
    y2[1] += 1.0
    b = bn(x, y2)
    assert torch.equal(a[[0, 2, 3]], b[[0, 2, 3]])  # another sample's condition does not leak
    assert not torch.allclose(a[1], b[1])
    # a zero condition gives gain 1 and bias 0: plain BatchNorm
    plain = torch.nn.functional.batch_norm(x, None, None, training=True, eps=1e-4)
    assert torch.allclose(bn(x, torch.zeros(4, 6)), plain, atol=1e-5)


def test_self_attention_starts_as_identity_and_mixes_positions_once_gamma_moves() -> None:
    torch.manual_seed(0)
    which_conv, _ = layer_factories(sn=True)
    att = SelfAttention(16, which_conv)
    x = torch.randn(2, 16, 8, 12)
    assert att.gamma.item() == 0.0
    assert torch.equal(att(x), x)
    with torch.no_grad():
        att.gamma.fill_(1.0)
    y = att(x)
    x2 = x.clone()
    x2[:, :, 0, 0] += 5.0  # one far-away position changes ...
    y2 = att(x2)
    assert not torch.allclose(y[:, :, 7, 11], y2[:, :, 7, 11])  # ... and the opposite corner sees it
    with pytest.raises(ValueError, match="divisible by 8"):
        SelfAttention(12, which_conv)


@pytest.mark.parametrize("sn", [True, False])
def test_blocks_halve_and_double(sn: bool) -> None:
    which_conv, which_linear = layer_factories(sn)
    which_bn = functools.partial(ConditionalBatchNorm2d, cond_dim=10, which_linear=which_linear)
    up = GBlock(16, 8, which_conv, which_bn)
    down = DownBlock(8, 24, which_conv, preactivation=True)
    x = torch.randn(2, 16, 4, 6)
    h = up(x, torch.randn(2, 10))
    assert h.shape == (2, 8, 8, 12)
    assert down(h).shape == (2, 24, 4, 6)


def test_channel_table_rounds_to_multiples_of_eight() -> None:
    assert channels(64, (1, 2, 4, 8), 1.0) == [64, 128, 256, 512]
    assert channels(64, (1, 2, 4, 8), 0.125) == [8, 16, 32, 64]
    assert all(c % 8 == 0 and c >= 8 for c in channels(64, (1, 2, 4, 8), 0.3))
