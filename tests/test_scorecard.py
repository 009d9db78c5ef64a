"""The generator scorecard end to end: a tiny recognizer judges real, rendered and synthetic images."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from formula_gan.cli import main
from formula_gan.data.jobs import shard_paths
from formula_gan.data.shards import read_shard
from formula_gan.scoring.scorecard import scorecard

pytestmark = pytest.mark.browser


@pytest.fixture(scope="module")
def card(trained, digits, tmp_path_factory) -> tuple[Path, str]:
    """The scorecard of the untrained generator through the command: (out folder, printed table)."""
    import contextlib
    import io

    out = tmp_path_factory.mktemp("card") / "card"
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        rc = main(["scorecard", "--untrained-generator", "--test", str(digits), "--train", str(digits),
                   "--out", str(out), "--recognizer", str(trained / "best.pt"), "--no-progress"])  # fmt: skip
    assert rc == 0
    return out, printed.getvalue()


def test_scorecard_with_an_untrained_generator(card, digits):
    out, table = card
    for row in ("| real handwriting | 8 |", "| KaTeX renderings | 8 |", "| synthetic | 8 |", "real train (the floor)"):
        assert row in table
    assert "| images of the test formulas | formulas | ExpRate % | ≤1 % | ≤2 % | WER % | CER % |" in table
    card = json.loads((out / "scorecard.json").read_text())
    assert set(card["content"]) == {"real", "rendered", "synthetic"}
    assert set(card["frechet"]) == {"synthetic", "rendered", "train"}
    assert all(v >= 0 for v in card["frechet"].values())
    assert card["samples"] == {"real": 8, "train": 8, "rendered": 8, "synthetic": 8}
    assert "fewer than 200 samples" in card["warning"] and "**Warning:**" in table  # 8 samples: said, not hidden
    # the train floor here reads the test set itself (shuffled): the same images, so distance 0
    assert card["frechet"]["train"] == pytest.approx(0.0, abs=1e-6)
    assert (out / "sheet.png").is_file() and (out / "sheet_generated.png").is_file() and (out / "scorecard.md").read_text().startswith("Recognizer")
    # line i of formulas.txt is test sample i, and the rendered set holds every line once
    lines = (out / "formulas.txt").read_text().splitlines()
    tokens = [s.meta["tokens"] for p in shard_paths(digits) for s in read_shard(p)]
    assert [line.replace(" ", "") for line in lines] == [t.replace(" ", "") for t in tokens]
    rendered = sorted(int(s.meta["source"].rsplit(":", 1)[1]) for p in shard_paths(out / "rendered") for s in read_shard(p))
    assert rendered == list(range(1, 9))


def test_scorecard_of_the_renderings_themselves_equals_their_baseline(card, trained, digits, tmp_path):
    """Scoring a 'synthetic' set that is the rendered set gives the renderings' figures exactly."""
    first = json.loads((card[0] / "scorecard.json").read_text())
    again = scorecard(tmp_path / "b", digits, digits, method=None, synthetic_dir=card[0] / "rendered",
                      recognizer=trained / "best.pt", progress=False)  # fmt: skip
    assert again["content"]["synthetic"] == first["content"]["rendered"]
    assert again["frechet"]["synthetic"] == pytest.approx(first["frechet"]["rendered"], rel=1e-9)


def test_scorecard_errors_name_the_problem_before_any_work(card, trained, digits, tmp_path, capsys):
    judge = ["--recognizer", str(trained / "best.pt")]
    rc = main(["scorecard", "--untrained-generator", "--test", str(tmp_path / "none"), "--train", str(digits),
               "--out", str(tmp_path / "o"), *judge])  # fmt: skip
    assert rc == 2 and "test set is not a finished shard folder" in capsys.readouterr().err
    # renderings given as the real test set: refused by their manifest's domain
    rc = main(["scorecard", "--untrained-generator", "--test", str(card[0] / "rendered"), "--train", str(digits),
               "--out", str(tmp_path / "o"), *judge])  # fmt: skip
    assert rc == 2 and "must be handwritten images, but its manifest says 'rendered'" in capsys.readouterr().err
    # a bad generator is found before the test set is rendered
    rc = main(["scorecard", "--generator", str(tmp_path / "nope.pt"), "--test", str(digits), "--train", str(digits),
               "--out", str(tmp_path / "o"), *judge])  # fmt: skip
    assert rc == 2 and "generator file not found" in capsys.readouterr().err
    rc = main(["scorecard", "--symbols", "bank", "--test", str(digits), "--train", str(digits),
               "--out", str(tmp_path / "o"), *judge])  # fmt: skip
    assert rc == 2 and "--symbols: not a setting of method 'gan'" in capsys.readouterr().err
    rc = main(["scorecard", "--synthetic", str(digits), "--generator", "g.pt", "--test", str(digits), "--train",
               str(digits), "--out", str(tmp_path / "o"), *judge])  # fmt: skip
    assert rc == 2 and "--generator: settings of a method; --synthetic scores a set made already" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()
