"""One GAN training step: a discriminator (+ task model) update, then a generator update.

    D step:  L_DT = L_D + λ·L_T(real targets)         updates D and the task model
    G step:  L_GT = L_G + λ·L_T(G(x, c, z), tokens(x))  updates G only

The task model's own update uses ∇L_T with weight 1: D and the task model share no
parameters and Adam is invariant to the scale of a gradient, so for λ > 0 this is the
paper's update, and for λ = 0 the task model still learns to read real targets and
measures how readable the generated images are (it never reaches G then).
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Iterator

import torch
import torch.nn.functional as F
from torch import nn

from formula_gan.data.batch import Batch
from formula_gan.training.distributed import unwrap
from formula_gan.training.ema import EMA
from formula_gan.training.losses import d_hinge, g_hinge


@dataclass
class GanParts:
    """Models (possibly DDP-wrapped or compiled), optimizers and the scaler of one run."""

    G: nn.Module
    D: nn.Module
    task: nn.Module
    ema: EMA
    opt_g: torch.optim.Optimizer
    opt_d: torch.optim.Optimizer
    opt_task: torch.optim.Optimizer
    scaler: torch.amp.GradScaler


@dataclass(frozen=True)
class StepSettings:
    lambda_task: float
    swap_target_domain: bool  # target domain drawn at random (may equal the source) instead of handwritten
    n_domains: int
    z_dim: int
    device: torch.device
    amp_dtype: torch.dtype | None  # None: full precision
    channels_last: bool
    target_domain: int = 1  # handwritten


def step_generator(seed: int, step: int, rank: int = 0) -> torch.Generator:
    """The random stream of one step (z, target domains): a pure function of (seed, step, rank),
    so a resumed run draws exactly what an uninterrupted one would."""
    return torch.Generator().manual_seed((seed * 1_000_003 + step) * 1_009 + rank)


def gan_step(parts: GanParts, source: Batch, real: Batch, s: StepSettings, step: int, gen: torch.Generator,
             measure: bool = False) -> dict[str, float]:
    """One D step and one G step; returns every loss term (and grad norms when ``measure``) as floats."""
    source, real = _to_device(source, s), _to_device(real, s)
    out = d_step(parts, source, real, *sample_latents(len(source), s, gen), s, measure)
    out |= g_step(parts, source, *sample_latents(len(source), s, gen), s, measure)
    parts.scaler.update()
    parts.ema.update(unwrap(parts.G), step)
    keys = list(out)
    return dict(zip(keys, torch.stack([out[k].detach().float() for k in keys]).tolist()))  # one device sync


def sample_latents(b: int, s: StepSettings, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """(z [b, z_dim], target domains [b]) drawn on the CPU stream, then moved (same values on every device)."""
    z = torch.randn(b, s.z_dim, generator=gen)
    if s.swap_target_domain:
        c = torch.randint(0, s.n_domains, (b,), generator=gen)
    else:
        c = torch.full((b,), s.target_domain, dtype=torch.long)
    return z.to(s.device, non_blocking=True), c.to(s.device, non_blocking=True)


def generate(parts: GanParts, source: Batch, c: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
    """G's translation of the source batch, blank (0) outside each source's own image.

    A batch pads its images to a common size; G writes something everywhere, but real
    images are exactly 0 in their padding. Unmasked, D can tell the domains apart by the
    padding alone (and a synthesized sample is cropped to its own width anyway)."""
    fake = parts.G(source.images, c, z)  # [b, 1, h, w]
    return fake * source.masks.unsqueeze(1).to(fake.dtype)


def d_step(parts: GanParts, source: Batch, real: Batch, z: torch.Tensor, c: torch.Tensor, s: StepSettings,
           measure: bool) -> dict[str, torch.Tensor]:
    with torch.no_grad(), _autocast(s):
        fake = generate(parts, source, c, z)  # [b, 1, h, w]
    # one D forward on real and fake together (one power iteration per step; DDP sees one forward)
    h = max(real.images.shape[-2], fake.shape[-2])
    w = max(real.images.shape[-1], fake.shape[-1])
    images = torch.cat([_pad(real.images, h, w), _pad(fake.float(), h, w)])
    with _autocast(s):
        scores = parts.D(_layout(images, s), torch.cat([real.domains, c]))  # [b_real + b_fake]
        loss_task, acc_task = parts.task(real.images, real.masks, real.tokens, real.lengths)
    d_real, d_fake = scores.split([len(real), len(source)])
    loss_real, loss_fake = d_hinge(d_real, d_fake)
    parts.opt_d.zero_grad(set_to_none=True)
    parts.opt_task.zero_grad(set_to_none=True)
    parts.scaler.scale(loss_real + loss_fake + loss_task).backward()
    out = {
        "loss_d": loss_real + loss_fake, "loss_d_real": loss_real, "loss_d_fake": loss_fake,
        "loss_task_real": loss_task, "loss_dt": loss_real + loss_fake + s.lambda_task * loss_task,
        "acc_task_real": acc_task, "d_real": d_real.mean(), "d_fake": d_fake.mean(),
    }
    if measure:
        out["grad_norm_d"] = _grad_norm(parts.D, parts.opt_d, parts.scaler)
        out["grad_norm_task"] = _grad_norm(parts.task, parts.opt_task, parts.scaler)
    parts.scaler.step(parts.opt_d)
    parts.scaler.step(parts.opt_task)
    return out


def g_step(parts: GanParts, source: Batch, z: torch.Tensor, c: torch.Tensor, s: StepSettings,
           measure: bool) -> dict[str, torch.Tensor]:
    g_params = [p for p in parts.G.parameters() if p.requires_grad]
    with _autocast(s):
        fake = generate(parts, source, c, z)  # [b, 1, h, w]
        with _no_sync(parts.D):
            loss_g = g_hinge(parts.D(fake, c))
        out = {"loss_g": loss_g}
        total = loss_g
        if s.lambda_task > 0:
            with _no_sync(parts.task), frozen_bn_stats(parts.task):
                loss_task, acc_task = parts.task(fake, source.masks, source.tokens, source.lengths)
            total = loss_g + s.lambda_task * loss_task
            out |= {"loss_task_fake": loss_task, "acc_task_fake": acc_task}
        elif measure:  # λ = 0: the task model only watches (no graph to G)
            with torch.no_grad(), frozen_bn_stats(parts.task):
                loss_task, acc_task = parts.task(fake.detach(), source.masks, source.tokens, source.lengths)
            out |= {"loss_task_fake": loss_task, "acc_task_fake": acc_task}
    out["loss_gt"] = total
    parts.opt_g.zero_grad(set_to_none=True)
    # gradients into G only: D's and the task model's weights are not trained by this loss
    parts.scaler.scale(total).backward(inputs=g_params)
    if measure:
        out["grad_norm_g"] = _grad_norm(parts.G, parts.opt_g, parts.scaler)
    parts.scaler.step(parts.opt_g)
    return out


@contextlib.contextmanager
def frozen_bn_stats(model: nn.Module) -> Iterator[None]:
    """BatchNorm in training mode (batch statistics) that does not move its running statistics:
    generated images must not shift the statistics the task model uses on real ones."""
    saved = []
    for m in model.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            tracked = m.num_batches_tracked.clone() if m.num_batches_tracked is not None else None
            saved.append((m, m.momentum, tracked))
            m.momentum = 0.0  # running = (1 - 0)·running + 0·batch
    try:
        yield
    finally:
        for m, momentum, tracked in saved:
            m.momentum = momentum
            if tracked is not None:
                m.num_batches_tracked.copy_(tracked)


def _no_sync(model: nn.Module) -> contextlib.AbstractContextManager:
    # under DDP, a forward whose weight gradients are never used must not wait for a gradient all-reduce
    return model.no_sync() if isinstance(model, nn.parallel.DistributedDataParallel) else contextlib.nullcontext()


def _autocast(s: StepSettings) -> contextlib.AbstractContextManager:
    if s.amp_dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=s.device.type, dtype=s.amp_dtype)


def _layout(x: torch.Tensor, s: StepSettings) -> torch.Tensor:
    return x.contiguous(memory_format=torch.channels_last) if s.channels_last else x


def _to_device(batch: Batch, s: StepSettings) -> Batch:
    batch = batch.to(s.device, non_blocking=True)
    batch.images = _layout(batch.images, s)
    return batch


def _pad(x: torch.Tensor, h: int, w: int) -> torch.Tensor:
    """Pad at the bottom/right with background (ink = 0)."""
    return F.pad(x, (0, w - x.shape[-1], 0, h - x.shape[-2]))


def _grad_norm(model: nn.Module, opt: torch.optim.Optimizer, scaler: torch.amp.GradScaler) -> torch.Tensor:
    if scaler.is_enabled():
        scaler.unscale_(opt)  # norms of the true gradients, not the scaled ones
    grads = [p.grad for p in model.parameters() if p.grad is not None]
    if not grads:
        return torch.zeros((), device=next(model.parameters()).device)
    return torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(g.float()) for g in grads]))
