"""Sample keys read from a shard are untrusted: they become file names in exports. A shard
whose sidecar and manifest match it byte for byte (size, sha256) but whose key is an absolute
path, holds a '/' or '..', or is not a key at all is refused by verify, by every reader and by
every export, naming the shard and the key; an export is renamed into place only when complete."""

from __future__ import annotations

import io
import json
import tarfile
from pathlib import Path

import numpy as np
import pytest

from formula_gan.cli import main
from formula_gan.data.images import encode_png
from formula_gan.data.jobs import ShardedJob, ShardResult
from formula_gan.data.loader import iter_shard_samples
from formula_gan.data.shards import Sample, SampleKeyError, ShardError, read_shard, shard_name
from formula_gan.hashing import sha256_file

PER_SHARD = 3


def _sample(i: int, key: str | None = None) -> Sample:
    paper = np.full((10, 16), 255, np.uint8)
    paper[2:8, i % 16] = 0
    meta = {"latex": f"x_{i}", "tokens": f"x _ {{ {i} }}", "source": f"in.txt:{i + 1}", "domain": "rendered"}
    return Sample(key or f"item-{i:04d}", encode_png(paper), meta)


def _shard_set(out: Path, keys: dict[int, str] | None = None) -> Path:
    """A finished set written by the job machinery; ``keys`` gives some items another (valid) key."""
    job = ShardedJob(out, {"kind": "test-keys"}, PER_SHARD).open()
    for chunk in job.pending(range(2 * PER_SHARD)):
        job.commit(chunk.index, ShardResult([_sample(i, (keys or {}).get(i)) for i in chunk.items]))
    assert job.finalize() is not None
    return out


def _add(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    tar.addfile(info, io.BytesIO(data))


def _poison(shards: Path, bad_key: str) -> None:
    """Rewrite shard 0 by hand with its second sample under ``bad_key``, and update the sidecar and
    the manifest (size, sha256): everything about the set is consistent except that one key."""
    path = shards / shard_name(0)
    samples = list(read_shard(path))
    with tarfile.open(path, "w", format=tarfile.GNU_FORMAT) as tar:  # GNU: names of any length
        for n, sample in enumerate(samples):
            key = bad_key if n == 1 else sample.key
            _add(tar, f"{key}.png", sample.png)
            _add(tar, f"{key}.json", json.dumps(sample.meta).encode())
    size, digest = path.stat().st_size, sha256_file(path)
    sidecar = json.loads((shards / "shard-000000.json").read_text())
    sidecar.update(bytes=size, sha256=digest)
    (shards / "shard-000000.json").write_text(json.dumps(sidecar))
    manifest = json.loads((shards / "manifest.json").read_text())
    manifest["shards"][0].update(bytes=size, sha256=digest)
    (shards / "manifest.json").write_text(json.dumps(manifest))


def _one_error_line(err: str, command: str) -> str:
    [line] = err.strip().splitlines()  # one line, no traceback
    assert line.startswith(f"formula-gan {command}: error: ")
    return line


def _bad_keys(tmp_path: Path) -> dict[str, tuple[str, str]]:
    """name: (the key, what the error says)."""
    outside = tmp_path / "outside" / "evil"  # absolute: an export used to write outside.png here
    return {
        "absolute": (str(outside), "is an absolute path"),
        "separator": ("sub/evil", "holds a path separator"),
        "dot-dot": ("../evil", "holds '..'"),
        "dot-dot alone": ("..", "holds '..'"),
        "not a key": ("a b", "holds other characters"),
    }


@pytest.mark.parametrize("name", ["absolute", "separator", "dot-dot", "dot-dot alone", "not a key"])
def test_a_bad_key_is_refused_by_verify_every_reader_and_every_export(name, tmp_path, capsys):
    bad_key, why = _bad_keys(tmp_path)[name]
    shards = _shard_set(tmp_path / "set")
    _poison(shards, bad_key)
    shard = shards / shard_name(0)
    for args in (["verify", str(shards)], ["verify", "--quick", str(shards)]):
        assert main(args) == 2, args  # it used to pass as intact
        line = _one_error_line(capsys.readouterr().err, "verify")
        assert f"{shard}: member {bad_key + '.png'!r}" in line and why in line
    with pytest.raises(SampleKeyError, match=why):
        list(read_shard(shard))
    with pytest.raises(ShardError, match=why):
        list(iter_shard_samples(shard))  # the training loader's reader
    for fmt in ("crohme-images", "im2latex"):
        out = tmp_path / f"export-{fmt}"
        assert main(["export", str(shards), "--format", fmt, "--out", str(out)]) == 2
        assert why in _one_error_line(capsys.readouterr().err, "export")
        assert not out.exists()
    assert not (tmp_path / "outside").exists() and not Path("/sub").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["set"]  # no temporary export folder left


def test_an_export_that_fails_half_way_leaves_nothing(tmp_path, capsys):
    """Two shards, each valid alone, with one key in both (verify passes): the export finds it after
    writing the first shard's images; nothing of it may stay behind."""
    shards = _shard_set(tmp_path / "set", keys={0: "twice", PER_SHARD: "twice"})
    assert main(["verify", str(shards)]) == 0
    out = tmp_path / "export"
    assert main(["export", str(shards), "--format", "crohme-images", "--out", str(out)]) == 2
    assert "sample key 'twice' occurs twice" in _one_error_line(capsys.readouterr().err, "export")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["set"]  # neither --out nor a temporary folder


def test_an_export_goes_into_a_new_or_empty_folder_only(tmp_path, capsys):
    shards = _shard_set(tmp_path / "set")
    empty = tmp_path / "empty"
    empty.mkdir()
    assert main(["export", str(shards), "--format", "crohme-images", "--out", str(empty)]) == 0
    assert len(list((empty / "img").iterdir())) == 2 * PER_SHARD
    busy = tmp_path / "busy"
    busy.mkdir()
    (busy / "notes.txt").write_text("mine")
    assert main(["export", str(shards), "--format", "im2latex", "--out", str(busy)]) == 2
    assert "is not an empty folder" in _one_error_line(capsys.readouterr().err, "export")
    assert [p.name for p in busy.iterdir()] == ["notes.txt"]
