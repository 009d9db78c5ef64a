"""Learning-rate schedules: pure functions of the step, one warm-up for both."""

import math

import pytest

from formula_gan.training.schedule import warmup_constant, warmup_cosine


def test_warmup_constant_rises_linearly_then_holds():
    assert [warmup_constant(s, 2e-4, 4) for s in range(6)] == pytest.approx([5e-5, 1e-4, 1.5e-4, 2e-4, 2e-4, 2e-4])
    assert warmup_constant(0, 2e-4, 0) == 2e-4  # no warm-up: the base rate from the first step


def test_warmup_cosine_warms_up_like_the_constant_one_then_decays_to_the_floor():
    base, warmup, total, floor = 1e-3, 10, 110, 0.05
    for step in range(warmup):
        assert warmup_cosine(step, base, warmup, total, floor) == warmup_constant(step, base, warmup)
    assert warmup_cosine(warmup, base, warmup, total, floor) == pytest.approx(base)
    assert warmup_cosine(60, base, warmup, total, floor) == pytest.approx(base * (floor + (1 - floor) * 0.5))
    assert warmup_cosine(total, base, warmup, total, floor) == pytest.approx(base * floor)
    assert warmup_cosine(10 * total, base, warmup, total, floor) == pytest.approx(base * floor)  # past the end: the floor
    rates = [warmup_cosine(s, base, warmup, total, floor) for s in range(warmup, total + 1)]
    assert all(a >= b for a, b in zip(rates, rates[1:]))  # decays monotonically
    assert all(math.isfinite(r) and r > 0 for r in rates)


def test_warmup_cosine_without_warmup_starts_at_the_base_rate():
    assert warmup_cosine(0, 1e-3, 0, 100, 0.1) == pytest.approx(1e-3)
    assert warmup_cosine(100, 1e-3, 0, 100, 0.1) == pytest.approx(1e-4)
