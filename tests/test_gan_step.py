"""The GAN step: which losses reach which weights, and every Table 1 config runs."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from formula_gan.training.distributed import setup_distributed
from formula_gan.training.gan_loop import setup_parts, train_gan
from formula_gan.training.gan_step import d_step, g_step, gan_step, sample_latents, step_generator
from test_gan_support import VOCAB_SIZE, one_thread, tiny_config, toy_data  # noqa: F401

CONFIGS = sorted((Path(__file__).resolve().parents[1] / "configs" / "gan").glob("*.yaml"))


def params(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def same(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    return all(torch.equal(a[k], b[k]) for k in a)


def g_grads(tmp_path: Path, lam: float, task_seed: int) -> dict[str, torch.Tensor]:
    """G's gradients from one G step, with the task model's weights drawn from ``task_seed``."""
    cfg = tiny_config(tmp_path, f"lambda_task={lam}")
    parts, s = setup_parts(cfg, VOCAB_SIZE, setup_distributed("cpu"))
    torch.manual_seed(task_seed)
    for m in parts.task.modules():
        if hasattr(m, "reset_parameters") and m is not parts.task:
            m.reset_parameters()
    source, _ = toy_data().iterator(None).__next__()
    gen = step_generator(0, 0)
    z, c = sample_latents(len(source), s, gen)
    for group in parts.opt_g.param_groups:
        group["lr"] = 0.0  # keep the weights: only the gradients are compared
    g_step(parts, source, z, c, s, gen, measure=False)
    return {n: p.grad.clone() for n, p in parts.G.named_parameters() if p.grad is not None}


def test_task_loss_reaches_the_generator_only_when_lambda_is_positive(tmp_path: Path) -> None:
    with_task = [g_grads(tmp_path, 1.0, seed) for seed in (1, 2)]
    assert set(with_task[0]) == {n for n, _ in setup_parts(tiny_config(tmp_path), VOCAB_SIZE, setup_distributed("cpu"))[0].G.named_parameters()}
    # λ > 0: another task model gives G other gradients, in the encoder as well as the decoder
    differ = [n for n in with_task[0] if not torch.allclose(with_task[0][n], with_task[1][n])]
    assert any(n.startswith("encoder.") for n in differ) and any(n.startswith("decoder.") for n in differ)
    # λ = 0: the task model has no influence on G at all
    without = [g_grads(tmp_path, 0.0, seed) for seed in (1, 2)]
    assert all(torch.equal(without[0][n], without[1][n]) for n in without[0])


def test_d_step_trains_d_and_task_model_g_step_trains_only_g(tmp_path: Path) -> None:
    cfg = tiny_config(tmp_path)
    parts, s = setup_parts(cfg, VOCAB_SIZE, setup_distributed("cpu"))
    source, real = toy_data().iterator(None).__next__()
    gen = step_generator(0, 0)
    g0, d0, t0 = params(parts.G), params(parts.D), params(parts.task)
    d_step(parts, source, real, *sample_latents(len(source), s, gen), s, gen, measure=True)
    g1, d1, t1 = params(parts.G), params(parts.D), params(parts.task)
    assert not same(d0, d1) and not same(t0, t1)
    g_weights = [k for k in g0 if "running" not in k and "num_batches" not in k and "_u" not in k and "_v" not in k]
    assert all(torch.equal(g0[k], g1[k]) for k in g_weights)  # G's weights untouched (its BN statistics may move)
    parts.opt_d.zero_grad(set_to_none=True)
    parts.opt_task.zero_grad(set_to_none=True)
    g_step(parts, source, *sample_latents(len(source), s, gen), s, gen, measure=True)
    g2, d2, t2 = params(parts.G), params(parts.D), params(parts.task)
    assert not same(g1, g2)
    d_weights = [k for k in d1 if not k.endswith(("_u", "_v"))]  # spectral-norm vectors move in every forward
    assert all(torch.equal(d1[k], d2[k]) for k in d_weights)
    assert same(t1, t2)  # task weights AND its BatchNorm statistics: generated images do not shift them
    # the G step's backward computes no weight gradients for D or the task model
    assert all(p.grad is None for p in parts.task.parameters()) and all(p.grad is None for p in parts.D.parameters())


@pytest.mark.parametrize("path", CONFIGS, ids=[p.stem for p in CONFIGS])
def test_every_config_builds_and_runs_a_step(tmp_path: Path, path: Path) -> None:
    cfg = tiny_config(tmp_path, "steps=1", "data.batch_size=2", path=str(path))
    result = train_gan(cfg, toy_data(n=8, batch_size=2))
    m = result.metrics
    for key in ("loss_d", "loss_d_real", "loss_d_fake", "loss_g", "loss_task_real", "acc_task_real",
                "loss_task_fake", "acc_task_fake", "grad_norm_g", "grad_norm_d", "grad_norm_task"):
        assert key in m and m[key] == m[key], key
    assert m["loss_gt"] == pytest.approx(m["loss_g"] + cfg.lambda_task * m["loss_task_fake"], rel=1e-5, abs=1e-6)
    assert (unwrapped_attention(result, cfg)) == cfg.model.attention
    assert result.checkpoint.is_file() and result.sheet.is_file()


def unwrapped_attention(result, cfg) -> bool:
    payload = torch.load(result.checkpoint, weights_only=True)
    return bool(payload["architecture"]["G"]["attention"]) and bool(payload["architecture"]["D"]["attention"])


def test_swap_target_domain_draws_both_domains(tmp_path: Path) -> None:
    for swap, expected in ((False, {1}), (True, {0, 1})):
        cfg = tiny_config(tmp_path, f"swap_target_domain={str(swap).lower()}")
        _, s = setup_parts(cfg, VOCAB_SIZE, setup_distributed("cpu"))
        _, c = sample_latents(64, s, step_generator(0, 0))
        assert set(c.tolist()) == expected


def test_step_returns_floats_and_is_reproducible(tmp_path: Path) -> None:
    cfg = tiny_config(tmp_path)
    runs = []
    for _ in range(2):
        parts, s = setup_parts(cfg, VOCAB_SIZE, setup_distributed("cpu"))
        source, real = toy_data().iterator(None).__next__()
        runs.append(gan_step(parts, source, real, s, 0, step_generator(0, 0)))
    assert all(isinstance(v, float) for v in runs[0].values())
    assert runs[0] == runs[1]
