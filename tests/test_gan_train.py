"""The GAN loop end to end: run folder contents, exact resume, non-finite guard, clear errors, real shards."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image

from formula_gan.cli import main
from formula_gan.config import ConfigError
from formula_gan.data.batch import Batch
from formula_gan.errors import FormulaGanError
from formula_gan.training.checkpoint import CheckpointError, load_checkpoint
from formula_gan.training.gan_data import GanDataError, TensorSet
from formula_gan.training.gan_loop import NonFiniteLossError, train_gan
from test_gan_support import one_thread, tiny_config, toy_data, write_shard_folder  # noqa: F401

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def shards(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("gan_shards")
    return {"rendered": write_shard_folder(root / "rendered", "rendered", seed=1),
            "handwritten": write_shard_folder(root / "handwritten", "handwritten", seed=2)}


def shard_overrides(shards: dict[str, Path]) -> list[str]:
    return [f"data.rendered=[{shards['rendered']}]", f"data.handwritten=[{shards['handwritten']}]",
            "data.height=32", "data.max_width=64", "data.batch_size=4", "data.num_workers=0"]


def states(path: Path) -> dict[str, Any]:
    p = load_checkpoint(path)
    return {"models": p["models"], "optimizers": p["optimizers"], "data": p["data"], "step": p["step"]}


def assert_same(a: Any, b: Any, where: str = "") -> None:
    if isinstance(a, torch.Tensor):
        assert torch.equal(a, b), where
    elif isinstance(a, dict):
        assert a.keys() == b.keys(), where
        for k in a:
            assert_same(a[k], b[k], f"{where}.{k}")
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b)):
            assert_same(x, y, f"{where}[{i}]")
    else:
        assert a == b, where


def test_resume_continues_exactly_on_real_shards(tmp_path: Path, shards: dict[str, Path]) -> None:
    """6 steps in one go == 3 steps, then --resume for 3 more: the same weights, optimizer
    states and data position, bit for bit (the loaders cross an epoch boundary on the way)."""
    common = [*shard_overrides(shards), "checkpoint_every=3", "sample_every=3", "log_every=1"]
    whole = tiny_config(tmp_path / "whole", "steps=6", *common)
    train_gan(whole)
    half = tiny_config(tmp_path / "half", "steps=3", *common)
    train_gan(half)
    with pytest.raises(FormulaGanError, match="--resume"):
        train_gan(tiny_config(tmp_path / "half", "steps=6", *common))  # a second run may not overwrite the first
    result = train_gan(tiny_config(tmp_path / "half", "steps=6", *common), resume=True)
    assert result.step == 6
    a, b = states(Path(whole.out_dir) / "checkpoint.pt"), states(Path(half.out_dir) / "checkpoint.pt")
    assert a["data"]["real"]["epoch"] >= 1  # 12 real samples = 3 batches per epoch
    assert_same(a, b)
    # the log of the resumed run has each step once
    steps = [json.loads(line)["step"] for line in (Path(half.out_dir) / "log.jsonl").read_text().splitlines()]
    assert steps == [1, 2, 3, 4, 5, 6]


def test_run_folder_holds_config_logs_tensorboard_sheets_and_checkpoint(tmp_path: Path) -> None:
    cfg = tiny_config(tmp_path, "steps=4", "log_every=2", "sample_every=2", "checkpoint_every=2", "sample_count=3")
    result = train_gan(cfg, toy_data())
    out = Path(cfg.out_dir)
    assert (out / "config.yaml").read_text().count("lambda_task: 1.0") == 1
    lines = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    assert [l["step"] for l in lines] == [2, 4]
    for key in ("loss_d_real", "loss_d_fake", "loss_g", "loss_task_real", "loss_task_fake", "acc_task_real",
                "acc_task_fake", "grad_norm_g", "grad_norm_d", "grad_norm_task", "lr_g", "lr_d", "lr_task"):
        assert key in lines[-1], key
    assert lines[-1]["lr_g"] == 5e-5 and lines[-1]["lr_d"] == 2e-4
    events = list((out / "tb").glob("events.out.tfevents.*"))
    assert events and events[0].stat().st_size > 1000
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(out / "tb")).Reload()
    assert {"loss/d_real", "loss/g", "accuracy/task_fake", "grad_norm/g", "lr/g"} <= set(acc.Tags()["scalars"])
    assert acc.Tags()["images"] == ["samples/rendered_vs_generated"]
    sheet = np.asarray(Image.open(result.sheet))
    assert sheet.dtype == np.uint8 and sheet.shape == (3 * 32 + 2 * 4, 3 * 64 + 2 * 4)  # 3 rows: input | z1 | z2
    assert sorted(p.name for p in (out / "samples").iterdir()) == ["step_0000002.png", "step_0000004.png"]
    assert sheet[:32, :64].min() < 128  # the rendered input column shows ink


class NanAfter:
    """Toy data whose real images turn NaN from step ``k`` on (a broken sample, an overflow ...)."""

    def __init__(self, k: int) -> None:
        self.data, self.k = toy_data(), k
        self.vocab_size, self.vocab_tokens = self.data.vocab_size, None

    def iterator(self, state: dict | None):
        inner = self.data.iterator(state)

        class It:
            def __next__(it) -> tuple[Batch, Batch]:
                step = inner.step
                source, real = next(inner)
                if step >= self.k:
                    real.images = torch.full_like(real.images, float("nan"))
                return source, real

            def state(it) -> dict:
                return inner.state()

        return It()


def test_non_finite_loss_stops_naming_step_term_and_last_good_checkpoint(tmp_path: Path) -> None:
    cfg = tiny_config(tmp_path, "steps=5", "checkpoint_every=2")
    with pytest.raises(NonFiniteLossError) as info:
        train_gan(cfg, NanAfter(3))
    message = str(info.value)
    assert "at step 4" in message and "loss_d" in message and "(step 2)" in message and "checkpoint.pt" in message
    assert load_checkpoint(Path(cfg.out_dir) / "checkpoint.pt")["step"] == 2  # the good checkpoint is kept
    with pytest.raises(NonFiniteLossError, match="no checkpoint was written yet"):
        train_gan(tiny_config(tmp_path / "b", "steps=3"), NanAfter(0))


def test_resume_with_another_architecture_is_refused(tmp_path: Path) -> None:
    train_gan(tiny_config(tmp_path, "steps=1"), toy_data())
    with pytest.raises(CheckpointError, match=r"another architecture: D\.attention is True there but False"):
        train_gan(tiny_config(tmp_path, "steps=2", "model.attention=false"), toy_data(), resume=True)
    with pytest.raises(CheckpointError, match="not found"):
        train_gan(tiny_config(tmp_path / "none", "steps=2"), toy_data(), resume=True)


def test_bad_data_gives_clear_errors(tmp_path: Path, shards: dict[str, Path]) -> None:
    with pytest.raises(GanDataError, match="empty"):
        TensorSet(torch.zeros(0, 1, 32, 32), torch.zeros(0, 3, dtype=torch.long), torch.zeros(0), torch.zeros(0))
    images = torch.zeros(4, 1, 32, 40)
    bad = TensorSet(images, torch.ones(4, 3, dtype=torch.long), torch.full((4,), 3), torch.zeros(4, dtype=torch.long))
    from formula_gan.training.gan_data import TensorGanData

    with pytest.raises(GanDataError, match="multiples of 16"):
        TensorGanData(bad, bad, 10, 2, 0)
    base = shard_overrides(shards)
    with pytest.raises(GanDataError, match="data.rendered is empty"):
        train_gan(tiny_config(tmp_path, "steps=1", *base, "data.rendered=[]"))
    swapped = [*base, f"data.rendered=[{shards['handwritten']}]"]
    with pytest.raises(GanDataError, match="holds 'handwritten' samples, expected 'rendered'"):
        train_gan(tiny_config(tmp_path, "steps=1", *swapped))
    with pytest.raises(FormulaGanError, match="nowhere: no manifest.json"):
        train_gan(tiny_config(tmp_path, "steps=1", *base, f"data.handwritten=[{tmp_path / 'nowhere'}]"))
    with pytest.raises(GanDataError, match="no batches"):  # 12 samples cannot fill a batch of 64
        train_gan(tiny_config(tmp_path, "steps=1", *base, "data.batch_size=64"))
    with pytest.raises(ConfigError, match="model.widht"):
        tiny_config(tmp_path, "model.widht=2")


def test_cli_train_resume_and_export(tmp_path: Path, shards: dict[str, Path], capsys: pytest.CaptureFixture) -> None:
    out = tmp_path / "run"
    args = ["train-gan", "--config", str(REPO / "configs/gan/tiny.yaml"), f"out_dir={out}", *shard_overrides(shards),
            "progress=false", "device=cpu", "sample_every=1", "checkpoint_every=1"]
    assert main([*args, "steps=1"]) == 0
    assert main([*args, "steps=2", "--resume"]) == 0
    assert load_checkpoint(out / "checkpoint.pt")["step"] == 2
    assert main([*args, "steps=2", "no_such_key=1"]) == 2
    assert "unknown config key 'no_such_key'" in capsys.readouterr().err
    assert main(["export-generator", str(out / "checkpoint.pt"), "--out", str(tmp_path / "g.pt")]) == 0
    from formula_gan.models.generator_io import load_generator

    G, meta = load_generator(tmp_path / "g.pt")
    assert meta["step"] == 2 and meta["config"]["data"]["height"] == 32
    x = torch.zeros(1, 1, 32, 48)
    assert G(x, torch.ones(1, dtype=torch.long), torch.randn(1, G.z_dim)).shape == x.shape
