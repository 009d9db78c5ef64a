"""What a synthesis job is: the settings that decide its output (and so its identity).

``SynthesisConfig`` holds what every method shares; each method has its own
typed section (``gan:``, ``stitch:``, ``refine:``; see ``methods/``). A YAML file
or ``--set`` override may hold the shared keys and the sections of the chosen
method; a section of another method is an error that names it, so an option
that means nothing to the method cannot be given by mistake.

Everything here goes into ``job.json``; rerunning into a folder with other
values is an error. Settings that change only speed (device, batch size,
workers) are ``Resources`` instead, so a job may be resumed with more workers
or on a bigger machine.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

from formula_gan.config import ConfigError, apply_overrides, from_dict, load_mapping
from katex_render.styles import StyleConfig


@dataclass
class SynthesisConfig:
    # Handwritings per formula: each variant gets its own style and its own seeds.
    variants: int = 1
    # The job seed: every sample's style and noise seeds derive from it and the sample's key.
    seed: int = 0
    # Formulas with more tokens are rejected (None: no limit). The paper trains on <= 50.
    max_tokens: int | None = None
    # Samples (items) per shard: the unit of resume and of split. ~1000 handwritten
    # images of 128 px are ~10 MB, a size that streams well and loses little on a kill.
    samples_per_shard: int = 1000
    # Font command, font size and padding ranges of the layouts (as `render`).
    style: StyleConfig = field(default_factory=StyleConfig)

    def __post_init__(self) -> None:
        if self.variants < 1:
            raise ValueError("variants must be at least 1")
        if self.max_tokens is not None and self.max_tokens < 1:
            raise ValueError("max_tokens must be at least 1 (or null)")
        if self.samples_per_shard < 1:
            raise ValueError("samples_per_shard must be at least 1")


def load_synthesis_config(
    method: str,
    sections: Mapping[str, type],
    path: str | Path | None = None,
    overrides: Sequence[str] = (),
    other_methods: Sequence[str] = (),
) -> tuple[SynthesisConfig, dict[str, Any]]:
    """The shared config and the method's typed sections from a YAML file and ``a.b=c`` overrides.

    ``sections``: the method's section names and their dataclasses; ``other_methods``: the
    names of the other methods, whose sections are refused by name."""
    data = apply_overrides(load_mapping(path), overrides)
    built = {name: from_dict(cls, data.pop(name, None), name) for name, cls in sections.items()}
    for key in data:
        if key in other_methods:
            raise ConfigError(f"{key}: settings of method {key!r}, not of this job's method {method!r} "
                              f"(its sections: {', '.join(sections) or 'none'})")
    return from_dict(SynthesisConfig, data), built


def section_overrides(method: str, sections: Mapping[str, type], values: Mapping[str, Any]) -> list[str]:
    """``a.b=c`` overrides that set ``values`` (key -> value; None: not given) in every one of the
    method's sections that has such a key. A key no section has is an error naming it: a command
    line option of one method given to another (``--symbols`` to the GAN)."""
    out = []
    for key, value in values.items():
        if value is None:
            continue
        owners = [name for name, cls in sections.items() if key in {f.name for f in dataclasses.fields(cls)}]
        if not owners:
            raise ConfigError(f"{key}: not a setting of method {method!r}")
        out += [f"{name}.{key}={json.dumps(value)}" for name in owners]  # JSON is YAML: a path stays a string
    return out

