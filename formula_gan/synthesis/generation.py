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
import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator

import numpy as np
import torch

from formula_gan.data.batch import DOMAIN_IDS
from formula_gan.data.images import ink_to_paper, paper_to_ink
from formula_gan.errors import FormulaGanError
from formula_gan.hashing import sha256_file
from formula_gan.models.checksum import state_dict_sha256
from formula_gan.models.generator import Generator
from formula_gan.models.generator_io import contract_of, load_generator
from formula_gan.synthesis.items import Piece, Record
from formula_gan.synthesis.policy import padded_width

if TYPE_CHECKING:
    from formula_gan.models.onnx_generator import OnnxGenerator

# What runs the generator. An engine is a speed setting (a ``Resources`` field), as the device is:
# ONNX Runtime's outputs equal torch's within 1e-4 of ink (measured 3e-6: at most a rounding flip
# of an 8-bit pixel), the sample's identity (the generator's hash and step) is the same, and a
# job made with one engine resumes with the other.
ENGINES = ("torch", "onnx")
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
    model: "torch.nn.Module | OnnxGenerator"  # called alike: (x, domain, z) -> y
    device: torch.device
    z_dim: int
    sha256: str
    step: int
    contract: dict[str, Any]  # height, frame, stride, in_channels, z_dim: what it must be fed
    config: dict[str, Any] = field(default_factory=dict)
    untrained: bool = False
    engine: str = "torch"  # what runs the model (ENGINES); never part of its identity

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


def load(path: str | Path, device: torch.device, engine: str = "torch", threads: int = 1) -> LoadedGenerator:
    """Load an exported generator (``formula-gan export-generator``), with clear errors.

    ``engine="onnx"``: ``path`` is a generator ONNX file (``export-generator --onnx``), or a torch
    generator file converted in memory (about a second; nothing is written), run by ONNX Runtime
    with ``threads`` threads on the CPU."""
    path = Path(path)
    if not path.is_file():
        raise GeneratorLoadError(f"generator file not found: {path}")
    _check_engine(engine, device)
    from formula_gan.models.onnx_files import is_onnx_file

    if is_onnx_file(path):
        if engine != "onnx":
            raise GeneratorLoadError(f"{path} is an ONNX generator: synthesize with it using --engine onnx")
        return _load_onnx(path, threads)
    # A truncated, corrupt or foreign file is the loader's GeneratorFileError (a FormulaGanError
    # naming the file and what to do), raised here, before any work.
    model, meta = load_generator(path, device)
    model.eval()
    broken = [name for name, t in model.state_dict().items() if t.is_floating_point() and not torch.isfinite(t).all()]
    if broken:
        # its checksum may well match: the file holds exactly what training wrote (a diverged run)
        raise GeneratorLoadError(f"{path}: the generator's weights hold NaN or infinite values ({', '.join(broken[:3])}"
                                 f"{' ...' if len(broken) > 3 else ''}); it cannot generate anything")
    gen = LoadedGenerator(
        model=model,
        device=device,
        z_dim=int(model.z_dim),
        sha256=str(meta.get("sha256") or sha256_file(path)),
        step=int(meta.get("step") or 0),
        contract=meta["contract"],
        config=dict(meta.get("config") or {}),
    )
    return on_engine(gen, engine, threads)


def _check_engine(engine: str, device: torch.device) -> None:
    if engine not in ENGINES:
        raise FormulaGanError(f"engine must be one of {', '.join(ENGINES)}, got {engine!r}")
    if engine == "onnx" and device.type != "cpu":
        raise FormulaGanError(f"the onnx engine runs on the CPU (ONNX Runtime's CPU provider), not on {device}: "
                              "use --engine torch there")


def on_engine(gen: LoadedGenerator, engine: str, threads: int) -> LoadedGenerator:
    """``gen`` run by ``engine``: for ``onnx``, its torch model converted to an ONNX graph in memory."""
    _check_engine(engine, gen.device)
    if engine == gen.engine:
        return gen
    from formula_gan.models.onnx_generator import OnnxGenerator, in_memory

    meta = {"contract": gen.contract, "model": dict(gen.model.config), "config": gen.config, "step": gen.step,
            "generator_sha256": gen.sha256}
    return dataclasses.replace(gen, model=OnnxGenerator(in_memory(gen.model, meta), threads), engine=engine)


