"""The GAN training config: dataclasses are the schema, ``configs/gan/*.yaml`` fill them.

An ablation file names the file it changes with ``extends: base.yaml`` (a path relative
to itself) and holds only what differs, so each row of the paper's table reads as a diff.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Sequence

import yaml

from formula_gan.config import ConfigError, apply_overrides, from_dict


@dataclass
class GanModelConfig:
    width: float = 1.0  # d: channels are 64·d … 512·d
    z_dim: int = 120  # split into 5 chunks: encoder + one per decoder block
    class_dim: int = 128  # shared domain embedding fed to every conditional BatchNorm
    n_domains: int = 2  # 0 = rendered, 1 = handwritten
    attention: bool = True  # SAGAN self-attention in G and D
    attention_after: int = 2  # after this many (decoder / discriminator) blocks
    spectral_norm: bool = True
    # Not in the paper; what makes small, short runs learn (see models/generator.py):
    skip: bool = False  # U-Net skips from the encoder into the decoder at /8, /4, /2
    residual: bool = False  # output = input + a learned change (an untrained G is the identity)
    output: Literal["sigmoid", "clamp"] = "sigmoid"  # clamp: the background can be exactly 0, as in real images


@dataclass
class DViewConfig:
    """What D is shown of real and generated images (training/d_view.py); the same in both steps."""

    crop_width: int = 0  # 0: whole images on a shared canvas (the paper); N: random N-column windows
    translation: float = 0.0  # DiffAugment translation, fraction of each side (1/8 in DiffAugment)
    cutout: float = 0.0  # DiffAugment cutout, fraction of each side (1/2 in DiffAugment)

    def __post_init__(self) -> None:
        if self.crop_width < 0 or self.crop_width % 16:
            raise ValueError(f"crop_width must be 0 or a positive multiple of 16, got {self.crop_width}")
        if not 0.0 <= self.translation < 0.5 or not 0.0 <= self.cutout < 1.0:
            raise ValueError("translation must be in [0, 0.5) and cutout in [0, 1)")


@dataclass
class TaskModelConfig:
    growth: int = 24
    block_layers: list[int] = field(default_factory=lambda: [6, 6, 6])
    init_channels: int = 48
    embed_dim: int = 256
    hidden: int = 256
    attn_dim: int = 256
    coverage: bool = False


@dataclass
class GanDataConfig:
    rendered: list[str] = field(default_factory=list)  # shard folders (with manifest.json) of the generator's inputs
    # What those inputs are: KaTeX renderings (the paper), or stitched handwriting (synthesize
    # --method stitch: the refiner, which learns what stitching cannot give).
    source_domain: Literal["rendered", "synthetic"] = "rendered"
    handwritten: list[str] = field(default_factory=list)  # shard folders of handwriting (CROHME)
    vocab: str | None = None  # vocabulary JSON; None: the union of the shard folders' manifests
    height: int = 128
    # Crop every image to its ink with CROHME's margin (8/128 of the height) before scaling:
    # renderings come with random padding that G cannot remove and D would see (data/framing.py).
    # The synthesizer frames its inputs the same way for a generator trained with it.
    frame: bool = False
    max_width: int = 512
    batch_size: int = 16
    num_workers: int = 0


@dataclass
class OptimConfig:
    lr_g: float = 5e-5
    lr_d: float = 2e-4
    lr_task: float = 2e-4
    betas: tuple[float, float] = (0.0, 0.999)
    eps: float = 1e-8
    warmup_steps: int = 0


@dataclass
class GanConfig:
    out_dir: str = "runs/gan/base"
    seed: int = 0
    steps: int = 100_000
    lambda_task: float = 1.0
    swap_target_domain: bool = False
    handwritten_source: bool = True
    ema_decay: float = 0.999
    r1_gamma: float = 0.0  # R1 penalty γ on D's gradient at real images (0: off, the paper)
    r1_every: int = 1  # lazy R1: every N D steps, weighted by N
    # Weight of the content loss in G's loss (0: off, the paper): source ink with no generated ink
    # within content_radius px, and generated ink with no source ink that near (gan_step.content_loss).
    content_weight: float = 0.0
    content_radius: int = 2
    device: str = "auto"
    # CPU intra-op threads (0: torch's default, one per core). One thread is often faster on a
    # shared two-core machine: each parallel op waits for its slowest thread. Ignored on GPUs.
    cpu_threads: int = 0
    precision: Literal["auto", "fp32", "bf16", "fp16"] = "auto"
    channels_last: bool = True
    compile: bool = False
    sync_batchnorm: bool = False
    log_every: int = 50
    sample_every: int = 1000
    sample_count: int = 8
    checkpoint_every: int = 1000
    progress: bool = True
    model: GanModelConfig = field(default_factory=GanModelConfig)
    task: TaskModelConfig = field(default_factory=TaskModelConfig)
    data: GanDataConfig = field(default_factory=GanDataConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    d_view: DViewConfig = field(default_factory=DViewConfig)

    def __post_init__(self) -> None:
        if self.lambda_task < 0:
            raise ValueError(f"lambda_task must be >= 0, got {self.lambda_task}")
        if self.steps < 0:
            raise ValueError(f"steps must be >= 0, got {self.steps}")
        if self.cpu_threads < 0:
            raise ValueError(f"cpu_threads must be >= 0, got {self.cpu_threads}")
        if self.r1_gamma < 0 or self.content_weight < 0:
            raise ValueError("r1_gamma and content_weight must be >= 0")
        for name in ("log_every", "sample_every", "checkpoint_every", "r1_every", "content_radius"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1")


def load_gan_config(path: str | Path | None = None, overrides: Sequence[str] = ()) -> GanConfig:
    """Read a GAN config (following ``extends:``), apply ``a.b=c`` overrides, check every key."""
    data = _read_with_extends(Path(path)) if path is not None else {}
    return from_dict(GanConfig, apply_overrides(data, overrides))


def _read_with_extends(path: Path, seen: tuple[Path, ...] = ()) -> dict[str, Any]:
    path = path.resolve()
    if path in seen:
        raise ConfigError(f"{path}: 'extends' loops back to itself")
    if not path.is_file():
        raise ConfigError(f"config file not found: {path}")
    loaded = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    if not isinstance(loaded, dict):
        raise ConfigError(f"{path}: the top level must be a mapping")
    parent = loaded.pop("extends", None)
    if parent is None:
        return loaded
    if not isinstance(parent, str):
        raise ConfigError(f"{path}: extends: expected a file name, got {parent!r}")
    return _merge(_read_with_extends(path.parent / parent, seen + (path,)), loaded)


def _merge(base: dict[str, Any], top: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in top.items():
        out[key] = _merge(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
    return out
