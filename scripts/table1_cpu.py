"""The paper's Table 1 at CPU scale, for the refiner: which GAN variant's output is worth most?
Called by ``scripts/reproduce_table1.sh --scale cpu``; every step resumes (a finished step is kept).

Rows (each a way to write the same fixed formula set):

    stitch              the glyph stitcher alone (the refiner's input; the reference)
    refine              the refiner recipe, configs/gan/refine.yaml, at the ablation length
    refine_lambda0      ... with λ = 0 (no task-model loss in G's or D's objective)
    refine_no_attention ... without self-attention in G and D
    gan_rendered        the rendering GAN (configs/gan/cpu.yaml): the packaged generator

The refine rows train for ``--gan-steps`` (default 4,000: ~45 minutes on one core) from the
same data and seed. Each row is scored twice:

* the paper's protocol (``formula-gan score-generator``): the small task model of
  ``configs/recognizer/score_generator_cpu.yaml`` trained on that row's synthetic set alone
  for a fixed budget, then the perplexity of CROHME test 2014's labels under it (lower: the
  synthetic data taught more about real handwriting) and its ExpRate;
* the scorecard (``formula-gan scorecard``) on the validation split (real handwriting of
  formulas and writers held out of training): Fréchet distance of the judge recognizer's
  features to real handwriting (realism) and the judge's WER on the written images (content).

Writes ``results/table1_cpu.md`` (table and exact commands) and one JSON per row.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from table2_cpu import FG, ROOT, Steps, choose_formulas, held_out_formulas, unpack  # noqa: E402

ROWS = {
    "stitch": "the glyph stitcher alone (the refiner's input)",
    "refine": "refiner: configs/gan/refine.yaml (λ = 1, self-attention)",
    "refine_lambda0": "refiner, λ = 0",
    "refine_no_attention": "refiner, no self-attention",
    "gan_rendered": "rendering GAN (configs/gan/cpu.yaml, the packaged generator)",
}
GAN_CHANGES = {"refine": [], "refine_lambda0": ["lambda_task=0.0"], "refine_no_attention": ["model.attention=false"]}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data", help="CROHME tarballs + formulas")
    ap.add_argument("--work", type=Path, default=ROOT / "datasets" / "prepared" / "table1-cpu",
                    help="prepared data (made here when missing): split/, crohme-{train,val,test2014}, symbols, "
                         "refine-src (stitched GAN inputs), formulas.txt (none of them a validation or test formula)")
    ap.add_argument("--runs", type=Path, default=ROOT / "runs" / "table1-cpu")
    ap.add_argument("--results", type=Path, default=ROOT / "results")
    ap.add_argument("--rows", default=",".join(ROWS), help="comma-separated rows (default: all)")
    ap.add_argument("--gan-steps", type=int, default=4000)
    ap.add_argument("--formulas", type=int, default=5000, help="formulas of formulas.txt written per row (default 5000)")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    rows = [r for r in args.rows.split(",") if r]
    for r in rows:
        if r not in ROWS:
            ap.error(f"unknown row {r!r} (rows: {', '.join(ROWS)})")
    work, runs = args.work.resolve(), args.runs.resolve()
    runs.mkdir(parents=True, exist_ok=True)
    args.results.mkdir(parents=True, exist_ok=True)
    steps = Steps(runs / "commands.log")
    prepare(steps, args.data, work)
    formulas = runs / "formulas.txt"
    if not formulas.exists():
        inputs = set((work / "refine-formulas.txt").read_text(encoding="utf-8").splitlines())
        lines = [line for line in (work / "formulas.txt").read_text(encoding="utf-8").splitlines()
                 if line not in inputs][: args.formulas]  # not what the refiners were trained on
        formulas.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    results = {}
    for row in rows:
        generator = _generator(steps, row, work, runs, args)
        method = ["--method", "stitch"] if row == "stitch" else \
            ["--method", "gan", "--generator", str(generator)] if row == "gan_rendered" else \
            ["--method", "refine", "--generator", str(generator)]
        bank = [] if row == "gan_rendered" else ["--symbols", str(work / "symbols")]
        synthetic = runs / row / "synthetic"
        steps.run(FG + ["synthesize", str(formulas), *method, *bank, "--out", str(synthetic), "--seed", str(args.seed),
                        "--no-progress"], synthetic / "manifest.json")  # fmt: skip
        score = runs / row / "score"
        steps.run(FG + ["score-generator", "--synthetic", str(synthetic), "--test", str(work / "crohme-test2014"),
                        "--config", "configs/recognizer/score_generator_cpu.yaml", "--out-dir", str(score),
                        "--device", "cpu", "--no-progress"], score / "score.json")  # fmt: skip
        card = runs / row / "card"
        steps.run(FG + ["scorecard", *method, *bank, "--test", str(work / "crohme-val"), "--train",
                        str(work / "crohme-train"), "--out", str(card), "--seed", str(args.seed), "--no-progress"],
                  card / "scorecard.json")  # fmt: skip
        results[row] = (json.loads((score / "score.json").read_text()), json.loads((card / "scorecard.json").read_text()))
    write_table(args, rows, results, steps)
    return 0


def prepare(steps: Steps, data: Path, work: Path) -> None:
    """The data every row uses, each step skipped when done: CROHME split by formulas and writers,
    its three sets, the training split's symbol bank, the corpus formulas (none of them a
    validation or test formula), and the refiners' inputs: the training split's own formulas and
    8,000 corpus formulas stitched twice each."""
    work.mkdir(parents=True, exist_ok=True)
    crohme = unpack(data, work)
    split = work / "split"
    steps.run(FG + ["split", str(crohme / "train"), "--out", str(split)], split / "split.json")
    for name, src in (("train", split / "train"), ("val", split / "val"), ("test2014", crohme / "test2014")):
        out = work / f"crohme-{name}"
        steps.run(FG + ["prepare-crohme", str(src), "--out", str(out), "--workers", "2", "--no-progress"],
                  out / "manifest.json")  # fmt: skip
    steps.run(FG + ["prepare-symbols", str(split / "train"), "--out", str(work / "symbols"), "--no-progress"],
              work / "symbols" / "manifest.json")  # fmt: skip
    norm = work / "formulas.norm.txt"
    steps.run(FG + ["normalize", str(data / "formulas" / "im2latex_formulas.norm.lst"), "--vocab",
                    str(work / "crohme-train"), "--max-tokens", "50", "--out", str(norm), "--no-progress"], norm)
    held = None
    if not (work / "formulas.txt").exists():
        held = held_out_formulas(split / "val", crohme / "test2014")
        choose_formulas(norm, work / "formulas.txt", 10**6, 0, held)
    inputs = work / "refine-formulas.txt"
    if not inputs.exists():
        own = sorted(set(held_out_formulas(split / "train")) - (held or held_out_formulas(split / "val", crohme / "test2014")))
        corpus = (work / "formulas.txt").read_text(encoding="utf-8").splitlines()
        # the corpus formulas the rows write are not the refiners' inputs: from the end of the seeded order
        lines = [k for k in own if not k.startswith(("raw:", "file:"))] + corpus[-8000:]
        inputs.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    steps.run(FG + ["synthesize", str(inputs), "--symbols", str(work / "symbols"), "--variants", "2",
                    "--out", str(work / "refine-src"), "--no-progress"], work / "refine-src" / "manifest.json")


def _generator(steps: Steps, row: str, work: Path, runs: Path, args: argparse.Namespace) -> Path | None:
    """The row's exported generator, trained first where the row is a refiner."""
    if row == "stitch":
        return None
    if row == "gan_rendered":
        return ROOT / "formula_gan" / "weights" / "generator.pt"
    run = runs / row / "gan"
    resume = ["--resume"] if (run / "checkpoint.pt").exists() else []
    steps.run(FG + ["train-gan", "--config", "configs/gan/refine.yaml", *resume, f"out_dir={run}", f"steps={args.gan_steps}",
                    f"seed={args.seed}", f"data.rendered=[{work / 'refine-src'}]",
                    f"data.handwritten=[{work / 'crohme-train'}]", *GAN_CHANGES[row]],
              run / "done")  # fmt: skip
    (run / "done").touch()
    exported = runs / row / "generator.pt"
    steps.run(FG + ["export-generator", str(run / "checkpoint.pt"), "--out", str(exported), "--fp16"], exported)
    return exported


