"""The reference executors' speed-ups (bench/runtime_speed.py, issue #17) give the integers of the plain paths.

Pinned here: the token loop in chunks (runtime/reference.py) against one chunk and against the int64 step; the
int32 bi-spike step's carry read by the level's byte against the index lookup and the int64 step, with saturation;
`gif_call` against `gif_step`; the int16 bi-spike payloads; `project(narrow=True)`; and the float weights shared
across runs (runtime/hybrid/chip.py), which must be rebuilt whenever anything they depend on differs.
"""

from __future__ import annotations

import dataclasses
import gc

import numpy as np
import pytest
from spikestack.compiler.hybrid.ir import QChipLayer, QChipProjection
from spikestack.compiler.ir import frozen_array
from spikestack.compiler.kinds import KINDS
from spikestack.compiler.targets import load_target
from spikestack.runtime import reference
from spikestack.runtime.hybrid import chip
from spikestack.runtime.hybrid.chip import LayerState, chip_call, project, shared_grouped_weight
from spikestack.runtime.kinds.bispike import payload_dtype
from spikestack.runtime.neurons import BiSpikeTables, bispike_step, bispike_step_count, carry_lookup, gif_call, gif_step

LOIHI2 = load_target("loihi2")
STATE_MAX = LOIHI2.state_max


@pytest.fixture(scope="module")
def mlp():
    from spikestack.compiler.pipeline import compile_graph
    from spikestack.models.bispike_mlp import load_checkpoint
    from spikestack.models.nir.export import bispike_mlp_to_nir

    from spikestack.demo import SHIPPED

    model, _ = load_checkpoint(SHIPPED)
    return compile_graph(bispike_mlp_to_nir(model), "loihi2")


def _same_trace(a, b) -> None:
    np.testing.assert_array_equal(a.readout, b.readout)
    np.testing.assert_array_equal(a.logits, b.logits)
    assert a.saturations == b.saturations and list(a.saturations) == list(b.saturations)
    assert a.spikes.keys() == b.spikes.keys()
    for name in a.spikes:
        assert a.spikes[name].dtype == b.spikes[name].dtype == np.int8
        np.testing.assert_array_equal(a.spikes[name], b.spikes[name])


def test_token_chunks_equal_one_pass_and_the_int64_step(mlp, monkeypatch):
    ids = np.random.default_rng(3).integers(0, mlp.host_input.table.shape[0], (301, mlp.host_input.context))
    chunked = reference.run(mlp, ids)  # 256 tokens per chunk at 128 neurons: one full chunk and a rest of 45
    assert reference.CHUNK_STATES // max(p.size for p in mlp.populations) < len(ids)
    monkeypatch.setattr(reference, "CHUNK_STATES", 1 << 30)
    whole = reference.run(mlp, ids)
    monkeypatch.setattr(reference, "CHUNK_STATES", 1)  # one token per chunk
    single = reference.run(mlp, ids[:40])
    monkeypatch.setattr(reference, "narrow_dtype", lambda tables: np.int64)  # the plain int64 step
    wide = reference.run(mlp, ids)
    _same_trace(chunked, whole)
    _same_trace(chunked, wide)
    _same_trace(single, reference.run(mlp, ids[:40]))
    assert single.readout.tolist() == chunked.readout[:40].tolist()
    assert sum(v.size for v in chunked.spikes.values()) == 301 * mlp.steps * 3 * 128


def _tables(levels: int, rng: np.random.Generator, with_lookup: bool) -> BiSpikeTables:
    steps = 4
    thresholds = np.sort(rng.integers(1, 20_000, (steps, levels)), axis=1)
    carry = rng.integers(0, 12_492, (steps, 2 * levels + 1))
    return BiSpikeTables(thresholds=thresholds, carry=carry, carry_shift=12, levels=levels, state_max=STATE_MAX,
                         carry_by_byte=carry_lookup(carry, levels) if with_lookup else None)


@pytest.mark.parametrize("levels", [1, 2, 5])
def test_byte_lookup_step_equals_the_index_lookup_and_int64(levels):
    rng = np.random.default_rng(levels)
    tables = _tables(levels, rng, with_lookup=True)
    x = rng.integers(-STATE_MAX, STATE_MAX + 1, (4, 5000))
    x[:, :2500] //= 1000  # most neurons in range, the rest saturating; both signs
    u64 = s64 = None
    u8 = s8 = u16 = s16 = None
    for t in range(4):
        u64, s64, sat64 = bispike_step(u64, s64, x[t], t, tables)
        u8, s8, count = bispike_step_count(u8, s8, x[t].astype(np.int32), t, tables, np.int32)  # byte lookup
        # the index lookup: int16 levels take the np.take(carry, s + K) branch
        u16, s16, sat16 = bispike_step(u16, None if s16 is None else s16.astype(np.int16), x[t].astype(np.int32), t,
                                       tables._replace(carry_by_byte=None), np.int32)
        assert u8.dtype == np.int32 and s8.dtype == np.int8
        np.testing.assert_array_equal(u8, u64)
        np.testing.assert_array_equal(s8, s64)
        np.testing.assert_array_equal(u16, u64)
        assert count == int(sat64.sum()) == int(sat16.sum())
    assert count > 0 and (s64 == -levels).any() and (s64 == levels).any()


