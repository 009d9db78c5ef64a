"""The recognizer run's schema: what ``configs/recognizer/*.yaml`` may hold.

``load_config(RecognizerRunConfig, path, overrides)`` fills it; an unknown key or
a wrong type is an error naming the key. The resolved config is written into the
run folder and into every checkpoint.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Literal

from formula_gan.models.recognizer import RecognizerModelConfig


def _check_ranges(checks: tuple[tuple[str, float, float, float, bool], ...]) -> None:
    """Each (key, value, low, high, low_included): a value out of range (NaN and inf included)
    is an error naming the key, before any work (``from_dict`` adds the section's path)."""
    for key, value, low, high, closed in checks:
        ok = math.isfinite(value) and (low <= value if closed else low < value) and value <= high
        if not ok:
            bound = f"in {low}..{high}" if closed else f"above {low} and at most {high}"
            raise ValueError(f"{key} must be {bound}, got {value}")


@dataclass
class SourceConfig:
    path: str  # a finished shard folder (manifest.json); "{normalization}" is replaced, see DataConfig
    weight: float = 1.0  # relative sampling weight among the training sources


@dataclass
class DataConfig:
    train: list[SourceConfig] = field(default_factory=list)
    val: list[str] = field(default_factory=list)  # held-out shard folders, read in full, greedy-decoded
    # The paper's two CROHME rasterizations. It selects the prepared shard sets (every
    # "{normalization}" in a path becomes this value) and how images are sized for the model:
    # height128 -> every image is scaled to height 128 (the paper's GAN resolution);
    # symbol -> images keep the size they were rasterized at (symbol height normalized).
    normalization: Literal["height128", "symbol"] = "height128"
    # 0: sized by normalization as above; N > 0: every image scaled to N px high (small CPU runs)
    resize_height: int = 0
    vocab: str | None = None  # vocabulary JSON; None: the union of the training sources' manifests
    max_width: int | None = 1024  # training images wider than this (after resizing) are scaled down: memory bound
    batch_size: int = 16  # per process; DenseWAP used 16 on one GPU
    num_workers: int = 2  # decoding PNGs in worker processes keeps the GPU fed
    augment: bool = False  # the data layer's affine augmentation (rotation, shear, padding, scale)

    def __post_init__(self) -> None:
        for source in self.train:
            if not source.weight > 0 or not math.isfinite(source.weight):
                raise ValueError(f"train source {source.path!r}: weight must be a positive number, got {source.weight}")
        _check_ranges((("batch_size", self.batch_size, 1, 10**5, True), ("resize_height", self.resize_height, 0, 4096, True),
                               ("num_workers", self.num_workers, 0, 256, True)))
        if self.max_width is not None:
            _check_ranges((("max_width", self.max_width, 16, 10**5, True),))

    def resolve(self, path: str) -> str:
        return path.replace("{normalization}", self.normalization)

    @property
    def height(self) -> int | None:
        """The height the loader scales images to (None: keep their size)."""
        if self.resize_height > 0:
            return self.resize_height
        return 128 if self.normalization == "height128" else None


@dataclass
class OptimConfig:
    lr: float = 5e-4  # AdamW; peak rate after warm-up
    weight_decay: float = 1e-4  # DenseWAP's L2 strength
    warmup_steps: int = 500  # linear warm-up: the coverage GRU is unstable under a cold large step
    min_lr_ratio: float = 0.05  # cosine decay ends at lr * this
    grad_clip: float = 5.0  # global-norm clip; attention decoders spike early on
    # Exponential moving average of the weights, validated and saved instead of the raw weights
    # (0: off). Averaging over the last ~1/(1-decay) steps smooths the noise of small batches.
    ema_decay: float = 0.0

    def __post_init__(self) -> None:
        _check_ranges((("lr", self.lr, 0.0, 10.0, False), ("weight_decay", self.weight_decay, 0.0, 10.0, True),
                                ("warmup_steps", self.warmup_steps, 0, 10**9, True),
                                ("min_lr_ratio", self.min_lr_ratio, 0.0, 1.0, True),
                                ("grad_clip", self.grad_clip, 0.0, 1e9, False),
                                ("ema_decay", self.ema_decay, 0.0, 1.0, True)))
        if self.ema_decay >= 1.0:
            raise ValueError(f"ema_decay must be below 1 (1 would never move), got {self.ema_decay}")


@dataclass
class TrainConfig:
    max_steps: int = 60_000
    val_every: int = 2_000  # validation (greedy) and checkpoint interval, in steps
    log_every: int = 50
    seed: int = 0
    amp: Literal["bf16", "none"] = "bf16"  # bf16 autocast on CUDA (no loss scaling needed); CPU runs in fp32
    device: str = "auto"  # auto: cuda:<local rank> when available, else cpu
    val_max_len: int = 200  # decoding limit during validation
    # CPU intra-op threads (0: torch's default, one per core). Small models on a busy CPU run far
    # faster on one thread: a decoder step is many tiny ops, and each parallel op waits for its
    # slowest thread (measured on 2 shared cores at load 10: 10 tiny steps took 226 s on 2 threads,
    # 2.8 s on 1). Ignored on GPUs.
    cpu_threads: int = 0

    def __post_init__(self) -> None:
        _check_ranges((("max_steps", self.max_steps, 1, 10**9, True), ("val_every", self.val_every, 1, 10**9, True),
                                ("log_every", self.log_every, 1, 10**9, True), ("val_max_len", self.val_max_len, 1, 10**5, True),
                                ("cpu_threads", self.cpu_threads, 0, 1024, True)))


@dataclass
class RecognizerRunConfig:
    name: str = "recognizer"
    out_dir: str = "runs/recognizer/{name}"  # "{name}" is replaced by name
    model: RecognizerModelConfig = field(default_factory=RecognizerModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    train: TrainConfig = field(default_factory=TrainConfig)

    @property
    def run_dir(self) -> str:
        return self.out_dir.replace("{name}", self.name)
