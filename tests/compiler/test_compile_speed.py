"""The shortcuts that make the published 216M compile fast (issue #13 item 6) give the same integers as the long way:
a real-embedding fold's mantissas computed once and tiled, the float64 calibration module sharing the NIR arrays,
and the per-layer error report's position budget."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch
from spikestack.compiler.hybrid.quantize import mantissas, relay_repeat, relay_weights
from spikestack.compiler.targets import load_target
from spikestack.models.nir.builder import to_numpy
from spikestack.models.nir.torch_standard import AffineModule

from spikestack.compilation import LAYER_ERROR_MIN_POSITIONS, layer_error_windows


def test_repeated_mantissas_equal_the_full_matrix():
    """mantissas(w, repeat=2) == mantissas([w, w]): same exponent, same integers, and the accumulator check counts
    both copies (a row that fits once but not twice takes a coarser exponent)."""
    target = load_target("loihi2")
    rng = np.random.default_rng(0)
    w = rng.normal(0, 1, (300, 70))
    full_m, full_e = mantissas(np.concatenate([w, w], 1), 3, "x", target)
    m, e = mantissas(w, 3, "x", target, repeat=2)
    assert e == full_e and m.dtype == full_m.dtype and np.array_equal(m, full_m)
    # payload so large that one copy fits the 24-bit state at e but two do not: the exponent must grow
    once_m, once_e = mantissas(w, 2**14, "x", target)
    twice_m, twice_e = mantissas(np.concatenate([w, w], 1), 2**14, "x", target)
    got_m, got_e = mantissas(w, 2**14, "x", target, repeat=2)
    assert (got_e, got_m.tolist()) == (twice_e, twice_m.tolist())
    assert twice_e > once_e


def test_real_embedding_fold_weights_once():
    """A real embedding's fold: the unique columns are the first half of the full matrix, bit for bit."""
    from spikestack.compiler.hybrid.cut import plan_cut

    from tests.compiler.test_fold_real_embedding import real_graph

    plan = plan_cut(real_graph(), dataflow=True)
    folded = [pl for pl in plan.layers if pl.fold is not None]
    repeated = [pl for pl in folded if relay_repeat(plan, pl) == 2]
    assert repeated, "the real-embedding graph folds no Linear with both e and S"
    for pl in repeated:
        full, groups, width = relay_weights(plan, pl)
        half, half_groups, half_width = relay_weights(plan, pl, unique=True)
        assert half_width == width and np.array_equal(half_groups, groups)
        assert half.shape == (full.shape[0], width)
        assert np.array_equal(full[:, :width], half) and np.array_equal(full[:, width:], half)
    plain = replace(repeated[0], fold=replace(repeated[0].fold, spikes=()))
    assert relay_repeat(plan, plain) == 1


def test_float64_arrays_are_shared_not_copied():
    """to_numpy makes one float64 copy; the float64 torch module reads that same memory; read-only or float32
    arrays are copied (never written through)."""
    w = to_numpy(torch.arange(6, dtype=torch.float32).reshape(2, 3))
    assert w.dtype == np.float64 and w.flags.writeable
    module = AffineModule(w, None)
    assert np.shares_memory(module.weight.detach().numpy(), w)
    frozen = w.copy()
    frozen.flags.writeable = False
    assert not np.shares_memory(AffineModule(frozen, None).weight.detach().numpy(), frozen)
    single = w.astype(np.float32)
    assert AffineModule(single, None).weight.dtype == torch.float64
    source = torch.ones(2, dtype=torch.float64)
    copied = to_numpy(source)
    copied[0] = 5.0
    assert float(source[0]) == 1.0  # a float64 parameter is copied, not aliased


@pytest.mark.parametrize(("shape", "weights", "token_by_token", "want"), [
    ((1, 256), 1_000, True, (1, 256)),  # small model: every position
    ((1, 256), 216_000_000, True, (1, LAYER_ERROR_MIN_POSITIONS)),  # 10^9 / 2.16·10^8 = 4 calls
    ((1, 256), 20_000_000, True, (1, 50)),  # 10^9 / 2·10^7 = 50 calls
    ((4, 64), 20_000_000, False, (1, 64)),  # whole windows: 50 positions → one window of 64
    ((4, 64), 5_000_000, False, (3, 64)),  # 200 positions → three windows
])
def test_layer_error_position_budget(shape, weights, token_by_token, want):
    windows = np.arange(np.prod(shape)).reshape(shape)
    got = layer_error_windows(windows, weights, token_by_token)
    assert got.shape == want
    assert np.array_equal(got, windows[: want[0], : want[1]])
