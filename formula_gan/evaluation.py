"""Evaluation runs: a recognizer checkpoint on shard sets -> every metric + per-sample predictions.

``evaluate_checkpoint`` is what ``formula-gan evaluate`` calls; ``run_evaluation``
is shared with the training loop's validation. Perplexity is measured on the same
pass: the reference tokens are teacher-forced through the model (end token
included) and their cross-entropy summed, so it needs no second reading of the data.

Test sets are read in full and in order, at the resolution the recognizer was
trained at (the checkpoint's data config), with no width cap: dropping the wide
formulas of a test set would flatter every metric.
"""

from __future__ import annotations

from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Sequence

import torch
from tqdm import tqdm

from formula_gan.data.batch import Batch
from formula_gan.data.jobs import verify
from formula_gan.data.loader import ShardSource, make_loader
from formula_gan.devices import resolve_device
from formula_gan.errors import FormulaGanError
from formula_gan.metrics import Scores, edit_distance, score_all
from formula_gan.recognition.files import load_recognizer
from katex_render.canonical import canonicalize
from katex_render.node_normalizer import Normalizer


@dataclass
class EvalResult:
    scores: Scores
    predictions: list[dict[str, Any]] = field(default_factory=list)  # key, reference, hypothesis, edit_distance, score
    beam: int = 1

    def to_json(self, extra: dict[str, Any] | None = None) -> dict[str, Any]:
        return {"metrics": self.scores.as_dict(), "beam": self.beam, **(extra or {}), "predictions": self.predictions}


def autocast_for(device: torch.device, amp: str):
    """bf16 autocast on CUDA when asked; a no-op elsewhere (CPU runs in float32)."""
    if amp == "bf16" and device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return nullcontext()


@torch.no_grad()
def run_evaluation(
    model: torch.nn.Module,
    vocab: Any,  # formula_gan.data.vocab.Vocab
    batches: Iterable[Batch],
    device: torch.device,
    beam: int = 1,
    max_len: int = 200,
    amp: str = "none",
    progress: bool = False,
    desc: str = "evaluate",
    canonical: bool = True,
) -> EvalResult:
    """Decode every batch (greedy when ``beam`` is 1) and score the predictions against the references.

    ``canonical``: score the canonical forms of both (:func:`katex_render.canonical.canonicalize`);
    the perplexity is the model's own on the references as stored."""
    was_training = model.training
    model.eval()
    refs: list[list[str]] = []
    hyps: list[list[str]] = []
    predictions: list[dict[str, Any]] = []
    total_nll, total_tokens = 0.0, 0
    try:
        for batch in tqdm(batches, desc=desc, disable=not progress, unit="batch"):
            batch = batch.to(device, non_blocking=True)
            with autocast_for(device, amp):
                out = model(batch.images, batch.masks, batch.tokens, batch.lengths)
                decoded = model.decode(batch.images, batch.masks, beam=beam, max_len=max_len)
            total_nll += float(out["nll"])
            total_tokens += int(out["count"])
            lengths = batch.lengths.tolist()
            for i, hyp in enumerate(decoded):
                ref = vocab.decode(batch.tokens[i, : lengths[i]].tolist())
                hyp_tokens = vocab.decode(hyp.tokens)
                refs.append(ref)
                hyps.append(hyp_tokens)
                predictions.append(
                    {
                        "key": batch.keys[i],
                        "reference": " ".join(ref),
                        "hypothesis": " ".join(hyp_tokens),
                        "edit_distance": edit_distance(ref, hyp_tokens),
                        "score": round(hyp.score, 5),
                    }
                )
    finally:
        model.train(was_training)
    if not refs:
        raise FormulaGanError("no samples to evaluate (empty shard sets?)")
    if canonical:
        # Both sides in today's canonical form: a reading that differs from its reference only
        # by braces that group nothing is right, whichever labels the model was trained on.
        refs, hyps = canonical_pairs(refs, hyps)
        for p, ref, hyp in zip(predictions, refs, hyps):
            p.update(reference=" ".join(ref), hypothesis=" ".join(hyp), edit_distance=edit_distance(ref, hyp))
    return EvalResult(score_all(refs, hyps, total_nll, total_tokens), predictions, beam)


def canonical_pairs(refs: list[list[str]], hyps: list[list[str]]) -> tuple[list[list[str]], list[list[str]]]:
    """References and readings in today's canonical form (one normalizer process for both)."""
    with Normalizer() as normalizer:
        return canonicalize(refs, normalizer), canonicalize(hyps, normalizer)


def evaluate_checkpoint(
    checkpoint: str | Path,
    shard_dirs: Sequence[str | Path],
    beam: int = 10,
    batch_size: int = 8,
    device: str = "auto",
    max_len: int | None = None,
    num_workers: int = 0,
    progress: bool = True,
) -> EvalResult:
    """Evaluate a recognizer checkpoint on finished shard sets (read in full, in order)."""
    dev = resolve_device(device)
    loaded = load_recognizer(checkpoint, dev)
    model, vocab, cfg = loaded.model, loaded.vocab, loaded.config
    for d in shard_dirs:
        # A test set is read whole: check it whole (sizes and sha256 as its manifest says),
        # or a modified label quietly changes every score.
        verify(d)
    loader = make_loader(
        [ShardSource(str(d)) for d in shard_dirs],
        vocab,
        batch_size,
        height=loaded.height,  # the resolution the model was trained at
        max_width=None,
        shuffle=False,
        seed=0,
        num_workers=num_workers,
    )
    threads = torch.get_num_threads()
    if dev.type == "cpu" and cfg.train.cpu_threads > 0:
        torch.set_num_threads(cfg.train.cpu_threads)  # as in training: see TrainConfig.cpu_threads
    try:
        return run_evaluation(
            model, vocab, loader, dev, beam=beam, max_len=max_len or model.cfg.max_len, amp=cfg.train.amp,
            progress=progress,
        )  # fmt: skip
    finally:
        torch.set_num_threads(threads)


@torch.no_grad()
def pooled_features(
    model: torch.nn.Module, batches: Iterable[Batch], device: torch.device, progress: bool = False, desc: str = "features"
) -> tuple[list[str], torch.Tensor]:
    """(keys, features [n, c]): the recognizer encoder's output averaged over each image's real
    (unpadded) feature cells. What the recognizer "sees" of an image, for Fréchet distances."""
    was_training = model.training
    model.eval()
    keys: list[str] = []
    feats: list[torch.Tensor] = []
    try:
        for batch in tqdm(batches, desc=desc, disable=not progress, unit="batch"):
            batch = batch.to(device, non_blocking=True)
            feat, feat_mask = model.encoder(batch.images, batch.masks)  # [b, c, h', w'], [b, h', w']
            m = feat_mask.unsqueeze(1).to(feat.dtype)  # [b, 1, h', w']
            pooled = (feat * m).sum((2, 3)) / m.sum((2, 3)).clamp_min(1.0)  # [b, c]
            feats.append(pooled.float().cpu())
            keys += batch.keys
    finally:
        model.train(was_training)
    if not feats:
        raise FormulaGanError("no samples to take features of (empty shard sets?)")
    return keys, torch.cat(feats)