def _load_onnx(path: Path, threads: int) -> LoadedGenerator:
    from formula_gan.models.onnx_generator import OnnxGenerator, read_generator_onnx

    graph = read_generator_onnx(path)  # kind, version, checksum and contract checked before any work
    meta = graph.meta
    return LoadedGenerator(
        model=OnnxGenerator(graph, threads),
        device=torch.device("cpu"),
        z_dim=int(meta["contract"]["z_dim"]),
        sha256=str(meta["generator_sha256"]),  # the torch file's: samples name the same generator either way
        step=int(meta["step"]),
        contract=meta["contract"],
        config=dict(meta.get("config") or {}),
        engine="onnx",
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
        sha256=state_dict_sha256(model.state_dict()),
        step=0,
        contract=contract_of(model, {}),
        config={"model": dict(model.config)},
        untrained=True,
    )


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


# ---- the generator as a synthesis stage ---------------------------------------------------
def generate_stage(pieces: Iterator[Piece], gen: LoadedGenerator, batch_size: int,
                   cpu_threads: int) -> Iterator[Piece]:
    """The generator's output (``record.output``) for every record with an input image
    (``record.image``, at the generator's height); on the CPU with ``cpu_threads`` torch
    threads (the browsers have the other cores; the onnx engine's session has its threads)."""
    if gen.device.type != "cpu":
        yield from _generate_batches(pieces, gen, batch_size)
        return
    previous = torch.get_num_threads()  # process-wide: restored when the stage ends
    # The onnx engine has its own threads (its session's); torch then only converts images, and
    # more OpenMP threads would spin after each conversion against ONNX Runtime's.
    torch.set_num_threads(1 if gen.engine == "onnx" else cpu_threads)
    try:
        yield from _generate_batches(pieces, gen, batch_size)
    finally:
        torch.set_num_threads(previous)


def _generate_batches(pieces: Iterator[Piece], gen: LoadedGenerator, batch_size: int) -> Iterator[Piece]:
    runner = BatchRunner(gen)
    height, stride = int(gen.contract["height"]), int(gen.contract["stride"])
    # Records are grouped by padded width. A batch runs when its group is full, when
    # more than two batches' worth of records wait (then the largest group goes, so
    # the generator never idles for long), and at the end of each shard. The rule
    # sees only the shard's records in item order: reruns and split runs batch alike.
    buckets: dict[int, list[Record]] = {}
    waiting = 0
    budget = batch_size * height * 512  # pixels: wide inputs make smaller batches
    for piece in pieces:
        done = [r for r in piece.records if r.image is None]  # rejects pass straight on
        for r in piece.records:
            if r.image is None:
                continue
            width = padded_width(r.image.shape[1], stride)
            bucket = buckets.setdefault(width, [])
            bucket.append(r)
            waiting += 1
            if len(bucket) >= batch_size or len(bucket) * width * height >= budget:
                full = width
            elif waiting > 2 * batch_size:
                full = max(buckets, key=lambda w: (len(buckets[w]), -w))
            else:
                continue
            batch = buckets.pop(full)
            waiting -= len(batch)
            done.extend(_generate(runner, batch, full))
        if piece.last:
            for width in sorted(buckets):
                done.extend(_generate(runner, buckets[width], width))
            buckets.clear()
            waiting = 0
        if done or piece.last:
            yield Piece(piece.shard, piece.size, done, piece.last)


def _generate(runner: BatchRunner, batch: list[Record], width: int) -> list[Record]:
    outputs = runner.run([r.image for r in batch], [r.z_seed for r in batch], width)  # type: ignore[misc]
    for r, out in zip(batch, outputs):
        r.output = out
        r.meta["z_seed"] = r.z_seed  # with the seed of the style, it regenerates the sample
        r.image = None  # the input is in the preview already where it is shown
    return batch

