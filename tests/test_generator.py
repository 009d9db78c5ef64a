"""Generator: shapes for any size that is a multiple of 16, options, z and domain matter; export and load."""

from __future__ import annotations

import os

import pytest
import torch

from formula_gan.errors import FormulaGanError
from formula_gan.models.generator import Generator
from formula_gan.models.generator_io import GeneratorFileError, load_generator, save_generator
from test_gan_support import one_thread  # noqa: F401

SMALL = dict(width=0.125, z_dim=20, class_dim=16)


@pytest.mark.parametrize("attention", [True, False])
@pytest.mark.parametrize("hw", [(16, 16), (32, 64), (48, 80), (64, 32)])
def test_output_size_equals_input_size(hw: tuple[int, int], attention: bool) -> None:
    torch.manual_seed(0)
    G = Generator(**SMALL, attention=attention)
    x = torch.rand(2, 1, *hw)
    y = G(x, torch.tensor([0, 1]), torch.randn(2, 20))
    assert y.shape == x.shape
    assert 0.0 <= float(y.detach().min()) and float(y.detach().max()) <= 1.0
    assert (G.attention is not None) == attention


@pytest.mark.parametrize("after", [1, 2, 3])
def test_attention_position(after: int) -> None:
    G = Generator(**SMALL, attention_after=after)
    assert G.attention.f.in_channels == G.decoder[after - 1].conv2.out_channels
    assert G(torch.rand(1, 1, 32, 32), torch.tensor([1]), torch.randn(1, 20)).shape == (1, 1, 32, 32)


def test_z_and_domain_change_the_output_and_errors_are_clear() -> None:
    torch.manual_seed(0)
    G = Generator(**SMALL).eval()
    x = torch.rand(2, 1, 32, 48)
    z = torch.randn(2, 20)
    with torch.no_grad():
        base = G(x, torch.tensor([1, 1]), z)
        assert not torch.allclose(base, G(x, torch.tensor([1, 1]), torch.randn(2, 20)))
        assert not torch.allclose(base, G(x, torch.tensor([0, 0]), z))
    assert G.z_dim == 20
    with pytest.raises(ValueError, match="multiples of 16"):
        G(torch.rand(1, 1, 32, 40), torch.tensor([1]), torch.randn(1, 20))
    with pytest.raises(ValueError, match="z of shape"):
        G(x, torch.tensor([1, 1]), torch.randn(2, 19))
    with pytest.raises(ValueError, match="5 equal chunks"):
        Generator(z_dim=121)


def test_export_round_trip_fp32_and_fp16(tmp_path) -> None:
    torch.manual_seed(0)
    G = Generator(**SMALL)
    x = torch.rand(3, 1, 32, 64)
    G(x, torch.tensor([0, 1, 1]), torch.randn(3, 20))  # move BN statistics and spectral-norm vectors
    G.eval()
    z, c = torch.randn(3, 20), torch.ones(3, dtype=torch.long)
    with torch.no_grad():
        want = G(x, c, z)
    sha = save_generator(G, tmp_path / "g.pt", step=7, config={"seed": 3})
    loaded, meta = load_generator(tmp_path / "g.pt", "cpu")
    assert meta["step"] == 7 and meta["config"] == {"seed": 3} and meta["sha256"] == sha
    assert not loaded.training and not hasattr(loaded.out_conv, "parametrizations")  # spectral norm baked in
    with torch.no_grad():
        assert torch.allclose(loaded(x, c, z), want, atol=1e-6)
    save_generator(G, tmp_path / "g16.pt", step=7, config={}, fp16=True)
    half, meta16 = load_generator(tmp_path / "g16.pt")
    assert meta16["dtype"] == "float16"
    assert os.path.getsize(tmp_path / "g16.pt") < 0.6 * os.path.getsize(tmp_path / "g.pt")
    with torch.no_grad():
        assert (half(x, c, z) - want).abs().max() < 5e-3
    assert not (tmp_path / "g.pt.tmp").exists()


