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

import io
import json
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Sequence

import torch
from tqdm import tqdm

from formula_gan import __version__
from formula_gan.data.batch import Batch
from formula_gan.errors import FormulaGanError
from formula_gan.metrics import Scores, edit_distance, score_all

CHECKPOINT_KIND = "formula-gan-recognizer/1"


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
) -> EvalResult:
    """Decode every batch (greedy when ``beam`` is 1) and score the predictions against the references."""
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
    return EvalResult(score_all(refs, hyps, total_nll, total_tokens), predictions, beam)


# ---- checkpoints -----------------------------------------------------------------------


def load_recognizer(path: str | Path, device: torch.device | str = "cpu"):
    """(model, vocab, checkpoint) from a recognizer checkpoint; loaded with ``weights_only=True``."""
    from formula_gan.config import from_dict
    from formula_gan.data.vocab import Vocab
    from formula_gan.models.recognizer import Recognizer
    from formula_gan.training.recognizer_config import RecognizerRunConfig

    path = Path(path)
    if not path.is_file():
        raise FormulaGanError(f"recognizer checkpoint not found: {path}")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # a truncated file or a pickle that is not plain data: say so, keep the cause
        raise FormulaGanError(f"{path}: cannot load as a recognizer checkpoint ({type(err).__name__}: {err})") from err
    if not isinstance(ckpt, dict) or ckpt.get("kind") != CHECKPOINT_KIND:
        raise FormulaGanError(f"{path}: not a formula-gan recognizer checkpoint")
    cfg = from_dict(RecognizerRunConfig, ckpt["config"])
    vocab = Vocab(ckpt["vocab"])
    model = Recognizer(len(vocab), cfg.model)
    model.load_state_dict(ckpt["model"])
    return model.to(device).eval(), vocab, ckpt


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
    from formula_gan.data.loader import ShardSource, make_loader

    from formula_gan.config import from_dict
    from formula_gan.training.recognizer_config import RecognizerRunConfig

    dev = resolve_device(device)
    model, vocab, ckpt = load_recognizer(checkpoint, dev)
    cfg = from_dict(RecognizerRunConfig, ckpt["config"])
    for d in shard_dirs:
        if not (Path(d) / "manifest.json").is_file():
            raise FormulaGanError(f"{d}: not a finished shard set (no manifest.json)")
    loader = make_loader(
        [ShardSource(str(d)) for d in shard_dirs],
        vocab,
        batch_size,
        height=cfg.data.height,  # the resolution the model was trained at
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


def resolve_device(device: str) -> torch.device:
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


# ---- reports ---------------------------------------------------------------------------

METRIC_LABELS = [
    ("exprate", "ExpRate", True),
    ("le1", "<=1 error", True),
    ("le2", "<=2 errors", True),
    ("wer", "WER", True),
    ("cer", "CER", True),
    ("bleu", "BLEU-4", True),
    ("edit_score", "edit score", True),
    ("exact_match", "exact match", True),
    ("perplexity", "perplexity", False),
]


def format_table(scores: Scores | dict[str, Any], title: str = "") -> str:
    """A two-column markdown table; rates as percentages."""
    values = scores.as_dict() if isinstance(scores, Scores) else scores
    lines = [f"### {title}", ""] if title else []
    lines += ["| metric | value |", "| --- | ---: |", f"| formulas | {values['num_formulas']} |"]
    for key, label, percent in METRIC_LABELS:
        v = values.get(key)
        text = "–" if v is None else (f"{100 * v:.2f} %" if percent else f"{v:.3f}")
        lines.append(f"| {label} | {text} |")
    return "\n".join(lines)


def write_json(path: str | Path, obj: Any) -> None:
    from formula_gan.data.shards import atomic_write_bytes

    buf = io.StringIO()
    json.dump(obj, buf, indent=1, ensure_ascii=False)
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(path, (buf.getvalue() + "\n").encode("utf-8"))


def checkpoint_meta(ckpt: dict[str, Any]) -> dict[str, Any]:
    return {"step": ckpt.get("step"), "best_val_exprate": ckpt.get("best_exprate"), "version": ckpt.get("version", __version__)}


# ---- the paper's Table 1 protocol ---------------------------------------------------------


def score_generator(
    test_dirs: Sequence[str | Path],
    *,
    synthetic_dir: str | Path | None = None,
    generator: str | Path | None = None,
    formulas: Sequence[str | Path] = (),
    config: str | Path | None = None,
    overrides: Sequence[str] = (),
    out_dir: str | Path = "runs/score-generator",
    beam: int = 1,
    device: str = "auto",
    progress: bool = True,
) -> dict[str, Any]:
    """How useful is a generator's output? (Springstein et al., Table 1)

    1. synthesize the fixed formula set ``formulas`` with ``generator`` into
       ``out_dir/synthetic`` (or take an already synthesized ``synthetic_dir``);
    2. train the small task recognizer (``config``, default
       ``configs/recognizer/score_generator.yaml``) on that synthetic set only, for the
       config's fixed step budget, with no validation (no model selection on the test set);
    3. report perplexity and every other metric of the final model on ``test_dirs``
       (CROHME test 2014).
    """
    from formula_gan.config import load_config
    from formula_gan.training.recognizer_config import RecognizerRunConfig, SourceConfig
    from formula_gan.training.recognizer_loop import train_recognizer

    out = Path(out_dir)
    if synthetic_dir is not None and generator is not None:
        raise FormulaGanError("give either --synthetic DIR or --generator FILE, not both")
    if synthetic_dir is None:
        if generator is None or not formulas:
            raise FormulaGanError("give --synthetic DIR, or --generator FILE with --formulas FILE... to synthesize")
        from formula_gan.synthesis import Synthesizer

        synthetic_dir = out / "synthetic"
        report = Synthesizer(generator, device=None if device == "auto" else device, progress=progress).run(
            list(formulas), synthetic_dir
        )
        if report.manifest is None:
            raise FormulaGanError(f"{synthetic_dir}: synthesis did not finish (no manifest.json)")
    cfg = load_config(RecognizerRunConfig, config or default_score_config(), overrides)
    cfg.name = "task-model"
    cfg.out_dir = str(out / "{name}")
    cfg.data.train = [SourceConfig(str(synthetic_dir), 1.0)]
    cfg.data.val = []
    cfg.train.device = device
    summary = train_recognizer(cfg, progress=progress)
    result = evaluate_checkpoint(summary["last"], test_dirs, beam=beam, device=device, progress=progress)
    payload = result.to_json({"synthetic": str(synthetic_dir), "generator": str(generator) if generator else None,
                              "train_steps": summary["step"], "test": [str(t) for t in test_dirs]})
    write_json(out / "score.json", payload)
    return payload


def default_score_config() -> Path:
    return Path(__file__).resolve().parents[1] / "configs" / "recognizer" / "score_generator.yaml"


# ---- result tables and curves for the reproduction scripts ---------------------------------


def read_log(run_dir: str | Path, kind: str, key: str) -> list[tuple[float, float]]:
    """(step, value) pairs of one logged quantity from a run's ``log.jsonl``."""
    path = Path(run_dir) / "log.jsonl"
    if not path.is_file():
        raise FormulaGanError(f"{path}: no training log")
    points = []
    for line in path.read_text(encoding="utf-8").splitlines():
        event = json.loads(line)
        if event.get("kind") == kind and isinstance(event.get(key), (int, float)):
            points.append((float(event["step"]), float(event[key])))
    return points


PALETTE = [(31, 119, 180), (255, 127, 14), (44, 160, 44), (214, 39, 40), (148, 103, 189), (140, 86, 75),
           (227, 119, 194), (127, 127, 127), (188, 189, 34), (23, 190, 207)]  # fmt: skip


def plot_curves(
    series: dict[str, list[tuple[float, float]]], path: str | Path, title: str, ylabel: str, size: tuple[int, int] = (900, 520)
) -> None:
    """A line chart (one line per series, legend, axis ticks) drawn with pillow: no plotting library needed."""
    from PIL import Image, ImageDraw, ImageFont

    series = {k: v for k, v in series.items() if v}
    if not series:
        raise FormulaGanError(f"nothing to plot for {path}")
    W, H = size
    left, right, top, bottom = 80, 200, 40, 50
    img = Image.new("RGB", (W, H), "white")
    draw = ImageDraw.Draw(img)
    font = ImageFont.load_default()
    xs = [x for pts in series.values() for x, _ in pts]
    ys = [y for pts in series.values() for _, y in pts]
    x0, x1 = min(xs), max(xs)
    y0, y1 = min(ys), max(ys)
    if x1 == x0:
        x1 = x0 + 1
    if y1 == y0:
        y0, y1 = y0 - 0.5, y1 + 0.5
    pad = 0.05 * (y1 - y0)
    y0, y1 = y0 - pad, y1 + pad

    def to_px(x: float, y: float) -> tuple[float, float]:
        return left + (x - x0) / (x1 - x0) * (W - left - right), H - bottom - (y - y0) / (y1 - y0) * (H - top - bottom)

    draw.rectangle([left, top, W - right, H - bottom], outline="black")
    for i in range(6):  # ticks and grid
        fx, fy = x0 + i * (x1 - x0) / 5, y0 + i * (y1 - y0) / 5
        px, _ = to_px(fx, y0)
        _, py = to_px(x0, fy)
        draw.line([px, top, px, H - bottom], fill=(230, 230, 230))
        draw.line([left, py, W - right, py], fill=(230, 230, 230))
        draw.text((px - 15, H - bottom + 6), f"{fx:.0f}", fill="black", font=font)
        draw.text((8, py - 6), f"{fy:.3g}", fill="black", font=font)
    for i, (name, pts) in enumerate(sorted(series.items())):
        color = PALETTE[i % len(PALETTE)]
        px = [to_px(x, y) for x, y in sorted(pts)]
        if len(px) > 1:
            draw.line(px, fill=color, width=2)
        for cx, cy in px if len(px) <= 40 else px[-1:]:
            draw.ellipse([cx - 2, cy - 2, cx + 2, cy + 2], fill=color)
        ly = top + 10 + 18 * i
        draw.line([W - right + 12, ly + 6, W - right + 36, ly + 6], fill=color, width=3)
        draw.text((W - right + 42, ly), name[:24], fill="black", font=font)
    draw.text((left, 8), title, fill="black", font=font)
    draw.text((left + (W - left - right) // 2 - 10, H - 20), "step", fill="black", font=font)
    draw.text((8, top - 14), ylabel, fill="black", font=font)
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    img.save(path)


def results_table(rows: list[tuple[str, dict[str, Any]]], keys: Sequence[str]) -> str:
    """A markdown table: one row per (name, metrics), one column per metric key (rates as %)."""
    labels = {k: label for k, label, _ in METRIC_LABELS}
    percent = {k: p for k, _, p in METRIC_LABELS}
    lines = ["| run | " + " | ".join(labels.get(k, k) for k in keys) + " |", "| --- |" + " ---: |" * len(keys)]
    for name, m in rows:
        cells = []
        for k in keys:
            v = m.get(k)
            cells.append("–" if v is None else (f"{100 * v:.2f}" if percent.get(k, False) else f"{v:.3f}"))
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def write_report(out_md: str | Path, title: str, intro: str, table: str, figures: Sequence[str]) -> None:
    """results/<table>.md: title, how it was made, the table, the figures (paths relative to the file)."""
    text = [f"# {title}", "", intro, "", table, ""]
    text += [f"![{Path(f).stem}]({Path(f).name})" for f in figures]
    Path(out_md).parent.mkdir(parents=True, exist_ok=True)
    Path(out_md).write_text("\n".join(text) + "\n", encoding="utf-8")
