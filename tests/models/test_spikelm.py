"""SpikeLM: hand-computed neuron trace, additive attention, causality, ANN twin, shipped checkpoint cards."""

from __future__ import annotations

import copy
import math
import re
from pathlib import Path

import numpy as np
import pytest
import torch
from spikestack.models import spikelm
from spikestack.models.spikelm import (
    SpikeLinear,
    SpikeLMConfig,
    SpikeLMDecoder,
    SpikeLMEncoder,
    SpikeSelfAttention,
    StatelessBiSpike,
)

CHECKPOINTS = Path(spikelm.__file__).parent / "checkpoints"
SMALL = SpikeLMConfig(vocab=11, context=12, d_model=16, heads=2, layers=2, ffn=32)


def _close(actual: torch.Tensor, expected: torch.Tensor, tol: float = 1e-6) -> bool:
    """allclose with one absolute tolerance (torch.testing's first import alone costs seconds)."""
    return actual.shape == expected.shape and torch.allclose(actual, expected, rtol=0, atol=tol)


def _init_alphas(model: torch.nn.Module, *inputs: torch.Tensor) -> None:
    """One training-mode forward sets every α from its first batch (REFERENCE.md §1.1); then evaluate."""
    model.train()
    with torch.no_grad():
        model(*inputs)
    model.eval()


def test_spike_linear_three_step_trace_by_hand() -> None:
    # One token, two input channels, α = (0.8, 2.0, 0.5); REFERENCE.md §1.1 with K = 1:
    #   s = clip(round(u/α), -1, 1), o = α·s, u_t = 0.25·α_{t-1}·(1 - s_{t-1})·u_{t-1} + x_t
    # channel a, x = 0.5, 0.9, 0.1:
    #   t1 u = 0.5,               u/α = 0.625 → s = +1, o = 0.8
    #   t2 carry 0.25·0.8·0 = 0:  u = 0.9,   u/α = 0.45 → s = 0, o = 0
    #   t3 carry 0.25·2·1 = 0.5:  u = 0.55,  u/α = 1.1  → s = +1, o = 0.5
    # channel b, x = -0.3, -1.5, 0.2:
    #   t1 u = -0.3,              u/α = -0.375 → s = 0, o = 0
    #   t2 carry 0.25·0.8·1 = 0.2: u = -0.06 - 1.5 = -1.56, u/α = -0.78 → s = -1, o = -2.0
    #   t3 carry 0.25·2·2 = 1.0:  u = -1.56 + 0.2 = -1.36, u/α = -2.72 → s = -1 (clipped), o = -0.5
    # linear y = 1·o_a - 2·o_b + 0.25: 1.05, 4.25, 1.75
    layer = SpikeLinear(2, 1, SpikeLMConfig(steps=3))
    with torch.no_grad():
        layer.spike.alpha.copy_(torch.tensor([0.8, 2.0, 0.5]))
        layer.linear.weight.copy_(torch.tensor([[1.0, -2.0]]))
        layer.linear.bias.fill_(0.25)
    layer.eval()
    x = torch.tensor([[[0.5, -0.3]], [[0.9, -1.5]], [[0.1, 0.2]]])  # [T=3, tokens=1, C=2]
    y = layer(x)
    assert layer.spike.last_spikes[:, 0].tolist() == [[1.0, 0.0], [0.0, -1.0], [1.0, -1.0]]
    assert _close(y[:, 0, 0], torch.tensor([1.05, 4.25, 1.75]))


def test_kv_respike_is_stateless_with_alpha_per_step() -> None:
    respike = StatelessBiSpike(steps=3)
    with torch.no_grad():
        respike.alpha.copy_(torch.tensor([0.5, 0.5, 4.0]))
    respike.eval()
    x = torch.tensor([0.3, -0.9, 0.1]).expand(3, 3)  # the same input at every step
    out = respike(x)
    # no membrane: steps with equal α give equal spikes; α = 4 at t3 silences all three (|x|/4 < 0.5)
    assert respike.last_spikes.tolist() == [[1.0, -1.0, 0.0], [1.0, -1.0, 0.0], [0.0, 0.0, 0.0]]
    assert _close(out[0], torch.tensor([0.5, -0.5, 0.0]))


