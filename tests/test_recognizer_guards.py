"""Recognizer training refuses nonsense settings before any work, stops when it diverges, and
averages its weights when asked, resumably."""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

import pytest
import torch

from conftest import tiny_args
from formula_gan.cli import main
from formula_gan.recognition.files import load_recognizer
from formula_gan.models.recognizer import RecognizerModel


@pytest.fixture(autouse=True)
def in_repo(repo_root: Path):
    cwd = os.getcwd()
    os.chdir(repo_root)
    yield
    os.chdir(cwd)


@pytest.mark.parametrize(
    "override, message",
    [
        ("optim.lr=inf", "optim: lr must be"),
        ("optim.lr=nan", "optim: lr must be"),
        ("optim.lr=-1e-3", "optim: lr must be"),
        ("data.batch_size=0", "data: batch_size must be"),
        ("optim.ema_decay=nan", "optim: ema_decay must be"),
        ("optim.ema_decay=1.5", "optim: ema_decay must be"),
        ("optim.ema_decay=1.0", "optim: ema_decay must be below 1"),
        ("train.max_steps=-5", "train: max_steps must be"),
        ("train.val_every=0", "train: val_every must be"),
    ],
)
def test_bad_settings_are_refused_before_any_work(
    digits: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], override: str, message: str
) -> None:
    assert main(["train-recognizer", *tiny_args(tmp_path, digits, digits), override]) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "runs").exists()


def test_divergence_stops_the_run_and_keeps_the_last_good_checkpoint(
    digits: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    # No allowed setting makes this small model diverge within a test's budget (Adam with clipped
    # gradients survives lr 10), so the fault is injected: from the 13th step on the loss is NaN.
    forward = RecognizerModel.forward
    calls = {"n": 0}

    def poisoned(self, *args, **kwargs):
        out = forward(self, *args, **kwargs)
        if self.training:
            calls["n"] += 1
            if calls["n"] > 12:
                out["loss"] = out["loss"] * float("nan")
        return out

    monkeypatch.setattr(RecognizerModel, "forward", poisoned)
    assert main(["train-recognizer", *tiny_args(tmp_path, digits, digits, steps=30)]) == 2
    err = capsys.readouterr().err
    assert "training diverged by step 15" in err and "last good checkpoint" in err
    run = tmp_path / "runs" / "t"
    ckpt = torch.load(run / "last.pt", weights_only=True)
    assert ckpt["step"] == 10
    assert all(torch.isfinite(t).all() for t in ckpt["model"].values() if t.is_floating_point())

    def strict(text: str) -> object:
        raise ValueError(f"not JSON: {text}")

    lines = [json.loads(line, parse_constant=strict) for line in (run / "log.jsonl").read_text().splitlines()]
    assert lines[-1]["kind"] == "error" and lines[-1]["non_finite"] == "loss"


def test_weight_average_is_what_is_validated_saved_and_resumed(digits: Path, tmp_path: Path) -> None:
    args = [*tiny_args(tmp_path, digits, digits, steps=10), "optim.ema_decay=0.9"]
    assert main(["train-recognizer", *args]) == 0
    run = tmp_path / "runs" / "t"
    first = torch.load(run / "last.pt", weights_only=True)
    averaged, raw = first["model"], first["train_model"]
    assert any(not torch.equal(averaged[k], raw[k]) for k in raw if raw[k].is_floating_point())
    loaded = load_recognizer(run / "best.pt").model.state_dict()  # readers load the average
    assert all(torch.equal(loaded[k], averaged[k]) for k in averaged)
    # resume to 20 steps: the raw weights continue from train_model, the average from model
    assert main(["train-recognizer", *args[:-1], "train.max_steps=20", "optim.ema_decay=0.9"]) == 0
    second = torch.load(run / "last.pt", weights_only=True)
    assert second["step"] == 20
    assert all(math.isfinite(float(v.float().abs().sum())) for v in second["model"].values())


def test_non_finite_weights_are_refused_on_load_and_export(trained: Path, tmp_path: Path, capsys):
    ckpt = torch.load(trained / "best.pt", weights_only=True)
    name = next(k for k, v in ckpt["model"].items() if v.is_floating_point())
    ckpt["model"][name] = ckpt["model"][name] * float("nan")  # what a diverged run would have saved
    torch.save(ckpt, tmp_path / "nan.pt")
    with pytest.raises(Exception, match="NaN or infinite"):
        load_recognizer(tmp_path / "nan.pt")
    assert main(["export-recognizer", str(tmp_path / "nan.pt"), "--out", str(tmp_path / "out.pt")]) == 2
    assert "NaN or infinite" in capsys.readouterr().err and not (tmp_path / "out.pt").exists()
