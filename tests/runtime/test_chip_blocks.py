"""runtime/hybrid/chip.py's group blocks (big projections, SpikeGPT-216M's folded Linears) give the same
accumulators as the zero-filled grouped matrix (and, graded, as plain int64 sums): graded and binary encodings,
one and many rows, groups with equal mantissas sharing one block."""

from __future__ import annotations

import numpy as np
import pytest
from spikestack.compiler.hybrid.ir import QChipLayer, QChipProjection, RelayLayer
from spikestack.compiler.ir import frozen_array
from spikestack.compiler.targets import load_target
from spikestack.runtime.hybrid import chip
from spikestack.runtime.hybrid.chip import FEW_ROWS, LayerState, chip_call, group_blocks, grouped_weight


def _layer(rng: np.random.Generator, width: int, out: int, groups: np.ndarray, encoding: str = "graded",
           weight: np.ndarray | None = None) -> QChipLayer:
    if weight is None:
        weight = 2 * rng.integers(-127, 128, size=(out, width))
    n_groups = int(groups.max()) + 1
    proj = QChipProjection(name="lin", weight=frozen_array(weight.astype(np.int16)), unit=1.0,
                           message_bits=0 if encoding != "graded" else 8, groups=frozen_array(groups.astype(np.int8)),
                           n_groups=n_groups, encoding=encoding)
    return RelayLayer(name="relay", width=width, steps=1, input="in", output="out", in_unit=1.0,
                      payload_unit=1.0, segment=0, levels=7, projection=proj)


def _exact(layer: QChipLayer, payloads: np.ndarray) -> np.ndarray:
    p = layer.projection
    w = np.asarray(p.weight, np.int64)
    return np.stack([payloads.sum(0) @ np.where(np.asarray(p.groups) == g, w, 0).T for g in range(p.n_groups)], -2)


@pytest.mark.parametrize("encoding", ["graded", "bitserial", "unary"])
@pytest.mark.parametrize("positions", [1, FEW_ROWS, FEW_ROWS + 3])
@pytest.mark.parametrize("layout", ["halves", "equal halves", "scattered"])
def test_blocks_equal_the_grouped_matrix(monkeypatch, encoding, positions, layout):
    rng = np.random.default_rng(positions)
    width, out = 24, 10
    weight = None
    if layout == "scattered":
        groups = rng.integers(0, 3, size=width)
    else:
        groups = np.repeat([0, 1], width // 2)
        if layout == "equal halves":  # a real-embedding fold: both groups hold the same mantissas
            half = 2 * rng.integers(-127, 128, size=(out, width // 2))
            weight = np.concatenate([half, half], 1)
    layer = _layer(rng, width, out, groups, encoding, weight)
    x = rng.integers(-7, 8, size=(positions, width))
    target = load_target("loihi2")
    dense, payloads = chip_call(layer, x, LayerState(), 0, target)
    assert isinstance(grouped_weight(layer), np.ndarray)  # small: the zero-filled matrix
    monkeypatch.setattr(chip, "BLOCK_MIN_WEIGHTS", 1)
    blocks = grouped_weight(layer)
    assert isinstance(blocks, list) and len(blocks) == int(groups.max()) + 1
    shared = len({id(b) for _, b in blocks})
    assert shared == (1 if layout == "equal halves" else len(blocks))
    blocked, _ = chip_call(layer, x, LayerState(), 0, target)
    assert blocked.dtype == np.int64 and blocked.shape == (positions, len(blocks), out)
    np.testing.assert_array_equal(blocked, dense)
    if encoding == "graded":  # binary encodings split payloads into unsigned planes (compiler/encodings.py)
        np.testing.assert_array_equal(dense, _exact(layer, payloads))


def test_blocks_are_transposed_columns_in_the_projection_dtype():
    rng = np.random.default_rng(1)
    layer = _layer(rng, 6, 4, np.array([0, 0, 1, 1, 1, 0]))
    blocks = group_blocks(layer)
    w = np.asarray(layer.projection.weight)
    assert [np.arange(6)[c].tolist() for c, _ in blocks] == [[0, 1, 5], [2, 3, 4]]
    assert blocks[1][0] == slice(2, 5)  # one contiguous run: a view, no gather
    for cols, block in blocks:
        assert block.dtype == np.float32 and np.array_equal(block, w[:, cols].T)
    tall = _layer(rng, 5, 3 * chip.TRANSPOSE_ROWS + 7, np.array([0, 0, 1, 1, 1]))  # several transpose tiles
    w = np.asarray(tall.projection.weight)
    for cols, block in group_blocks(tall):
        assert block.flags.c_contiguous and np.array_equal(block, w[:, cols].T)
