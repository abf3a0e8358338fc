"""Hybrid programs (the LM families) with their chip segments on Lava's CPU backend (Loihi2SimCfg, fixed_pt) must
agree with the numpy reference chip (and the torch chip) bit for bit: every layer's payloads at every call and
step, every chip → host tensor, the logits and the saturation counts."""

from __future__ import annotations

from functools import cache
from pathlib import Path

import numpy as np
import pytest
from spikestack.compiler.hybrid.ir import (
    BiSpikeLayer,
    GIFLayer,
    HybridProgram,
    LIFLayer,
    QChipLayer,
    QChipProjection,
    frozen_array,
)
from spikestack.compiler.targets import load_target
from spikestack.runtime.hybrid.executor import ReferenceChip, run
from spikestack.runtime.hybrid.verify import first_divergence, generate_ids
from spikestack.runtime.lava.hybrid_chip import LavaChip

pytestmark = pytest.mark.lava

CHECKPOINTS = Path(__file__).resolve().parents[1] / "models" / "checkpoints"
FAMILIES = [("spikegpt", "spikegpt-char-2x64"), ("spikelm-dec", "spikelm-dec-tiny"),
            ("spikellm", "spikellm-char-tiny"), ("spikelm-enc", "spikelm-enc-tiny")]


@cache
def _compiled(family: str, checkpoint: str, dataflow: bool = False) -> tuple[HybridProgram, np.ndarray]:
    from spikestack.compiler.hybrid.compile import compile_hybrid
    from spikestack.models.data import load_corpus
    from spikestack.models.nir.export import model_to_nir

    ids = load_corpus().val_ids[:64].reshape(4, 16)  # calibration: 4 sequences × 16 characters
    graph = model_to_nir(family, CHECKPOINTS / f"{checkpoint}.pt")
    return compile_hybrid(graph, "loihi2", ids, dataflow=dataflow), ids


@pytest.mark.parametrize("family,checkpoint", FAMILIES)
def test_shipped_family_on_lava_equals_reference(family, checkpoint):
    _assert_lava_equals_reference(*_compiled(family, checkpoint))


def test_spikegpt_dataflow_on_lava_equals_reference():
    """The dataflow fold (compiler/hybrid/fold.py): the 11 folded Linears run as relay layers (host-injected
    graded events [e; S] into a Sparse projection, traced by a StepLog) beside the 4 LIF layers."""
    program, ids = _compiled("spikegpt", "spikegpt-char-2x64", dataflow=True)
    relays = [la for la in program.layers if la.kind == "relay"]
    assert len(relays) == 11 and {la.kind for la in program.layers} == {"relay", "lif"}
    # column groups: e and S, except block 0's time mix, which reads LN0(e) before any LIF has spiked
    assert {la.name: la.projection.n_groups for la in relays if la.projection.n_groups == 1} == {
        f"blocks.0.att_{n}": 1 for n in ("key", "value", "receptance")}
    ref = _assert_lava_equals_reference(program, ids)
    for la in relays:  # events reached every relay, within the compiled payload bound
        assert 1 <= int(np.abs(ref.payloads[la.name]).max()) <= la.levels
    assert max(int(np.abs(ref.payloads[la.name]).max()) for la in relays) >= 2  # graded: S counts several LIFs


def test_spikegpt_2x128_dataflow_on_lava_equals_reference():
    """The SpikeGPT checkpoint within 10 % of its twin (issue 16), folded: every payload equal on Lava."""
    _assert_lava_equals_reference(*_compiled("spikegpt", "spikegpt-char-2x128", dataflow=True))


