"""DenseNet encoder for formula images (the task model's and the recognizer's backbone).

The layout follows WAP / CoMER: a 7×7 stride-2 stem and a 2×2 max-pool, then dense
blocks separated by transitions (1×1 conv with compression, 2×2 average pool). With
three blocks the feature map is 1/16 of the image in each direction.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class _DenseLayer(nn.Module):
    """BN-ReLU-conv3×3 adding ``growth`` channels (with a 1×1 bottleneck of 4·growth first when ``bottleneck``)."""

    def __init__(self, in_channels: int, growth: int, bottleneck: bool, dropout: float) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        ch = in_channels
        if bottleneck:
            layers += [nn.BatchNorm2d(ch), nn.ReLU(inplace=True), nn.Conv2d(ch, 4 * growth, 1, bias=False)]
            ch = 4 * growth
        layers += [nn.BatchNorm2d(ch), nn.ReLU(inplace=True), nn.Conv2d(ch, growth, 3, padding=1, bias=False)]
        if dropout > 0:
            layers.append(nn.Dropout(dropout))
        self.body = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([x, self.body(x)], dim=1)  # [b, c + growth, h, w]


class _Transition(nn.Module):
    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.BatchNorm2d(in_channels), nn.ReLU(inplace=True), nn.Conv2d(in_channels, out_channels, 1, bias=False)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.avg_pool2d(self.body(x), 2)


class DenseNetEncoder(nn.Module):
    """Image [b, 1, h, w] + pixel mask [b, h, w] -> features [b, out_channels, h/16, w/16] + their mask."""

    def __init__(
        self,
        in_channels: int = 1,
        growth: int = 24,
        block_layers: tuple[int, ...] = (6, 6, 6),
        init_channels: int = 48,
        bottleneck: bool = False,
        compression: float = 0.5,
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        if not block_layers:
            raise ValueError("block_layers must name at least one dense block")
        self.stem = nn.Sequential(
            nn.Conv2d(in_channels, init_channels, 7, stride=2, padding=3, bias=False),
            nn.BatchNorm2d(init_channels),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(2),
        )
        stages: list[nn.Module] = []
        ch = init_channels
        for i, n in enumerate(block_layers):
            for _ in range(n):
                stages.append(_DenseLayer(ch, growth, bottleneck, dropout))
                ch += growth
            if i < len(block_layers) - 1:  # no transition after the last block
                out = int(ch * compression)
                stages.append(_Transition(ch, out))
                ch = out
        stages += [nn.BatchNorm2d(ch), nn.ReLU(inplace=True)]
        self.body = nn.Sequential(*stages)
        self.out_channels = ch
        # stem stride 2, max-pool 2, one average pool per transition
        self.stride = 4 * 2 ** (len(block_layers) - 1)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        # x: [b, 1, h, w], mask: [b, h, w] bool (True = real pixel)
        feat = self.body(self.stem(x))  # [b, c, h', w']
        h, w = feat.shape[-2:]
        # A feature cell is real when the top-left pixel of its stride×stride patch is: padding is
        # added at the bottom/right, so this marks every cell that covers real pixels.
        feat_mask = mask[:, :: self.stride, :: self.stride][:, :h, :w]  # [b, h', w']
        return feat, feat_mask
