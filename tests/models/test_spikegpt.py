"""Tests of models/spikegpt.py against the equations of REFERENCE.md §3.1 and the layout of §3.2."""

from __future__ import annotations

import math
import re
from pathlib import Path

import pytest
import torch
from spikestack.models.spikegpt import (
    WKV_P0,
    CheckpointFormatError,
    SpikeGPT,
    SpikeGPTConfig,
    evaluate,
    generate,
    lif_sequence,
    lif_step,
    load_checkpoint,
    load_published_state_dict,
    train,
    wkv_direct,
    wkv_initial_state,
    wkv_sequence,
)

CHECKPOINT_DIR = Path(__file__).resolve().parents[2] / "models" / "checkpoints"
SPIKING_CKPT = CHECKPOINT_DIR / "spikegpt-char-2x64.pt"
SPIKING_CARD = CHECKPOINT_DIR / "spikegpt-char-2x64.md"


def _model(seed: int = 0, **overrides: object) -> SpikeGPT:
    torch.manual_seed(seed)
    cfg = SpikeGPTConfig(**{"vocab_size": 11, "n_layer": 2, "n_embd": 16, "ctx_len": 24, **overrides})
    model = SpikeGPT(cfg).double()
    # Move weights off their init so the LIFs fire and every term matters (init has tiny mixes, few spikes).
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.3 * torch.randn_like(p))
    return model


def _recurrent_logits(model: SpikeGPT, idx: torch.Tensor) -> torch.Tensor:
    state = [type(s)(*(t.double() for t in s)) for s in model.initial_state(idx.shape[0])]
    logits = []
    for t in range(idx.shape[1]):
        out, state = model.step(idx[:, t], state)
        logits.append(out)
    return torch.stack(logits, dim=1)


# -------------------- LIF


def test_lif_step_matches_hand_computed_sequence() -> None:
    # tau = 2, threshold 1: H = V + (X - V)/2, spike iff H >= 1, hard reset to 0 (§3.1).
    inputs = [1.0, 1.0, 1.0, 2.0, 0.0, -2.0, 3.0]
    expected_h = [0.5, 0.75, 0.875, 1.4375, 0.0, -1.0, 1.0]
    expected_s = [0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 1.0]
    expected_v = [0.5, 0.75, 0.875, 0.0, 0.0, -1.0, 0.0]
    v = torch.zeros(1, dtype=torch.float64)
    for x, h, s_want, v_want in zip(inputs, expected_h, expected_s, expected_v, strict=True):
        s, v_next = lif_step(torch.tensor([x], dtype=torch.float64), v)
        assert s.item() == s_want, (x, h)
        assert v_next.item() == pytest.approx(v_want, abs=1e-15)
        v = v_next
    # The sequence form gives the same spikes for the same inputs.
    seq = lif_sequence(torch.tensor(inputs, dtype=torch.float64).view(1, -1, 1))
    assert seq.view(-1).tolist() == expected_s


def test_lif_sequence_gradient_equals_autograd_through_lif_step() -> None:
    torch.manual_seed(1)
    x = (1.5 * torch.randn(3, 20, 5, dtype=torch.float64) + 0.8).requires_grad_()
    spikes = lif_sequence(x)
    v = torch.zeros(3, 5, dtype=torch.float64)
    reference = []
    for t in range(x.shape[1]):
        s, v = lif_step(x[:, t], v)
        reference.append(s)
    reference_spikes = torch.stack(reference, dim=1)
    assert torch.equal(spikes, reference_spikes)
    assert 0.1 < spikes.mean().item() < 0.9
    weights = torch.randn_like(spikes)
    (grad_fast,) = torch.autograd.grad(spikes, x, weights)
    (grad_reference,) = torch.autograd.grad(reference_spikes, x, weights)
    torch.testing.assert_close(grad_fast, grad_reference, rtol=0, atol=1e-14)


def test_atan_surrogate_gradient_at_threshold() -> None:
    # d spike / d x at H = threshold: alpha/2 = 1 (ATan, alpha = 2), times dH/dX = 1/tau = 1/2.
    x = torch.tensor([[[2.0]]], dtype=torch.float64, requires_grad=True)
    lif_sequence(x).sum().backward()
    assert x.grad is not None and x.grad.item() == pytest.approx(0.5, abs=1e-15)


# -------------------- WKV


