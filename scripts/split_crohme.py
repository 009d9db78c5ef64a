"""Split a folder of CROHME InkML files into train and a held-out validation part, by formula.

    python3 scripts/split_crohme.py CROHME/train --out SPLIT [--val-share 0.05]

CROHME's training set has 4,845 distinct formulas in 8,834 files; some were written by
dozens of writers (one 58 times). Holding out every n-th *file* puts most repeated
formulas on both sides, and a recognizer that memorized them scores there far above
what it reads on new formulas (measured: 76 % on held-out files of seen formulas, 16 %
on unseen ones, 7 % on CROHME test 2014). Test sets have new formulas, so the
validation set must too: every file of a held-out formula goes to validation.

A formula is its label normalized by KaTeX (as prepare-crohme normalizes it); files
whose label does not normalize are grouped by their raw label. The choice is a hash
of the formula, so it does not depend on file order or on which other files exist.
Writes symbolic links ``SPLIT/train/<path with / as __>`` and ``SPLIT/val/...``.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import sys
from pathlib import Path

from formula_gan.data.crohme_job import premap_label
from formula_gan.data.inkml import iter_inkml_files, read_truth
from formula_gan.errors import FormulaGanError
from katex_render.normalize import Normalizer


def formula_keys(files: list[Path]) -> list[str]:
    """One grouping key per file: the normalized tokens, else the raw label, else the file name."""
    labels: list[str | None] = []
    for f in files:
        try:
            labels.append(premap_label(read_truth(f)))
        except FormulaGanError:
            labels.append(None)  # unreadable: it is its own group (prepare-crohme will reject it)
    with Normalizer() as normalizer:
        results = normalizer.normalize([label or "" for label in labels])
    keys = []
    for f, label, (tokens, _) in zip(files, labels, results):
        if label is None:
            keys.append(f"file:{f.name}")
        else:
            keys.append(" ".join(tokens) if tokens else f"raw:{label}")
    return keys


def held_out(key: str, share: float) -> bool:
    digest = hashlib.sha256(key.encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") / 2**64 < share


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("inkml_dir", type=Path)
    ap.add_argument("--out", required=True, type=Path)
    ap.add_argument("--val-share", type=float, default=0.05, help="share of distinct formulas held out (default 0.05)")
    args = ap.parse_args()
    if not 0 < args.val_share < 1:
        ap.error(f"--val-share must be in (0, 1), got {args.val_share}")
    root = args.inkml_dir.resolve()
    files = iter_inkml_files(root)
    if not files:
        ap.error(f"no .inkml files below {root}")
    if (args.out / "train").exists() or (args.out / "val").exists():
        ap.error(f"{args.out} already holds a split; remove it first")
    keys = formula_keys(files)
    counts = {"train": 0, "val": 0}
    formulas = {"train": set(), "val": set()}
    for f, key in zip(files, keys):
        part = "val" if held_out(key, args.val_share) else "train"
        dest = args.out / part / str(f.relative_to(root)).replace(os.sep, "__")
        dest.parent.mkdir(parents=True, exist_ok=True)
        dest.symlink_to(f)
        counts[part] += 1
        formulas[part].add(key)
    print(f"split {len(files)} files: train {counts['train']} ({len(formulas['train'])} formulas), "
          f"val {counts['val']} ({len(formulas['val'])} formulas, none of them in train) -> {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
