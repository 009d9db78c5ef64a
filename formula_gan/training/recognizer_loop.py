"""Training the downstream recognizer: weighted shard mix in, best-by-ExpRate checkpoint out.

One process per GPU under ``torchrun`` (DDP), or a single process on one GPU or
the CPU, with the same command. Every ``val_every`` steps rank 0 decodes the
held-out set greedily, logs every metric, writes ``last.pt`` and, when the
validation ExpRate improved (a tie goes to the lower WER), ``best.pt``. Rerunning resumes from
``last.pt`` (weights, optimizer, step, best score, RNG states); the data stream
is re-seeded with the step, so a resumed run does not replay the batches it
has already seen.

Run folder: ``config.yaml`` (resolved), ``vocab.json``, ``log.jsonl`` (one JSON
object per log/validation event), ``tb/`` (TensorBoard), ``last.pt``, ``best.pt``.
"""

from __future__ import annotations

import json
import math
import time
from pathlib import Path
from typing import Any, Iterator

import torch
import torch.distributed as dist
from tqdm import tqdm

from formula_gan import __version__
from formula_gan.config import dump_yaml, from_dict, to_dict
from formula_gan.data.augment import AugmentConfig
from formula_gan.data.loader import ShardSource, make_loader
from formula_gan.data.vocab import Vocab
from formula_gan.errors import FormulaGanError
from formula_gan.evaluation import autocast_for, run_evaluation
from formula_gan.models.recognizer import RecognizerModel
from formula_gan.models.torch_files import load_torch_file, save_torch_file
from formula_gan.recognition.config import RecognizerRunConfig
from formula_gan.recognition.files import CHECKPOINT_KIND
from formula_gan.training.checkpoint import CheckpointError, rng_state, set_rng_state
from formula_gan.training.distributed import DistInfo, setup_distributed, wrap_ddp
from formula_gan.training.ema import EMA
from formula_gan.training.schedule import warmup_cosine


# ---- process set-up -----------------------------------------------------------------------
# (the DDP helpers are the GAN loop's: formula_gan.training.distributed)


def _barrier(d: DistInfo) -> None:
    if d.enabled:
        dist.barrier()


# ---- checkpoints --------------------------------------------------------------------------
# Written by save_torch_file (atomic), read by load_torch_file (weights_only, clear errors).


def load_recognizer_checkpoint(path: Path) -> dict[str, Any]:
    """The run's ``last.pt`` to resume from: a recognizer checkpoint, or one clear error."""
    ckpt = load_torch_file(path, "recognizer checkpoint", CheckpointError, hint="; remove it to start over")
    if not isinstance(ckpt, dict) or ckpt.get("kind") != CHECKPOINT_KIND:
        raise CheckpointError(f"{path}: not a formula-gan recognizer checkpoint")
    return ckpt


# ---- data ---------------------------------------------------------------------------------


def build_vocab(cfg: RecognizerRunConfig) -> Vocab:
    """The configured vocabulary file, else the union of the training shard sets' vocabularies."""
    if cfg.data.vocab:
        return Vocab.load(cfg.data.resolve(cfg.data.vocab))
    tokens: set[str] = set()
    for shard_source in cfg.data.train:
        tokens.update(Vocab.from_manifest(cfg.data.resolve(shard_source.path)).tokens)
    return Vocab(tokens)


def _check_sources(cfg: RecognizerRunConfig) -> None:
    if not cfg.data.train:
        raise FormulaGanError("data.train is empty: name at least one shard folder to train on")
    for path in [s.path for s in cfg.data.train] + list(cfg.data.val):
        resolved = Path(cfg.data.resolve(path))
        if not (resolved / "manifest.json").is_file():
            raise FormulaGanError(f"{resolved}: not a finished shard set (no manifest.json); prepare it first")


def _train_batches(cfg: RecognizerRunConfig, vocab: Vocab, d: DistInfo, step: int) -> Iterator:
    augment = AugmentConfig() if cfg.data.augment else None
    shard_sources = [ShardSource(cfg.data.resolve(s.path), s.weight) for s in cfg.data.train]
    loader = make_loader(
        shard_sources,
        vocab,
        cfg.data.batch_size,
        height=cfg.data.height,
        max_width=cfg.data.max_width,
        shuffle=True,
        seed=cfg.train.seed + step,  # re-seeded on resume: no replay of the batches already seen
        rank=d.rank,
        world_size=d.world_size,
        num_workers=cfg.data.num_workers,
        augment=augment,
        loop=True,
        max_tokens=cfg.model.max_len - 1,  # the decoder never has to emit more than max_len (with the end token)
        pin_memory=d.device.type == "cuda",
    )
    return iter(loader)


