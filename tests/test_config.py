from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal, Optional

import pytest

from formula_gan.config import ConfigError, apply_overrides, from_dict, load_config, to_dict


@dataclass
class Optim:
    lr: float = 2e-4
    betas: tuple[float, float] = (0.0, 0.999)


@dataclass
class Run:
    name: str = "base"
    steps: int = 10
    amp: bool = False
    mode: Literal["height128", "symbol"] = "height128"
    resume: Optional[str] = None
    layers: list[int] = field(default_factory=lambda: [6, 6, 6])
    optim: Optim = field(default_factory=Optim)

    def __post_init__(self) -> None:
        if self.steps < 0:
            raise ValueError("steps must be >= 0")


def test_yaml_and_overrides_fill_nested_dataclasses(tmp_path):
    path = tmp_path / "run.yaml"
    path.write_text("name: tiny\nsteps: 4\noptim:\n  lr: 0.001\n")
    cfg = load_config(Run, path, ["optim.betas=[0.5, 0.9]", "amp=true", "layers=[1,2]", "mode=symbol"])
    assert cfg.name == "tiny" and cfg.steps == 4 and cfg.amp is True
    assert cfg.optim == Optim(lr=0.001, betas=(0.5, 0.9))
    assert cfg.layers == [1, 2] and cfg.mode == "symbol"
    # the dict form loads back to the same config
    assert from_dict(Run, to_dict(cfg)) == cfg


def test_int_is_accepted_where_a_float_is_expected():
    assert from_dict(Optim, {"lr": 1}).lr == 1.0


def test_yaml_exponent_without_a_dot_is_a_float(tmp_path):
    (tmp_path / "o.yaml").write_text("lr: 2e-4\n")  # YAML 1.1 reads this as a string
    assert load_config(Optim, tmp_path / "o.yaml").lr == 2e-4
    with pytest.raises(ConfigError, match="lr: expected a number"):
        from_dict(Optim, {"lr": "fast"})


@pytest.mark.parametrize(
    "data, key",
    [
        ({"stepz": 3}, "stepz"),
        ({"optim": {"learning_rate": 1.0}}, "optim.learning_rate"),
    ],
)
def test_unknown_key_is_an_error_naming_it(data, key):
    with pytest.raises(ConfigError, match=f"unknown config key '{key}'"):
        from_dict(Run, data)


@pytest.mark.parametrize(
    "data, key",
    [
        ({"steps": "ten"}, "steps"),
        ({"steps": 1.5}, "steps"),
        ({"amp": "yes"}, "amp"),
        ({"optim": {"betas": [0.1]}}, "optim.betas"),
        ({"mode": "other"}, "mode"),
        ({"layers": [1, "x"]}, r"layers\[1\]"),
        ({"optim": 3}, "optim"),
    ],
)
def test_wrong_type_is_an_error_naming_the_key(data, key):
    with pytest.raises(ConfigError, match=key):
        from_dict(Run, data)


def test_post_init_validation_becomes_a_config_error():
    with pytest.raises(ConfigError, match="steps must be >= 0"):
        from_dict(Run, {"steps": -1})


def test_optional_field_takes_none_or_its_type():
    assert from_dict(Run, {"resume": None}).resume is None
    assert from_dict(Run, {"resume": "a.pt"}).resume == "a.pt"


def test_bad_override_syntax_and_missing_file(tmp_path):
    with pytest.raises(ConfigError, match="key.path=value"):
        apply_overrides({}, ["no_equals_sign"])
    with pytest.raises(ConfigError, match="not found"):
        load_config(Run, tmp_path / "missing.yaml")
    (tmp_path / "list.yaml").write_text("- 1\n- 2\n")
    with pytest.raises(ConfigError, match="mapping"):
        load_config(Run, tmp_path / "list.yaml")
