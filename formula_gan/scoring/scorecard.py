"""The generator scorecard: does a generator keep the content, and does its output look handwritten?

With a fixed seed, the labels of a real test set (CROHME test 2014) are

1. written as a formula file (``formulas.txt``, line i = test sample i);
2. rendered by KaTeX (``rendered/``: the generator's inputs, same styles, same keys);
3. translated by the generator (``synthetic/``), or taken from a set made elsewhere
   from that same formula file (e.g. the glyph stitcher's).

Then one recognizer (trained on real handwriting, independently of the generator)
reads all three sets and the real test set, and its encoder describes them:

* **content kept**: ExpRate, WER ... of the recognizer on synthetic, rendered and
  real test images. A generator that keeps the symbols scores close to the real
  handwriting; the renderings show what the recognizer makes of print.
* **realism**: Fréchet distance between the encoder's pooled features of each set
  and the real test set's; real *train* ↔ real test is the floor (two samples of
  real handwriting), rendered ↔ real test the ceiling a generator must get under.
* **a sheet**: real | rendered | synthetic, one test formula per row.

Everything goes to ``out_dir``: ``scorecard.json``, ``scorecard.md``, ``sheet.png`` and
``sheet_generated.png`` (the same rows without the real handwriting).
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch

from formula_gan.data.images import decode_png
from formula_gan.data.jobs import shard_paths
from formula_gan.data.loader import ShardSource, make_loader, resize_paper
from formula_gan.data.render_job import RenderJobSpec, run_render_job
from formula_gan.data.shards import atomic_write_bytes, read_shard
from formula_gan.devices import resolve_device
from formula_gan.errors import FormulaGanError
from formula_gan.evaluation import pooled_features, run_evaluation
from formula_gan.recognition.files import default_judge, load_recognizer
from formula_gan.reports import write_json
from formula_gan.scoring.frechet import feature_distance
from formula_gan.synthesis import Resources, Synthesizer, method_class
from formula_gan.synthesis.preview import write_preview
from katex_render.normalize import tokens_to_latex

SHEET_ROWS = 16
SHEET_HEIGHT = 80  # px per image on the sheet
SETS = ("real", "rendered", "synthetic")
CONTENT_KEYS = ("exprate", "le1", "le2", "wer", "cer")


def write_formulas(test_dir: str | Path, path: Path) -> list[tuple[str, str]]:
    """The test set's labels, in shard order, one formula per line -> [(test key, tokens)]."""
    pairs = [(s.key, str(s.meta.get("tokens", ""))) for shard in shard_paths(test_dir) for s in read_shard(shard)]
    if not pairs:
        raise FormulaGanError(f"{test_dir}: the test set holds no samples")
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(path, "".join(tokens_to_latex(t.split()) + "\n" for _, t in pairs).encode("utf-8"))
    return pairs


def images_by_line(shard_dir: Path) -> dict[int, np.ndarray]:
    """Line number (1-based, from each sample's ``source`` "file:line") -> paper image."""
    out = {}
    for shard in shard_paths(shard_dir):
        for s in read_shard(shard):
            line = int(str(s.meta.get("source", "")).rsplit(":", 1)[-1])
            out[line] = decode_png(s.png)
    return out


# Fewer samples than this make a Fréchet distance of 128-dimensional features mostly noise
# (its covariance has more unknowns than samples): the scorecard says so beside the number.
MIN_FRECHET_SAMPLES = 200


def check_domain(path: str | Path, want: str, what: str) -> dict[str, Any]:
    """The manifest of a finished shard set whose samples are of domain ``want``, or one clear error."""
    manifest_path = Path(path) / "manifest.json"
    if not manifest_path.is_file():
        raise FormulaGanError(f"{path}: the {what} is not a finished shard folder (no manifest.json)")
    try:
        manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise FormulaGanError(f"{manifest_path}: not a readable manifest ({err})") from err
    domain = manifest.get("domain") if isinstance(manifest, dict) else None
    if domain != want:
        raise FormulaGanError(f"{path}: the {what} must be {want} images, but its manifest says {domain!r} "
                              "(give prepare-crohme's shards of real handwriting)")
    return manifest


