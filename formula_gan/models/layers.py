"""GAN building blocks in the BigGAN-PyTorch manner: layer constructors are passed in
(``which_conv``, ``which_linear``, ``which_bn``) so one block serves spectral-norm and
plain variants, conditional and unconditional BatchNorm.
"""

from __future__ import annotations

import functools
from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.parametrizations import spectral_norm

ConvFactory = Callable[..., nn.Module]  # (in_channels, out_channels, kernel_size=3, padding=1) -> module
LinearFactory = Callable[..., nn.Module]  # (in_features, out_features, bias=True) -> module


def _ortho(module: nn.Module) -> nn.Module:
    # Orthogonal init (BigGAN's default): keeps early activations well scaled through deep residual stacks.
    nn.init.orthogonal_(module.weight)
    if getattr(module, "bias", None) is not None:
        nn.init.zeros_(module.bias)
    return module


def conv2d(in_channels: int, out_channels: int, kernel_size: int = 3, padding: int = 1, sn: bool = True) -> nn.Module:
    conv = _ortho(nn.Conv2d(in_channels, out_channels, kernel_size, padding=padding))
    return spectral_norm(conv, eps=1e-6) if sn else conv


def linear(in_features: int, out_features: int, bias: bool = True, sn: bool = True) -> nn.Module:
    lin = _ortho(nn.Linear(in_features, out_features, bias=bias))
    return spectral_norm(lin, eps=1e-6) if sn else lin


def embedding(num: int, dim: int, sn: bool = True) -> nn.Module:
    emb = _ortho(nn.Embedding(num, dim))
    return spectral_norm(emb, eps=1e-6) if sn else emb


def layer_factories(sn: bool) -> tuple[ConvFactory, LinearFactory]:
    """(which_conv, which_linear) with or without spectral norm."""
    return functools.partial(conv2d, sn=sn), functools.partial(linear, sn=sn)


class ConditionalBatchNorm2d(nn.Module):
    """BatchNorm whose gain and bias are linear projections of a condition vector
    ([class embedding, z chunk] in the generator): BigGAN's ``ccbn``."""

    def __init__(self, num_features: int, cond_dim: int, which_linear: LinearFactory, eps: float = 1e-4) -> None:
        super().__init__()
        self.bn = nn.BatchNorm2d(num_features, affine=False, eps=eps)
        self.gain = which_linear(cond_dim, num_features, bias=False)
        self.bias = which_linear(cond_dim, num_features, bias=False)

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        # x: [b, c, h, w], y: [b, cond_dim]
        gain = (1 + self.gain(y)).unsqueeze(-1).unsqueeze(-1)  # [b, c, 1, 1]; starts at identity
        bias = self.bias(y).unsqueeze(-1).unsqueeze(-1)
        return self.bn(x) * gain + bias


class SelfAttention(nn.Module):
    """SAGAN self-attention: 1×1 convs f (query), g (key), h (value), softmax, output conv,
    residual weighted by γ initialized to 0 (the block starts as the identity). Keys and
    values are max-pooled 2×2 as in BigGAN to quarter the attention matrix."""

    def __init__(self, channels: int, which_conv: ConvFactory) -> None:
        super().__init__()
        if channels % 8:
            raise ValueError(f"self-attention needs channels divisible by 8, got {channels}")
        self.f = which_conv(channels, channels // 8, kernel_size=1, padding=0)
        self.g = which_conv(channels, channels // 8, kernel_size=1, padding=0)
        self.h = which_conv(channels, channels // 2, kernel_size=1, padding=0)
        self.o = which_conv(channels // 2, channels, kernel_size=1, padding=0)
        self.gamma = nn.Parameter(torch.zeros(()))

    def forward(self, x: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        b, c, height, width = x.shape
        q = self.f(x).flatten(2).transpose(1, 2)  # [b, n, c/8]
        k = F.max_pool2d(self.g(x), 2).flatten(2).transpose(1, 2)  # [b, n/4, c/8]
        v = F.max_pool2d(self.h(x), 2).flatten(2).transpose(1, 2)  # [b, n/4, c/2]
        # scale=1: SAGAN's softmax(fᵀg) has no 1/√d; the fused kernel picks flash/efficient paths on GPU
        att = F.scaled_dot_product_attention(q.unsqueeze(1), k.unsqueeze(1), v.unsqueeze(1), scale=1.0)
        att = att.squeeze(1).transpose(1, 2).reshape(b, c // 2, height, width)  # [b, c/2, h, w]
        return x + self.gamma * self.o(att)


class GBlock(nn.Module):
    """Residual up-sampling block: CBN-ReLU-up×2-conv3×3-CBN-ReLU-conv3×3, shortcut up + 1×1 conv."""

    def __init__(self, in_channels: int, out_channels: int, which_conv: ConvFactory, which_bn: Callable[[int], nn.Module]) -> None:
        super().__init__()
        self.bn1 = which_bn(in_channels)
        self.conv1 = which_conv(in_channels, out_channels)
        self.bn2 = which_bn(out_channels)
        self.conv2 = which_conv(out_channels, out_channels)
        self.conv_sc = which_conv(in_channels, out_channels, kernel_size=1, padding=0)

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        # x: [b, in, h, w], y: [b, cond_dim]
        out = F.relu(self.bn1(x, y))
        out = F.interpolate(out, scale_factor=2.0, mode="nearest")
        out = self.conv2(F.relu(self.bn2(self.conv1(out), y)))  # [b, out, 2h, 2w]
        return out + self.conv_sc(F.interpolate(x, scale_factor=2.0, mode="nearest"))


class DownBlock(nn.Module):
    """Residual down-sampling block: (ReLU)-conv3×3-ReLU-avgpool×2-conv3×3, shortcut 1×1 conv + avgpool.

    The discriminator's blocks and the generator's encoder blocks (BigGAN calls it DBlock).
    ``preactivation`` is False for the first block of a stack (its input is an image, not
    a feature map that already went through a ReLU). Down-sampling before the second conv
    quarters its cost."""

    def __init__(self, in_channels: int, out_channels: int, which_conv: ConvFactory, preactivation: bool) -> None:
        super().__init__()
        self.preactivation = preactivation
        self.conv1 = which_conv(in_channels, out_channels)
        self.conv2 = which_conv(out_channels, out_channels)
        self.conv_sc = which_conv(in_channels, out_channels, kernel_size=1, padding=0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # x: [b, in, h, w]
        out = F.relu(x) if self.preactivation else x
        out = F.avg_pool2d(F.relu(self.conv1(out)), 2)
        out = self.conv2(out)  # [b, out, h/2, w/2]
        if self.preactivation:
            sc = F.avg_pool2d(self.conv_sc(x), 2)
        else:
            sc = self.conv_sc(F.avg_pool2d(x, 2))
        return out + sc


def channels(base: int, multipliers: tuple[int, ...], width: float) -> list[int]:
    """``base·m·width`` rounded to a multiple of 8 (self-attention needs channels/8), at least 8."""
    return [max(8, int(round(base * m * width / 8)) * 8) for m in multipliers]
