"""The figures of a recognizer's model card, measured again from the checkpoint and its run.

    python3 scripts/recognizer_card.py --recognizer formula_gan/weights/recognizer.pt \
        --run RUN_DIR --test CROHME_TEST2014_SHARDS --out results/recognizer_card

Writes to --out: ``test.json`` (every metric and per-sample prediction, beam search on the
test set), ``val_exprate.png`` (validation ExpRate against the run's training wall-clock minutes),
``examples.png`` (20 test images with their readings: the first 10 right and the first 10
wrong in key order) and ``card.md`` (the tables to paste into the card). Prints card.md.
The test images stay in --out: they are CROHME's, not the project's.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from PIL import Image, ImageDraw, ImageFont

from formula_gan.data.images import decode_png
from formula_gan.data.jobs import shard_paths
from formula_gan.data.shards import read_shard
from formula_gan.evaluation import evaluate_checkpoint
from formula_gan.reports import format_table, plot_curves, write_json

EXAMPLES = 10  # right and wrong readings each


PAUSE_S = 600  # a gap this long between log lines is the run stopped (between sittings), not training


def wall_curve(run_dir: Path) -> list[tuple[float, float]]:
    """(training minutes, validation ExpRate %) per validation. Training minutes: wall time
    since the run's first log line, less the pauses of a run stopped and resumed (a gap over
    PAUSE_S between consecutive log lines)."""
    events = sorted((json.loads(line) for line in (run_dir / "log.jsonl").read_text().splitlines() if line.strip()),
                    key=lambda e: e["time"])
    curve, minutes = [], 0.0
    for before, e in zip([None, *events], events):
        if before is not None and e["time"] - before["time"] < PAUSE_S:
            minutes += (e["time"] - before["time"]) / 60
        if e.get("kind") == "val":
            curve.append((minutes, 100 * e["exprate"]))
    return curve


def examples(predictions: list[dict], test_dir: Path, out: Path) -> list[dict]:
    ordered = sorted(predictions, key=lambda p: p["key"])
    right = [p for p in ordered if p["edit_distance"] == 0][:EXAMPLES]
    wrong = [p for p in ordered if p["edit_distance"] > 0][:EXAMPLES]
    chosen = right + wrong
    wanted = {p["key"] for p in chosen}
    images = {s.key: decode_png(s.png) for shard in shard_paths(test_dir) for s in read_shard(shard) if s.key in wanted}
    font = ImageFont.load_default()
    rows = []
    for p in chosen:
        img = Image.fromarray(images[p["key"]])
        img = img.resize((max(1, round(img.width * 48 / img.height)), 48), Image.LANCZOS)
        text = f"{'RIGHT' if p['edit_distance'] == 0 else 'WRONG'}  ref: {p['reference']}\n       got: {p['hypothesis']}"
        row = Image.new("L", (max(img.width, 900), 48 + 30), 255)
        row.paste(img, (0, 0))
        ImageDraw.Draw(row).multiline_text((4, 49), text, fill=0, font=font)
        rows.append(row)
    sheet = Image.new("L", (max(r.width for r in rows), sum(r.height + 6 for r in rows)), 255)
    y = 0
    for r in rows:
        sheet.paste(r, (0, y))
        y += r.height + 6
    sheet.save(out)
    return chosen


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--recognizer", required=True, help="the exported recognizer (or a best.pt)")
    ap.add_argument("--run", required=True, type=Path, help="its training run folder (log.jsonl)")
    ap.add_argument("--test", required=True, type=Path, help="CROHME test 2014 shards (prepare-crohme)")
    ap.add_argument("--out", required=True, type=Path)
    ap.add_argument("--beam", type=int, default=10)
    ap.add_argument("--batch-size", type=int, default=16)
    args = ap.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    result = evaluate_checkpoint(args.recognizer, [args.test], beam=args.beam, batch_size=args.batch_size, device="cpu")
    write_json(args.out / "test.json", result.to_json({"recognizer": args.recognizer, "test": str(args.test)}))
    curve = wall_curve(args.run)
    plot_curves({"validation ExpRate": curve}, args.out / "val_exprate.png",
                "validation ExpRate (greedy, held-out CROHME train) against wall time", "ExpRate %")  # fmt: skip
    chosen = examples(result.predictions, args.test, args.out / "examples.png")
    lines = [format_table(result.scores, f"CROHME test 2014, beam {args.beam}"), "",
             "| training minutes | validation ExpRate % |", "| ---: | ---: |"]  # fmt: skip
    lines += [f"| {m:.0f} | {v:.1f} |" for m, v in curve]
    lines += ["", "| test file | reference | reading | |", "| --- | --- | --- | --- |"]
    for p in chosen:
        mark = "right" if p["edit_distance"] == 0 else f"{p['edit_distance']} edit" + ("s" if p["edit_distance"] > 1 else "")
        lines.append(f"| {p['key']} | `{p['reference']}` | `{p['hypothesis']}` | {mark} |")
    card = "\n".join(lines) + "\n"
    (args.out / "card.md").write_text(card, encoding="utf-8")
    sys.stdout.write(card)
    return 0


if __name__ == "__main__":
    sys.exit(main())
