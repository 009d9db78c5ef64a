from __future__ import annotations

import json
import tarfile

import numpy as np
import pytest
import webdataset as wds

from formula_gan.data.images import decode_png, encode_png, ink_to_paper, paper_to_ink
from formula_gan.data.jobs import JobMismatchError, ShardedJob, ShardResult, load_manifest, verify
from formula_gan.data.shards import Sample, ShardError, ShardWriter, read_shard, shard_name
from formula_gan.hashing import sha256_file


def _sample(i: int) -> Sample:
    paper = np.full((8, 12), 255, np.uint8)
    paper[2:6, i % 12] = 0
    return Sample(f"item-{i:04d}", encode_png(paper), {"latex": f"x_{i}", "tokens": f"x _ {{ {i} }}"})


def _run(out, items, rank=0, world=1, per_shard=4, job=None):
    job_obj = ShardedJob(out, job or {"kind": "test"}, per_shard, rank, world).open()
    for chunk in job_obj.pending(items):
        rejects = [{"source": f"in:{i}", "reason": "odd"} for i in chunk.items if i % 5 == 0]
        job_obj.commit(chunk.index, ShardResult([_sample(i) for i in chunk.items if i % 5], rejects))
    return job_obj, job_obj.finalize()


def test_png_and_tensor_conventions_round_trip():
    paper = np.array([[255, 0], [128, 255]], np.uint8)
    ink = paper_to_ink(paper)
    assert ink.shape == (1, 2, 2)
    assert float(ink[0, 0, 1]) == 1.0 and float(ink[0, 0, 0]) == 0.0  # dark pixel = ink = 1
    assert np.array_equal(ink_to_paper(ink), paper)
    assert np.array_equal(decode_png(encode_png(paper)), paper)


def test_shards_are_deterministic_and_readable_with_webdataset(tmp_path):
    for name in ("a", "b"):
        with ShardWriter(tmp_path / f"{name}.tar") as w:
            for i in range(3):
                w.write(_sample(i))
    assert sha256_file(tmp_path / "a.tar") == sha256_file(tmp_path / "b.tar")
    rows = list(wds.WebDataset(str(tmp_path / "a.tar"), shardshuffle=False).decode())
    assert [r["__key__"] for r in rows] == ["item-0000", "item-0001", "item-0002"]
    assert rows[1]["json"]["latex"] == "x_1"


def test_failed_writer_leaves_no_shard(tmp_path):
    with pytest.raises(RuntimeError):
        with ShardWriter(tmp_path / shard_name(0)) as w:
            w.write(_sample(0))
            raise RuntimeError("worker died")
    assert list(tmp_path.iterdir()) == []


def test_bad_keys_are_refused(tmp_path):
    with ShardWriter(tmp_path / "x.tar") as w:
        with pytest.raises(ValueError, match="letters"):
            w.write(Sample("a.b", b"", {}))
        w.write(_sample(1))
        with pytest.raises(ValueError, match="duplicate"):
            w.write(_sample(1))


def test_job_writes_every_item_once_with_manifest_and_rejects(tmp_path):
    job, manifest = _run(tmp_path, range(10))
    assert manifest is not None and manifest["num_shards"] == 3 and manifest["num_items"] == 10
    keys = [s.key for i in range(3) for s in read_shard(tmp_path / shard_name(i))]
    assert keys == [f"item-{i:04d}" for i in range(10) if i % 5]
    rejects = [json.loads(line) for line in (tmp_path / "rejects.jsonl").read_text().splitlines()]
    assert [r["source"] for r in rejects] == ["in:0", "in:5"]
    assert manifest["num_samples"] + manifest["num_rejected"] == 10
    verify(tmp_path)


def test_two_ranks_give_the_same_dataset_as_one(tmp_path):
    _, whole = _run(tmp_path / "one", range(13))
    _, first = _run(tmp_path / "two", range(13), rank=0, world=2)
    assert first is None  # rank 1's shards are still missing
    _, second = _run(tmp_path / "two", range(13), rank=1, world=2)
    assert [s["sha256"] for s in second["shards"]] == [s["sha256"] for s in whole["shards"]]


def test_resume_skips_complete_shards_and_redoes_the_rest(tmp_path):
    _, whole = _run(tmp_path / "ref", range(10))
    out = tmp_path / "run"
    _run(out, range(10))
    (out / "shard-000001.json").unlink()  # as if killed after the tar's rename
    (out / "shard-000002.tar").unlink()
    (out / "manifest.json").unlink()
    job = ShardedJob(out, {"kind": "test"}, 4).open()
    redone = [c.index for c in job.pending(range(10))]
    assert redone == [1, 2]
    _, again = _run(out, range(10))
    assert [s["sha256"] for s in again["shards"]] == [s["sha256"] for s in whole["shards"]]


