"""The reference executor's fast paths give the integers of the plain int64, step-by-step arithmetic.

Two shortcuts (runtime/neurons.py `narrow_dtype`, runtime/reference.py `_readout_cannot_saturate`) exist for speed
only (bench/runtime_speed.py); these tests pin them to the definition, at the edges where they could differ:
negative membranes (floor vs truncation of the split carry product), saturation, and the fallback conditions.
"""

import dataclasses

import numpy as np
from spikestack.runtime import reference
from spikestack.runtime.neurons import BiSpikeTables, bispike_step, narrow_dtype

STATE_MAX = (1 << 23) - 1  # Loihi 2's 24-bit signed state (loihi2 target)


def _tables(levels: int, carry_max: int, rng) -> BiSpikeTables:
    steps = 4
    thresholds = np.sort(rng.integers(1, 20_000, (steps, levels)), axis=1)
    carry = rng.integers(0, carry_max + 1, (steps, 2 * levels + 1))
    return BiSpikeTables(thresholds=thresholds, carry=carry, carry_shift=12, levels=levels, state_max=STATE_MAX)


def test_int32_step_equals_int64_step_including_saturation():
    rng = np.random.default_rng(7)
    for levels in (1, 2, 3):
        tables = _tables(levels, carry_max=12_491, rng=rng)  # the shipped MLP's largest carry (×2^-12)
        assert narrow_dtype(tables) is np.int32
        # inputs up to state_max drive some membranes into saturation, negative ones test the floor of the split
        x = rng.integers(-STATE_MAX, STATE_MAX + 1, (4, 3000))
        x[:, :1000] //= 1000
        u64 = s64 = np.zeros(3000, np.int64)
        u32, s32 = np.zeros(3000, np.int32), np.zeros(3000, np.int8)
        for t in range(4):
            u64, s64, sat64 = bispike_step(u64, s64, x[t], t, tables)
            u32, s32, sat32 = bispike_step(u32, s32, x[t].astype(np.int32), t, tables)
            assert u32.dtype == np.int32 and s32.dtype == np.int8
            np.testing.assert_array_equal(u32, u64)
            np.testing.assert_array_equal(s32, s64)
            np.testing.assert_array_equal(sat32, sat64)
        assert sat64.any() and (u64 < 0).any() and (s64 == -levels).any()


def test_narrow_dtype_falls_back_when_the_split_product_could_overflow():
    rng = np.random.default_rng(0)
    assert narrow_dtype(_tables(1, carry_max=1 << 18, rng=rng)) is np.int32
    assert narrow_dtype(_tables(1, carry_max=1 << 20, rng=rng)) is np.int64  # 2^11 · 2^20 > 2^31


def _mlp_program():
    from spikestack.compiler.pipeline import compile_graph
    from spikestack.models.bispike_mlp import load_checkpoint
    from spikestack.models.nir.export import bispike_mlp_to_nir

    from spikestack.demo import SHIPPED

    model, _ = load_checkpoint(SHIPPED)
    return compile_graph(bispike_mlp_to_nir(model), "loihi2")


def test_summed_readout_equals_the_stepwise_readout(monkeypatch):
    program = _mlp_program()
    ids = np.random.default_rng(1).integers(0, program.host_input.table.shape[0], (300, program.host_input.context))
    last = program.populations[-2]
    proj = next(p for p in program.projections if p.src == last.name)
    # the shipped model's bound, by hand: T · max|a_t| · K · max_i Σ_j |w_ij| <= state_max, so the fast path
    reach = int(np.abs(proj.weight.astype(np.int64)).sum(1).max()) * int(np.abs(last.amplitude).max()) * last.levels
    assert program.steps * reach <= program.state_max
    assert reference._readout_cannot_saturate(program, last, proj)
    assert not reference._readout_cannot_saturate(dataclasses.replace(program, steps=program.state_max), last, proj)
    fast = reference.run(program, ids)
    monkeypatch.setattr(reference, "_readout_cannot_saturate", lambda *a: False)
    slow = reference.run(program, ids)
    np.testing.assert_array_equal(fast.readout, slow.readout)
    np.testing.assert_array_equal(fast.logits, slow.logits)
    assert fast.saturations == slow.saturations
    for name in fast.spikes:
        np.testing.assert_array_equal(fast.spikes[name], slow.spikes[name])
