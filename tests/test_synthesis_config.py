"""Synthesis settings: the shared config and each method's typed section; every bad value is an
error naming the setting, another method's section or option is refused by name, and the GAN
method takes what its generator file states unless told otherwise."""

from pathlib import Path

import pytest
import torch

from formula_gan.config import ConfigError
from formula_gan.errors import FormulaGanError
from formula_gan.models.generator import Generator
from formula_gan.models.generator_io import save_generator
from formula_gan.synthesis import Resources, method_class, method_names
from formula_gan.synthesis.config import SynthesisConfig, load_synthesis_config, section_overrides
from formula_gan.synthesis.methods.gan import GanMethod, GanSettings
from formula_gan.synthesis.methods.stitch import StitchSettings


@pytest.mark.parametrize("changes, name", [
    ({"variants": 0}, "variants"), ({"max_tokens": 0}, "max_tokens"), ({"samples_per_shard": 0}, "samples_per_shard"),
])
def test_bad_shared_values_are_named(changes, name):
    with pytest.raises(ValueError, match=name):
        SynthesisConfig(**changes)


@pytest.mark.parametrize("changes, name", [
    ({"oversize": "squeeze"}, "oversize"), ({"height": -16}, "height"),
    ({"generator": "g.pt", "untrained": True}, "not both"),
])
def test_bad_gan_values_are_named(changes, name):
    with pytest.raises(ValueError, match=name):
        GanSettings(**changes)


def test_a_section_of_another_method_is_refused_by_name(tmp_path: Path):
    stitch = method_class("stitch")
    others = [m for m in method_names() if m != "stitch"]
    config, sections = load_synthesis_config("stitch", stitch.sections, None, ["seed=3", "stitch.spread=0.1"], others)
    assert config.seed == 3 and sections["stitch"].spread == 0.1
    with pytest.raises(ConfigError, match="gan: settings of method 'gan', not of this job's method 'stitch'"):
        load_synthesis_config("stitch", stitch.sections, None, ["gan.height=64"], others)
    with pytest.raises(ConfigError, match="stitch: spread must be in 0..1"):
        load_synthesis_config("stitch", stitch.sections, None, ["stitch.spread=5"], others)
    yaml = tmp_path / "c.yaml"
    yaml.write_text("variants: 2\ngan: {oversize: downscale}\n")
    config, sections = load_synthesis_config("gan", GanMethod.sections, yaml, [], ["stitch"])
    assert config.variants == 2 and sections["gan"].oversize == "downscale"


def test_options_map_to_the_sections_that_have_them():
    assert section_overrides("stitch", {"stitch": StitchSettings}, {"symbols": "a b/c", "ink": True, "seed": None}) == [
        'stitch.symbols="a b/c"', "stitch.ink=true"]
    with pytest.raises(ConfigError, match="symbols: not a setting of method 'gan'"):
        section_overrides("gan", {"gan": GanSettings}, {"symbols": "bank"})


def test_gan_method_takes_height_and_frame_from_its_generator_file(tmp_path: Path):
    torch.manual_seed(0)
    g = tmp_path / "g.pt"
    save_generator(Generator(width=0.0625), g, step=1, config={"data": {"height": 64, "frame": True}})
    made = GanMethod.create({"gan": GanSettings(generator=str(g))}, Resources(device="cpu"), None)
    assert (made.settings.height, made.settings.frame) == (64, True)
    assert made.gen.contract == {"height": 64, "frame": True, "stride": 16, "in_channels": 1, "z_dim": 120,
                                 "source": "rendered"}
    kept = GanMethod.create({"gan": GanSettings(generator=str(g), height=32, frame=False)}, Resources(device="cpu"), None)
    assert (kept.settings.height, kept.settings.frame) == (32, False)
    with pytest.raises(FormulaGanError, match="multiple of the generator's stride 16"):
        GanMethod.create({"gan": GanSettings(generator=str(g), height=40)}, Resources(device="cpu"), None)
    # the identity names the generator by hash, not by path: a moved file is the same job
    moved = tmp_path / "moved.pt"
    g.rename(moved)
    again = GanMethod.create({"gan": GanSettings(generator=str(moved))}, Resources(device="cpu"), None)
    assert again.job_identity() == made.job_identity()


def test_unknown_method_and_plugin_errors():
    with pytest.raises(FormulaGanError, match="unknown method 'brush'"):
        method_class("brush")
    with pytest.raises(FormulaGanError, match="cannot import"):
        method_class("no_such_module:Method")
    with pytest.raises(FormulaGanError, match="not a handwriting method"):
        method_class("formula_gan.synthesis.config:SynthesisConfig")
