"""Reports: metric tables, result tables, JSON files and line charts for evaluation runs and the
reproduction scripts. Pure formatting: it reads numbers and logs, never models."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Sequence

from PIL import Image, ImageDraw, ImageFont

from formula_gan import __version__
from formula_gan.data.shards import atomic_write_json
from formula_gan.errors import FormulaGanError
from formula_gan.metrics import Scores


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
    """``obj`` as indented JSON, written atomically (its folder made when missing)."""
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    atomic_write_json(path, obj)


def checkpoint_meta(ckpt: dict[str, Any]) -> dict[str, Any]:
    return {"step": ckpt.get("step"), "best_val_exprate": ckpt.get("best_exprate"), "version": ckpt.get("version", __version__)}



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