@pytest.mark.parametrize("encoding", ["unary", "bitserial"])
def test_binary_encodings_on_lava_equal_reference(encoding):
    """SpikeLLM's GIF spikes as binary planes: a plane encoder then stock Sparse synapses (bit-serial: one per
    bit, weight_exp = b) — Lava's integer accumulators equal the literal plane sums of the reference chip."""
    from spikestack.compiler.hybrid.compile import compile_hybrid
    from spikestack.models.data import load_corpus
    from spikestack.models.nir.export import model_to_nir

    ids = load_corpus().val_ids[:64].reshape(4, 16)
    graph = model_to_nir("spikellm", CHECKPOINTS / "spikellm-char-tiny.pt")
    program = compile_hybrid(graph, "loihi2", ids, encoding=encoding)
    assert {la.projection.encoding for la in program.layers} == {encoding}
    _assert_lava_equals_reference(program, ids)


def test_spikegpt_dataflow_for_loihi1_on_lava():
    """The dataflow fold compiled for Loihi 1 (binary spikes only): bit-serial and unary relays on Lava."""
    from spikestack.compiler.hybrid.compile import compile_hybrid
    from spikestack.models.data import load_corpus
    from spikestack.models.nir.export import model_to_nir

    ids = load_corpus().val_ids[:64].reshape(4, 16)
    graph = model_to_nir("spikegpt", CHECKPOINTS / "spikegpt-char-2x64.pt")
    program = compile_hybrid(graph, "loihi1", ids, dataflow=True)
    assert {"bitserial", "unary"} <= set(program.report["encodings"].values())
    _assert_lava_equals_reference(program, ids)


def test_spikellm_kv_cache_generation_on_lava_equals_reference():
    """Token-by-token SpikeLLM on Lava through the KV-cache program: one position per call, so the per-layer
    networks are built once for the whole generation; the text equals the reference's."""
    program, ids = _compiled("spikellm", "spikellm-char-tiny")
    assert program.decode_stages
    prompt = [int(t) for t in ids[2, :3]]
    assert generate_ids(program, prompt, 3, LavaChip) == generate_ids(program, prompt, 3, ReferenceChip)


def _assert_lava_equals_reference(program: HybridProgram, ids: np.ndarray):
    """Three-way: the torch chip, the numpy reference and Lava on the same input (issue #6's verification)."""
    from spikestack.runtime.hybrid.torch_chip import TorchChip

    x = ids[1:2, :4]  # 1 sequence × 4 tokens (not the first calibration row)
    ref, lava = run(program, x), run(program, x, chip=LavaChip())
    assert first_divergence(program, ref, lava, ("reference", "lava")) is None
    assert first_divergence(program, ref, run(program, x, chip=TorchChip()), ("reference", "torch")) is None
    assert set(lava.payloads) == {la.name for la in program.layers}
    for name, p in ref.payloads.items():
        np.testing.assert_array_equal(p, lava.payloads[name], err_msg=name)
    assert set(ref.host_tensors) == set(lava.host_tensors)
    for name, t in ref.host_tensors.items():
        np.testing.assert_array_equal(t, lava.host_tensors[name], err_msg=name)
    np.testing.assert_array_equal(ref.logits, lava.logits)
    assert lava.saturations == ref.saturations
    assert ref.events() > 100  # real activity was compared
    return ref


def test_spikegpt_generation_on_lava_equals_reference():
    """Streaming state (LIF membranes) carries across the prompt and the generated tokens on one Lava network."""
    program, ids = _compiled("spikegpt", "spikegpt-char-2x64")
    prompt = [int(i) for i in ids[2, :3]]
    assert generate_ids(program, prompt, 2, LavaChip) == generate_ids(program, prompt, 2, ReferenceChip)


# --- hand-made layers: every kind, with and without a projection, groups, saturation, state across calls


def _projection(rng: np.random.Generator, name: str, width: int, out: int, message_bits: int,
                n_groups: int = 1) -> QChipProjection:
    weight = 2 * rng.integers(-127, 128, size=(out, width))  # even 8-bit mantissas, as the compiler emits
    groups = rng.integers(0, n_groups, size=width)
    return QChipProjection(name=name, weight=frozen_array(weight.astype(np.int16)), unit=1.0,
                           message_bits=message_bits, groups=frozen_array(groups.astype(np.int8)), n_groups=n_groups)


