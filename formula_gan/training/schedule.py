"""Learning-rate schedules, each a pure function of the step (as nanoGPT's ``get_lr``).

A resumed run gets the rate of its step from the step alone: no scheduler state
to save, and every rank agrees. Both start with the same linear warm-up from
``base / warmup_steps`` to ``base``.
"""

from __future__ import annotations

import math


def warmup_constant(step: int, base: float, warmup_steps: int) -> float:
    """Linear warm-up over ``warmup_steps``, then ``base`` for ever (the GAN's, as the paper's)."""
    return base if warmup_steps <= 0 else base * min(1.0, (step + 1) / warmup_steps)


def warmup_cosine(step: int, base: float, warmup_steps: int, total_steps: int, min_ratio: float) -> float:
    """Linear warm-up, then cosine decay from ``base`` to ``base * min_ratio`` at ``total_steps``
    (the recognizer's)."""
    if step < warmup_steps:
        return warmup_constant(step, base, warmup_steps)
    progress = min(1.0, (step - warmup_steps) / max(1, total_steps - warmup_steps))
    return base * (min_ratio + (1 - min_ratio) * 0.5 * (1 + math.cos(math.pi * progress)))
