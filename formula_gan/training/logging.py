"""Run logging: TensorBoard scalars and image sheets, a JSON-lines log, a tqdm bar.

Only the main rank logs. Image sheets are made with torch + pillow (no torchvision).
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from tqdm import tqdm

from formula_gan.data.images import ink_to_paper

SHOWN = ("loss_d", "loss_g", "loss_task_real", "loss_task_fake", "acc_task_fake")


class RunLogger:
    def __init__(self, out_dir: str | Path, total_steps: int, start_step: int, enabled: bool = True, progress: bool = True) -> None:
        self.enabled = enabled
        self.out_dir = Path(out_dir)
        self.bar = None
        self.tb = None
        self.jsonl = None
        if not enabled:
            return
        from torch.utils.tensorboard import SummaryWriter  # heavy (~0.2 s, protobuf): only a logging rank needs it

        self.out_dir.mkdir(parents=True, exist_ok=True)
        # purge_step: events logged after the checkpoint a resumed run restarts from are dropped, not
        # duplicated (steps are counted as completed steps: the checkpoint's own step stays)
        self.tb = SummaryWriter(str(self.out_dir / "tb"), purge_step=start_step + 1 if start_step > 0 else None)
        log_path = self.out_dir / "log.jsonl"
        _truncate_jsonl(log_path, start_step)
        self.jsonl = log_path.open("a", encoding="utf-8")
        if progress:
            self.bar = tqdm(total=total_steps, initial=start_step, desc="train-gan", dynamic_ncols=True)

    def scalars(self, step: int, values: dict[str, float]) -> None:
        if not self.enabled:
            return
        for key, value in values.items():
            self.tb.add_scalar(_tag(key), value, step)
        self.jsonl.write(json.dumps({"step": step, "time": round(time.time(), 3), **values}) + "\n")
        self.jsonl.flush()

    def advance(self, step: int, values: dict[str, float]) -> None:
        if self.bar is not None:
            self.bar.update(step - self.bar.n)
            self.bar.set_postfix({k: f"{values[k]:.3f}" for k in SHOWN if k in values}, refresh=False)

    def sheet(self, step: int, sheet: np.ndarray) -> Path | None:
        """Write a uint8 [H, W] paper image as ``samples/step_XXXXXXX.png`` and to TensorBoard."""
        if not self.enabled:
            return None
        path = self.out_dir / "samples" / f"step_{step:07d}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(sheet).save(path)
        self.tb.add_image("samples/rendered_vs_generated", sheet, step, dataformats="HW")
        self.tb.flush()
        return path

    def warning(self, step: int, text: str) -> None:
        """A health warning: in log.jsonl (``"warning"``), on the progress bar, and printed."""
        if not self.enabled:
            return
        self.jsonl.write(json.dumps({"step": step, "time": round(time.time(), 3), "warning": text}) + "\n")
        self.jsonl.flush()
        if self.bar is not None:
            self.bar.set_description("train-gan [D WINS]", refresh=False)
        self.message(f"warning at step {step}: {text}")

    def message(self, text: str) -> None:
        if self.enabled:
            (tqdm.write if self.bar is not None else print)(text)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
        if self.tb is not None:
            self.tb.close()
        if self.jsonl is not None:
            self.jsonl.close()


def make_sheet(columns: list[torch.Tensor], gap: int = 4) -> np.ndarray:
    """Columns of ink images [k, 1, h, w] side by side, one sample per row, light-gray gaps -> uint8 paper [H, W]."""
    k = columns[0].shape[0]
    h = max(c.shape[-2] for c in columns)
    cells = [F.pad(c.detach().float().cpu().clamp(0, 1), (0, 0, 0, h - c.shape[-2])) for c in columns]  # [k, 1, h, w_j]
    sep_v = torch.full((k, 1, h, gap), 0.25)
    row = [cells[0]]
    for c in cells[1:]:
        row += [sep_v, c]
    rows = torch.cat(row, dim=-1)  # [k, 1, h, W]
    sep_h = torch.full((1, gap, rows.shape[-1]), 0.25)
    parts = []
    for i in range(k):
        if i:
            parts.append(sep_h)
        parts.append(rows[i])
    return ink_to_paper(torch.cat(parts, dim=-2))


def _tag(key: str) -> str:
    for prefix, group in (("loss_", "loss/"), ("acc_", "accuracy/"), ("grad_norm_", "grad_norm/"), ("lr_", "lr/")):
        if key.startswith(prefix):
            return group + key[len(prefix):]
    return "train/" + key


def _truncate_jsonl(path: Path, start_step: int) -> None:
    """Keep the lines up to ``start_step`` (a resumed run rewrites what came after its checkpoint)."""
    if not path.exists():
        return
    keep = [line for line in path.read_text(encoding="utf-8").splitlines() if line.strip() and json.loads(line).get("step", 0) <= start_step]
    path.write_text("".join(line + "\n" for line in keep), encoding="utf-8")