def test_scores_and_pv_are_alpha_times_signed_spike_sums() -> None:
    torch.manual_seed(0)
    attn = SpikeSelfAttention(SpikeLMConfig(d_model=16, heads=2))
    h = torch.randn(4, 2, 5, 16)
    _init_alphas(attn, h)
    attn.double()
    q, k, v = attn.project(h.double())
    for site, projected in ((attn.key_spike, k), (attn.value_spike, v)):
        spikes = attn._heads(site.last_spikes)  # [T, B, H, L, d_head]
        assert set(spikes.unique().tolist()) <= {-1.0, 0.0, 1.0}
        alpha = site.alpha.view(4, 1, 1, 1, 1)
        assert torch.equal(projected, alpha * spikes)  # k = α_K·s_K exactly
    s_k = attn._heads(attn.key_spike.last_spikes)
    # q·kᵀ as additions: for each key, add the q entries where s_K = +1 and subtract those where s_K = -1
    added = q.unsqueeze(-2).where(s_k.unsqueeze(-3) == 1, 0.0).sum(-1)
    subtracted = q.unsqueeze(-2).where(s_k.unsqueeze(-3) == -1, 0.0).sum(-1)
    alpha_k = attn.key_spike.alpha.double().view(4, 1, 1, 1, 1)
    scores = attn.scores(q, k) * math.sqrt(q.shape[-1])
    assert _close(scores, alpha_k * (added - subtracted), tol=1e-12)
    # P·v likewise: α_V times signed sums of attention probabilities
    p = torch.softmax(attn.scores(q, k), dim=-1)
    s_v = attn._heads(attn.value_spike.last_spikes)
    p_sums = p.unsqueeze(-1).where(s_v.unsqueeze(-3) == 1, 0.0).sum(-2) - p.unsqueeze(-1).where(
        s_v.unsqueeze(-3) == -1, 0.0
    ).sum(-2)
    alpha_v = attn.value_spike.alpha.double().view(4, 1, 1, 1, 1)
    assert _close(p @ v, alpha_v * p_sums, tol=1e-12)


def test_alpha_is_twice_mean_abs_of_first_batch_then_frozen() -> None:
    torch.manual_seed(1)
    model = SpikeLMDecoder(SpikeLMConfig(**{**_fields(SMALL), "causal": True}))
    ids = torch.randint(0, SMALL.vocab, (3, SMALL.context))
    model.train()
    with torch.no_grad():
        first_input = model.backbone.emb_norm(model.backbone.tok_emb(ids) + model.backbone.pos_emb.weight)
        model(ids)
    query_spike = model.backbone.blocks[0].attn.query.spike
    assert float(query_spike.alpha[0]) == pytest.approx(float(2 * first_input.abs().mean()), rel=1e-5)
    frozen = query_spike.alpha.clone()
    with torch.no_grad():
        model(torch.randint(0, SMALL.vocab, (3, SMALL.context)))
    assert torch.equal(query_spike.alpha, frozen)
    assert not query_spike.alpha.requires_grad


def _fields(cfg: SpikeLMConfig) -> dict:
    from dataclasses import asdict

    return asdict(cfg)


def test_decoder_is_causal() -> None:
    torch.manual_seed(2)
    model = SpikeLMDecoder(SpikeLMConfig(**{**_fields(SMALL), "causal": True}))
    ids = torch.randint(0, SMALL.vocab, (2, SMALL.context))
    _init_alphas(model, ids)
    changed = ids.clone()
    changed[:, 7:] = (changed[:, 7:] + 1) % SMALL.vocab
    with torch.no_grad():
        a, b = model(ids), model(changed)
    assert _close(a[:, :7], b[:, :7])
    assert not torch.allclose(a[:, 7:], b[:, 7:])


def test_encoder_is_bidirectional_and_has_both_heads() -> None:
    torch.manual_seed(3)
    model = SpikeLMEncoder(SMALL)
    ids = torch.randint(0, SMALL.vocab, (2, SMALL.context))
    _init_alphas(model, ids)
    changed = ids.clone()
    changed[:, -1] = model.mask_id
    with torch.no_grad():
        (mlm_a, cls_a), (mlm_b, _) = model(ids), model(changed)
    assert mlm_a.shape == (2, SMALL.context, SMALL.vocab) and cls_a.shape == (2, SMALL.classes)
    assert not torch.allclose(mlm_a[:, 0], mlm_b[:, 0])  # position 0 sees the last position


@pytest.mark.parametrize("model_type", [SpikeLMEncoder, SpikeLMDecoder])
def test_ann_twin_state_dict_matches_except_alpha(model_type: type) -> None:
    causal = model_type is SpikeLMDecoder
    spiking = model_type(SpikeLMConfig(**{**_fields(SMALL), "causal": causal}))
    ann = model_type(SpikeLMConfig(**{**_fields(SMALL), "causal": causal, "spiking": False}))
    spiking_sd = spiking.state_dict()
    without_alpha = {k: v for k, v in spiking_sd.items() if not k.endswith("alpha")}
    # per block: 6 SpikeLinear neurons + the K and V re-spikes, one α vector each
    assert len(spiking_sd) - len(without_alpha) == 8 * SMALL.layers
    assert {k: v.shape for k, v in ann.state_dict().items()} == {k: v.shape for k, v in without_alpha.items()}
    ann.load_state_dict(without_alpha)  # strict: same keys
    ann.eval()
    ids = torch.randint(0, SMALL.vocab, (2, SMALL.context))
    with torch.no_grad():
        out = ann(ids)
    first = out[0] if isinstance(out, tuple) else out
    assert first.shape == (2, SMALL.context, SMALL.vocab)


