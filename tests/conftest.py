"""Shared fixtures: where the real corpora are (tests skip cleanly without them)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

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
