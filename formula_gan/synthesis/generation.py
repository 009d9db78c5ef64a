"""The generator side of synthesis: device, loading (or an explicitly untrained stand-in), batches.

Everything that can fail here fails before any work starts: a device that is
not there, a generator file that is missing or is not an exported generator.
Generation is a pure function of (generator, input image, z seed): the model
is in eval mode (BatchNorm uses its running statistics), z is drawn on the CPU
from a per-sample seed, and the target domain is always "handwritten", so a
sample's output does not depend on the other samples of its batch and any
sample can be regenerated from its metadata.
"""

from __future__ import annotations

import contextlib
import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from formula_gan.data.batch import DOMAIN_IDS
from formula_gan.data.images import ink_to_paper, paper_to_ink
from formula_gan.errors import FormulaGanError
from formula_gan.hashing import sha256_file
from formula_gan.models.generator import Generator
from formula_gan.models.generator_io import load_generator

HANDWRITTEN = DOMAIN_IDS["handwritten"]  # the target domain of every synthetic sample
# Width multiplier of the stand-in generator built by ``untrained_generator``: small
# enough to run on a laptop CPU; its output is noise-like, never handwriting.
UNTRAINED_WIDTH = 0.0625
UNTRAINED_SEED = 0  # fixed, so the stand-in (and its hash) is the same on every run
UNTRAINED_WARNING = (
    "WARNING: --untrained-generator: the generator is randomly initialized; the images it writes are "
    "NOT handwriting (they test the pipeline only). Train one with `formula-gan train-gan`, export it with "
    "`formula-gan export-generator`, and pass it with --generator FILE."
)


class GeneratorLoadError(FormulaGanError):
    """A generator file that is missing, unreadable, or not an exported generator."""


class NonFiniteOutputError(FormulaGanError):
    """The generator's output holds NaN or infinite values."""


@dataclass
class LoadedGenerator:
    model: torch.nn.Module
    device: torch.device
    z_dim: int
    sha256: str
    step: int
    config: dict[str, Any] = field(default_factory=dict)
    untrained: bool = False

    def identity(self) -> dict[str, Any]:
        """What a sample records about its generator (and what the job is checked against)."""
        ident: dict[str, Any] = {"sha256": self.sha256, "step": self.step}
        if self.untrained:
            ident["untrained"] = True
        return ident


# Where a trained default generator ships inside the package (setup.cfg packages
# ``formula_gan/weights/*``). Until one is there, a generator must be named, or the
# untrained stand-in asked for explicitly.
DEFAULT_GENERATOR = Path(__file__).resolve().parents[1] / "weights" / "generator.pt"


def default_generator() -> Path | None:
    """The packaged trained generator, or None while none ships."""
    return DEFAULT_GENERATOR if DEFAULT_GENERATOR.is_file() else None


def load(path: str | Path, device: torch.device) -> LoadedGenerator:
    """Load an exported generator (``formula-gan export-generator``), with clear errors."""
    path = Path(path)
    if not path.is_file():
        raise GeneratorLoadError(f"generator file not found: {path}")
    # A truncated, corrupt or foreign file is the loader's GeneratorFileError (a FormulaGanError
    # naming the file and what to do), raised here, before any work.
    model, meta = load_generator(path, device)
    model.eval()
    broken = [name for name, t in model.state_dict().items() if t.is_floating_point() and not torch.isfinite(t).all()]
    if broken:
        # its checksum may well match: the file holds exactly what training wrote (a diverged run)
        raise GeneratorLoadError(f"{path}: the generator's weights hold NaN or infinite values ({', '.join(broken[:3])}"
                                 f"{' ...' if len(broken) > 3 else ''}); it cannot generate anything")
    return LoadedGenerator(
        model=model,
        device=device,
        z_dim=int(model.z_dim),
        sha256=str(meta.get("sha256") or sha256_file(path)),
        step=int(meta.get("step") or 0),
        config=dict(meta.get("config") or {}),
    )


def untrained_generator(device: torch.device, width: float = UNTRAINED_WIDTH) -> LoadedGenerator:
    """A randomly initialized (fixed seed) small generator: the whole pipeline runs, nothing is learned."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(UNTRAINED_SEED)
        # No spectral norm: exported generators have it baked in, and the stand-in behaves like one.
        model = Generator(width=width, spectral_norm=False)
    model.eval().to(device)
    return LoadedGenerator(
        model=model,
        device=device,
        z_dim=int(model.z_dim),
        sha256=state_sha256(model),
        step=0,
        config={"model": dict(model.config)},
        untrained=True,
    )


def state_sha256(model: torch.nn.Module) -> str:
    """A hash of a model's weights (names, shapes, dtypes, bytes), independent of file format."""
    digest = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        t = tensor.detach().cpu().contiguous()
        digest.update(f"{name}:{tuple(t.shape)}:{t.dtype}\n".encode())
        digest.update(t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return digest.hexdigest()


def draw_z(z_seed: int, z_dim: int) -> torch.Tensor:
    """z [z_dim] from a sample's seed, on the CPU so that every device gets the same z."""
    g = torch.Generator(device="cpu").manual_seed(z_seed)
    return torch.randn(z_dim, generator=g)


class BatchRunner:
    """Runs the generator on same-width batches of working-height images."""

    def __init__(self, gen: LoadedGenerator, bf16: bool = True):
        self.gen = gen
        # bf16 autocast on CUDA: ~2x the throughput of fp32 on tensor cores; outputs are
        # rounded to 8 bits anyway. CPU stays fp32 (bf16 there is slow and changes bytes).
        self.autocast = bf16 and gen.device.type == "cuda"

    @torch.inference_mode()
    def run(self, papers: list[np.ndarray], z_seeds: list[int], width: int) -> list[np.ndarray]:
        """uint8 [h, w_i] paper images (w_i <= width) -> uint8 [h, w_i] generated paper images."""
        if not papers:
            return []
        h = papers[0].shape[0]
        batch = np.full((len(papers), h, width), 255, dtype=np.uint8)  # pad with blank paper
        for i, p in enumerate(papers):
            batch[i, :, : p.shape[1]] = p
        device = self.gen.device
        x = torch.stack([paper_to_ink(b) for b in batch]).to(device, non_blocking=True)  # [b, 1, h, W] ink = 1
        z = torch.stack([draw_z(s, self.gen.z_dim) for s in z_seeds]).to(device)  # [b, z_dim]
        domain = torch.full((len(papers),), HANDWRITTEN, dtype=torch.long, device=device)  # [b]
        ctx = torch.autocast("cuda", dtype=torch.bfloat16) if self.autocast else contextlib.nullcontext()
        with ctx:
            y = self.gen.model(x, domain, z)  # [b, 1, h, W] in [0, 1], ink = 1
        y = y.float().cpu()
        if not torch.isfinite(y).all():
            # NaN becomes 0 in ink_to_paper, i.e. black paper: a whole dataset of black
            # images with exit 0. Stop instead; the shards finished so far stay.
            raise NonFiniteOutputError(
                f"the generator produced NaN or infinite values (batch of {len(papers)} at width {width}, "
                f"z seeds {z_seeds[:3]}{' ...' if len(z_seeds) > 3 else ''}); the generator is broken "
                "(a diverged training run?): synthesize with another one"
            )
        return [ink_to_paper(y[i, :, :, : p.shape[1]]) for i, p in enumerate(papers)]  # crop the padding off
