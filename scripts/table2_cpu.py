"""The paper's Table 2 at CPU scale: what synthetic handwriting is worth to a recognizer trained on
two cores. Called by ``scripts/reproduce_table2.sh --scale cpu``; every step resumes.

Rows, each the recognizer of ``configs/recognizer/cpu.yaml`` with the same step budget and seed,
validated on CROHME train formulas and writers held out whole (``formula-gan split``), its best checkpoint read
on CROHME test 2014 with beam search:

    a  CROHME only
    b  CROHME + GAN on renderings    (the paper's pipeline: the packaged generator, configs/gan/cpu.yaml)
    c  CROHME + stitched             (real CROHME symbols in KaTeX's boxes)
    d  CROHME + stitched -> refined  (the GAN refiner, --refiner FILE)
    e  stitched only
    f  refined only

Both synthetic sets are written from the same formulas: the shared im2latex corpus (its
training split), the paper's filters (CROHME's vocabulary, <= 50 tokens), the first
``--formulas`` of them in a seeded order, none of them a validation or test formula. CROHME and synthetic data are drawn 1 : 1 (the
paper's mix), not tuned. Writes ``results/table2_cpu.md`` (table, curves, the commands)
and one JSON per row with every metric and prediction.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import shlex
import subprocess
import sys
import tarfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
FG = [sys.executable, "-m", "formula_gan"]
ROWS = {
    "a": ("CROHME only", ["crohme"]),
    "b": ("CROHME + GAN on renderings", ["crohme", "gan"]),
    "c": ("CROHME + stitched", ["crohme", "stitch"]),
    "d": ("CROHME + stitched -> refined", ["crohme", "refine"]),
    "e": ("stitched only", ["stitch"]),
    "f": ("refined only", ["refine"]),
}
METRICS = ["exprate", "le1", "le2", "wer", "cer"]


def shown(cmd: list[str]) -> str:
    """A command as the report prints it: ``python3`` for this interpreter's path, so the
    commands read the same on every machine."""
    return " ".join("python3" if c == sys.executable else shlex.quote(c) for c in cmd)


class Steps:
    """Runs commands, logs them (the report lists them), skips what is already done."""

    def __init__(self, log: Path) -> None:
        self.log = log
        self.commands: list[str] = []

    def run(self, cmd: list[str], done: Path | None = None) -> None:
        text = shown(cmd)
        self.commands.append(text)
        if done is not None and done.exists():
            print(f"[table2] done already: {done}", file=sys.stderr)
            return
        print(f"[table2 {time.strftime('%H:%M:%S')}] {text}", file=sys.stderr, flush=True)
        with self.log.open("a") as f:
            f.write(text + "\n")
        subprocess.run(cmd, check=True, cwd=ROOT)


def unpack(data: Path, work: Path) -> Path:
    inkml = work / "inkml"
    if not (inkml / "crohme" / "test2014").is_dir():
        inkml.mkdir(parents=True, exist_ok=True)
        for name in ("crohme_train_2014.tar.xz", "crohme_test_2014.tar.xz"):
            archive = data / "crohme" / name
            if not archive.is_file():
                sys.exit(f"{archive} not found (use --data DIR)")
            with tarfile.open(archive) as tar:
                tar.extractall(inkml, filter="data")
    return inkml / "crohme"


def choose_formulas(normalized: Path, out: Path, n: int, seed: int, held_out: set[str]) -> None:
    """The first ``n`` formulas of a seeded order (a hash of seed and formula: independent of file order),
    none of them a formula of the validation or test files (synthetic data must not show them)."""
    lines = sorted({line.strip() for line in normalized.read_text(encoding="utf-8").splitlines() if line.strip()})
    lines = [line for line in lines if line not in held_out]
    lines.sort(key=lambda t: hashlib.sha256(f"{seed}\x00{t}".encode()).hexdigest())
    out.write_text("".join(line + "\n" for line in lines[:n]), encoding="utf-8")


def held_out_formulas(*inkml_dirs: Path) -> set[str]:
    """The normalized formulas of these InkML folders (tokens joined by spaces)."""
    from formula_gan.data.inkml import iter_inkml_files
    from formula_gan.data.split import formula_keys

    return {key for d in inkml_dirs for key in formula_keys(iter_inkml_files(d))}


def train_row(steps: Steps, row: str, sets: dict[str, str], runs: Path, seed: int, weight: float,
              overrides: list[str]) -> subprocess.Popen | None:
    run_dir = runs / f"row_{row}"
    if (run_dir / "done").exists():
        return None
    train = ", ".join(f"{{path: {sets[s]}, weight: {weight if s != 'crohme' else 1.0}}}" for s in ROWS[row][1])
    cmd = FG + ["train-recognizer", "--config", "configs/recognizer/cpu.yaml", "--no-progress",
                f"name=row_{row}", f"out_dir={runs}/{{name}}", f"data.train=[{train}]", f"data.val=[{sets['val']}]",
                f"train.seed={seed}", "train.cpu_threads=1", *overrides]  # fmt: skip
    steps.commands.append(shown(cmd))
    print(f"[table2 {time.strftime('%H:%M:%S')}] row {row}: {ROWS[row][0]}", file=sys.stderr, flush=True)
    log = (runs / f"row_{row}.log").open("a")
    return subprocess.Popen(cmd, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data", help="CROHME tarballs + formulas")
    ap.add_argument("--work", type=Path, default=ROOT / "datasets" / "prepared" / "table2-cpu")
    ap.add_argument("--runs", type=Path, default=ROOT / "runs" / "table2-cpu")
    ap.add_argument("--results", type=Path, default=ROOT / "results")
    ap.add_argument("--rows", default="abcdef", help="which rows (default abcdef)")
    ap.add_argument("--formulas", type=int, default=20000, help="formulas per synthetic set (default 20000)")
    ap.add_argument("--generator", type=Path, default=ROOT / "formula_gan" / "weights" / "generator.pt",
                    help="row b's generator of renderings (default: the packaged one)")
    ap.add_argument("--refiner", type=Path, default=None, help="rows d and f: a refiner (configs/gan/refine.yaml, exported)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--weight", type=float, default=1.0, help="synthetic : CROHME sampling weight (default 1)")
    ap.add_argument("--parallel", type=int, default=2, help="rows trained at once, one thread each (default 2)")
    ap.add_argument("--beam", type=int, default=10)
    ap.add_argument("overrides", nargs="*", help="recognizer config overrides for every row, e.g. train.max_steps=8000")
    args = ap.parse_args()
    for row in args.rows:
        if row not in ROWS:
            ap.error(f"unknown row {row!r} (rows: {''.join(ROWS)})")
    work, runs = args.work.resolve(), args.runs.resolve()
    work.mkdir(parents=True, exist_ok=True)
    runs.mkdir(parents=True, exist_ok=True)
    args.results.mkdir(parents=True, exist_ok=True)
    steps = Steps(runs / "commands.log")

    crohme = unpack(args.data, work)
    split = work / "split"
    steps.run(FG + ["split", str(crohme / "train"), "--out", str(split)], split / "split.json")
    sets = {"crohme": str(work / "crohme-train"), "val": str(work / "crohme-val"), "test": str(work / "crohme-test2014")}
    for name, src in (("train", split / "train"), ("val", split / "val"), ("test2014", crohme / "test2014")):
        out = work / f"crohme-{name}"
        steps.run(FG + ["prepare-crohme", str(src), "--out", str(out), "--workers", "2", "--no-progress"],
                  out / "manifest.json")  # fmt: skip
    need = {s for row in args.rows for s in ROWS[row][1]} - {"crohme"}
    if need:
        norm = work / "formulas.norm.txt"
        steps.run(FG + ["normalize", str(args.data / "formulas" / "im2latex_formulas.norm.lst"),
                        "--filter-list", str(args.data / "formulas" / "im2latex_train_filter.lst"),
                        "--vocab", sets["crohme"], "--max-tokens", "50", "--out", str(norm), "--no-progress"],
                  norm)  # fmt: skip
        formulas = work / "formulas.txt"
        if not formulas.exists():
            choose_formulas(norm, formulas, args.formulas, args.seed, held_out_formulas(split / "val", crohme / "test2014"))
    if "gan" in need:
        sets["gan"] = str(work / "synthetic-gan")
        steps.run(FG + ["synthesize", str(work / "formulas.txt"), "--method", "gan", "--generator", str(args.generator),
                        "--out", sets["gan"], "--seed", str(args.seed), "--no-progress"],
                  Path(sets["gan"]) / "manifest.json")  # fmt: skip
    if need & {"stitch", "refine"}:
        symbols = work / "symbols"
        steps.run(FG + ["prepare-symbols", str(split / "train"), "--out", str(symbols), "--no-progress"],
                  symbols / "manifest.json")  # fmt: skip
    if "refine" in need:
        if args.refiner is None:
            sys.exit("rows d and f need --refiner FILE (an exported refiner: configs/gan/refine.yaml)")
        sets["refine"] = str(work / "synthetic-refine")
        steps.run(FG + ["synthesize", str(work / "formulas.txt"), "--method", "refine", "--generator", str(args.refiner),
                        "--symbols", str(symbols), "--out", sets["refine"], "--seed", str(args.seed), "--no-progress"],
                  Path(sets["refine"]) / "manifest.json")  # fmt: skip
    if "stitch" in need:
        sets["stitch"] = str(work / "synthetic-stitch")
        steps.run(FG + ["synthesize", str(work / "formulas.txt"), "--method", "stitch", "--symbols", str(symbols),
                        "--out", sets["stitch"], "--seed", str(args.seed), "--no-progress"],
                  Path(sets["stitch"]) / "manifest.json")  # fmt: skip

    pending = [r for r in args.rows]
    running: dict[str, subprocess.Popen] = {}
    while pending or running:
        while pending and len(running) < args.parallel:
            row = pending.pop(0)
            proc = train_row(steps, row, sets, runs, args.seed, args.weight, args.overrides)
            if proc is not None:
                running[row] = proc
        for row, proc in list(running.items()):
            if proc.poll() is not None:
                if proc.returncode != 0:
                    sys.exit(f"row {row} failed (exit {proc.returncode}); see {runs}/row_{row}.log, rerun to resume")
                (runs / f"row_{row}" / "done").touch()
                del running[row]
        time.sleep(5)
    for row in args.rows:
        out = args.results / f"table2_cpu_{row}.json"
        steps.run(FG + ["evaluate", "--recognizer", str(runs / f"row_{row}" / "best.pt"), sets["test"],
                        "--beam", str(args.beam), "--batch-size", "16", "--device", "cpu", "--out", str(out),
                        "--no-progress"], out)  # fmt: skip
    write_table(args, runs, steps)
    return 0


def write_table(args: argparse.Namespace, runs: Path, steps: Steps) -> None:
    from formula_gan.reports import plot_curves, read_log

    rows = [(r, json.loads((args.results / f"table2_cpu_{r}.json").read_text())["metrics"]) for r in args.rows]
    lines = ["| row | training data | ExpRate % | ≤1 % | ≤2 % | WER % | CER % | best step |", "| --- | --- |" + " ---: |" * 6]
    for r, m in rows:
        cells = " | ".join(f"{100 * m[k]:.2f}" for k in METRICS)
        lines.append(f"| {r} | {ROWS[r][0]} | {cells} | {_best_step(runs / f'row_{r}')} |")
    curves = {f"{r} {ROWS[r][0]}": [(s, 100 * v) for s, v in read_log(runs / f"row_{r}", "val", "exprate")] for r in args.rows}
    figure = args.results / "table2_cpu_val_exprate.png"
    plot_curves(curves, figure, "Table 2 (cpu): validation ExpRate (greedy, held-out CROHME formulas)", "ExpRate %")
    text = [
        "# Table 2 at CPU scale: what synthetic handwriting is worth",
        "",
        f"CROHME test 2014 ({rows[0][1]['num_formulas']} formulas), beam {args.beam}. Each recognizer is "
        "`configs/recognizer/cpu.yaml` with the same step budget and seed, its checkpoint chosen by greedy "
        "ExpRate on CROHME training formulas held out whole (never on the test set). Synthetic sets: "
        f"{args.formulas} formulas of the im2latex corpus (training split, CROHME vocabulary, <= 50 tokens), "
        f"the same for both; CROHME : synthetic drawn 1 : {args.weight:g}.",
        "",
        *lines,
        "",
        f"![validation ExpRate]({figure.name})",
        "",
        "## Commands",
        "",
        "```",
        *steps.commands,
        "```",
    ]
    (args.results / "table2_cpu.md").write_text("\n".join(text) + "\n", encoding="utf-8")
    print(f"[table2] wrote {args.results / 'table2_cpu.md'}", file=sys.stderr)


def _best_step(run_dir: Path) -> int:
    import torch

    return int(torch.load(run_dir / "best.pt", map_location="cpu", weights_only=True)["step"])


if __name__ == "__main__":
    sys.exit(main())
