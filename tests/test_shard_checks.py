"""A finished shard set is checked against what its manifest promises before it is trusted:
truncated, modified or corrupt shards and manifests are errors naming the file, never a
quietly smaller or different dataset. Real shard sets on disk, damaged as a disk or a bad
copy damages them; the real `formula-gan` command."""

from __future__ import annotations

import json
import tarfile
from pathlib import Path

import numpy as np
import pytest

from formula_gan.cli import main
from formula_gan.data.images import encode_png
from formula_gan.data.jobs import ShardedJob, ShardResult
from formula_gan.data.shards import Sample, ShardError, shard_name

PER_SHARD = 8


def _sample(i: int, png: bytes | None = None) -> Sample:
    paper = np.full((16, 24), 255, np.uint8)
    paper[4:12, i % 24] = 0
    meta = {"latex": f"x_{i}", "tokens": f"x _ {{ {i} }}", "source": f"in.txt:{i + 1}", "domain": "rendered"}
    return Sample(f"item-{i:04d}", png if png is not None else encode_png(paper), meta)


def _shard_set(out: Path, n: int = 2 * PER_SHARD, bad_png_at: int | None = None) -> Path:
    """A finished set written by the job machinery (manifest, sidecars, checksums and all)."""
    job = ShardedJob(out, {"kind": "test-checks", "n": n}, PER_SHARD).open()
    for chunk in job.pending(range(n)):
        samples = [_sample(i, b"\x89PNG\r\n\x1a\n not really" if i == bad_png_at else None) for i in chunk.items]
        job.commit(chunk.index, ShardResult(samples))
    assert job.finalize() is not None
    return out