def scorecard(
    out_dir: str | Path,
    test_dir: str | Path,
    train_dir: str | Path,
    *,
    method: str | None = "gan",
    overrides: Sequence[str] = (),
    synthetic_dir: str | Path | None = None,
    recognizer: str | Path | None = None,
    seed: int = 0,
    beam: int = 1,
    batch_size: int = 16,
    device: str = "cpu",
    progress: bool = True,
) -> dict[str, Any]:
    """Run the scorecard (module docstring); returns what ``scorecard.json`` holds.

    ``method`` (a synthesis method, its settings as ``overrides`` such as ``gan.generator=FILE`` or
    ``stitch.symbols=DIR``) writes the test formulas, or ``synthetic_dir`` holds them written
    elsewhere (then ``method`` is None). Every input is checked before any work."""
    started = time.perf_counter()
    out = Path(out_dir)
    check_domain(test_dir, "handwritten", "test set")
    check_domain(train_dir, "handwritten", "train set")
    if (method is None) == (synthetic_dir is None):
        raise FormulaGanError("give either a method to write the test formulas or a synthetic set written elsewhere")
    recognizer = recognizer or default_judge()
    if recognizer is None:
        raise FormulaGanError("no recognizer: this installation ships none; give one (--recognizer CKPT)")
    dev = resolve_device(device)
    judge = load_recognizer(recognizer, dev)
    model, vocab = judge.model, judge.vocab
    synth = None
    if method is not None:  # made now: a bad generator or bank is an error before any rendering
        method_cls = method_class(method)
        extra = ["gan.oversize=downscale"] if "gan" in method_cls.sections else []  # every test formula written
        resources = Resources(device=str(dev)) if "device" in method_cls.uses else Resources()
        synth = Synthesizer.from_config(method, None, [f"seed={seed}", *extra, *overrides], resources=resources,
                                        progress=progress)
    try:
        formulas = out / "formulas.txt"
        pairs = write_formulas(test_dir, formulas)
        rendered = out / "rendered"
        run_render_job(RenderJobSpec(input=formulas, out=rendered, seed=seed), progress=progress)
        synthetic = Path(synthetic_dir) if synthetic_dir is not None else out / "synthetic"
        if synth is not None:
            synth.run([formulas], synthetic)
            generator_info = {"method": synth.method.name, **synth.method.identity()}
        else:
            generator_info = {"synthetic_dir": str(synthetic_dir)}
    finally:
        if synth is not None:
            synth.close()
    if not (synthetic / "manifest.json").is_file():
        raise FormulaGanError(f"{synthetic}: not a finished shard folder (no manifest.json)")

    height = judge.height
    dirs = {"real": Path(test_dir), "rendered": rendered, "synthetic": synthetic}

    def loader(path: Path, **kw: Any):
        opts = dict(height=height, max_width=None, shuffle=False, seed=0)
        opts.update(kw)
        return make_loader([ShardSource(str(path))], vocab, batch_size, **opts)

    content: dict[str, dict[str, Any]] = {}
    features: dict[str, np.ndarray] = {}
    for name, path in dirs.items():
        result = run_evaluation(model, vocab, loader(path), dev, beam=beam, progress=progress, desc=f"read {name}")
        content[name] = {k: result.scores.as_dict()[k] for k in ("num_formulas",) + CONTENT_KEYS}
        features[name] = pooled_features(model, loader(path), dev, progress=progress, desc=f"features {name}")[1].numpy()
    # The floor: as many real *training* images as the test set has, drawn across the whole set.
    n = len(features["real"])
    train_feats: list[torch.Tensor] = []
    for batch_keys, batch in _take(loader(Path(train_dir), shuffle=True, seed=seed), n):
        train_feats.append(pooled_features(model, [batch], dev)[1][: len(batch_keys)])
    features["train"] = torch.cat(train_feats).numpy()
    realism = {
        "synthetic": feature_distance(features["synthetic"], features["real"]),
        "rendered": feature_distance(features["rendered"], features["real"]),
        "train": feature_distance(features["train"], features["real"]),
    }
    sheet = out / "sheet.png"
    _write_sheets(sheet, out / "sheet_generated.png", dirs["real"], pairs, rendered, synthetic)
    payload = {
        "recognizer": str(recognizer),
        "recognizer_step": judge.step,
        "generator": generator_info,
        "test": str(test_dir),
        "train": str(train_dir),
        "seed": seed,
        "beam": beam,
        "content": content,
        "frechet": realism,
        "samples": {"real": n, "train": len(features["train"]),
                    "rendered": len(features["rendered"]), "synthetic": len(features["synthetic"])},
        "sheet": str(sheet),
        "seconds": round(time.perf_counter() - started, 1),
    }  # fmt: skip
    small = {k: v for k, v in payload["samples"].items() if v < MIN_FRECHET_SAMPLES}
    if small:
        payload["warning"] = (f"Fréchet distances from fewer than {MIN_FRECHET_SAMPLES} samples ("
                              + ", ".join(f"{k} {v}" for k, v in small.items()) + ") mean little")
    write_json(out / "scorecard.json", payload)
    (out / "scorecard.md").write_text(scorecard_table(payload) + "\n", encoding="utf-8")
    return payload