def test_other_job_in_the_folder_is_refused_before_work(tmp_path):
    _run(tmp_path, range(4), job={"kind": "test", "inputs": "a.txt"})
    before = sorted(p.name for p in tmp_path.iterdir())
    with pytest.raises(JobMismatchError, match="inputs"):
        ShardedJob(tmp_path, {"kind": "test", "inputs": "b.txt"}, 4).open()
    assert sorted(p.name for p in tmp_path.iterdir()) == before


def test_truncated_shard_is_detected(tmp_path):
    _run(tmp_path, range(8))
    path = tmp_path / shard_name(1)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(ShardError, match="shard-000001.tar: 5120 bytes, manifest.json says"):
        verify(tmp_path)
    with pytest.raises(ShardError, match="cannot read|without both"):
        list(read_shard(path))
    assert load_manifest(tmp_path)["num_shards"] == 2


def test_tar_members_are_normalized(tmp_path):
    with ShardWriter(tmp_path / "x.tar") as w:
        w.write(_sample(0))
    with tarfile.open(tmp_path / "x.tar") as tar:
        assert {(m.mtime, m.uid, m.mode) for m in tar.getmembers()} == {(0, 0, 0o644)}


def test_reopening_removes_half_written_files_of_this_ranks_shards_only(tmp_path):
    _run(tmp_path, range(8), rank=0, world=2)
    (tmp_path / ".shard-000002.tar.tmp-99999").write_bytes(b"half a tar")  # rank 0's, killed mid-write
    (tmp_path / ".shard-000002.json.tmp-99999").write_bytes(b"{")
    (tmp_path / ".shard-000001.tar.tmp-88888").write_bytes(b"rank 1 is writing this")
    ShardedJob(tmp_path, {"kind": "test"}, 4, 0, 2).open()
    left = sorted(p.name for p in tmp_path.glob(".shard-*"))
    assert left == [".shard-000001.tar.tmp-88888"]


def _flip_last_label_byte(path) -> None:
    """One byte of the last sample's JSON changed: same size, different sha256."""
    data = bytearray(path.read_bytes())
    data[data.rindex(b'"x_') + 1] ^= 0x01
    path.write_bytes(bytes(data))


DAMAGE = {
    # name: (how, what the rerun's line says)
    "truncated": (lambda p: p.write_bytes(p.read_bytes()[:1536]), "1536 bytes, its sidecar says"),
    "one byte flipped": (_flip_last_label_byte, "sha256 differs"),
    "deleted": (lambda p: p.unlink(), "missing, though its sidecar shard-000001.json is there"),
}


@pytest.mark.parametrize("damage", sorted(DAMAGE))
def test_a_rerun_redoes_a_damaged_shard_byte_identically(damage, tmp_path, capsys):
    """A truncated or modified shard of a finished set was kept by the rerun (exit 0): its sidecar
    was all a shard needed to count as complete."""
    _, whole = _run(tmp_path / "ref", range(10))
    out = tmp_path / "run"
    _run(out, range(10))
    capsys.readouterr()
    how, message = DAMAGE[damage]
    how(out / shard_name(1))
    job, again = _run(out, range(10))
    [line] = capsys.readouterr().err.strip().splitlines()  # one line, naming the shard
    assert line.startswith(f"{out / shard_name(1)}: {message}") and line.endswith("the shard is done again")
    assert job.damaged == [line]
    assert again is not None and again["shards"] == whole["shards"]
    for i in range(3):
        assert (out / shard_name(i)).read_bytes() == (tmp_path / "ref" / shard_name(i)).read_bytes()
    verify(out, samples=True)
    job, _ = _run(out, range(10))  # and the next rerun finds nothing to do
    assert job.damaged == [] and capsys.readouterr().err == ""


def test_an_unreadable_sidecar_is_damage_redone_not_an_error(tmp_path, capsys):
    _run(tmp_path, range(8))
    (tmp_path / "shard-000000.json").write_text('{"name": "shard-0000')  # cut short
    job = ShardedJob(tmp_path, {"kind": "test"}, 4).open()
    assert [c.index for c in job.pending(range(8))] == [0]
    assert "shard-000000.tar: its sidecar shard-000000.json is unreadable" in capsys.readouterr().err
