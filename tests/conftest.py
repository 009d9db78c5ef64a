"""Shared fixtures: where the real corpora are (tests skip cleanly without them)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image, ImageDraw, ImageFont

from formula_gan.cli import main
from formula_gan.data.images import encode_png
from formula_gan.data.jobs import ShardedJob, ShardResult
from formula_gan.data.shards import Sample

REPO = Path(__file__).resolve().parents[1]


def shared_data_dir() -> Path:
    """The real CROHME InkML and formula corpora: FORMULA_GAN_DATA, else ../shared/data beside the repository."""
    return Path(os.environ.get("FORMULA_GAN_DATA", REPO.parent / "shared" / "data"))


@pytest.fixture(scope="session")
def shared_data() -> Path:
    path = shared_data_dir()
    if not path.is_dir():
        pytest.skip(f"real corpora not found at {path} (set FORMULA_GAN_DATA)")
    return path


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return REPO


@pytest.fixture(scope="session")
def crohme_dir(shared_data: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """CROHME train and test 2014 unpacked once per test session (about a second):
    ``<dir>/crohme/train/<source>/*.inkml`` and ``<dir>/crohme/test2014/*.inkml``."""
    import tarfile

    out = tmp_path_factory.mktemp("crohme")
    for name in ("crohme_train_2014.tar.xz", "crohme_test_2014.tar.xz"):
        archive = shared_data / "crohme" / name
        if not archive.is_file():
            pytest.skip(f"{archive} not found")
        with tarfile.open(archive) as tar:
            tar.extractall(out, filter="data")
    return out / "crohme"


# ---- a tiny recognizer on digit strings drawn with PIL (shared by the evaluation, recognize and scorecard tests)

STRINGS = ["12", "305", "7", "4+8", "96", "1-5", "0=2", "83"]


def write_digit_shards(out: Path, strings: list[str], per_shard: int = 4) -> Path:
    """A finished shard set (manifest and all) of strings drawn with PIL's font, 32 px high."""
    font = ImageFont.load_default()
    job = ShardedJob(out, {"kind": "test-digits", "strings": strings}, per_shard).open()

    def sample(i: int, s: str) -> Sample:
        im = Image.new("L", (64, 32), 255)
        ImageDraw.Draw(im).text((4, 8), " ".join(s), fill=0, font=font)
        meta = {"latex": s, "tokens": " ".join(s), "source": f"digits.txt:{i + 1}", "domain": "handwritten",
                "style": None, "seed": i}  # fmt: skip
        return Sample(f"d{i:03d}-{s.encode().hex()}", encode_png(np.array(im)), meta)

    for chunk in job.pending(list(enumerate(strings))):
        job.commit(chunk.index, ShardResult([sample(i, s) for i, s in chunk.items]))
    job.finalize({"vocab": sorted(set("".join(strings))), "domain": "handwritten"})
    return out


def tiny_args(tmp: Path, train: Path, val: Path | None, name: str = "t", steps: int = 20) -> list[str]:
    args = [
        "--config", "configs/recognizer/tiny.yaml", "--no-progress",
        f"name={name}", f"out_dir={tmp}/runs/{{name}}",
        f"data.train=[{{path: {train}, weight: 1.0}}]",
        f"data.val=[{val}]" if val else "data.val=[]",
        f"train.max_steps={steps}", "train.val_every=10", "train.log_every=5", "optim.warmup_steps=5",
    ]  # fmt: skip
    return args


@pytest.fixture(scope="session")
def digits(tmp_path_factory) -> Path:
    return write_digit_shards(tmp_path_factory.mktemp("digits"), STRINGS)


@pytest.fixture(scope="session")
def trained(digits, tmp_path_factory, repo_root) -> Path:
    """A tiny recognizer trained through the CLI on the digit set (validated on it too)."""
    import os

    tmp = tmp_path_factory.mktemp("train")
    cwd = os.getcwd()
    os.chdir(repo_root)
    try:
        torch.manual_seed(0)
        assert main(["train-recognizer", *tiny_args(tmp, digits, digits)]) == 0
    finally:
        os.chdir(cwd)
    return tmp / "runs" / "t"