def _take(batches, n: int):
    """(keys, batch) pairs until ``n`` samples were given (the last batch's keys cut to fit)."""
    seen = 0
    for batch in batches:
        keys = batch.keys[: n - seen]
        yield keys, batch
        seen += len(keys)
        if seen >= n:
            return


def _write_sheets(path: Path, generated_path: Path, test_dir: Path, pairs: Sequence[tuple[str, str]],
                  rendered: Path, synthetic: Path) -> None:
    """real | rendered | synthetic for the first SHEET_ROWS test formulas present in all three sets,
    and the same rows without the real column (the project's own output only, fit to publish)."""
    real = {}
    for shard in shard_paths(test_dir):
        for s in read_shard(shard):
            real[s.key] = decode_png(s.png)
    ren, syn = images_by_line(rendered), images_by_line(synthetic)
    rows = []
    for line, (key, _) in enumerate(pairs, start=1):
        if key in real and line in ren and line in syn:
            # one height for all three: renderings come at their font size, the others at 128 px
            rows.append(tuple(resize_paper(img, SHEET_HEIGHT, None) for img in (real[key], ren[line], syn[line])))
        if len(rows) == SHEET_ROWS:
            break
    if not rows:
        raise FormulaGanError("no test formula was both rendered and synthesized: nothing to put on the sheet")
    write_preview(path, rows)
    write_preview(generated_path, [row[1:] for row in rows])


def scorecard_table(payload: dict[str, Any]) -> str:
    """The scorecard as markdown: content kept per set, Fréchet distances with their baselines."""
    c, f = payload["content"], payload["frechet"]
    lines = [
        f"Recognizer `{payload['recognizer']}` (step {payload['recognizer_step']}), beam {payload['beam']}, "
        f"seed {payload['seed']}, test set `{payload['test']}`.",
        "",
        "| images of the test formulas | formulas | ExpRate % | ≤1 % | ≤2 % | WER % | CER % |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for name, label in (("real", "real handwriting"), ("rendered", "KaTeX renderings"), ("synthetic", "synthetic")):
        m = c[name]
        lines.append(f"| {label} | {m['num_formulas']} | " + " | ".join(f"{100 * m[k]:.2f}" for k in CONTENT_KEYS) + " |")
    ratio = c["synthetic"]["exprate"] / c["real"]["exprate"] if c["real"]["exprate"] > 0 else float("nan")
    lines += [
        "",
        f"Synthetic / real ExpRate: {ratio:.2f}.",
        "",
        "| Fréchet distance to real test handwriting (recognizer-encoder features) | value |",
        "| --- | ---: |",
        f"| real train (the floor) | {f['train']:.3f} |",
        f"| synthetic | {f['synthetic']:.3f} |",
        f"| KaTeX renderings | {f['rendered']:.3f} |",
        "",
        f"Synthetic / rendered distance: {f['synthetic'] / f['rendered']:.2f}." if f["rendered"] > 0 else "",
    ]
    if payload.get("warning"):
        lines += ["", f"**Warning:** {payload['warning']}."]
    return "\n".join(lines)
