"""Style sampling and the render config schema (no browser needed)."""

from __future__ import annotations

import collections

import pytest

from formula_gan.config import ConfigError, load_config
from katex_render.renderer import RenderConfig
from katex_render.styles import PAPER_FONTS, Style, StyleConfig, sample_style


def test_same_seed_same_style_and_seeds_differ():
    cfg = StyleConfig()
    assert sample_style(cfg, 1234) == sample_style(cfg, 1234)
    styles = {sample_style(cfg, seed) for seed in range(200)}
    assert len(styles) > 150  # seeds really vary the style


def test_samples_cover_the_paper_ranges():
    cfg = StyleConfig()
    styles = [sample_style(cfg, seed) for seed in range(3000)]
    fonts = collections.Counter(s.font for s in styles)
    assert set(fonts) == set(PAPER_FONTS)
    assert min(fonts.values()) > 3000 / 7 * 0.7  # roughly uniform
    assert {s.font_size for s in styles} == set(range(16, 51))
    assert {s.padding for s in styles} == set(range(0, 16))


def test_ranges_are_configurable():
    cfg = StyleConfig(fonts=["\\mathbf"], font_size=(30, 30), padding=(2, 3))
    for seed in range(50):
        s = sample_style(cfg, seed)
        assert s.font == "\\mathbf" and s.font_size == 30 and s.padding in (2, 3)


def test_wrap_uses_argument_or_switch():
    assert Style("\\mathsf", 20, 0).wrap("a+b") == "\\mathsf{a+b}"
    assert Style("\\textstyle", 20, 0).wrap("\\frac{1}{2}") == "{\\textstyle \\frac{1}{2}}"


def test_render_yaml_loads_and_overrides(repo_root):
    cfg = load_config(RenderConfig, repo_root / "configs" / "render.yaml",
                      ["renderer.workers=1", "style.font_size=[20,30]"])
    assert cfg.renderer.workers == 1
    assert cfg.style.font_size == (20, 30)
    assert cfg.style.fonts == list(PAPER_FONTS)
    assert cfg.style.padding == (0, 15)


@pytest.mark.parametrize("override, key", [
    ("style.fonts=['\\\\mathzz']", "style"),
    ("style.font_size=[50,16]", "style"),
    ("style.padding=[-1,3]", "style"),
    ("renderer.batch_size=0", "renderer"),
    ("renderer.strict=loud", "renderer.strict"),
    ("renderer.colour=1", "renderer.colour"),
])
def test_bad_config_is_an_error_naming_the_key(override, key):
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        load_config(RenderConfig, None, [override])
