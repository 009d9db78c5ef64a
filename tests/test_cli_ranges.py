"""Every numeric option has a range, checked before any work: a bad value is one line naming the
option (argparse's usage and error), never a traceback, and no output folder is created.
These used to be tracebacks (render --workers 0 after writing job.json, synthesize --cpu-threads -2,
prepare-crohme --pen-width -3 / --padding -100, evaluate --batch-size 0 / --max-len -1) or silently
accepted (prepare-crohme --workers -2)."""

from __future__ import annotations


import pytest

from formula_gan.cli import main
from formula_gan.data.crohme_job import CrohmeConfig
from formula_gan.errors import FormulaGanError

CASES = [
    # (command line before the bad option, the option, its value, what the error says)
    (["render", "{corpus}", "--out", "{out}"], "--workers", "0", "must be at least 1, got 0"),
    (["render", "{corpus}", "--out", "{out}"], "--workers", "-1", "must be at least 1, got -1"),
    (["render", "{corpus}", "--out", "{out}"], "--variants", "x", "expected an integer, got 'x'"),
    (["render", "{corpus}", "--out", "{out}"], "--seed", "-4", "must be at least 0, got -4"),
    (["prepare-formulas", "{corpus}", "--out", "{out}"], "--max-width", "0", "must be at least 1, got 0"),
    (["normalize", "{corpus}", "--out", "{out}"], "--timeout", "inf", "must be a finite number"),
    (["prepare-crohme", "{inkml}", "--out", "{out}"], "--pen-width", "-3", "must be at least 0.1, got -3"),
    (["prepare-crohme", "{inkml}", "--out", "{out}"], "--padding", "-100", "must be at least 0, got -100"),
    (["prepare-crohme", "{inkml}", "--out", "{out}"], "--workers", "-2", "must be at least 1, got -2"),
    (["prepare-crohme", "{inkml}", "--out", "{out}"], "--shard-size", "0", "must be at least 1, got 0"),
    (["synthesize", "{corpus}", "--untrained-generator", "--out", "{out}"], "--cpu-threads", "-2",
     "must be at least 1, got -2"),
    (["synthesize", "{corpus}", "--untrained-generator", "--out", "{out}"], "--batch-size", "0",
     "must be at least 1, got 0"),
    (["synthesize", "{corpus}", "--untrained-generator", "--out", "{out}"], "--render-workers", "100",
     "must be at most 64, got 100"),
    (["synthesize", "{corpus}", "--untrained-generator", "--out", "{out}"], "--shard-index", "-1",
     "must be at least 0, got -1"),
    (["evaluate", "--recognizer", "{corpus}", "{corpus}", "--out", "{out}"], "--batch-size", "0",
     "must be at least 1, got 0"),
    (["evaluate", "--recognizer", "{corpus}", "{corpus}", "--out", "{out}"], "--max-len", "-1",
     "must be at least 1, got -1"),
    (["evaluate", "--recognizer", "{corpus}", "{corpus}", "--out", "{out}"], "--beam", "0",
     "must be at least 1, got 0"),
]


@pytest.mark.parametrize("before, option, value, message", CASES, ids=[f"{c[0][0]} {c[1]} {c[2]}" for c in CASES])
def test_a_number_out_of_range_is_one_error_before_any_work(before, option, value, message, tmp_path, capsys):
    corpus = tmp_path / "formulas.txt"
    corpus.write_text("x^2\n")
    (tmp_path / "inkml").mkdir()
    out = tmp_path / "out"
    args = [a.format(corpus=corpus, inkml=tmp_path / "inkml", out=out) for a in before] + [option, value]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert f"error: argument {option}: {message}" in err and "Traceback" not in err, err
    assert not out.exists()


@pytest.mark.parametrize("changes, key", [({"workers": -2}, "workers"), ({"pen_width": -3.0}, "pen_width"),
                                          ({"padding": -100}, "padding"), ({"shard_size": 0}, "shard_size"),
                                          ({"pen_width": float("nan")}, "pen_width")])
def test_the_python_api_checks_the_same_ranges(changes, key):
    with pytest.raises(FormulaGanError, match=f"^{key} must be in"):
        CrohmeConfig(**changes)


def test_render_into_an_existing_file_is_refused_untouched(tmp_path, capsys):
    corpus = tmp_path / "formulas.txt"
    corpus.write_text("x^2\n")
    target = tmp_path / "taken"
    target.write_text("someone's file")
    for command in (["render", str(corpus)], ["prepare-crohme", str(tmp_path)]):
        (tmp_path / "a.inkml").write_text("<ink/>")
        assert main([*command, "--out", str(target), "--no-progress"]) == 2
        err = capsys.readouterr().err
        assert f"{target} is a file, not a folder" in err and "Traceback" not in err, err
    assert target.read_text() == "someone's file"


def test_renderer_config_values_have_ranges(tmp_path, capsys):
    """Config values too (configs/render.yaml or KEY=VALUE): the error names the key."""
    corpus = tmp_path / "formulas.txt"
    corpus.write_text("x^2\n")
    for override, message in (("renderer.per_formula_timeout_s=-1", "per_formula_timeout_s must be in 0..3600"),
                              ("renderer.max_retries=-1", "max_retries must be in 0..100"),
                              ("renderer.recycle_every=0", "recycle_every must be in 1..1000000000"),
                              ("renderer.max_side=0", "max_side must be in 1..65535"),
                              ("renderer.timeout_s=.nan", "timeout_s must be in 0.001..86400, got nan")):
        assert main(["render", str(corpus), "--out", str(tmp_path / "out"), override]) == 2
        err = capsys.readouterr().err
        assert f"renderer: {message}" in err and "Traceback" not in err, err
    assert not (tmp_path / "out").exists()