def _val_batches(cfg: RecognizerRunConfig, vocab: Vocab):
    return make_loader(
        [ShardSource(cfg.data.resolve(p)) for p in cfg.data.val],
        vocab,
        cfg.data.batch_size,
        height=cfg.data.height,
        max_width=None,  # the whole held-out set, wide formulas included
        shuffle=False,
        seed=0,
        num_workers=cfg.data.num_workers,
    )


# ---- the loop -----------------------------------------------------------------------------


class RunLog:
    """JSON lines + TensorBoard scalars, rank 0 only."""

    def __init__(self, run_dir: Path, enabled: bool):
        self.enabled = enabled
        self.path = run_dir / "log.jsonl"
        self.tb = None
        if enabled:
            from torch.utils.tensorboard import SummaryWriter  # heavy (~0.2 s, protobuf): rank 0 only

            self.tb = SummaryWriter(str(run_dir / "tb"))

    def write(self, step: int, kind: str, values: dict[str, Any]) -> None:
        if not self.enabled:
            return
        with self.path.open("a", encoding="utf-8") as f:
            record = {"step": step, "kind": kind, "time": round(time.time(), 3), **values}
            # valid JSON only: a value that is not a finite number is written as null
            record = {k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in record.items()}
            f.write(json.dumps(record, allow_nan=False) + "\n")
        for k, v in values.items():
            if isinstance(v, (int, float)) and v is not None and math.isfinite(v):
                self.tb.add_scalar(f"{kind}/{k}", v, step)
        self.tb.flush()

    def close(self) -> None:
        if self.tb is not None:
            self.tb.close()


def _stop_non_finite(step: int, loss: float, grad_norm: float, last_path: Path, log: RunLog) -> None:
    """A loss or gradient that is no longer a number stops the run before it is saved: the weights
    are ruined from here on, and a checkpoint of them would be read as a model."""
    log.write(step, "error", {"non_finite": "loss" if not math.isfinite(loss) else "grad_norm"})
    kept = f"the last good checkpoint is {last_path}" if last_path.exists() else "no checkpoint was written"
    raise FormulaGanError(
        f"training diverged by step {step}: the {'loss' if not math.isfinite(loss) else 'gradient norm'} is "
        f"{loss if not math.isfinite(loss) else grad_norm} (learning rate too high, or bad data); {kept}"
    )


def train_recognizer(cfg: RecognizerRunConfig, progress: bool = True) -> dict[str, Any]:
    """Train (or resume) the run in ``cfg.run_dir``; returns a summary with the best validation ExpRate."""
    _check_sources(cfg)
    d = setup_distributed(cfg.train.device)
    threads = torch.get_num_threads()
    if d.device.type == "cpu" and cfg.train.cpu_threads > 0:
        torch.set_num_threads(cfg.train.cpu_threads)
    try:
        return _train(cfg, d, progress)
    finally:
        torch.set_num_threads(threads)  # a process-wide setting: leave it as found