def _hand_layers(rng: np.random.Generator) -> tuple[QChipLayer, ...]:
    period, k = 3, 2  # bi-spike: 3 calls per token, levels −2 … 2
    common = dict(in_unit=1.0, payload_unit=1.0, segment=0)
    bispike = dict(width=6, steps=1, levels=k, period=period, carry_shift=8,
                   thresholds=frozen_array(np.array([[40, 90], [30, 70], [50, 120]], np.int64)),
                   carry=frozen_array(rng.integers(64, 256, size=(period, 2 * k + 1)).astype(np.int64)),
                   amplitude=frozen_array(np.array([3, 5, 2], np.int64)))
    gif = dict(width=5, steps=3, levels=4)  # s_k ≤ 3, charge empties in 3 steps
    lif = dict(width=4, steps=1, du=4095, dv=2048, vth=40)
    return (
        BiSpikeLayer(name="b_proj", input="in:b_proj", output="out:b_proj", **bispike, **common,
                     projection=_projection(rng, "w_b", 6, 3, message_bits=5)),
        BiSpikeLayer(name="b_bare", input="in:b_bare", output="out:b_bare", **bispike, **common),
        GIFLayer(name="g_proj", input="in:g_proj", output="out:g_proj", **gif, **common,
                 projection=_projection(rng, "w_g", 5, 4, message_bits=2, n_groups=2)),
        GIFLayer(name="g_bare", input="in:g_bare", output="out:g_bare", **gif, **common),
        LIFLayer(name="l_proj", input="in:l_proj", output="out:l_proj", **lif, **common,
                 projection=_projection(rng, "w_l", 4, 3, message_bits=0)),
    )


def _inputs(rng: np.random.Generator, layers, lead) -> dict[str, np.ndarray]:
    out = {}
    for la in layers:
        if la.kind == "bispike":  # mostly in range, a few beyond the 24-bit state (saturation)
            x = rng.integers(-150, 150, size=(*lead, la.width))
            x.reshape(-1)[rng.integers(0, x.size, 2)] = (1 << 23) + 5
        elif la.kind == "gif":  # charges up to 3 steps × 3, a few above (clipped by the steps) and negative
            x = rng.integers(-2, 12, size=(*lead, la.width))
        else:
            x = rng.integers(-20, 60, size=(*lead, la.width))
        out[la.input] = x.astype(np.int32)
    return out


def test_hand_made_layers_on_lava_equal_reference():
    rng = np.random.default_rng(5)
    layers = _hand_layers(rng)
    program = HybridProgram(family="hand", target="loihi2", target_spec=load_target("loihi2"), time_axis="steps",
                            steps_per_token=3, vocab_size=0, layers=layers, stages=())
    lead = (2, 3)  # 2 sequences × 3 positions: 6 copies of every layer, block-diagonal projections
    ref, lava = ReferenceChip(), LavaChip()
    try:
        for sequence in range(2):  # the second reuses the Lava networks after a reset (state cleared)
            ref.reset(program, lead)
            lava.reset(program, lead)
            for call in range(5):  # bi-spike period 3: resets at call 3
                x = _inputs(rng, layers, lead)
                (out_r, pay_r), (out_l, pay_l) = ref.segment(list(layers), x, call), lava.segment(list(layers), x, call)
                for la in layers:
                    where = f"sequence {sequence}, call {call}, layer {la.name}"
                    np.testing.assert_array_equal(pay_r[la.name], pay_l[la.name], err_msg=where)
                    np.testing.assert_array_equal(out_r[la.output], out_l[la.output], err_msg=where)
                    assert out_l[la.output].shape == out_r[la.output].shape
            assert lava.saturations() == ref.saturations()
        sats = ref.saturations()
        assert sats["b_proj"] > 0 and sats["g_proj"] > 0  # the saturation paths were exercised
        assert int(np.abs(pay_r["b_proj"]).max()) >= 2 * 3 and int(pay_r["g_proj"].max()) == 3  # graded payloads
    finally:
        lava.close()
