"""The weight-mantissa width comes from the target (`weight_mantissa_bits`, issue #12): q in [-(2^(b-1) - 1),
2^(b-1) - 1], stored m = 2q; the shipped targets (b = 8) keep |q| <= 127, a 6-bit target gives |q| <= 31, and the
Lava backend hands b-bit weights to Lava's stock Dense/Sparse on its 8-bit scale, or refuses the width by name."""

from dataclasses import replace

import numpy as np
import pytest
from spikestack.compiler.hybrid.quantize import mantissas
from spikestack.compiler.passes.mantissas import weight_mantissa_max
from spikestack.compiler.pipeline import compile_graph
from spikestack.compiler.targets import available_targets, load_target
from spikestack.runtime import reference, torch_fakequant
from spikestack.runtime.lava import lava_weight_bits, lava_weights
from spikestack.runtime.verify import first_divergence

from spikestack.errors import TargetLimitError
from tests.compiler.test_lif import _one_neuron
from tests.conftest import make_lif_graph, make_nir_chain

W6 = replace(load_target("loihi2"), name="w6", weight_mantissa_bits=6)  # q_max = 2^5 - 1 = 31, |m| <= 62


def _all_weights(program) -> np.ndarray:
    return np.concatenate([np.asarray(p.weight, np.int64).ravel() for p in program.projections])


def test_shipped_targets_keep_8_bit_mantissas():
    shipped = {t: weight_mantissa_max(load_target(t)) for t in available_targets()}
    assert {"generic", "loihi1", "loihi2"} <= set(shipped) and set(shipped.values()) == {127}
    assert weight_mantissa_max(W6) == 31


def test_hybrid_mantissas_by_hand():
    """w = (1, -0.3). b = 8: e = ceil(log2(1/127)) = -6, q = (64, round(-19.2) = -19), m = (128, -38).
    b = 6: e = ceil(log2(1/31)) = -4, q = (16, round(-4.8) = -5), m = (32, -10)."""
    w = np.array([[1.0, -0.3]])
    m8, e8 = mantissas(w, 1, "p", load_target("loihi2"))
    m6, e6 = mantissas(w, 1, "p", W6)
    assert (m8.tolist(), e8) == ([[128, -38]], -6)
    assert (m6.tolist(), e6) == ([[32, -10]], -4)


def test_six_bit_lif_neuron_by_hand():
    """W_eff = 2·0.25 = 0.5: e = ceil(log2(0.5/31)) = -5, q = 16, m = 32 (8 bits: m = 128, test_lif.py); one
    mantissa unit is 2^-6 in v, so vth = round(1/2^-6) = 64. Every number is the 8-bit one / 4, so the spike
    lands on the same step: u = 32 << 6 = 2048, v = 2048, 3584, 4736 > 64 << 6 = 4096 at t3."""
    p = compile_graph(_one_neuron(2.0), replace(W6, name="w6l1", max_payload_bits=1))
    assert p.projections[0].weight.tolist() == [[32]] and p.populations[0].vth == 64
    assert reference.run(p, np.ones((1, 6, 1), np.int64)).spikes["lif"][0, :, 0].tolist() == [0, 0, 0, 1, 0, 0]


@pytest.mark.parametrize("levels", [1, 3])
def test_six_bit_bispike_chain_is_bit_exact_on_reference_and_torch(levels):
    program = compile_graph(make_nir_chain(seed=4, levels=levels, hidden=9), W6)
    w = _all_weights(program)
    # |q| <= 31 → |m| <= 62; the peak q = round(peak / 2^e) with 2^e the smallest power >= peak/31 is >= 16
    assert int(np.abs(w).max()) <= 62 and int(np.abs(w).max()) >= 32 and not np.any(w % 2)
    ids = np.random.default_rng(5).integers(0, 11, size=(12, 2))
    a, b = reference.run(program, ids), torch_fakequant.run(program, ids)
    assert first_divergence(program, a, b, ("reference", "torch")) is None
    np.testing.assert_array_equal(a.readout, b.readout)
    assert sum(int((s != 0).sum()) for s in a.spikes.values()) > 0


