"""Token vocabulary: tokens <-> ids, with pad / sos / eos / unk, saved beside the data.

Models never import this: they get ``len(vocab)`` and the special ids as numbers.
Ids are assigned in sorted token order after the four specials, so the same token
set always gives the same ids, whichever order the data came in.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Iterable, Sequence

from formula_gan.data.jobs import load_manifest, shard_paths
from formula_gan.data.shards import atomic_write_json, read_shard
from formula_gan.errors import FormulaGanError

FORMAT = "formula-gan-vocab/1"
SPECIALS = ("<pad>", "<sos>", "<eos>", "<unk>")


class Vocab:
    PAD, SOS, EOS, UNK = 0, 1, 2, 3

    def __init__(self, tokens: Iterable[str]):
        toks = sorted(set(tokens) - set(SPECIALS))
        for t in toks:
            if not t or any(c.isspace() for c in t):
                raise ValueError(f"vocabulary token {t!r} is empty or holds whitespace (tokens are space-separated)")
        self.itos: list[str] = [*SPECIALS, *toks]
        self.stoi: dict[str, int] = {t: i for i, t in enumerate(self.itos)}

    def __len__(self) -> int:
        return len(self.itos)

    def __contains__(self, token: str) -> bool:
        return token in self.stoi and self.stoi[token] >= len(SPECIALS)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Vocab) and self.itos == other.itos

    def __repr__(self) -> str:
        return f"Vocab({len(self)} ids: {len(SPECIALS)} specials + {len(self) - len(SPECIALS)} tokens)"

    @property
    def tokens(self) -> list[str]:
        """The real tokens (no specials), in id order."""
        return self.itos[len(SPECIALS):]

    def encode(self, tokens: Sequence[str] | str, add_sos: bool = False, add_eos: bool = False) -> list[int]:
        """Tokens (a list, or a space-separated string) -> ids; unknown tokens -> UNK."""
        if isinstance(tokens, str):
            tokens = tokens.split()
        ids = [self.stoi.get(t, self.UNK) for t in tokens]
        return ([self.SOS] if add_sos else []) + ids + ([self.EOS] if add_eos else [])

    def decode(self, ids: Iterable[int], strip: bool = True) -> list[str]:
        """Ids -> tokens. With ``strip``: stop at EOS, drop PAD and SOS (what a decoder emits)."""
        out = []
        for i in ids:
            i = int(i)
            if strip and i == self.EOS:
                break
            if strip and i in (self.PAD, self.SOS):
                continue
            out.append(self.itos[i] if 0 <= i < len(self.itos) else SPECIALS[self.UNK])
        return out

    def unknown(self, tokens: Iterable[str]) -> list[str]:
        """The tokens of ``tokens`` that are not in this vocabulary (first-seen order, once each)."""
        return list(dict.fromkeys(t for t in tokens if t not in self))

    # ---- persistence ------------------------------------------------------------------
    def to_json(self) -> dict:
        return {"format": FORMAT, "specials": list(SPECIALS), "tokens": self.tokens}

    def save(self, path: str | Path) -> None:
        atomic_write_json(path, self.to_json())

    @classmethod
    def from_json(cls, data: dict, where: str = "vocabulary") -> "Vocab":
        if not isinstance(data, dict) or data.get("format") != FORMAT:
            raise FormulaGanError(f"{where}: not a {FORMAT} file")
        if list(data.get("specials", [])) != list(SPECIALS):
            raise FormulaGanError(f"{where}: special tokens {data.get('specials')} differ from {list(SPECIALS)}")
        return cls(data["tokens"])

    @classmethod
    def load(cls, path: str | Path) -> "Vocab":
        path = Path(path)
        if not path.is_file():
            raise FormulaGanError(f"vocabulary file not found: {path}")
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as err:
            raise FormulaGanError(f"{path}: not valid JSON ({err})") from err
        return cls.from_json(data, str(path))

    @classmethod
    def from_manifest(cls, shard_dir: str | Path) -> "Vocab":
        """The vocabulary of a finished shard set: its manifest's ``vocab`` entry, else the
        tokens counted in its shards' stats, else every sample's tokens (slow, but exact)."""
        manifest = load_manifest(shard_dir)
        vocab = manifest.get("vocab")
        if isinstance(vocab, dict) and "tokens" in vocab:
            return cls(vocab["tokens"])
        if isinstance(vocab, list):
            return cls(vocab)
        counts = token_counts_from_stats(manifest)
        if counts is None:
            counts = Counter()
            for path in shard_paths(shard_dir):
                for sample in read_shard(path):
                    counts.update(str(sample.meta.get("tokens", "")).split())
        return cls(counts)

    @classmethod
    def union(cls, *vocabs: "Vocab") -> "Vocab":
        return cls(t for v in vocabs for t in v.tokens)


def token_counts_from_stats(manifest: dict) -> Counter | None:
    """Sum the per-shard ``stats.token_counts`` of a manifest; None when a shard lacks them."""
    total: Counter = Counter()
    for shard in manifest.get("shards", []):
        counts = (shard.get("stats") or {}).get("token_counts")
        if counts is None:
            return None
        total.update(counts)
    return total
