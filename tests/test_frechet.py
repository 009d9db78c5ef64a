"""Fréchet distance against closed forms."""

from __future__ import annotations

import numpy as np
import pytest

from formula_gan.scoring.frechet import feature_distance, frechet_distance, gaussian_stats


def test_identical_sets_are_at_distance_zero():
    x = np.random.default_rng(0).normal(size=(500, 6)) @ np.random.default_rng(1).normal(size=(6, 6))
    assert feature_distance(x, x) == pytest.approx(0.0, abs=1e-8)


def test_gaussians_closed_form_and_rotation_invariance():
    # N(0, diag a) vs N(m, diag b): |m|^2 + sum (sqrt a - sqrt b)^2
    a, b, m = np.array([1.0, 4.0, 9.0]), np.array([4.0, 1.0, 9.0]), np.array([3.0, 0.0, 4.0])
    expected = 25.0 + 1.0 + 1.0 + 0.0
    assert frechet_distance(np.zeros(3), np.diag(a), m, np.diag(b)) == pytest.approx(expected)
    # the same pair seen in rotated coordinates (Σ1 and Σ2 no longer commute with the axes)
    q, _ = np.linalg.qr(np.random.default_rng(2).normal(size=(3, 3)))
    rotated = frechet_distance(np.zeros(3), q @ np.diag(a) @ q.T, q @ m, q @ np.diag(b) @ q.T)
    assert rotated == pytest.approx(expected, rel=1e-9)


def test_sampled_shifted_gaussians_approach_the_closed_form():
    rng = np.random.default_rng(3)
    x = rng.normal(size=(20000, 4))
    y = rng.normal(size=(20000, 4)) * 2.0 + np.array([1.0, 2.0, 0.0, 0.0])
    # |mu|^2 = 5, covariance term 4 * (1 - 2)^2 = 4
    assert feature_distance(x, y) == pytest.approx(9.0, rel=0.03)


def test_bad_shapes_are_errors():
    with pytest.raises(ValueError, match="at least two"):
        gaussian_stats(np.zeros((1, 3)))
    with pytest.raises(ValueError, match="mismatched"):
        frechet_distance(np.zeros(2), np.eye(2), np.zeros(3), np.eye(3))
