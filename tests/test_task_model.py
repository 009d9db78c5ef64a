"""DenseNet encoder, attention GRU decoder (teacher forcing = step-by-step decoding), task model."""

from __future__ import annotations

import pytest
import torch

from formula_gan.models.attention_decoder import EOS, PAD, SOS, AttentionGRUDecoder, teacher_forcing
from formula_gan.models.densenet import DenseNetEncoder
from formula_gan.models.task_model import TaskModel
from test_gan_support import VOCAB_SIZE, draw_glyphs, one_thread  # noqa: F401


@pytest.mark.parametrize("bottleneck", [False, True])
def test_densenet_shapes_channels_and_mask(bottleneck: bool) -> None:
    enc = DenseNetEncoder(growth=8, block_layers=(2, 3, 2), init_channels=16, bottleneck=bottleneck)
    # 16 + 2·8 = 32 -> 16, + 3·8 = 40 -> 20, + 2·8 = 36
    assert enc.out_channels == 36
    x = torch.rand(2, 1, 64, 160)
    mask = torch.ones(2, 64, 160, dtype=torch.bool)
    mask[1, :, 70:] = False  # sample 1 is 70 px wide, padded to 160
    feat, fmask = enc(x, mask)
    assert feat.shape == (2, 36, 4, 10) and fmask.shape == (2, 4, 10)
    assert fmask[0].all()
    assert fmask[1, :, :5].all() and not fmask[1, :, 5:].any()  # cells 0..4 cover pixels 0..79


def test_teacher_forcing_adds_sos_and_eos() -> None:
    tokens = torch.tensor([[5, 6, 7], [8, 0, 0]])
    tokens_in, target = teacher_forcing(tokens, torch.tensor([3, 1]))
    assert tokens_in.tolist() == [[SOS, 5, 6, 7], [SOS, 8, PAD, PAD]]
    assert target.tolist() == [[5, 6, 7, EOS], [8, EOS, PAD, PAD]]


@pytest.mark.parametrize("coverage", [False, True])
def test_forward_equals_stepwise_decoding_and_padding_is_ignored(coverage: bool) -> None:
    torch.manual_seed(0)
    dec = AttentionGRUDecoder(12, 20, embed_dim=16, hidden=24, attn_dim=16, coverage=coverage).eval()
    feat = torch.randn(2, 20, 3, 7)
    fmask = torch.ones(2, 3, 7, dtype=torch.bool)
    fmask[1, :, 4:] = False
    tokens_in = torch.tensor([[SOS, 5, 6, 7], [SOS, 8, 9, 4]])
    logits = dec(feat, fmask, tokens_in)
    assert logits.shape == (2, 4, 12)
    state = dec.init_state(feat, fmask)
    for t in range(4):
        step_logits, state = dec.step(state, tokens_in[:, t])
        assert torch.allclose(step_logits, logits[:, t], atol=1e-6)
        assert float(state.alpha[1].detach().view(3, 7)[:, 4:].sum()) == 0.0  # no attention on padding
    if coverage:
        assert torch.allclose(state.coverage.sum(-1), torch.full((2,), 4.0), atol=1e-5)
    # padded feature cells do not change the output of sample 1
    feat2 = feat.clone()
    feat2[1, :, :, 4:] = torch.randn(20, 3, 3)
    assert torch.allclose(dec(feat2, fmask, tokens_in)[1], logits[1], atol=1e-5)
    # beam search reorders states
    picked = state.select(torch.tensor([1, 1, 0]))
    assert picked.hidden.shape == (3, 24) and torch.equal(picked.hidden[2], state.hidden[0])


def test_task_model_learns_to_read_toy_glyphs() -> None:
    torch.manual_seed(0)
    images, tokens = draw_glyphs(16, seed=3)
    masks = torch.ones(16, 32, 64, dtype=torch.bool)
    lengths = torch.full((16,), 3)
    model = TaskModel(VOCAB_SIZE, growth=8, block_layers=(2, 2, 2), init_channels=16, embed_dim=32, hidden=32, attn_dim=32)
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    first = None
    for _ in range(50):
        loss, acc = model(images, masks, tokens, lengths)
        first = first if first is not None else loss.item()
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert loss.item() < 0.3 * first
    assert acc.item() > 0.9
    model.eval()  # running BatchNorm statistics, greedy decoding
    with torch.no_grad():
        feat, fmask = model.encoder(images, masks)
        decoded = model.decoder.greedy(feat, fmask, max_len=6)
    assert sum(d == t.tolist() for d, t in zip(decoded, tokens)) >= 12