def test_carry_lookup_reads_each_level_by_its_byte():
    carry = np.array([[10, 20, 30, 40, 50]])  # K = 2: levels -2..2
    table = carry_lookup(carry, 2)
    levels = np.array([-2, -1, 0, 1, 2], np.int8)
    assert table.dtype == np.int32 and table.shape == (1, 256)
    assert table[0][levels.view(np.uint8)].tolist() == [10, 20, 30, 40, 50]
    assert table[0, 3:254].tolist() == [0] * 251  # bytes no level has


@pytest.mark.parametrize(("levels", "steps", "dtype"), [(4, 1, np.int16), (4, 3, np.int16), (16, 2, np.int16),
                                                         ((1 << 15) + 1, 2, np.int64)])
def test_gif_call_equals_gif_steps(levels, steps, dtype):
    charge = np.random.default_rng(levels).integers(0, 3 * levels, (3, 50)).astype(np.int32)
    before = charge.copy()
    got = gif_call(charge, levels, steps)
    u, want = charge.astype(np.int64), []
    for _ in range(steps):
        u, s = gif_step(u, levels)
        want.append(s)
    assert got.dtype == dtype and got.shape == (steps, 3, 50)
    np.testing.assert_array_equal(got, np.stack(want))
    np.testing.assert_array_equal(charge, before)  # the host's tensor is not written


def _bispike_layer(amplitude: list[int], weight: np.ndarray | None = None) -> QChipLayer:
    proj = None
    if weight is not None:
        proj = QChipProjection(name="lin", weight=frozen_array(weight.astype(np.int16)), unit=1.0, message_bits=8,
                               groups=frozen_array(np.zeros(weight.shape[1], np.int8)), n_groups=1)
    return KINDS["bispike"].layer_type(
        name="toy", width=3, input="x", output="y", in_unit=1.0, payload_unit=1.0, segment=0, steps=1,
        thresholds=np.array([[2], [2]]), carry=np.full((2, 3), 2), carry_shift=1, amplitude=np.array(amplitude),
        period=2, levels=1, projection=proj)


def test_bispike_payloads_are_int16_where_they_fit():
    small, big = _bispike_layer([3, 5]), _bispike_layer([3, 1 << 15])
    assert payload_dtype(small) is np.int16 and payload_dtype(big) is np.int64
    for layer, a1 in ((small, 5), (big, 1 << 15)):
        state = LayerState()
        _, p0 = chip_call(layer, np.array([[5, -5, 1]], np.int32), state, 0, LOIHI2)
        _, p1 = chip_call(layer, np.array([[0, 0, 1]], np.int32), state, 1, LOIHI2)
        assert p0.dtype == p1.dtype == payload_dtype(layer)
        assert p0.tolist() == [[[3, -3, 0]]] and p1.tolist() == [[[a1, -a1, 0]]]  # u carried: (5, -5, 1 + 1)


def test_project_narrow_is_int32_only_on_the_float32_path():
    rng = np.random.default_rng(0)
    weight = 2 * rng.integers(-127, 128, (4, 3))
    layer = _bispike_layer([3, 5], weight)
    payloads = rng.integers(-5, 6, (1, 20, 3)).astype(np.int16)
    wide, narrow = project(layer, payloads), project(layer, payloads, narrow=True)
    assert wide.dtype == np.int64 and narrow.dtype == np.int32
    np.testing.assert_array_equal(narrow, (payloads[0].astype(np.int64) @ weight.T)[:, None, :])  # one group
    np.testing.assert_array_equal(wide, narrow)
    huge = _bispike_layer([3, 1 << 20], weight)  # peak 2^20 · Σ|w| > 2^24: float64, int64 either way
    assert project(huge, payloads, narrow=True).dtype == np.int64


def test_shared_weights_are_rebuilt_when_anything_they_read_differs():
    weight = 2 * np.random.default_rng(1).integers(-127, 128, (4, 3))
    layer = _bispike_layer([3, 5], weight)
    first = shared_grouped_weight(layer)
    assert shared_grouped_weight(layer) is first  # a second run: no rebuild
    assert first.dtype == np.float32 and first.T.tolist() == weight.tolist()
    wider = dataclasses.replace(layer, amplitude=np.array([3, 1 << 20]))  # same mantissas, float64 bound
    assert shared_grouped_weight(wider).dtype == np.float64
    regrouped = dataclasses.replace(layer, projection=dataclasses.replace(
        layer.projection, groups=frozen_array(np.array([0, 1, 0], np.int8)), n_groups=2))
    assert shared_grouped_weight(regrouped).shape == (3, 8)
    assert shared_grouped_weight(layer, lean=True) is not first  # lean runs build their own
    key = id(layer.projection.weight)
    assert key in chip._SHARED
    del layer, wider, regrouped, first
    gc.collect()
    assert key not in chip._SHARED  # dropped with the mantissas