def test_task_generators_label_honestly() -> None:
    windows = np.tile(np.arange(16), (6, 1))
    windows[3] = 5  # one repeated character: its shuffle changes nothing, so it stays "original"
    shuffled, labels = spikelm.shuffle_windows(windows, np.random.default_rng(0))
    assert labels.tolist() == [0, 1, 0, 0, 0, 1]
    assert (np.sort(shuffled, axis=1) == np.sort(windows, axis=1)).all()  # same characters, new order
    assert (shuffled[::2] == windows[::2]).all()
    inputs, targets = spikelm.mask_characters(np.tile(windows, (20, 1)), 95, np.random.default_rng(0), corrupt=False)
    chosen = targets != -100
    assert 0.10 < chosen.mean() < 0.20  # 15 % masking (BERT)
    assert (inputs[chosen] == 95).all() and (inputs[~chosen] == np.tile(windows, (20, 1))[~chosen]).all()


def _shipped() -> list[Path]:
    return sorted(CHECKPOINTS.glob("spikelm-*.pt"))


@pytest.mark.parametrize("path", _shipped(), ids=lambda p: p.name)
def test_shipped_checkpoint_reproduces_card_metric(path: Path) -> None:
    card = path.with_suffix(".md").read_text()
    metrics = spikelm.evaluate(path)
    names = ["val_bpc"] if "spikelm-dec" in path.name else ["mlm_accuracy", "cls_accuracy"]
    for name in names:
        assert metrics[name] == pytest.approx(spikelm.card_metric(card, name), rel=0.02), name
    assert path.stat().st_size <= 5 * 2**20


DECODER_GAP_LIMIT = 0.10  # measured +5.8 % at 1000 steps with two spike levels and the twin as teacher (card)
# The most a spiking model may trail its ANN twin on each card metric (relative; accuracy lower or BPC higher).
# 10 % is the seeds' claim (SpikeLM: elastic bi-spikes with distillation stay close to the float model).
TWIN_GAP_LIMITS = [
    ("spikelm-enc-tiny", "mlm_accuracy", 0.10),
    ("spikelm-enc-tiny", "cls_accuracy", 0.10),
    ("spikelm-dec-tiny", "val_bpc", DECODER_GAP_LIMIT),
]


@pytest.mark.parametrize(("name", "metric", "limit"), TWIN_GAP_LIMITS, ids=lambda v: str(v))
def test_card_twin_gap(name: str, metric: str, limit: float) -> None:
    """The gap between a spiking card and its twin's card (both re-checked against their checkpoints above),
    and the spiking card quotes the twin's value it is compared with."""
    spiking_card = (CHECKPOINTS / f"{name}.md").read_text()
    twin = spikelm.card_metric((CHECKPOINTS / f"{name}-ann.md").read_text(), metric)
    quoted = re.search(rf"Counterpart \(ANN twin[^\n]*?{metric} ([0-9]+\.[0-9]+)", spiking_card)
    assert quoted and float(quoted.group(1)) == twin
    ours = spikelm.card_metric(spiking_card, metric)
    gap = (ours - twin) / twin if metric == "val_bpc" else (twin - ours) / twin
    assert 0.0 <= gap <= limit, f"{name} {metric}: {ours} vs twin {twin}, gap {gap:.1%} > {limit:.0%}"


def test_generate_continues_the_prompt_greedily() -> None:
    decoders = [p for p in _shipped() if "spikelm-dec" in p.name]
    if not decoders:
        pytest.skip("no shipped decoder checkpoint")
    first = spikelm.generate(decoders[0], "The ", 12)
    assert first.startswith("The ") and len(first) == 16
    assert spikelm.generate(decoders[0], "The ", 12) == first


# bispike.py reads float(α[t]) of a grad-requiring α to test for 1.0; harmless, reported to its owner
@pytest.mark.filterwarnings("ignore:Converting a tensor with requires_grad=True:UserWarning")
def test_learnable_alpha_trains_and_moves_alpha() -> None:
    torch.manual_seed(4)
    model = SpikeLMDecoder(SpikeLMConfig(**{**_fields(SMALL), "causal": True, "learnable_alpha": True}))
    ids = torch.randint(0, SMALL.vocab, (2, SMALL.context + 1))
    initialised = copy.deepcopy(model)
    _init_alphas(initialised, ids[:, :-1])  # α from the first batch, as training starts
    settings = spikelm.TrainSettings(context=SMALL.context, batch_windows=2, lr=1e-2, warmup_steps=1)
    spikelm._train(model, settings, lambda: (ids,), spikelm.decoder_loss, steps=3, progress=False)
    for name, site in spikelm.spiking_sites(model).items():
        assert site.alpha.requires_grad
        start = spikelm.spiking_sites(initialised)[name].alpha
        assert (start != 1.0).all() and not torch.equal(site.alpha.detach(), start.detach()), name
