"""The recognizer: shapes for both decoders, BTTR's reversed targets, and a measured tiny overfit."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image, ImageDraw, ImageFont

from formula_gan.data.images import paper_to_ink
from formula_gan.models.recognizer import RecognizerModel, RecognizerModelConfig, reverse_targets

PAD, SOS, EOS = 0, 1, 2
CHARS = list("0123456789+-=")
VOCAB = 4 + len(CHARS)  # PAD SOS EOS UNK + characters


@pytest.fixture(autouse=True)
def one_thread():
    """Tiny models on a shared CPU run much faster on one thread (see TrainConfig.cpu_threads)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def tiny_cfg(decoder: str, **kw) -> RecognizerModelConfig:
    base = dict(
        decoder=decoder, growth=8, block_layers=(2, 2), init_channels=16, encoder_dropout=0.0,
        embed_dim=32, hidden=32, attn_dim=32, decoder_dropout=0.0,
        d_model=32, nhead=4, num_layers=1, dim_feedforward=64, transformer_dropout=0.0, max_len=8,
    )  # fmt: skip
    base.update(kw)
    return RecognizerModelConfig(**base)


def digit_images(strings: list[str]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Strings drawn with PIL's built-in font on 32 × 64 paper -> (images, masks, tokens, lengths)."""
    font = ImageFont.load_default()
    images = []
    for s in strings:
        im = Image.new("L", (64, 32), 255)
        ImageDraw.Draw(im).text((4, 8), " ".join(s), fill=0, font=font)
        images.append(paper_to_ink(np.array(im)))
    tokens = torch.zeros(len(strings), max(map(len, strings)), dtype=torch.long)
    for i, s in enumerate(strings):
        tokens[i, : len(s)] = torch.tensor([4 + CHARS.index(c) for c in s])
    lengths = torch.tensor([len(s) for s in strings])
    masks = torch.ones(len(strings), 32, 64, dtype=torch.bool)
    return torch.stack(images), masks, tokens, lengths


def test_reverse_targets_by_hand():
    tokens = torch.tensor([[5, 6, 7], [8, 9, PAD]])
    tokens_in, target = reverse_targets(tokens, torch.tensor([3, 2]))
    assert tokens_in.tolist() == [[EOS, 7, 6, 5], [EOS, 9, 8, PAD]]
    assert target.tolist() == [[7, 6, 5, SOS], [9, 8, SOS, PAD]]


@pytest.mark.parametrize("decoder", ["gru", "transformer"])
@pytest.mark.parametrize("bidirectional", [False, True])
def test_shapes_loss_and_decoding(decoder, bidirectional):
    torch.manual_seed(0)
    model = RecognizerModel(VOCAB, tiny_cfg(decoder, bidirectional=bidirectional))
    images, masks, tokens, lengths = digit_images(["12", "3+4", "5"])
    masks[2, :, 40:] = False  # a padded image
    out = model(images, masks, tokens, lengths)
    assert out["loss"].shape == () and torch.isfinite(out["loss"])
    assert int(out["count"]) == 2 + 3 + 1 + 3  # tokens plus one end token per formula
    # an untrained model is near uniform: perplexity within a factor of 2 of the vocabulary size
    ppl = float(torch.exp(out["nll"] / out["count"]))
    assert VOCAB / 2 < ppl < VOCAB * 2
    out["loss"].backward()
    assert all(p.grad is not None for p in model.encoder.parameters() if p.requires_grad)
    model.eval()
    for beam in (1, 3):
        hyps = model.decode(images, masks, beam=beam)
        assert len(hyps) == 3 and all(len(h.tokens) <= 8 for h in hyps)


@pytest.mark.parametrize("decoder", ["gru", "transformer"])
def test_batched_decoding_equals_one_by_one(decoder):
    torch.manual_seed(1)
    model = RecognizerModel(VOCAB, tiny_cfg(decoder)).eval()
    images, masks, *_ = digit_images(["12", "3+4", "5", "678"])
    batched = model.decode(images, masks, beam=3)
    single = [model.decode(images[i : i + 1], masks[i : i + 1], beam=3)[0] for i in range(4)]
    assert [h.tokens for h in batched] == [h.tokens for h in single]


def test_bf16_autocast_forward():
    """The AMP path used on GPUs (bf16 autocast) also runs here on the CPU; the loss stays float32."""
    model = RecognizerModel(VOCAB, tiny_cfg("transformer"))
    images, masks, tokens, lengths = digit_images(["12", "3+4"])
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = model(images, masks, tokens, lengths)
    assert out["loss"].dtype == torch.float32 and torch.isfinite(out["loss"])


@pytest.mark.parametrize("decoder", ["gru", "transformer"])
def test_tiny_recognizer_learns_to_read(decoder):
    """Measured: both decoders read all 8 images exactly after ~75 Adam steps; 300 allowed."""
    torch.manual_seed(0)
    strings = ["12", "305", "7", "4+8", "96", "1-5", "0=2", "83"]
    images, masks, tokens, lengths = digit_images(strings)
    model = RecognizerModel(VOCAB, tiny_cfg(decoder))
    opt = torch.optim.Adam(model.parameters(), 3e-3)
    refs = [tokens[i, : lengths[i]].tolist() for i in range(len(strings))]
    exprate = 0.0
    for step in range(1, 301):
        model.train()
        loss = model(images, masks, tokens, lengths)["loss"]
        opt.zero_grad()
        loss.backward()
        opt.step()
        if step % 25 == 0:
            model.eval()
            hyps = model.decode(images, masks, beam=1)
            exprate = float(np.mean([h.tokens == r for h, r in zip(hyps, refs)]))
            if exprate == 1.0:
                break
    assert exprate == 1.0, f"read {exprate:.0%} after {step} steps"
    assert [h.tokens for h in model.decode(images, masks, beam=4)] == refs


def test_input_dropout_hides_previous_tokens_in_training_only():
    model = RecognizerModel(VOCAB, tiny_cfg("gru", input_dropout=0.5))
    tokens_in = torch.cat([torch.full((4, 1), 1), torch.randint(4, VOCAB, (4, 30))], dim=1)  # SOS, then tokens
    tokens_in[:, -5:] = 0  # padding stays padding
    model.train()
    torch.manual_seed(0)
    dropped = model._drop_inputs(tokens_in)
    assert bool((dropped[:, 0] == 1).all()) and bool((dropped[:, -5:] == 0).all())
    share = float((dropped[:, 1:-5] == 3).float().mean())
    assert 0.3 < share < 0.7  # about half the tokens became UNK
    model.eval()
    assert torch.equal(model._drop_inputs(tokens_in), tokens_in)