def write_table(args: argparse.Namespace, rows: list[str], results: dict, steps: Steps) -> None:
    lines = ["| row | writes with | perplexity on test 2014 ↓ | task-model ExpRate % | Fréchet to real (val) ↓ | "
             "judge WER % (val) | judge ExpRate % (val) |", "| --- | --- | ---: | ---: | ---: | ---: | ---: |"]
    for row in rows:
        score, card = results[row]
        m, c = score["metrics"], card["content"]["synthetic"]
        lines.append(f"| {row} | {ROWS[row]} | {m['perplexity']:.3f} | {100 * m['exprate']:.2f} | "
                     f"{card['frechet']['synthetic']:.3f} | {100 * c['wer']:.1f} | {100 * c['exprate']:.2f} |")
    any_card = results[rows[0]][1]
    text = [
        "# Table 1 at CPU scale: which GAN variant's output is worth most",
        "",
        f"Each row writes the same {args.formulas} corpus formulas (none of them a validation or test formula). "
        "Perplexity: the task model of `configs/recognizer/score_generator_cpu.yaml` trained on that row's images alone "
        "(fixed budget, no model selection), read on CROHME test 2014's labels (the paper's protocol). Fréchet and the "
        "judge's WER/ExpRate: `formula-gan scorecard` on the validation split (real handwriting of formulas and writers "
        f"held out of training), judge `{Path(any_card['recognizer']).name}`; real ↔ real-train floor "
        f"{any_card['frechet']['train']:.3f}, KaTeX renderings {any_card['frechet']['rendered']:.3f}. "
        f"Refiner rows: {args.gan_steps} GAN steps each, same data and seed.",
        "",
        *lines,
        "",
        "## Commands",
        "",
        "```",
        *steps.commands,
        "```",
    ]
    (args.results / "table1_cpu.md").write_text("\n".join(text) + "\n", encoding="utf-8")
    print(f"[table1 {time.strftime('%H:%M:%S')}] wrote {args.results / 'table1_cpu.md'}", file=sys.stderr)


if __name__ == "__main__":
    sys.exit(main())
