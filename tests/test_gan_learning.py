"""What makes the GAN learn at small scale: each cause of the collapsed CPU runs, with the check that
failed on the paper's configuration and holds on the CPU recipe's (configs/gan/cpu.yaml)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from formula_gan.models.generator import Generator
from formula_gan.models.task_model import TaskModel
from formula_gan.training.d_view import DView, crop_windows, cutout, d_view, translate
from formula_gan.training.distributed import setup_distributed
from formula_gan.training.gan_data import ShardGanData
from formula_gan.training.gan_loop import DWinsWatch, setup_parts
from formula_gan.training.gan_step import d_step, eval_mode, g_step, input_dependence, sample_latents, step_generator
from formula_gan.training.logging import RunLogger
from test_gan_support import VOCAB_SIZE, draw_glyphs, one_thread, thicken, tiny_config, toy_data, write_shard_folder  # noqa: F401

CPU_ARCH = dict(skip=True, residual=True, output="clamp")
SMALL = dict(width=0.125, z_dim=20, class_dim=16)


def dependence(G: Generator, seed: int = 0) -> dict[str, float]:
    images, _ = draw_glyphs(8, seed, h=64, w=128)
    g = torch.Generator().manual_seed(seed)
    z = (torch.randn(8, G.z_dim, generator=g), torch.randn(8, G.z_dim, generator=g))
    return input_dependence(G, thicken(images), z)


def test_at_initialization_the_output_depends_on_the_input_at_least_as_much_as_on_z():
    torch.manual_seed(0)
    paper = dependence(Generator(**SMALL))
    torch.manual_seed(0)
    cpu = dependence(Generator(**SMALL, **CPU_ARCH))
    # the paper's G: z at the 1/16 bottleneck outweighs the image (measured 0.010 vs 0.032)
    assert paper["g_input_dep"] < paper["g_z_dep"]
    # the CPU recipe's G starts as the identity: all input, no z
    assert cpu["g_z_dep"] == 0 and cpu["g_input_dep"] > 0.02  # = the mean ink of the inputs
    # skips alone (no residual) already carry more of the input than the paper's G
    torch.manual_seed(0)
    skip_only = dependence(Generator(**SMALL, skip=True))
    assert skip_only["g_input_dep"] > paper["g_input_dep"]


def test_clamped_output_has_an_exact_zero_background_a_sigmoid_never_does():
    x = torch.zeros(2, 1, 32, 64)
    x[:, :, 10:20, 20:24] = 1.0
    z, target = torch.randn(2, 20), torch.ones(2, dtype=torch.long)
    for arch, reaches_zero in ((dict(), False), (CPU_ARCH, True), (dict(skip=True, output="clamp"), True)):
        torch.manual_seed(0)
        with torch.no_grad():
            out = Generator(**SMALL, **arch).eval()(x, target, z)
        background = out[x == 0]
        assert bool((background == 0).any()) == reaches_zero, arch
        assert float(out.min()) >= 0 and float(out.max()) <= 1


def test_d_sees_generated_images_the_same_way_in_both_steps(tmp_path: Path):
    """Whole images: D's step and G's step pad the fakes to the same shared canvas (G's step once
    scored them at their own, smaller size). Crops: both steps show D windows of one size."""
    for view in ([], ["d_view.crop_width=32", "d_view.translation=0.125", "d_view.cutout=0.5"]):
        cfg = tiny_config(tmp_path, "lambda_task=0", *view)
        parts, ctx = setup_parts(cfg, VOCAB_SIZE, setup_distributed("cpu"))
        source, _ = toy_data(w=48, slots=2).iterator(None).__next__()
        _, real = toy_data(w=96).iterator(None).__next__()  # real images wider than the sources
        seen: list[torch.Tensor] = []
        parts.D.register_forward_pre_hook(lambda module, args: seen.append(args[0].detach().clone()))
        z, target = sample_latents(len(source), ctx, step_generator(0, 0))
        for group in parts.opt_d.param_groups + parts.opt_g.param_groups:
            group["lr"] = 0.0  # both steps see the same G
        d_step(parts, source, real, z, target, ctx, step_generator(1, 0))
        g_step(parts, source, z, target, ctx, step_generator(1, 0), size=(32, 96))
        fake_in_d, fake_in_g = seen[0][len(real):], seen[1]
        assert fake_in_d.shape == fake_in_g.shape == ((4, 1, 32, 96) if not view else (4, 1, 32, 32))
        if not view:  # deterministic view: the very same pixels
            torch.testing.assert_close(fake_in_d, fake_in_g)


def test_the_task_model_reads_a_faint_copy_worse_in_eval_mode():
    """On generated images the task model uses its running statistics (learned on real images): a
    batch at 30 % ink scores worse. With the batch's own statistics (train mode) it did not."""
    torch.manual_seed(0)
    data = toy_data(n=64, batch_size=16)
    task = TaskModel(VOCAB_SIZE, growth=8, block_layers=(2, 2), init_channels=16, embed_dim=32, hidden=32, attn_dim=32)
    opt = torch.optim.Adam(task.parameters(), 3e-3)
    batches = data.iterator(None)
    for _ in range(60):  # learn to read the thick glyphs
        _, real = next(batches)
        loss, _ = task(real.images, real.masks, real.tokens, real.lengths)
        opt.zero_grad()
        loss.backward()
        opt.step()
    _, real = next(batches)
    faint = real.images * 0.3
    with torch.no_grad(), eval_mode(task):
        full_eval, _ = task(real.images, real.masks, real.tokens, real.lengths)
        faint_eval, _ = task(faint, real.masks, real.tokens, real.lengths)
    with torch.no_grad():
        full_train, _ = task(real.images, real.masks, real.tokens, real.lengths)
        faint_train, _ = task(faint, real.masks, real.tokens, real.lengths)
    assert float(faint_eval) > float(full_eval) + 0.5, (float(faint_eval), float(full_eval))
    assert abs(float(faint_train) - float(full_train)) < 0.05  # the old way: the stem's BN undoes the scale


