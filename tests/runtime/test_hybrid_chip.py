"""runtime/hybrid/chip.py and runtime/neurons.py fast paths against plain integer definitions: the projection's
float32 / float64 and row-by-row / gemm paths, the truncating LIF decay, and the bi-spike step with saturation."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st
from spikestack.compiler.hybrid.ir import QChipLayer, QChipProjection, RelayLayer
from spikestack.compiler.ir import frozen_array
from spikestack.compiler.targets import load_target
from spikestack.runtime.hybrid.chip import FEW_ROWS, LayerState, chip_call, project, projection_dtype
from spikestack.runtime.neurons import BiSpikeTables, _decay, bispike_step


def _relay(rng: np.random.Generator, width: int, out: int, n_groups: int, levels: int) -> QChipLayer:
    weight = 2 * rng.integers(-127, 128, size=(out, width))  # even 8-bit mantissas, as the compiler emits
    groups = rng.integers(0, n_groups, size=width)
    proj = QChipProjection(name="lin", weight=frozen_array(weight.astype(np.int16)), unit=1.0, message_bits=8,
                           groups=frozen_array(groups.astype(np.int8)), n_groups=n_groups)
    return RelayLayer(name="relay", width=width, steps=1, input="in", output="out", in_unit=1.0,
                      payload_unit=1.0, segment=0, levels=levels, projection=proj)


def _exact(layer: QChipLayer, payloads: np.ndarray) -> np.ndarray:
    """acc[..., g, o] = Σ_steps Σ_{i ∈ g} weight[o, i] · payload_i in int64."""
    p = layer.projection
    total = payloads.sum(0)
    w = np.asarray(p.weight, np.int64)
    return np.stack([total @ np.where(np.asarray(p.groups) == g, w, 0).T for g in range(p.n_groups)], axis=-2)


@settings(max_examples=60, deadline=None)
@given(st.integers(0, 2**31), st.sampled_from([1, 2, 3]), st.sampled_from([1, FEW_ROWS, FEW_ROWS + 1, 50]),
       st.sampled_from([1, 7, 1 << 16]))
def test_projection_is_exact_on_every_path(seed, n_groups, positions, levels):
    """levels 2^16 with 60 × 254 weights exceeds 2^24: float64; small levels: float32. Peak payloads everywhere."""
    rng = np.random.default_rng(seed)
    layer = _relay(rng, width=60, out=9, n_groups=n_groups, levels=levels)
    x = rng.choice([-levels, levels, 0, 1], size=(positions, 60))
    want_dtype = np.float32 if levels * np.abs(np.asarray(layer.projection.weight, np.int64)).sum(1).max() < 2**24 \
        else np.float64
    assert projection_dtype(layer) is want_dtype
    out, payloads = chip_call(layer, x, LayerState(), 0, load_target("loihi2"))
    assert out.dtype == np.int64 and out.shape == (positions, n_groups, 9)
    np.testing.assert_array_equal(out, _exact(layer, payloads))
    np.testing.assert_array_equal(project(layer, payloads), out)  # without the cached weight


def test_relay_counts_and_clips_out_of_range_events():
    layer = _relay(np.random.default_rng(0), width=4, out=2, n_groups=1, levels=3)
    state = LayerState()
    _, payloads = chip_call(layer, np.array([[5, -7, 3, -3]]), state, 0, load_target("loihi2"))
    assert payloads.tolist() == [[[3, -3, 3, -3]]] and state.saturations == 2


@given(st.lists(st.integers(-(1 << 40), 1 << 40), min_size=1, max_size=20), st.integers(0, 4096),
       st.sampled_from([8, 12, 16]))
def test_decay_truncates_toward_zero(xs, keep, shift):
    x = np.array(xs, np.int64)
    prod = x * keep
    np.testing.assert_array_equal(_decay(x, keep, shift), np.sign(prod) * (np.abs(prod) >> shift))


@settings(max_examples=60, deadline=None)
@given(st.integers(0, 2**31), st.sampled_from([1, 2, 3]), st.sampled_from([50, 5000, (1 << 23) - 1]))
def test_bispike_step_equals_the_formula(seed, levels, state_max):
    """REFERENCE.md §1.1 in fixed point (runtime/neurons.py docstring), written out with np.clip and K comparisons."""
    rng = np.random.default_rng(seed)
    steps, shift = 3, 8
    tables = BiSpikeTables(thresholds=np.sort(rng.integers(1, 3000, size=(steps, levels)), axis=1),
                           carry=rng.integers(0, 400, size=(steps, 2 * levels + 1)), carry_shift=shift,
                           levels=levels, state_max=state_max)
    u = s = u_ref = s_ref = None
    for t in range(steps):
        x = rng.integers(-6000, 6000, size=(2, 5))
        u, s, sat = bispike_step(u, s, x, t, tables)
        if t == 0:
            raw = x.copy()
        else:
            raw = ((u_ref * tables.carry[t - 1][s_ref + levels] + (1 << (shift - 1))) >> shift) + x
        u_ref = np.clip(raw, -state_max, state_max)
        theta = tables.thresholds[t]
        s_ref = (u_ref[..., None] > theta).sum(-1) - (u_ref[..., None] < -theta).sum(-1)
        np.testing.assert_array_equal(u, u_ref)
        np.testing.assert_array_equal(s, s_ref)
        np.testing.assert_array_equal(sat, np.abs(raw) > state_max)
        assert s.dtype == np.int64 and u.dtype == np.int64