def test_wkv_stable_recurrence_equals_direct_formula() -> None:
    torch.manual_seed(2)
    b, t, c = 2, 12, 6
    time_decay = torch.randn(c, dtype=torch.float64)
    time_first = torch.randn(c, dtype=torch.float64)
    k = 2 * torch.randn(b, t, c, dtype=torch.float64)
    v = torch.randn(b, t, c, dtype=torch.float64)
    stable = wkv_sequence(time_decay, time_first, k, v)
    torch.testing.assert_close(stable, wkv_direct(time_decay, time_first, k, v), rtol=0, atol=1e-10)


def test_wkv_first_token_is_v_and_second_is_hand_computed() -> None:
    # t = 0: only the bonus term, so wkv = v_0. t = 1: (e^{k0} v0 + e^{u+k1} v1) / (e^{k0} + e^{u+k1}).
    time_decay = torch.tensor([0.3], dtype=torch.float64)
    time_first = torch.tensor([0.7], dtype=torch.float64)
    k = torch.tensor([[[0.2], [-0.4]]], dtype=torch.float64)
    v = torch.tensor([[[1.5], [-2.0]]], dtype=torch.float64)
    out = wkv_sequence(time_decay, time_first, k, v).view(-1)
    e0, e1 = math.exp(0.2), math.exp(0.7 - 0.4)
    assert out[0].item() == pytest.approx(1.5, abs=1e-15)
    assert out[1].item() == pytest.approx((e0 * 1.5 + e1 * -2.0) / (e0 + e1), abs=1e-15)


def test_wkv_initial_state_and_no_overflow_for_large_keys() -> None:
    state = wkv_initial_state(torch.zeros(2, 3))
    assert state.p.eq(WKV_P0).all() and state.a.eq(0).all() and state.b.eq(0).all()
    k = torch.full((1, 8, 3), 200.0)  # e^200 overflows float32; the stable form must not
    out = wkv_sequence(torch.zeros(3), torch.zeros(3), k, torch.ones(1, 8, 3))
    assert torch.isfinite(out).all() and torch.allclose(out, torch.ones_like(out))


# -------------------- model