def test_bad_generator_files_give_clear_errors(tmp_path) -> None:
    G = Generator(**SMALL)
    good = tmp_path / "g.pt"
    save_generator(G, good, step=1, config={})
    data = good.read_bytes()
    (tmp_path / "truncated.pt").write_bytes(data[: len(data) // 2])
    (tmp_path / "garbage.pt").write_bytes(b"not a checkpoint at all")
    torch.save({"format": "something-else"}, tmp_path / "other.pt")
    torch.save({"format": "formula-gan-gan-checkpoint"}, tmp_path / "train.pt")
    for name, pattern in [("missing.pt", "not found"), ("truncated.pt", "truncated or corrupt"),
                          ("garbage.pt", "truncated or corrupt"), ("other.pt", "not a formula-gan generator"),
                          ("train.pt", "export-generator")]:
        with pytest.raises(GeneratorFileError, match=pattern) as info:
            load_generator(tmp_path / name)
        assert isinstance(info.value, FormulaGanError) and name in str(info.value)
    # weights that do not fit the architecture the file names
    payload = torch.load(good, weights_only=True)
    payload["model"]["width"] = 0.25
    torch.save(payload, tmp_path / "mismatch.pt")
    with pytest.raises(GeneratorFileError, match="do not fit"):
        load_generator(tmp_path / "mismatch.pt")
    load_generator(good)  # the good file is untouched


def test_a_bit_flipped_in_the_weights_is_caught_by_their_checksum(tmp_path) -> None:
    """torch's reader does not notice a flipped bit inside a tensor: the file's checksum of its
    weights does, and loading says so instead of generating with other weights."""
    torch.manual_seed(0)
    G = Generator(**SMALL)
    good = tmp_path / "g.pt"
    save_generator(G, good, step=1, config={})
    data = bytearray(good.read_bytes())
    weight = torch.load(good, weights_only=True)["state_dict"]["out_conv.weight"]
    at = bytes(data).find(weight.numpy().tobytes())  # the tensor's bytes, stored as they are
    assert at > 0
    data[at + 5] ^= 0x10
    (tmp_path / "flipped.pt").write_bytes(bytes(data))
    torch.load(tmp_path / "flipped.pt", weights_only=True)  # still a well-formed file
    with pytest.raises(GeneratorFileError, match="do not match their checksum") as info:
        load_generator(tmp_path / "flipped.pt")
    assert "flipped.pt" in str(info.value)
    # a file of format 1 (no checksum) is refused with what to do, not loaded unchecked
    payload = torch.load(good, weights_only=True)
    payload["format_version"] = 1
    del payload["weights_sha256"]
    torch.save(payload, tmp_path / "v1.pt")
    with pytest.raises(GeneratorFileError, match="export it again"):
        load_generator(tmp_path / "v1.pt")
    load_generator(good)


def test_a_generator_with_nan_weights_is_refused_before_any_work(tmp_path) -> None:
    """Its checksum matches (the file holds what a diverged training run wrote); synthesis refuses it."""
    from formula_gan.synthesis.generation import GeneratorLoadError, load

    G = Generator(**SMALL)
    with torch.no_grad():
        G.out_conv.bias.fill_(float("nan"))
    save_generator(G, tmp_path / "nan.pt", step=1, config={})
    load_generator(tmp_path / "nan.pt")  # a well-formed file
    with pytest.raises(GeneratorLoadError, match="NaN or infinite") as info:
        load(tmp_path / "nan.pt", torch.device("cpu"))
    assert "out_conv" in str(info.value)


def test_non_finite_output_stops_generation(tmp_path) -> None:
    """Whatever reaches the generation stage (a model built in Python, weights changed after
    loading): a batch with NaN output stops the run, never written as black images
    (ink_to_paper turns NaN into 0, black paper)."""
    import numpy as np

    from formula_gan.synthesis.generation import BatchRunner, LoadedGenerator, NonFiniteOutputError

    torch.manual_seed(0)
    G = Generator(**SMALL, spectral_norm=False).eval()
    papers = [np.full((32, 48), 255, np.uint8), np.full((32, 32), 255, np.uint8)]
    contract = {"height": 32, "frame": False, "stride": 16, "in_channels": 1, "z_dim": 20}
    runner = BatchRunner(LoadedGenerator(G, torch.device("cpu"), 20, "x", 0, contract))
    assert all(out.shape == p.shape for out, p in zip(runner.run(papers, [1, 2], 48), papers))
    with torch.no_grad():
        G.out_conv.bias.fill_(float("nan"))
    with pytest.raises(NonFiniteOutputError, match="NaN or infinite"):
        runner.run(papers, [1, 2], 48)


def test_a_generator_file_states_its_contract_and_a_false_one_is_refused(tmp_path):
    from formula_gan.models.generator_io import FORMAT_VERSION, GeneratorFileError, load_generator, save_generator

    torch.manual_seed(0)
    path = tmp_path / "g.pt"
    save_generator(Generator(**SMALL), path, step=7, config={"data": {"height": 48, "frame": True}})
    payload = torch.load(path, weights_only=True)
    assert payload["format_version"] == FORMAT_VERSION == 3
    assert payload["contract"] == {"height": 48, "frame": True, "stride": 16, "in_channels": 1, "z_dim": SMALL["z_dim"],
                                   "source": "rendered"}
    assert load_generator(path)[1]["contract"] == payload["contract"]
    # a file of version 2 (before the contract was stated): derived from its training config
    old = dict(payload, format_version=2)
    del old["contract"]
    torch.save(old, tmp_path / "v2.pt")
    assert load_generator(tmp_path / "v2.pt")[1]["contract"] == payload["contract"]
    # a contract that cannot describe the weights (the checksum covers weights only)
    for bad in ({**payload["contract"], "height": 50}, {**payload["contract"], "z_dim": 999}, {"height": "x"}):
        torch.save(dict(payload, contract=bad), tmp_path / "bad.pt")
        with pytest.raises(GeneratorFileError, match="does not describe the generator"):
            load_generator(tmp_path / "bad.pt")
