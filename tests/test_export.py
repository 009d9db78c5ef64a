"""Exports: each layout read back gives the same images and the same tokens."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from formula_gan.cli import main
from formula_gan.data.export import export_shards, read_crohme_images, read_im2latex
from formula_gan.data.images import encode_png
from formula_gan.data.jobs import ShardedJob, ShardResult
from formula_gan.data.shards import Sample
from formula_gan.errors import FormulaGanError

TOKENS = ["x + 1", "\\frac { a } { b }", "\\sqrt { 2 }", "y _ { i } ^ { 2 }", "( x )"]


@pytest.fixture(scope="module")
def shards(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, tuple[np.ndarray, str]]]:
    out = tmp_path_factory.mktemp("export") / "shards"
    rng = np.random.default_rng(0)
    job = ShardedJob(out, {"kind": "test"}, 2).open()
    truth = {}
    for chunk in job.pending(list(enumerate(TOKENS))):
        samples = []
        for i, tokens in chunk.items:
            paper = rng.integers(0, 256, (20 + i, 30 + 3 * i), dtype=np.uint8)
            key = f"sample-{i}"
            truth[key] = (paper, tokens)
            samples.append(Sample(key, encode_png(paper), {"tokens": tokens, "domain": "handwritten"}))
        job.commit(chunk.index, ShardResult(samples))
    job.finalize()
    return out, truth


def test_im2latex_round_trip(shards, tmp_path: Path) -> None:
    src, truth = shards
    result = export_shards(src, tmp_path / "im2latex", "im2latex", split="validate")
    assert result.count == len(TOKENS)
    back = read_im2latex(tmp_path / "im2latex", "validate")
    assert len(back) == len(TOKENS)
    for path, tokens in back:
        paper, want = truth[path.stem]
        assert tokens == want
        assert np.array_equal(np.asarray(Image.open(path)), paper)
    assert read_im2latex(tmp_path / "im2latex", "train") == []
    assert (tmp_path / "im2latex" / "test_filter.lst").read_text() == ""
    assert len((tmp_path / "im2latex" / "formulas.lst").read_text().splitlines()) == len(TOKENS)


@pytest.mark.parametrize("image_format", ["png", "bmp"])
def test_crohme_images_round_trip(shards, tmp_path: Path, image_format: str) -> None:
    src, truth = shards
    out = tmp_path / "crohme"
    assert main(["export", str(src), "--format", "crohme-images", "--out", str(out), "--image-format", image_format]) == 0
    lines = (out / "caption.txt").read_text().splitlines()
    assert all(len(line.split("\t")) == 2 for line in lines)
    back = read_crohme_images(out)
    assert sorted(p.stem for p, _ in back) == sorted(truth)
    for path, tokens in back:
        paper, want = truth[path.stem]
        assert path.suffix == f".{image_format}" and tokens == want
        img = Image.open(path)
        assert img.mode == "L" and np.array_equal(np.asarray(img), paper)


def test_refuses_to_overwrite_and_bad_options(shards, tmp_path: Path) -> None:
    src, _ = shards
    export_shards(src, tmp_path / "x", "crohme-images")
    with pytest.raises(FormulaGanError, match="already holds an export"):
        export_shards(src, tmp_path / "x", "crohme-images")
    with pytest.raises(FormulaGanError, match="unknown export format"):
        export_shards(src, tmp_path / "y", "pascal-voc")
    with pytest.raises(FormulaGanError, match="not available"):
        export_shards(src, tmp_path / "z", "im2latex", image_format="bmp")
    assert main(["export", str(tmp_path / "missing"), "--format", "im2latex", "--out", str(tmp_path / "w")]) == 2
