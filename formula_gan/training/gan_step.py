"""One GAN training step: a discriminator (+ task model) update, then a generator update.

    D step:  L_DT = L_D + λ·L_T(real targets) [+ R1]        updates D and the task model
    G step:  L_GT = L_G + λ·L_T(G(x, target, z), tokens(x))  updates G only
                  [+ content · ink-near-ink loss(G(x), x)]

D sees real and generated images through one view (``d_view``: crop, translation,
cutout), drawn the same way in both steps. The task model's own update uses ∇L_T
with weight 1: D and the task model share no parameters and Adam is invariant to
the scale of a gradient, so for λ > 0 this is the paper's update, and for λ = 0 the
task model still learns to read real targets and measures how readable the
generated images are (it never reaches G then). On generated images the task model
runs in eval mode: with its running statistics (from real images), faint or offset
ink reads worse, as it should; with a fake batch's own statistics it would not.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Iterator

import torch
import torch.nn.functional as F
from torch import nn

from formula_gan.data.batch import Batch
from formula_gan.training.d_view import DView, canvas, d_view
from formula_gan.training.distributed import unwrap
from formula_gan.training.ema import EMA
from formula_gan.training.gan_config import GanConfig
from formula_gan.training.losses import d_hinge, g_hinge

HANDWRITTEN = 1  # the target domain of every translation unless the target domain is swapped


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
class StepContext:
    """The run's config and where the step runs."""

    cfg: GanConfig
    device: torch.device
    amp_dtype: torch.dtype | None  # None: full precision

    @property
    def view(self) -> DView:
        v = self.cfg.d_view
        return DView(v.crop_width, v.translation, v.cutout)


def step_generator(seed: int, step: int, rank: int = 0) -> torch.Generator:
    """The random stream of one step (z, target domains, D's view): a pure function of (seed, step,
    rank), so a resumed run draws exactly what an uninterrupted one would."""
    return torch.Generator().manual_seed((seed * 1_000_003 + step) * 1_009 + rank)


def gan_step(parts: GanParts, source: Batch, real: Batch, ctx: StepContext, step: int, gen: torch.Generator,
             measure: bool = False) -> dict[str, float]:
    """One D step and one G step; returns every loss term (and grad norms when ``measure``) as floats."""
    source, real = _to_device(source, ctx), _to_device(real, ctx)
    size = canvas(source.images, real.images)  # the shared canvas when D sees whole images
    r1 = ctx.cfg.r1_gamma > 0 and step % ctx.cfg.r1_every == 0
    out = d_step(parts, source, real, *sample_latents(len(source), ctx, gen), ctx, gen, size, measure, r1)
    out |= g_step(parts, source, *sample_latents(len(source), ctx, gen), ctx, gen, size, measure)
    parts.scaler.update()
    parts.ema.update(unwrap(parts.G), step)
    keys = list(out)
    return dict(zip(keys, torch.stack([out[k].detach().float() for k in keys]).tolist()))  # one device sync


