"""End to end on a tiny shard set written here: train-recognizer -> evaluate (CLI), resume, score-generator, errors."""

from __future__ import annotations

import json

import pytest
import torch

from formula_gan.cli import main

from conftest import STRINGS, tiny_args


def test_training_writes_logs_and_checkpoints(trained):
    events = [json.loads(line) for line in (trained / "log.jsonl").read_text().splitlines()]
    train = [e for e in events if e["kind"] == "train"]
    val = [e for e in events if e["kind"] == "val"]
    assert [e["step"] for e in val] == [10, 20]
    # the loss falls: the last logged window of 5 steps is below the first
    assert train[-1]["loss"] < 0.9 * train[0]["loss"]  # measured: 2.88 -> 2.42
    assert {"exprate", "wer", "cer", "bleu", "perplexity"} <= set(val[-1])
    assert (trained / "best.pt").is_file() and (trained / "last.pt").is_file()
    assert list((trained / "tb").glob("events.out.tfevents.*")), "no TensorBoard event file"
    assert (trained / "config.yaml").is_file() and (trained / "vocab.json").is_file()
    best = torch.load(trained / "best.pt", weights_only=True)
    chosen = max(val, key=lambda e: (e["exprate"], -e["wer"]))  # ExpRate, ties broken by WER
    assert (best["best_exprate"], best["best_wer"]) == (chosen["exprate"], chosen["wer"])
    assert best["step"] == chosen["step"]


def test_evaluate_cli_end_to_end(trained, digits, tmp_path, capsys):
    """20 CPU steps teach the tiny model little (learning is measured in test_recognizer.py); here the
    pipeline is checked: evaluating last.pt greedily reproduces the validation logged at its step."""
    out = tmp_path / "eval.json"
    assert main(["evaluate", "--recognizer", str(trained / "last.pt"), str(digits), "--beam", "1",
                 "--out", str(out), "--no-progress"]) == 0  # fmt: skip
    table = capsys.readouterr().out
    assert "ExpRate" in table and "perplexity" in table
    report = json.loads(out.read_text())
    m = report["metrics"]
    assert m["num_formulas"] == len(STRINGS) == len(report["predictions"])
    logged = [json.loads(line) for line in (trained / "log.jsonl").read_text().splitlines()][-1]
    assert logged["kind"] == "val" and logged["step"] == 20
    for key in ("exprate", "wer", "cer", "bleu", "perplexity"):
        assert m[key] == pytest.approx(logged[key], rel=1e-5), key
    # and the model learned something: perplexity below a uniform guess over its 16 ids
    assert m["perplexity"] < 16
    # beam search decodes the same set too, and never scores a formula below greedy
    out10 = tmp_path / "eval10.json"
    assert main(["evaluate", "--recognizer", str(trained / "last.pt"), str(digits), "--beam", "4",
                 "--out", str(out10), "--no-progress"]) == 0  # fmt: skip
    beam = {p["key"]: p["score"] for p in json.loads(out10.read_text())["predictions"]}
    assert all(beam[p["key"]] >= p["score"] - 1e-4 for p in report["predictions"])
    for p in report["predictions"]:
        assert set(p) >= {"key", "reference", "hypothesis", "edit_distance"}
        assert p["reference"] == " ".join(STRINGS[int(p["key"][1:4])])
    exact = sum(p["edit_distance"] == 0 for p in report["predictions"]) / len(STRINGS)
    assert exact == m["exprate"]


def test_resume_continues_from_last_checkpoint(digits, tmp_path, repo_root, monkeypatch):
    monkeypatch.chdir(repo_root)
    args = tiny_args(tmp_path, digits, digits, name="r", steps=10)
    args = [a if not a.startswith("train.val_every") else "train.val_every=5" for a in args]
    assert main(["train-recognizer", *args]) == 0
    run = tmp_path / "runs" / "r"
    first = torch.load(run / "last.pt", weights_only=True)
    assert first["step"] == 10
    longer = [a if not a.startswith("train.max_steps") else "train.max_steps=15" for a in args]
    assert main(["train-recognizer", *longer]) == 0
    events = [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]
    resume = [e for e in events if e["kind"] == "resume"]
    assert len(resume) == 1 and resume[0]["step"] == 10
    assert [e["step"] for e in events if e["kind"] == "val"] == [5, 10, 15]
    second = torch.load(run / "last.pt", weights_only=True)
    assert second["step"] == 15
    # the optimizer state came along: Adam's step counters continue from 10
    assert int(second["optimizer"]["state"][0]["step"]) == 15
    # a different model under the same run name is refused, not silently mixed
    assert main(["train-recognizer", *longer, "model.hidden=48"]) == 2


def test_score_generator_on_a_synthesized_set(digits, tmp_path, repo_root, monkeypatch):
    monkeypatch.chdir(repo_root)
    out = tmp_path / "score"
    tiny = "configs/recognizer/tiny.yaml"
    assert main(["score-generator", "--synthetic", str(digits), "--test", str(digits), "--config", tiny,
                 "--out-dir", str(out), "--no-progress", "train.max_steps=5", "optim.warmup_steps=2"]) == 0  # fmt: skip
    score = json.loads((out / "score.json").read_text())
    assert score["train_steps"] == 5 and score["metrics"]["perplexity"] > 1.0
    assert not (out / "task-model" / "log.jsonl").read_text().count('"kind": "val"')  # no selection on test


def test_bad_inputs_are_clear_errors(tmp_path, digits, capsys, repo_root, monkeypatch):
    monkeypatch.chdir(repo_root)
    # a folder that is not a finished shard set
    assert main(["train-recognizer", *tiny_args(tmp_path, tmp_path / "nowhere", None)]) == 2
    assert "no manifest.json" in capsys.readouterr().err
    # a truncated checkpoint
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"PK\x03\x04 not a checkpoint")
    assert main(["evaluate", "--recognizer", str(bad), str(digits), "--no-progress"]) == 2
    assert "truncated or corrupt" in capsys.readouterr().err
    # a valid torch file that is not a recognizer checkpoint
    other = tmp_path / "other.pt"
    torch.save({"model": {}}, other)
    assert main(["evaluate", "--recognizer", str(other), str(digits), "--no-progress"]) == 2
    assert "not a formula-gan recognizer checkpoint" in capsys.readouterr().err
    # score-generator takes either a synthesized set or a generator to synthesize with
    assert main(["score-generator", "--synthetic", str(digits), "--generator", str(other), "--test", str(digits),
                 "--out-dir", str(tmp_path / "s"), "--no-progress"]) == 2  # fmt: skip
    assert "not both" in capsys.readouterr().err
    # an unknown config key names the key
    assert main(["train-recognizer", "--config", "configs/recognizer/tiny.yaml", "model.hiden=3"]) == 2
    assert "model.hiden" in capsys.readouterr().err