def _train(cfg: RecognizerRunConfig, d: DistInfo, progress: bool) -> dict[str, Any]:
    run_dir = Path(cfg.run_dir)
    if d.is_main:
        run_dir.mkdir(parents=True, exist_ok=True)
    _barrier(d)
    vocab = build_vocab(cfg)

    torch.manual_seed(cfg.train.seed + d.rank)
    model = RecognizerModel(len(vocab), cfg.model).to(d.device)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.optim.lr, weight_decay=cfg.optim.weight_decay)
    # With weight averaging, the average is what is validated, chosen and saved as "model" (what
    # every reader loads); the raw weights travel as "train_model", for resuming only.
    ema = EMA(model, cfg.optim.ema_decay) if cfg.optim.ema_decay > 0 else None
    reader = ema.model if ema is not None else model
    step, best, best_wer = 0, -1.0, float("inf")  # best validation ExpRate; its WER breaks ties
    last_path, best_path = run_dir / "last.pt", run_dir / "best.pt"
    if last_path.exists():
        ckpt = load_recognizer_checkpoint(last_path)
        old = from_dict(RecognizerRunConfig, ckpt["config"])
        if to_dict(old.model) != to_dict(cfg.model) or list(ckpt["vocab"]) != vocab.tokens:
            raise FormulaGanError(
                f"{last_path} was trained with another model config or vocabulary; choose another name/out_dir"
            )
        model.load_state_dict(ckpt.get("train_model", ckpt["model"]))
        if ema is not None:
            ema.load_state_dict(ckpt["model"])
        opt.load_state_dict(ckpt["optimizer"])
        step, best, best_wer = int(ckpt["step"]), float(ckpt["best_exprate"]), float(ckpt["best_wer"])
        set_rng_state(ckpt["rng"])
    if d.is_main:
        dump_yaml(cfg, run_dir / "config.yaml")
        vocab.save(run_dir / "vocab.json")
    log = RunLog(run_dir, d.is_main)
    if d.is_main and step:
        log.write(step, "resume", {"best_val_exprate": best})

    train_model = wrap_ddp(model, d)  # the unwrapped ``model`` is what gets saved and validated

    def state() -> dict[str, Any]:
        return {
            "kind": CHECKPOINT_KIND,
            "version": __version__,
            "model": reader.state_dict(),  # the unwrapped module: loads without DDP
            **({"train_model": model.state_dict()} if ema is not None else {}),
            "optimizer": opt.state_dict(),
            "step": step,
            "best_exprate": best,
            "best_wer": best_wer,
            "config": to_dict(cfg),
            "vocab": vocab.tokens,
            "rng": rng_state(),  # torch, CUDA, python and numpy generators, as tensors and numbers
        }

    def validate() -> None:
        nonlocal best, best_wer
        if d.is_main:
            if cfg.data.val:
                result = run_evaluation(
                    reader, vocab, _val_batches(cfg, vocab), d.device, beam=1,
                    max_len=cfg.train.val_max_len, amp=cfg.train.amp, progress=False,
                )  # fmt: skip
                metrics = result.scores.as_dict()
                log.write(step, "val", metrics)
                # ExpRate first; on a tie (common early on, when it is still 0) the lower WER
                improved = (metrics["exprate"], -metrics["wer"]) > (best, -best_wer)
                if improved:
                    best, best_wer = metrics["exprate"], metrics["wer"]
            else:
                improved = True  # nothing held out: the latest model is the best we know
            save_torch_file(state(), last_path)
            if improved:
                save_torch_file(state(), best_path)
        _barrier(d)

    batches = _train_batches(cfg, vocab, d, step)
    bar = tqdm(total=cfg.train.max_steps, initial=step, desc=f"train {cfg.name}", disable=not (progress and d.is_main))
    model.train()
    window: list[torch.Tensor] = []  # losses since the last log line, kept on the device (no sync per step)
    started = time.time()
    while step < cfg.train.max_steps:
        lr = warmup_cosine(step, cfg.optim.lr, cfg.optim.warmup_steps, cfg.train.max_steps, cfg.optim.min_lr_ratio)
        for group in opt.param_groups:
            group["lr"] = lr
        batch = next(batches).to(d.device, non_blocking=True)
        with autocast_for(d.device, cfg.train.amp):
            out = train_model(batch.images, batch.masks, batch.tokens, batch.lengths)
        loss = out["loss"]
        opt.zero_grad(set_to_none=True)
        loss.backward()
        grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.optim.grad_clip)
        opt.step()
        step += 1
        if ema is not None:
            ema.update(model, step)
        window.append(loss.detach())
        bar.update(1)
        validating = step % cfg.train.val_every == 0 or step == cfg.train.max_steps
        if step % cfg.train.log_every == 0 or validating:
            mean = float(torch.stack(window).mean())
            if not math.isfinite(mean) or not math.isfinite(float(grad_norm)):
                _stop_non_finite(step, mean, float(grad_norm), last_path, log)
            bar.set_postfix(loss=f"{mean:.3f}")
            log.write(
                step, "train",
                {"loss": mean, "lr": lr, "grad_norm": float(grad_norm),
                 "steps_per_s": len(window) / max(time.time() - started, 1e-9)},
            )  # fmt: skip
            window, started = [], time.time()
        if validating:
            validate()
    bar.close()
    log.close()
    if d.is_main and not last_path.exists():  # max_steps already reached before this call
        save_torch_file(state(), last_path)
    return {"run_dir": str(run_dir), "step": step, "best_val_exprate": best, "best": str(best_path), "last": str(last_path)}