def sample_latents(b: int, ctx: StepContext, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """(z [b, z_dim], target domains [b]) drawn on the CPU stream, then moved (same values on every device)."""
    z = torch.randn(b, ctx.cfg.model.z_dim, generator=gen)
    if ctx.cfg.swap_target_domain:
        target = torch.randint(0, ctx.cfg.model.n_domains, (b,), generator=gen)
    else:
        target = torch.full((b,), HANDWRITTEN, dtype=torch.long)
    return z.to(ctx.device, non_blocking=True), target.to(ctx.device, non_blocking=True)


def generate(G: nn.Module, source: Batch, target: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
    """G's translation of the source batch, blank (0) outside each source's own image.

    A batch pads its images to a common size; G writes something everywhere, but real
    images are exactly 0 in their padding. Unmasked, D can tell the domains apart by the
    padding alone (and a synthesized sample is cropped to its own width anyway)."""
    fake = G(source.images, target, z)  # [b, 1, h, w]
    return fake * source.masks.unsqueeze(1).to(fake.dtype)


def d_step(parts: GanParts, source: Batch, real: Batch, z: torch.Tensor, target: torch.Tensor, ctx: StepContext,
           gen: torch.Generator, size: tuple[int, int] | None = None, measure: bool = False, r1: bool = False
           ) -> dict[str, torch.Tensor]:
    size = size or canvas(source.images, real.images)
    with torch.no_grad(), _autocast(ctx):
        fake = generate(parts.G, source, target, z).float()  # [b, 1, h, w]
    view = ctx.view
    # one D forward on real and fake together (one power iteration per step; DDP sees one forward)
    images = torch.cat([d_view(real.images, real.masks, view, gen, size), d_view(fake, source.masks, view, gen, size)])
    if r1:
        images.requires_grad_(True)
    with _autocast(ctx):
        scores = parts.D(_layout(images, ctx), torch.cat([real.domains, target]))  # [b_real + b_fake]
        loss_task, acc_task = parts.task(real.images, real.masks, real.tokens, real.lengths)
    d_real, d_fake = scores.split([len(real), len(source)])
    loss_real, loss_fake = d_hinge(d_real, d_fake)
    total = loss_real + loss_fake + loss_task
    out = {
        "loss_d": loss_real + loss_fake, "loss_d_real": loss_real, "loss_d_fake": loss_fake,
        "loss_task_real": loss_task, "loss_dt": loss_real + loss_fake + ctx.cfg.lambda_task * loss_task,
        "acc_task_real": acc_task, "d_real": d_real.mean(), "d_fake": d_fake.mean(),
        # ADA's overfitting signal r_t = E[sign(D(real))]: near 1, D is sure of every real image
        "rt": torch.sign(d_real.detach()).mean(),
    }  # fmt: skip
    if r1:
        # R1 (Mescheder et al. 2018): γ/2 · E‖∇D(real)‖², on the view D saw; lazy: every r1_every steps, scaled up
        (grad,) = torch.autograd.grad(d_real.sum(), images, create_graph=True)
        penalty = grad[: len(real)].float().pow(2).sum(dim=(1, 2, 3)).mean()
        total = total + 0.5 * ctx.cfg.r1_gamma * ctx.cfg.r1_every * penalty
        out["r1"] = penalty
    parts.opt_d.zero_grad(set_to_none=True)
    parts.opt_task.zero_grad(set_to_none=True)
    parts.scaler.scale(total).backward()
    if measure:
        out["grad_norm_d"] = _grad_norm(parts.D, parts.opt_d, parts.scaler)
        out["grad_norm_task"] = _grad_norm(parts.task, parts.opt_task, parts.scaler)
    parts.scaler.step(parts.opt_d)
    parts.scaler.step(parts.opt_task)
    return out


def g_step(parts: GanParts, source: Batch, z: torch.Tensor, target: torch.Tensor, ctx: StepContext,
           gen: torch.Generator, size: tuple[int, int] | None = None, measure: bool = False) -> dict[str, torch.Tensor]:
    """``size``: the canvas D saw in this step's D step (whole-image view), default the source's own."""
    cfg = ctx.cfg
    size = size or canvas(source.images)
    g_params = [p for p in parts.G.parameters() if p.requires_grad]
    with _autocast(ctx):
        fake = generate(parts.G, source, target, z)  # [b, 1, h, w]
        with _no_sync(parts.D):
            loss_g = g_hinge(parts.D(_layout(d_view(fake.float(), source.masks, ctx.view, gen, size), ctx), target))
        out = {"loss_g": loss_g}
        total = loss_g
        if cfg.lambda_task > 0:
            with _no_sync(parts.task), eval_mode(parts.task):
                loss_task, acc_task = parts.task(fake, source.masks, source.tokens, source.lengths)
            total = total + cfg.lambda_task * loss_task
            out |= {"loss_task_fake": loss_task, "acc_task_fake": acc_task}
        elif measure:  # λ = 0: the task model only watches (no graph to G)
            with torch.no_grad(), eval_mode(parts.task):
                loss_task, acc_task = parts.task(fake.detach(), source.masks, source.tokens, source.lengths)
            out |= {"loss_task_fake": loss_task, "acc_task_fake": acc_task}
        if cfg.content_weight > 0:
            loss_content = content_loss(fake.float(), source.images.float(), cfg.content_radius)
            total = total + cfg.content_weight * loss_content
            out["loss_content"] = loss_content
    out["loss_gt"] = total
    parts.opt_g.zero_grad(set_to_none=True)
    # gradients into G only: D's and the task model's weights are not trained by this loss
    parts.scaler.scale(total).backward(inputs=g_params)
    if measure:
        out["grad_norm_g"] = _grad_norm(parts.G, parts.opt_g, parts.scaler)
    parts.scaler.step(parts.opt_g)
    return out


def content_loss(fake: torch.Tensor, source: torch.Tensor, radius: int) -> torch.Tensor:
    """Keep every symbol, let its strokes move: ink of the source with no generated ink within
    ``radius`` px (a symbol erased), plus generated ink with no source ink within ``radius`` px (a
    stroke invented), each as a share of its image's ink. A stroke thinned, thickened or moved by a
    pixel or two costs nothing, which a pixel loss would punish; fake, source [b, 1, h, w] ink."""
    k = 2 * radius + 1
    near_fake = F.max_pool2d(fake, k, stride=1, padding=radius)  # [b, 1, h, w] ink within radius
    near_source = F.max_pool2d(source, k, stride=1, padding=radius)
    dims = (1, 2, 3)
    missed = (source * (1 - near_fake)).sum(dims) / source.sum(dims).clamp_min(1.0)  # [b]
    invented = (fake * (1 - near_source)).sum(dims) / fake.sum(dims).clamp_min(1.0)  # [b]
    return (missed + invented).mean()


@contextlib.contextmanager
def eval_mode(model: nn.Module) -> Iterator[None]:
    """``model`` in eval mode (running statistics, no dropout) for the block, then back as it was."""
    was = model.training
    model.train(False)
    try:
        yield
    finally:
        model.train(was)


@torch.no_grad()
def input_dependence(G: nn.Module, images: torch.Tensor, z: tuple[torch.Tensor, torch.Tensor]) -> dict[str, float]:
    """How much G's output depends on its input vs on z (mean absolute change per pixel):
    ``g_input_dep`` = |G(x, z₁) − G(0, z₁)|, ``g_z_dep`` = |G(x, z₁) − G(x, z₂)|. A generator
    that ignores its input (the collapse of small-scale runs) has the first near 0."""
    target = torch.full((images.shape[0],), HANDWRITTEN, dtype=torch.long, device=images.device)
    with eval_mode(G):
        a = G(images, target, z[0]).float()
        blank = G(torch.zeros_like(images), target, z[0]).float()
        b = G(images, target, z[1]).float()
    return {"g_input_dep": float((a - blank).abs().mean()), "g_z_dep": float((a - b).abs().mean())}


def _no_sync(model: nn.Module) -> contextlib.AbstractContextManager:
    # under DDP, a forward whose weight gradients are never used must not wait for a gradient all-reduce
    return model.no_sync() if isinstance(model, nn.parallel.DistributedDataParallel) else contextlib.nullcontext()


def _autocast(ctx: StepContext) -> contextlib.AbstractContextManager:
    if ctx.amp_dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=ctx.device.type, dtype=ctx.amp_dtype)


def _layout(x: torch.Tensor, ctx: StepContext) -> torch.Tensor:
    return x.contiguous(memory_format=torch.channels_last) if ctx.cfg.channels_last else x


def _to_device(batch: Batch, ctx: StepContext) -> Batch:
    batch = batch.to(ctx.device, non_blocking=True)
    batch.images = _layout(batch.images, ctx)
    return batch


def _grad_norm(model: nn.Module, opt: torch.optim.Optimizer, scaler: torch.amp.GradScaler) -> torch.Tensor:
    if scaler.is_enabled():
        scaler.unscale_(opt)  # norms of the true gradients, not the scaled ones
    grads = [p.grad for p in model.parameters() if p.grad is not None]
    if not grads:
        return torch.zeros((), device=next(model.parameters()).device)
    return torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(g.float()) for g in grads]))
