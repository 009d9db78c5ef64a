"""SynthesisConfig: every bad value is an error naming the setting; for_generator fills what is unset."""

import pytest

from formula_gan.synthesis.config import PAPER_HEIGHT, SynthesisConfig


@pytest.mark.parametrize("changes, name", [
    ({"variants": 0}, "variants"), ({"height": 40}, "height"), ({"height": 64, "max_pixels": 100}, "max_pixels"),
    ({"max_tokens": 0}, "max_tokens"), ({"samples_per_shard": 0}, "samples_per_shard"),
    ({"oversize": "squeeze"}, "oversize"),
])
def test_bad_values_are_named(changes, name):
    with pytest.raises(ValueError, match=name):
        SynthesisConfig(**changes)


def test_for_generator_fills_height_and_frame_from_the_training_config_unless_set():
    trained = {"data": {"height": 64, "frame": True}}
    filled = SynthesisConfig(seed=3).for_generator(trained)
    assert (filled.height, filled.frame, filled.seed) == (64, True, 3)
    kept = SynthesisConfig(height=32, frame=False).for_generator(trained)
    assert (kept.height, kept.frame) == (32, False)
    bare = SynthesisConfig().for_generator({})  # a file that does not say: the paper's height, no framing
    assert (bare.height, bare.frame) == (PAPER_HEIGHT, False)
    with pytest.raises(ValueError, match="height"):
        SynthesisConfig().for_generator({"data": {"height": 50}})  # checked like a given height