def _cli(capsys, *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def _one_error_line(err: str, command: str) -> str:
    [line] = err.strip().splitlines()  # one line, no traceback
    assert line.startswith(f"formula-gan {command}: error: ")
    return line


def test_an_intact_set_verifies_and_exports(tmp_path, capsys):
    shards = _shard_set(tmp_path / "set")
    code, out, _ = _cli(capsys, "verify", str(shards))
    assert code == 0 and f"{shards}: 2 shards, {2 * PER_SHARD} samples" in out and "intact" in out
    code, out, _ = _cli(capsys, "export", str(shards), "--format", "crohme-images", "--out", str(tmp_path / "x"))
    assert code == 0 and len(list((tmp_path / "x" / "img").iterdir())) == 2 * PER_SHARD


def _truncate_at_member_boundary(path: Path) -> int:
    """Cut a tar after its first half of members (no end-of-archive blocks): a plain tar
    reader sees a shorter, well-formed archive. Returns the members kept."""
    with tarfile.open(path) as tar:
        members = tar.getmembers()
    keep = len(members) // 2
    with open(path, "r+b") as f:
        f.truncate(members[keep].offset)
    return keep


def _flip_a_label_byte(path: Path, inside: bytes = b"x_") -> None:
    """Change the byte after ``inside`` in the first sample's JSON (a label's character): same size."""
    with tarfile.open(path) as tar:
        member = next(m for m in tar.getmembers() if m.name.endswith(".json"))
    data = bytearray(path.read_bytes())
    at = member.offset_data + data[member.offset_data:].index(inside) + len(inside)
    data[at] ^= 0x01
    path.write_bytes(bytes(data))


def _zero_checksums(shards: Path) -> None:
    manifest = json.loads((shards / "manifest.json").read_text())
    for info in manifest["shards"]:
        info["sha256"] = "0" * 64
    (shards / "manifest.json").write_text(json.dumps(manifest))


DAMAGE = {
    # name: (how, what the error says)
    "truncated at a member boundary": (lambda s: _truncate_at_member_boundary(s / shard_name(1)),
                                       "shard-000001.tar: "),
    "one label byte flipped": (lambda s: _flip_a_label_byte(s / shard_name(1)), "shard-000001.tar: sha256 differs"),
    "checksums zeroed in the manifest": (_zero_checksums, "shard-000000.tar: sha256 differs"),
    "a shard missing": (lambda s: (s / shard_name(1)).unlink(), "shard-000001.tar: missing"),
    "manifest truncated": (lambda s: (s / "manifest.json").write_text((s / "manifest.json").read_text()[:200]),
                           "manifest.json: unreadable or not valid JSON"),
    "a shard name that leaves the folder": (
        lambda s: (s / "manifest.json").write_text((s / "manifest.json").read_text().replace(
            '"shard-000001.tar"', '"../../shard-000001.tar"')),
        "is not a shard file name"),
}


@pytest.mark.parametrize("damage", sorted(DAMAGE))
def test_a_damaged_set_is_refused_by_export_and_verify_naming_the_file(damage, tmp_path, capsys):
    """A shard truncated at a member boundary used to export half its samples with exit 0;
    zeroed checksums or a flipped label byte passed; a truncated manifest was a JSON traceback."""
    shards = _shard_set(tmp_path / "set")
    how, message = DAMAGE[damage]
    how(shards)
    out = tmp_path / "export"
    code, _, err = _cli(capsys, "export", str(shards), "--format", "im2latex", "--out", str(out))
    assert code == 2 and message in _one_error_line(err, "export")
    assert not (out / "formulas.lst").exists() and not list(out.glob("images/*"))  # nothing half exported
    code, _, err = _cli(capsys, "verify", str(shards))
    assert code == 2 and message in _one_error_line(err, "verify")


def test_a_png_that_does_not_decode_is_found_by_verify_and_refused_by_export(tmp_path, capsys):
    """Checksums match (the shard was written that way): only reading the samples tells."""
    shards = _shard_set(tmp_path / "set", bad_png_at=PER_SHARD + 3)
    code, out, _ = _cli(capsys, "verify", "--quick", str(shards))
    assert code == 0 and "sizes and sha256" in out
    code, _, err = _cli(capsys, "verify", str(shards))
    line = _one_error_line(err, "verify")
    assert code == 2 and "shard-000001.tar: sample 'item-0011': the PNG does not decode" in line
    code, _, err = _cli(capsys, "export", str(shards), "--format", "crohme-images", "--out", str(tmp_path / "x"))
    assert code == 2 and "item-0011" in _one_error_line(err, "export")
    assert not (tmp_path / "x" / "caption.txt").exists()


def test_training_readers_check_sizes_and_counts(tmp_path):
    """The training loader reads shards many times: it checks what is cheap (sizes, counts)."""
    from formula_gan.data.loader import ShardSource, ShardStream
    from formula_gan.data.vocab import Vocab

    shards = _shard_set(tmp_path / "set")
    _truncate_at_member_boundary(shards / shard_name(1))
    with pytest.raises(ShardError, match="shard-000001.tar"):
        ShardStream([ShardSource(str(shards))], Vocab(["x", "_", "{", "}"] + [str(i) for i in range(10)]), 4)


@pytest.mark.parametrize("damage", ["one label byte flipped", "checksums zeroed in the manifest"])
def test_evaluate_refuses_a_modified_test_set(damage, trained, digits, tmp_path, capsys):
    """A flipped label byte or zeroed checksums passed evaluate, which then scored the model
    against labels nobody wrote."""
    import shutil

    shards = tmp_path / "digits"
    shutil.copytree(digits, shards)
    if damage == "one label byte flipped":
        _flip_a_label_byte(shards / shard_name(0), b'"tokens": "')
    else:
        _zero_checksums(shards)
    code, out, err = _cli(capsys, "evaluate", "--recognizer", str(trained / "last.pt"), str(shards), "--beam", "1",
                          "--no-progress")
    assert code == 2 and "shard-000000.tar" in _one_error_line(err, "evaluate") and "sha256 differs" in err
    assert "ExpRate" not in out