def test_d_view_crops_inside_each_image_and_augments_differentiably():
    images = torch.zeros(3, 1, 16, 80)
    masks = torch.zeros(3, 16, 80, dtype=torch.bool)
    for i, w in enumerate((80, 50, 20)):
        images[i, :, :, :w] = torch.linspace(0.1, 1.0, w)  # a ramp: the crop's values say where it starts
        masks[i, :, :w] = True
    for seed in range(20):
        crops = crop_windows(images, masks, 32, torch.Generator().manual_seed(seed))
        assert crops.shape == (3, 1, 16, 32)
        assert bool((crops[0] > 0).all()) and bool((crops[1] > 0).all())  # inside the real region
        assert torch.equal(crops[2, :, :, :20], images[2, :, :, :20])  # narrower than the window: whole + background
        assert bool((crops[2, :, :, 20:] == 0).all())
    x = torch.rand(4, 1, 16, 32, requires_grad=True)
    g = torch.Generator().manual_seed(0)
    moved = translate(x, 0.25, g)
    blanked = cutout(x, 0.5, g)
    assert moved.shape == blanked.shape == x.shape
    assert float((blanked == 0).float().mean()) > 0.15  # about a quarter of each image
    (moved.sum() + blanked.sum()).backward()
    assert x.grad is not None and float(x.grad.abs().sum()) > 0
    view = DView(32, 0.125, 0.5)
    a = d_view(images, masks, view, torch.Generator().manual_seed(5))
    b = d_view(images, masks, view, torch.Generator().manual_seed(5))
    assert torch.equal(a, b)  # all randomness from the caller's generator


def test_r1_penalty_is_reported_and_changes_ds_update(tmp_path: Path):
    grads = {}
    for gamma in (0.0, 10.0):
        cfg = tiny_config(tmp_path, "lambda_task=0", f"r1_gamma={gamma}")
        parts, ctx = setup_parts(cfg, VOCAB_SIZE, setup_distributed("cpu"))
        source, real = toy_data().iterator(None).__next__()
        out = d_step(parts, source, real, *sample_latents(len(source), ctx, step_generator(0, 0)), ctx,
                     step_generator(1, 0), r1=gamma > 0)  # fmt: skip
        grads[gamma] = torch.cat([p.grad.flatten() for p in parts.D.parameters() if p.grad is not None])
        assert ("r1" in out) == (gamma > 0)
        if gamma:
            assert float(out["r1"].detach()) > 0
    assert not torch.allclose(grads[0.0], grads[10.0])


