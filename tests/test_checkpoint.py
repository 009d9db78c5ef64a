"""Checkpoints: atomic writes, weights_only reads, RNG round trips, clear errors, generator export."""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import pytest
import torch

from formula_gan.hashing import sha256_file
from formula_gan.models.generator_io import load_generator
from formula_gan.training.checkpoint import CheckpointError, export_generator, load_checkpoint, rng_state, save_checkpoint, set_rng_state
from formula_gan.training.gan_loop import train_gan
from test_gan_support import one_thread, tiny_config, toy_data  # noqa: F401


class NotPlainData:
    """Anything but tensors and plain values must be refused by the restricted unpickler."""


def test_rng_states_round_trip() -> None:
    state = rng_state()
    first = (torch.rand(3), random.random(), np.random.rand(2))
    set_rng_state(state)
    again = (torch.rand(3), random.random(), np.random.rand(2))
    assert torch.equal(first[0], again[0]) and first[1] == again[1] and np.array_equal(first[2], again[2])


def test_save_is_atomic_and_load_is_weights_only(tmp_path: Path) -> None:
    path = tmp_path / "c.pt"
    save_checkpoint({"step": 3, "config": {"a": [1, 2]}, "rng": rng_state(), "w": torch.ones(2)}, path)
    first = path.read_bytes()
    with pytest.raises(Exception):
        save_checkpoint({"step": 4, "bad": lambda: None}, path)  # cannot be pickled: fails mid-write
    assert path.read_bytes() == first  # the previous checkpoint is intact
    assert not (tmp_path / "c.pt.tmp").exists()
    loaded = load_checkpoint(path)
    assert loaded["step"] == 3 and loaded["config"] == {"a": [1, 2]} and torch.equal(loaded["w"], torch.ones(2))
    torch.save({"format": "formula-gan-gan-checkpoint", "format_version": 1, "x": NotPlainData()}, tmp_path / "evil.pt")
    with pytest.raises(CheckpointError, match="not a plain-data checkpoint .*: refused$"):
        load_checkpoint(tmp_path / "evil.pt")


def test_unreadable_checkpoints_give_one_clear_error(tmp_path: Path) -> None:
    good = tmp_path / "good.pt"
    save_checkpoint({"step": 1, "w": torch.randn(1000)}, good)
    data = good.read_bytes()
    (tmp_path / "truncated.pt").write_bytes(data[: len(data) // 3])
    (tmp_path / "garbage.pt").write_bytes(b"\x00" * 100)
    torch.save([1, 2, 3], tmp_path / "list.pt")
    torch.save({"format": "formula-gan-gan-checkpoint", "format_version": 99}, tmp_path / "future.pt")
    for name, pattern in [("missing.pt", "not found"), ("truncated.pt", "truncated or corrupt"),
                          ("garbage.pt", "truncated or corrupt"), ("list.pt", "not a formula-gan GAN training checkpoint"),
                          ("future.pt", "format 99 is not supported")]:
        with pytest.raises(CheckpointError, match=pattern):
            load_checkpoint(tmp_path / name)


def test_export_generator_holds_the_ema_generator(tmp_path: Path) -> None:
    cfg = tiny_config(tmp_path, "steps=2")
    result = train_gan(cfg, toy_data())
    path, sha, step = export_generator(result.checkpoint, tmp_path / "g16.pt", fp16=True)
    G, meta = load_generator(path)
    assert step == 2 and meta["step"] == 2 and meta["sha256"] == sha == sha256_file(path)
    assert meta["source_sha256"] == sha256_file(result.checkpoint)
    assert meta["config"]["lambda_task"] == cfg.lambda_task
    assert path.stat().st_size < 0.2 * result.checkpoint.stat().st_size  # G alone, half precision
    # the exported weights are the EMA copy's, not the raw generator's
    payload = load_checkpoint(result.checkpoint)
    from formula_gan.models.generator import Generator

    ema = Generator(**payload["architecture"]["G"])
    ema.load_state_dict(payload["models"]["G_ema"])
    ema.eval()
    x, z, c = torch.rand(2, 1, 32, 64), torch.randn(2, G.z_dim), torch.ones(2, dtype=torch.long)
    with torch.no_grad():
        assert (G(x, c, z) - ema(x, c, z)).abs().max() < 5e-3
    with pytest.raises(CheckpointError, match="not found"):
        export_generator(tmp_path / "nope.pt", tmp_path / "x.pt")