def test_six_bit_lif_chain_keeps_q_within_31():
    program = compile_graph(make_lif_graph(seed=3, hidden=16, steps=20), W6)
    w = _all_weights(program)
    assert int(np.abs(w).max()) <= 62 and int(np.abs(w).max()) >= 32 and not np.any(w % 2)


def test_lava_weights_survive_lavas_clip_and_truncation():
    """Lava's own clip and truncation (lava/utils/weightutils.py) on the scaled weights, then the accumulator and
    its weight_exp shift, give Σ m·s·2^exp for every width b in 2..8 and both signs of exp."""
    from lava.utils.weightutils import SignMode, clip_weights, truncate_weights

    rng = np.random.default_rng(0)
    s = rng.integers(-3, 4, size=(5,))
    for bits in range(2, 9):
        q_max = (1 << (bits - 1)) - 1
        m = 2 * rng.integers(-q_max, q_max + 1, size=(4, 5)).astype(np.int32)
        m[0, 0], m[0, 1] = 2 * q_max, -2 * q_max  # both extremes, mixed sign
        for exp in (0, 2):
            lw, lexp, nwb = lava_weights(m, exp, replace(W6, weight_mantissa_bits=bits))
            assert nwb == bits and lexp == exp - (8 - bits)
            kept = truncate_weights(clip_weights(lw, SignMode.MIXED, num_bits=8), SignMode.MIXED, nwb)
            np.testing.assert_array_equal(kept, lw)
            acc = kept @ s
            got = np.left_shift(acc, lexp) if lexp > 0 else np.right_shift(acc, -lexp)
            np.testing.assert_array_equal(got, (m @ s) << exp)


def test_widths_outside_the_range_are_refused_by_name():
    with pytest.raises(TargetLimitError, match=r"^target w9: \[numerics\] weight_mantissa_bits = 9, but Lava's "
                                               r"stock fixed_pt Dense and Sparse .* hold 2 to 8-bit weights only"):
        lava_weight_bits(replace(W6, name="w9", weight_mantissa_bits=9))
    for bits in (1, 16):
        with pytest.raises(TargetLimitError, match=rf"^target w: \[numerics\] weight_mantissa_bits = {bits}, but "
                                                   r"the compiler stores weights m = 2q as int16"):
            compile_graph(make_nir_chain(), replace(W6, name="w", weight_mantissa_bits=bits))


@pytest.mark.lava
def test_six_bit_programs_on_lava_equal_reference():
    from spikestack.runtime.lava import backend as lava_backend

    chain = compile_graph(make_nir_chain(seed=4, levels=3, hidden=9), W6)
    ids = np.random.default_rng(5).integers(0, 11, size=(4, 2))
    ref, lava = reference.run(chain, ids), lava_backend.run(chain, ids)
    assert first_divergence(chain, ref, lava, ("reference", "lava")) is None
    np.testing.assert_array_equal(ref.readout, lava.readout)
    lif = compile_graph(make_lif_graph(seed=3, hidden=16, steps=20), replace(W6, max_payload_bits=1))
    x = (np.random.default_rng(3).random((1, 20, 10)) < 0.3).astype(np.int64)
    ref, lava = reference.run(lif, x), lava_backend.run(lif, x)
    assert first_divergence(lif, ref, lava, ("reference", "lava")) is None
    assert int(ref.spikes["lif"].sum()) > 0


def test_ten_bit_language_model_compiles_and_runs_bit_exact_on_reference_and_torch():
    """Both verifiers read the width (issue #12): a 10-bit target gives a language model mantissas |m| <= 2·511
    = 1022, past the old fixed 254, and its chip layers still agree between the numpy and torch chips."""
    from pathlib import Path

    from spikestack.runtime.hybrid.verify import verify

    from spikestack import api

    w10 = replace(load_target("loihi2"), name="w10", weight_mantissa_bits=10)
    ckpt = Path(__file__).resolve().parents[2] / "models" / "checkpoints" / "spikellm-char-tiny.pt"
    program = api.compile(ckpt, w10)
    weights = np.concatenate([np.abs(np.asarray(la.projection.weight, np.int64)).ravel()
                              for la in program.layers if la.projection is not None])
    assert 254 < weights.max() <= 1022 and not np.any(weights % 2)
    _, problems = verify(program, np.arange(8, dtype=np.int64).reshape(1, 8) + 30, ("torch", "reference"))
    assert problems == []