def test_a_d_that_wins_outright_is_reported(tmp_path: Path):
    logger = RunLogger(tmp_path, 100, 0, progress=False)
    watch = DWinsWatch()
    won = {"loss_d_real": 0.0, "loss_d_fake": 0.01, "rt": 1.0}
    fair = {"loss_d_real": 0.6, "loss_d_fake": 0.7, "rt": 0.3}
    flags = [watch.observe(s, m, logger) for s, m in ((10, won), (20, won), (30, fair), (40, won), (50, won), (60, won))]
    logger.close()
    assert flags == [False, False, False, False, False, True]
    warnings = [json.loads(line) for line in (tmp_path / "log.jsonl").read_text().splitlines()]
    assert [w["step"] for w in warnings if "warning" in w] == [60]
    assert "D wins outright" in warnings[-1]["warning"]


@pytest.fixture(scope="module")
def shards(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("gan_shards")
    return {"rendered": write_shard_folder(root / "rendered", "rendered", n=24, seed=1),
            "handwritten": write_shard_folder(root / "handwritten", "handwritten", n=24, seed=2)}


def test_generator_inputs_mix_both_domains_in_every_batch(tmp_path: Path, shards: dict[str, Path]):
    cfg = tiny_config(tmp_path, f"data.rendered=[{shards['rendered']}]", f"data.handwritten=[{shards['handwritten']}]",
                      "data.height=32", "data.max_width=64", "data.batch_size=4", "handwritten_source=true")  # fmt: skip
    batches = ShardGanData(cfg, setup_distributed("cpu")).iterator(None)
    for _ in range(8):
        source, _ = next(batches)
        assert sorted(source.domains.tolist()) == [0, 0, 1, 1]
        assert source.images.shape[-1] % 16 == 0 and source.images.shape[0] == len(source.keys) == 4


def test_images_wider_than_max_width_are_dropped_not_shrunk(tmp_path: Path, shards: dict[str, Path]):
    cfg = tiny_config(tmp_path, f"data.rendered=[{shards['rendered']}]", f"data.handwritten=[{shards['handwritten']}]",
                      "data.height=30", "data.max_width=60", "data.batch_size=2", "handwritten_source=false")  # fmt: skip
    batches = ShardGanData(cfg, setup_distributed("cpu")).iterator(None)
    for _ in range(12):
        source, real = next(batches)
        for batch in (source, real):
            widths = batch.masks.any(dim=1).sum(dim=1)
            heights = batch.masks.any(dim=2).sum(dim=1)
            assert bool((widths <= 60).all()) and bool((heights == 30).all())  # never scaled below the height


def test_content_loss_forgives_thinning_and_small_moves_not_erasing_or_inventing():
    from formula_gan.training.gan_step import content_loss

    source = torch.zeros(1, 1, 32, 64)
    source[..., 10:14, 5:60] = 1  # a thick bar, as KaTeX draws a fraction bar at a large size
    thin, moved, invented = torch.zeros_like(source), torch.zeros_like(source), source.clone()
    thin[..., 11:13, 5:60] = 1
    moved[..., 12:14, 6:61] = 1
    invented[..., 25:27, 5:60] = 1
    assert float(content_loss(thin, source, 2)) == 0.0
    assert float(content_loss(moved, source, 2)) == 0.0
    assert float(content_loss(torch.zeros_like(source), source, 2)) == 1.0  # the symbol erased
    assert float(content_loss(invented, source, 2)) == pytest.approx(1 / 3)  # a third of the ink is new
    fake = thin.clone().requires_grad_(True)
    (content_loss(fake * 0.5, source, 2)).backward()  # faint ink: differentiable towards the source's
    assert fake.grad is not None
