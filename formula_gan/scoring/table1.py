"""The paper's Table 1 protocol: how useful is a generator's output to a recognizer trained on it alone?"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

from formula_gan.config import load_config
from formula_gan.errors import FormulaGanError
from formula_gan.evaluation import evaluate_checkpoint
from formula_gan.reports import write_json
from formula_gan.synthesis import Resources, Synthesizer
from formula_gan.recognition.config import RecognizerRunConfig, SourceConfig
from formula_gan.training.recognizer_loop import train_recognizer


def score_generator(
    test_dirs: Sequence[str | Path],
    *,
    synthetic_dir: str | Path | None = None,
    generator: str | Path | None = None,
    formulas: Sequence[str | Path] = (),
    config: str | Path | None = None,
    overrides: Sequence[str] = (),
    out_dir: str | Path = "runs/score-generator",
    beam: int = 1,
    device: str = "auto",
    progress: bool = True,
) -> dict[str, Any]:
    """How useful is a generator's output? (Springstein et al., Table 1)

    1. synthesize the fixed formula set ``formulas`` with ``generator`` into
       ``out_dir/synthetic`` (or take an already synthesized ``synthetic_dir``);
    2. train the small task recognizer (``config``, default
       ``configs/recognizer/score_generator.yaml``) on that synthetic set only, for the
       config's fixed step budget, with no validation (no model selection on the test set);
    3. report perplexity and every other metric of the final model on ``test_dirs``
       (CROHME test 2014).
    """
    out = Path(out_dir)
    if synthetic_dir is not None and generator is not None:
        raise FormulaGanError("give either --synthetic DIR or --generator FILE, not both")
    if synthetic_dir is None:
        if generator is None or not formulas:
            raise FormulaGanError("give --synthetic DIR, or --generator FILE with --formulas FILE... to synthesize")
        synthetic_dir = out / "synthetic"
        resources = Resources(device=None if device == "auto" else device)
        with Synthesizer("gan", settings={"gan": {"generator": str(generator)}}, resources=resources,
                         progress=progress) as synth:
            report = synth.run(list(formulas), synthetic_dir)
        if report.manifest is None:
            raise FormulaGanError(f"{synthetic_dir}: synthesis did not finish (no manifest.json)")
    cfg = load_config(RecognizerRunConfig, config or default_score_config(), overrides)
    cfg.name = "task-model"
    cfg.out_dir = str(out / "{name}")
    cfg.data.train = [SourceConfig(str(synthetic_dir), 1.0)]
    cfg.data.val = []
    cfg.train.device = device
    summary = train_recognizer(cfg, progress=progress)
    result = evaluate_checkpoint(summary["last"], test_dirs, beam=beam, device=device, progress=progress)
    payload = result.to_json({"synthetic": str(synthetic_dir), "generator": str(generator) if generator else None,
                              "train_steps": summary["step"], "test": [str(t) for t in test_dirs]})
    write_json(out / "score.json", payload)
    return payload


def default_score_config() -> Path:
    return Path(__file__).resolve().parents[2] / "configs" / "recognizer" / "score_generator.yaml"
