"""The one writer and reader of the project's torch files (checkpoints, generator files)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from formula_gan.cli import main
from formula_gan.errors import FormulaGanError
from formula_gan.models.torch_files import load_torch_file, save_torch_file
from conftest import tiny_args


class KindError(FormulaGanError):
    """The caller's own error kind."""


class NotPlainData:
    """A pickled class: weights_only refuses it (it could run code on load)."""


def test_written_whole_or_not_at_all(tmp_path: Path) -> None:
    path = tmp_path / "sub" / "f.pt"
    assert save_torch_file({"w": torch.arange(3), "step": 2}, path) == path  # the folder is created
    before = path.read_bytes()
    with pytest.raises(Exception):
        save_torch_file({"bad": lambda: None}, path)  # cannot be pickled: fails mid-write
    assert path.read_bytes() == before and [p.name for p in path.parent.iterdir()] == ["f.pt"]  # no .tmp left
    loaded = load_torch_file(path, "thing", KindError)
    assert loaded["step"] == 2 and torch.equal(loaded["w"], torch.arange(3))


def test_unreadable_files_are_the_callers_error_naming_the_file(tmp_path: Path) -> None:
    save_torch_file({"w": torch.randn(1000)}, tmp_path / "good.pt")
    data = (tmp_path / "good.pt").read_bytes()
    (tmp_path / "truncated.pt").write_bytes(data[: len(data) // 2])
    (tmp_path / "garbage.pt").write_bytes(b"\x00" * 64)
    torch.save({"x": NotPlainData()}, tmp_path / "evil.pt")
    for name, pattern in [("missing.pt", "thing not found"), ("truncated.pt", "truncated or corrupt"),
                          ("garbage.pt", "truncated or corrupt"), ("evil.pt", "not a plain-data thing .*: refused")]:
        with pytest.raises(KindError, match=pattern) as info:
            load_torch_file(tmp_path / name, "thing", KindError, hint="; do this")
        assert name in str(info.value) and "\n" not in str(info.value)
        assert "weights_only" not in str(info.value)  # torch's advice to load it anyway is never relayed
        if name != "missing.pt":
            assert str(info.value).endswith("; do this")
    assert load_torch_file(tmp_path / "good.pt", "thing", KindError)["w"].shape == (1000,)  # untouched


def test_recognizer_resume_from_a_truncated_checkpoint_is_one_clear_error(tmp_path, digits, capsys, repo_root,
                                                                         monkeypatch) -> None:
    monkeypatch.chdir(repo_root)
    run = tmp_path / "runs" / "t"
    run.mkdir(parents=True)
    save_torch_file({"w": torch.randn(1000)}, run / "last.pt")
    (run / "last.pt").write_bytes((run / "last.pt").read_bytes()[:300])
    assert main(["train-recognizer", *tiny_args(tmp_path, digits, None)]) == 2
    err = capsys.readouterr().err
    assert "cannot read recognizer checkpoint" in err and "last.pt" in err and "remove it to start over" in err
    assert "Traceback" not in err
    # a readable file of another kind
    torch.save({"kind": "something else"}, run / "last.pt")
    assert main(["train-recognizer", *tiny_args(tmp_path, digits, None)]) == 2
    assert "not a formula-gan recognizer checkpoint" in capsys.readouterr().err
