"""Exponential moving average of the generator's weights (the copy used for samples and export)."""

from __future__ import annotations

import copy

import torch
from torch import nn


class EMA:
    """``shadow = decay·shadow + (1 − decay)·weights`` after every generator step.

    The effective decay ramps up as ``min(decay, (1 + step) / (10 + step))`` so that short
    runs and the first steps of long ones are not dominated by the random initial weights.
    Buffers (BatchNorm statistics, spectral-norm vectors) are copied, not averaged."""

    def __init__(self, model: nn.Module, decay: float) -> None:
        if not 0.0 <= decay < 1.0:
            raise ValueError(f"EMA decay must be in [0, 1), got {decay}")
        self.decay = decay
        self.model = copy.deepcopy(model).eval().requires_grad_(False)

    def effective_decay(self, step: int) -> float:
        return min(self.decay, (1.0 + step) / (10.0 + step))

    @torch.no_grad()
    def update(self, model: nn.Module, step: int) -> None:
        decay = self.effective_decay(step)
        shadow = list(self.model.parameters())
        current = [p.detach() for p in model.parameters()]
        torch._foreach_lerp_(shadow, current, 1.0 - decay)
        for b_shadow, b in zip(self.model.buffers(), model.buffers()):
            b_shadow.copy_(b)

    def state_dict(self) -> dict[str, torch.Tensor]:
        return self.model.state_dict()

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        self.model.load_state_dict(state)