def test_parallel_equals_recurrent_float64() -> None:
    model = _model()
    idx = torch.randint(0, 11, (3, 24), generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        parallel = model(idx)
        recurrent = _recurrent_logits(model, idx)
    torch.testing.assert_close(parallel, recurrent, rtol=0, atol=1e-12)


def test_parallel_equals_recurrent_ann_twin_and_float_embedding() -> None:
    model = _model(spiking=False, binary_embedding=False)
    idx = torch.randint(0, 11, (2, 16), generator=torch.Generator().manual_seed(4))
    with torch.no_grad():
        torch.testing.assert_close(model(idx), _recurrent_logits(model, idx), rtol=0, atol=1e-12)


def test_ann_twin_differs_from_spiking_only_by_the_lif() -> None:
    spiking = _model()
    ann = SpikeGPT(SpikeGPTConfig(**{**_asdict(spiking.cfg), "spiking": False})).double()
    ann.load_state_dict(spiking.state_dict())  # same keys, same shapes
    idx = torch.randint(0, 11, (2, 16), generator=torch.Generator().manual_seed(5))
    with torch.no_grad():
        assert not torch.allclose(spiking(idx), ann(idx))
        for block in spiking.blocks:  # swap each LIF for the identity: the spiking model becomes the twin
            block.lif1.spiking = block.lif2.spiking = False
        torch.testing.assert_close(spiking(idx), ann(idx), rtol=0, atol=0)


def _asdict(cfg: SpikeGPTConfig) -> dict:
    return {name: getattr(cfg, name) for name in cfg.__dataclass_fields__}


def test_model_spikes_are_binary_and_fire() -> None:
    model = _model()
    idx = torch.randint(0, 11, (2, 24), generator=torch.Generator().manual_seed(6))
    outputs: list[torch.Tensor] = []
    for block in model.blocks:
        block.lif1.register_forward_hook(lambda _m, _i, out: outputs.append(out))
    with torch.no_grad():
        model(idx)
    spikes = torch.cat([o.flatten() for o in outputs])
    assert set(spikes.unique().tolist()) == {0.0, 1.0}


@pytest.mark.parametrize(("n_layer", "c", "vocab"), [(1, 8, 5), (2, 16, 11), (3, 24, 7)])
def test_parameter_count_matches_published_formula(n_layer: int, c: int, vocab: int) -> None:
    # REFERENCE.md §3.2: params = 13 C^2 L + 2 V C + 7 C L + 2 C (2 L + 2), exact for the 46M model.
    model = SpikeGPT(SpikeGPTConfig(vocab_size=vocab, n_layer=n_layer, n_embd=c))
    expected = 13 * c * c * n_layer + 2 * vocab * c + 7 * c * n_layer + 2 * c * (2 * n_layer + 2)
    assert sum(p.numel() for p in model.parameters()) == expected


def test_single_layer_init_has_no_division_by_zero() -> None:
    model = SpikeGPT(SpikeGPTConfig(vocab_size=5, n_layer=1, n_embd=8))
    for name, p in model.named_parameters():
        assert torch.isfinite(p).all(), name
    # Layer 0 of any depth: decay from -5 to 3 across channels, mix_k = (i / C)^1.
    assert model.blocks[0].att.time_decay[0].item() == pytest.approx(-5.0)
    assert model.blocks[0].att.time_decay[-1].item() == pytest.approx(3.0)
    assert model.blocks[0].att.time_mix_k.view(-1)[4].item() == pytest.approx(0.5)


# -------------------- loader


def _published_state_dict(n_layer: int = 2, c: int = 16, vocab: int = 11) -> dict[str, torch.Tensor]:
    """A synthetic state dict with the key names and shapes of REFERENCE.md §3.2, built by hand."""
    g = torch.Generator().manual_seed(7)
    sd = {"emb.weight": torch.randn(vocab, c, generator=g), "head.weight": torch.randn(vocab, c, generator=g)}
    for name in ("ln_out", "blocks.0.ln0"):
        sd[f"{name}.weight"], sd[f"{name}.bias"] = torch.ones(c), torch.zeros(c)
    for l in range(n_layer):
        p = f"blocks.{l}"
        for ln in ("ln1", "ln2"):
            sd[f"{p}.{ln}.weight"], sd[f"{p}.{ln}.bias"] = torch.ones(c), torch.zeros(c)
        sd[f"{p}.att.time_decay"], sd[f"{p}.att.time_first"] = torch.randn(c, generator=g), torch.zeros(c)
        for mix in ("k", "v", "r"):
            sd[f"{p}.att.time_mix_{mix}"] = torch.rand(1, 1, c, generator=g)
        for lin in ("key", "value", "receptance", "output"):
            sd[f"{p}.att.{lin}.weight"] = torch.randn(c, c, generator=g) / 4
        sd[f"{p}.ffn.time_mix_k"], sd[f"{p}.ffn.time_mix_r"] = torch.rand(1, 1, c), torch.rand(1, 1, c)
        sd[f"{p}.ffn.key.weight"] = torch.randn(4 * c, c, generator=g) / 4
        sd[f"{p}.ffn.receptance.weight"] = torch.randn(c, c, generator=g) / 4
        sd[f"{p}.ffn.value.weight"] = torch.randn(c, 4 * c, generator=g) / 8
    return sd


def test_loader_accepts_published_layout_and_infers_config() -> None:
    sd = _published_state_dict()
    cfg, model = load_published_state_dict(sd)
    assert (cfg.n_layer, cfg.n_embd, cfg.vocab_size, cfg.binary_embedding) == (2, 16, 11, True)
    assert torch.equal(model.blocks[1].ffn.value.weight, sd["blocks.1.ffn.value.weight"])
    assert torch.equal(model.blocks[0].att.time_decay, sd["blocks.0.att.time_decay"])
    with torch.no_grad():
        logits = model(torch.arange(11).view(1, 11))
    assert logits.shape == (1, 11, 11) and torch.isfinite(logits).all()


def test_loader_accepts_flat_time_mix_and_half_precision() -> None:
    sd = {k: (v.view(-1) if "time_mix" in k else v).half() for k, v in _published_state_dict().items()}
    _, model = load_published_state_dict(sd, binary_embedding=False)
    assert model.blocks[0].att.time_mix_v.shape == (1, 1, 16)
    assert model.emb.weight.dtype == torch.float32 and not model.cfg.binary_embedding


def test_loader_rejects_missing_key_naming_it() -> None:
    sd = _published_state_dict()
    del sd["blocks.1.att.time_first"]
    with pytest.raises(CheckpointFormatError, match=re.escape("'blocks.1.att.time_first'")):
        load_published_state_dict(sd)


def test_loader_rejects_unexpected_key_and_wrong_shape() -> None:
    sd = _published_state_dict()
    sd["blocks.0.att.head_q.weight"] = torch.zeros(2, 16)
    with pytest.raises(CheckpointFormatError, match=re.escape("unexpected key 'blocks.0.att.head_q.weight'")):
        load_published_state_dict(sd)
    sd = _published_state_dict()
    sd["blocks.0.ffn.key.weight"] = torch.zeros(16, 16)
    message = "'blocks.0.ffn.key.weight' has shape (16, 16)"
    with pytest.raises(CheckpointFormatError, match=re.escape(message)):
        load_published_state_dict(sd)


# -------------------- checkpoint


WIDE_CKPT = CHECKPOINT_DIR / "spikegpt-char-2x128.pt"
WIDE_CARD = CHECKPOINT_DIR / "spikegpt-char-2x128.md"


def _card_value(label: str, card: Path = SPIKING_CARD) -> float:
    match = re.search(rf"{re.escape(label)}\D*?([0-9]+\.[0-9]+)", card.read_text())
    assert match, f"{label} not in {card}"
    return float(match.group(1))


@pytest.mark.parametrize(
    ("checkpoint", "card", "card_label", "spiking"),
    [
        (SPIKING_CKPT, SPIKING_CARD, "Validation BPC (spiking)", True),
        (CHECKPOINT_DIR / "spikegpt-char-2x64-ann.pt", SPIKING_CARD, "Validation BPC (ANN twin)", False),
        (WIDE_CKPT, WIDE_CARD, "Validation BPC (spiking)", True),
        (CHECKPOINT_DIR / "spikegpt-char-2x128-ann.pt", WIDE_CARD, "Validation BPC (ANN twin)", False),
    ],
)
def test_shipped_checkpoint_reproduces_card_bpc(checkpoint: Path, card: Path, card_label: str, spiking: bool) -> None:
    model, vocab = load_checkpoint(checkpoint)
    assert model.cfg.spiking is spiking and len(vocab) == model.cfg.vocab_size
    assert checkpoint.stat().st_size <= 5 * 2**20
    metrics = evaluate(checkpoint)
    assert metrics["val_bpc"] == pytest.approx(_card_value(card_label, card), rel=0.02)
    if spiking:
        assert len(metrics["firing_rates"]) == 4
        assert all(0.0 < rate < 1.0 for rate in metrics["firing_rates"].values())


@pytest.mark.parametrize(("card", "low", "high"), [(SPIKING_CARD, 0.10, 0.16), (WIDE_CARD, 0.0, 0.10)],
                         ids=("2x64", "2x128"))
def test_card_twin_gap(card: Path, low: float, high: float) -> None:
    """Both card values are re-checked against their checkpoints above. 2 × 64: the measured +15.0 %, above the
    seeds' 10 % (its card shows the gap against steps, width and distillation); 2 × 128, distilled from its twin:
    +8.2 %, within it."""
    gap = _card_value("Validation BPC (spiking)", card) / _card_value("Validation BPC (ANN twin)", card) - 1
    assert low < gap <= high


def test_train_writes_a_loadable_checkpoint(tmp_path: Path) -> None:
    out = tmp_path / "tiny.pt"
    metrics = train(out, steps=2, seed=3, progress=False, eval_chars=640)
    checkpoint = torch.load(out, weights_only=True)
    assert checkpoint["family"] == "spikegpt" and checkpoint["metrics"] == metrics
    assert checkpoint["config"]["n_layer"] == 2 and checkpoint["config"]["spiking"] is True
    assert sorted(metrics["firing_rates"]) == [f"blocks.{l}.lif{i}" for l in (0, 1) for i in (1, 2)]
    model, _ = load_checkpoint(out)
    assert metrics["val_chars"] == 640 and metrics["steps"] == 2
    assert metrics["val_bpc"] == pytest.approx(evaluate(out, n_chars=640)["val_bpc"], rel=1e-6)
    assert not model.training


def test_validation_curve_is_recorded_without_changing_the_trained_weights(tmp_path: Path) -> None:
    curved = train(tmp_path / "a.pt", steps=4, seed=3, progress=False, eval_chars=640, curve_every=2)
    plain = train(tmp_path / "b.pt", steps=4, seed=3, progress=False, eval_chars=640, curve_every=0)
    # a point after step 2 and the final one, which is the checkpoint's own metric (rounded to 4 places)
    assert [point[0] for point in curved["val_bpc_curve"]] == [2, 4]
    assert curved["val_bpc_curve"][1][1] == round(curved["val_bpc"], 4)
    assert plain["val_bpc_curve"] == [[4, round(plain["val_bpc"], 4)]]
    assert curved["val_bpc"] == plain["val_bpc"]
    a = torch.load(tmp_path / "a.pt", weights_only=True)["state_dict"]
    b = torch.load(tmp_path / "b.pt", weights_only=True)["state_dict"]
    assert all(torch.equal(a[k], b[k]) for k in a)  # evaluating between steps changed no weight


def test_generate_is_greedy_and_deterministic() -> None:
    first = generate(SPIKING_CKPT, "The ", 20)
    assert len(first) == len("The ") + 20 and first.startswith("The ") and first == generate(SPIKING_CKPT, "The ", 20)
