"""The GAN training loop: build, resume, step, log, sample, checkpoint.

    for step in range(start, cfg.steps):
        source, real = next(batches)                     # resumable: its position is in the checkpoint
        metrics = gan_step(parts, source, real, settings, step, step_generator(seed, step, rank))
        check_finite(metrics)                            # stop on NaN/inf, naming the last good checkpoint
        log / sample / checkpoint
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import math
import torch

from formula_gan import __version__
from formula_gan.config import dump_yaml, to_dict
from formula_gan.errors import FormulaGanError
from formula_gan.models.discriminator import Discriminator
from formula_gan.models.generator import Generator
from formula_gan.models.task_model import TaskModel
from formula_gan.training.checkpoint import CheckpointError, check_architecture, load_checkpoint, rng_state, save_checkpoint, set_rng_state
from formula_gan.training.distributed import (
    DistInfo, cleanup_distributed, convert_sync_batchnorm, mean_over_ranks, setup_distributed, unwrap, wrap_ddp,
)
from formula_gan.training.ema import EMA
from formula_gan.training.gan_config import GanConfig
from formula_gan.training.gan_data import GanData
from formula_gan.training.gan_step import HANDWRITTEN, GanParts, StepContext, gan_step, input_dependence, step_generator
from formula_gan.training.logging import RunLogger, make_sheet
from formula_gan.training.schedule import warmup_constant

CHECKPOINT_NAME = "checkpoint.pt"


class NonFiniteLossError(FormulaGanError):
    """A loss became NaN or infinite: the run stops instead of writing a broken model."""


@dataclass
class TrainResult:
    step: int
    checkpoint: Path
    metrics: dict[str, float]
    sheet: Path | None
    is_main: bool = True  # rank 0 (or a single process): the one that reports


def build_models(cfg: GanConfig, vocab_size: int) -> tuple[Generator, Discriminator, TaskModel]:
    m = cfg.model
    G = Generator(m.width, m.z_dim, m.class_dim, m.n_domains, m.attention, m.attention_after, m.spectral_norm,
                  skip=m.skip, residual=m.residual, output=m.output)
    D = Discriminator(m.width, m.n_domains, m.attention, m.attention_after, m.spectral_norm)
    t = cfg.task
    task = TaskModel(vocab_size, t.growth, tuple(t.block_layers), t.init_channels, t.embed_dim, t.hidden, t.attn_dim, t.coverage)
    return G, D, task


def architecture(G: Generator, D: Discriminator, task: TaskModel) -> dict[str, dict[str, Any]]:
    return {"G": dict(G.config), "D": dict(D.config), "task": dict(task.config)}


def resolve_precision(cfg: GanConfig, device: torch.device) -> torch.dtype | None:
    """None (fp32), bf16 or fp16 autocast. "auto": bf16 on a GPU that has it, fp32 elsewhere."""
    p = cfg.precision
    if p == "auto":
        p = "bf16" if device.type == "cuda" and torch.cuda.is_bf16_supported() else "fp32"
    return {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}[p]


def setup_parts(cfg: GanConfig, vocab_size: int, info: DistInfo) -> tuple[GanParts, StepContext]:
    torch.manual_seed(cfg.seed)  # the same initial weights on every rank and every run
    G, D, task = build_models(cfg, vocab_size)
    if cfg.sync_batchnorm:
        G, task = convert_sync_batchnorm(G, info), convert_sync_batchnorm(task, info)
    device = info.device
    fmt = torch.channels_last if cfg.channels_last else torch.contiguous_format
    G, D, task = (m.to(device=device, memory_format=fmt) for m in (G, D, task))
    ema = EMA(G, cfg.ema_decay)  # before compile/DDP: the shadow is a plain module
    o = cfg.optim

    def adam(model: torch.nn.Module, lr: float) -> torch.optim.Optimizer:
        return torch.optim.Adam(model.parameters(), lr=lr, betas=tuple(o.betas), eps=o.eps)

    opt_g, opt_d, opt_task = adam(G, o.lr_g), adam(D, o.lr_d), adam(task, o.lr_task)
    if cfg.compile:
        # in-place compile keeps the state-dict keys; the task decoder's loop over tokens stays eager
        G.compile()
        D.compile()
        task.encoder.compile()
    amp = resolve_precision(cfg, device)
    scaler = torch.amp.GradScaler(device.type, enabled=amp is torch.float16)
    parts = GanParts(wrap_ddp(G, info), wrap_ddp(D, info), wrap_ddp(task, info), ema, opt_g, opt_d, opt_task, scaler)
    return parts, StepContext(cfg, device, amp)


def checkpoint_payload(parts: GanParts, cfg: GanConfig, step: int, vocab_tokens: list[str] | None,
                       data_state: dict[str, Any]) -> dict[str, Any]:
    G, D, task = (unwrap(m) for m in (parts.G, parts.D, parts.task))
    return {
        "package_version": __version__,
        "step": step,
        "config": to_dict(cfg),
        "architecture": architecture(G, D, task),
        "vocab": vocab_tokens,
        "models": {"G": G.state_dict(), "D": D.state_dict(), "task": task.state_dict(), "G_ema": parts.ema.state_dict()},
        "optimizers": {"G": parts.opt_g.state_dict(), "D": parts.opt_d.state_dict(), "task": parts.opt_task.state_dict()},
        "scaler": parts.scaler.state_dict(),
        "rng": rng_state(),
        "data": data_state,
    }


def restore(parts: GanParts, payload: dict[str, Any], path: Path, vocab_tokens: list[str] | None) -> int:
    """Load every state of ``payload`` into ``parts``; returns the step to continue from."""
    G, D, task = (unwrap(m) for m in (parts.G, parts.D, parts.task))
    check_architecture(payload["architecture"], architecture(G, D, task), path)
    if vocab_tokens is not None and payload.get("vocab") is not None and payload["vocab"] != vocab_tokens:
        raise CheckpointError(f"{path} was trained with another vocabulary ({len(payload['vocab'])} tokens; the data has {len(vocab_tokens)})")
    try:
        models = payload["models"]
        G.load_state_dict(models["G"])
        D.load_state_dict(models["D"])
        task.load_state_dict(models["task"])
        parts.ema.load_state_dict(models["G_ema"])
        opts = payload["optimizers"]
        parts.opt_g.load_state_dict(opts["G"])
        parts.opt_d.load_state_dict(opts["D"])
        parts.opt_task.load_state_dict(opts["task"])
        if parts.scaler.is_enabled():
            parts.scaler.load_state_dict(payload["scaler"])
    except (KeyError, RuntimeError, ValueError) as err:
        raise CheckpointError(f"{path} does not fit this run's models: {err}") from err
    set_rng_state(payload["rng"])
    return int(payload["step"])


def check_finite(metrics: dict[str, float], step: int, last_good: tuple[int, Path] | None) -> None:
    for key, value in metrics.items():
        if not math.isfinite(value):
            where = f"the last good checkpoint is {last_good[1]} (step {last_good[0]})" if last_good else "no checkpoint was written yet"
            raise NonFiniteLossError(f"non-finite {key} = {value} at step {step}; stopping: {where}")


def train_gan(cfg: GanConfig, data: GanData | None = None, resume: bool = False) -> TrainResult:
    """Train (or resume) the GAN of ``cfg``; ``data`` defaults to the shard folders the config names."""
    info = setup_distributed(cfg.device)
    logger = None
    threads = torch.get_num_threads()
    if info.device.type == "cpu" and cfg.cpu_threads > 0:
        torch.set_num_threads(cfg.cpu_threads)
    try:
        if data is None:
            from formula_gan.training.gan_data import shard_gan_data

            data = shard_gan_data(cfg, info)
        out_dir = Path(cfg.out_dir)
        ckpt_path = out_dir / CHECKPOINT_NAME
        parts, ctx = setup_parts(cfg, data.vocab_size, info)
        start, last_good, data_state = 0, None, None
        if resume:
            payload = load_checkpoint(ckpt_path)
            start = restore(parts, payload, ckpt_path, data.vocab_tokens)
            last_good, data_state = (start, ckpt_path), payload.get("data")
        elif ckpt_path.exists():
            raise FormulaGanError(f"{out_dir} already holds a run ({ckpt_path}); pass --resume to continue it or choose another out_dir")
        if info.is_main:
            out_dir.mkdir(parents=True, exist_ok=True)
            dump_yaml(cfg, out_dir / "config.yaml")
        logger = RunLogger(out_dir, cfg.steps, start, enabled=info.is_main, progress=cfg.progress)
        fixed = fixed_inputs(data, cfg, info)
        metrics: dict[str, float] = {}
        sheet = None
        batches = data.iterator(data_state)
        watch = DWinsWatch()
        for step in range(start, cfg.steps):
            source, real = next(batches)
            lrs = {"lr_g": warmup_constant(step, cfg.optim.lr_g, cfg.optim.warmup_steps),
                   "lr_d": warmup_constant(step, cfg.optim.lr_d, cfg.optim.warmup_steps),
                   "lr_task": warmup_constant(step, cfg.optim.lr_task, cfg.optim.warmup_steps)}
            for opt, lr in ((parts.opt_g, lrs["lr_g"]), (parts.opt_d, lrs["lr_d"]), (parts.opt_task, lrs["lr_task"])):
                for group in opt.param_groups:
                    group["lr"] = lr
            done = step + 1
            measure = done % cfg.log_every == 0 or done == cfg.steps
            metrics = gan_step(parts, source, real, ctx, step, step_generator(cfg.seed, step, info.rank), measure)
            check_finite(metrics, done, last_good)
            if measure:
                health = input_dependence(parts.ema.model, fixed.images.to(ctx.device), tuple(z.to(ctx.device) for z in fixed.z))
                logged = mean_over_ranks(metrics | lrs | health, info)
                logger.scalars(done, logged)
                watch.observe(done, logged, logger)
            logger.advance(done, metrics)
            if done % cfg.sample_every == 0 or done == cfg.steps:
                sheet = logger.sheet(done, sample_sheet(parts.ema.model, fixed, ctx))
            if done % cfg.checkpoint_every == 0 or done == cfg.steps:
                if info.is_main:
                    save_checkpoint(checkpoint_payload(parts, cfg, done, data.vocab_tokens, batches.state()), ckpt_path)
                last_good = (done, ckpt_path)
        return TrainResult(max(start, cfg.steps), ckpt_path, metrics, sheet, info.is_main)
    finally:
        torch.set_num_threads(threads)  # a process-wide setting: leave it as found
        if logger is not None:
            logger.close()
        cleanup_distributed()


@dataclass
class FixedInputs:
    images: torch.Tensor  # [k, 1, h, w]
    z: list[torch.Tensor]  # two noise draws [k, z_dim]: the sheet shows how much z changes the writing


def fixed_inputs(data: GanData, cfg: GanConfig, info: DistInfo) -> FixedInputs:
    """The same rendered inputs and z at every sample step and across resumes."""
    source, _ = next(data.iterator(None))
    rendered = source.domains == 0
    order = torch.cat([rendered.nonzero().flatten(), (~rendered).nonzero().flatten()])  # rendered first
    k = min(cfg.sample_count, len(source))
    g = torch.Generator().manual_seed(cfg.seed + 12_345)
    z = [torch.randn(k, cfg.model.z_dim, generator=g) for _ in range(2)]
    return FixedInputs(source.images[order[:k]], z)


@torch.no_grad()
def sample_sheet(G_ema: torch.nn.Module, fixed: FixedInputs, ctx: StepContext) -> Any:
    """Rows: rendered input | translation with z₁ | translation with z₂ (EMA generator, eval mode, target handwritten)."""
    x = fixed.images.to(ctx.device)
    target = torch.full((x.shape[0],), HANDWRITTEN, dtype=torch.long, device=ctx.device)
    outs = [G_ema(x, target, z.to(ctx.device)).float() for z in fixed.z]
    return make_sheet([x] + outs)


class DWinsWatch:
    """Warns when D wins outright, log interval after log interval: both hinge terms near 0 means
    D separates every real from every generated image by the full margin, G's gradient carries
    little, and the run is collapsing (what the first CPU runs did within 300 steps)."""

    THRESHOLD = 0.05  # loss_d_real + loss_d_fake below this: D wins outright
    INTERVALS = 3  # consecutive log intervals before the warning

    def __init__(self) -> None:
        self.streak = 0

    def observe(self, step: int, metrics: dict[str, float], logger: RunLogger) -> bool:
        """Count this interval; returns True (and warns in the log and on the bar) while D keeps winning."""
        wins = metrics.get("loss_d_real", 1.0) + metrics.get("loss_d_fake", 1.0) < self.THRESHOLD
        self.streak = self.streak + 1 if wins else 0
        if self.streak >= self.INTERVALS:
            logger.warning(
                step,
                f"D wins outright for {self.streak} log intervals (loss_d_real {metrics['loss_d_real']:.3f}, "
                f"loss_d_fake {metrics['loss_d_fake']:.3f}, r_t {metrics.get('rt', float('nan')):.2f}): G is "
                "learning little; consider a stronger D view (d_view.*), r1_gamma, or a slower D",
            )
            return True
        return False
