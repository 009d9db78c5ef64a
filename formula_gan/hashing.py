"""sha256 of a file's bytes: shard checksums, job identities, generator and checkpoint files.

Standard library only, so that every layer (data, models, synthesis) may use it.
A hash of a model's weights, independent of the file that holds them, is
``formula_gan.models.checksum.state_dict_sha256``.
"""

from __future__ import annotations

import hashlib
from pathlib import Path


def sha256_file(path: str | Path, chunk: int = 1 << 20) -> str:
    """Hex sha256 of the file at ``path``, read ``chunk`` bytes at a time."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            digest.update(block)
    return digest.hexdigest()
