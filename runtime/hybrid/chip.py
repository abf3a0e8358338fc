"""The integer semantics of a chip layer per call (compiler/hybrid/ir.py), in numpy: the reference every other
backend of hybrid programs (torch, Lava) is tested against.

Tensors carry leading batch axes (sequences, positions) before the neuron axis; each position is its own copy of
the layer's neurons (time-multiplexed on the same cores). Integers only. Projection sums are float matmuls,
exact because every product and every partial sum is an integer the float type holds exactly, so neither BLAS's
summation order nor added zeros change a bit: `projection_dtype` picks float32 where a layer's bound
peak |Σ steps payload| · max_o Σ_i |weight[o, i]| is below 2^24 (float32's 24-bit significand; half the memory
traffic of float64 in these small, weight-bound matmuls), float64 (2^53) otherwise.

Each kind's neuron step is its module in `runtime/kinds/` (the definition); this module adds what every kind
shares: chained inputs and the projection. Per-layer constants derived from the artifact (the grouped weight, the
LIF fields, the bi-spike tables) are built at a layer's first call and kept in its `LayerState.extra`, not rebuilt
per call: SpikeGPT makes one call per token.
"""

from __future__ import annotations

import weakref

import numpy as np
from spikestack.compiler.encodings import to_unsigned_planes, unsigned_plane_scales
from spikestack.compiler.hybrid.ir import QChipLayer
from spikestack.compiler.kinds import kind_of
from spikestack.compiler.targets import Target

from ..kinds import LayerState, cached, step_of

__all__ = ["FEW_ROWS", "LayerState", "chained_input", "chip_call", "neuron_steps", "payload_peak",
           "project", "project_planes", "projection_dtype"]


def chained_input(layer: QChipLayer, x: np.ndarray) -> np.ndarray:
    """A chained layer's input is its source's accumulators [..., 1, width] plus its bias (ir.py); others as given,
    in int64, or int32 as the executor hands them over: each kind's step widens what it needs, and the bi-spike
    step works in int32 where exact (an int64 copy would be converted straight back)."""
    x = np.asarray(x)
    if layer.source is None:
        return x if x.dtype == np.int32 or x.dtype == np.int64 else x.astype(np.int64)
    return x[..., 0, :].astype(np.int64) + np.asarray(layer.bias, np.int64)


def neuron_steps(layer: QChipLayer, x: np.ndarray, state: LayerState, call: int, target: Target) -> np.ndarray:
    """Run the layer's neurons for one call in the widths of the program's `target`: its kind's numpy step
    (runtime/kinds/); returns payloads int64 [steps, ..., width] and updates `state`."""
    return step_of(layer)(layer, chained_input(layer, x), state, call, target)


FLOAT32_EXACT = 1 << 24  # integers of magnitude ≤ 2^24 are exact in float32 (24-bit significand)
# At most this many positions, `project` multiplies row by row (numpy runs BLAS gemv per row): OpenBLAS's gemm
# packs the whole weight on every call, which dominates with few rows. Measured (numpy 1.26 / OpenBLAS 0.3.23,
# one thread, float32, [rows, 128] @ [128, 256]; row by row vs one gemm): 4 rows 11 vs 28 µs, 16 rows 31 vs
# 40 µs, 64 rows 127 vs 84 µs. SpikeGPT streams B positions per call (B = 4 in bench/runtime_speed.py).
FEW_ROWS = 16


def payload_peak(layer: QChipLayer) -> int:
    """Largest |Σ_steps payload| of one neuron in one call, by the semantics of ir.py."""
    return int(layer.steps) * kind_of(layer).peak_per_step(layer)


ROW_CHUNK = 1 << 20  # weights per chunk of the row sums below (an 8 MB int64 scratch)
# From this many weights up, a projection keeps one [in_g, out] block per accumulator group instead of the
# zero-filled [in, groups · out] matrix: SpikeGPT-216M's folded Linears (two groups each, 400 M mantissas) would
# take 3.2 GB of float32 zeros and 68 s to build (measured, bench/compile_published.py with --calibrate 256).
# Below it one matmul over the zero-filled matrix is cheaper than a call per group (the shipped models).
BLOCK_MIN_WEIGHTS = 1 << 20


def _max_row_l1(w: np.ndarray) -> int:
    """max_o Σ_i |w[o, i]| in int64, a row chunk at a time (no whole-matrix int64 copy of int16 mantissas)."""
    rows = max(1, ROW_CHUNK // max(w.shape[1], 1))
    wide = np.int32 if np.issubdtype(w.dtype, np.integer) and w.dtype.itemsize <= 2 else None  # |int16| fits
    return max((int(np.abs(w[lo:lo + rows], dtype=wide).sum(1, dtype=np.int64).max(initial=0))
                for lo in range(0, w.shape[0], rows)), default=0)


def projection_dtype(layer: QChipLayer) -> type[np.floating]:
    """float32 where no partial sum of any accumulator can exceed 2^24 in magnitude, else float64 (module doc)."""
    row_l1 = _max_row_l1(np.asarray(layer.projection.weight))
    return np.float32 if payload_peak(layer) * row_l1 < FLOAT32_EXACT else np.float64


def grouped_weight(layer: QChipLayer, lean: bool = False
                   ) -> np.ndarray | list[tuple[slice | np.ndarray, np.ndarray]]:
    """The projection's weight in `projection_dtype`, built once per layer: [in, groups · out]
    (`QChipProjection.grouped`, transposed) so one matmul yields every group's accumulators, or from
    BLOCK_MIN_WEIGHTS weights up the group blocks (`group_blocks`; `lean`: views of the int16 mantissas)."""
    p = layer.projection
    w = np.asarray(p.weight)
    if w.size >= BLOCK_MIN_WEIGHTS:
        return group_blocks(layer, lean)
    dtype = projection_dtype(layer)
    groups = np.asarray(p.groups)
    out = np.zeros((p.n_groups * p.size, w.shape[1]), dtype)  # = grouped(), without int64 temporaries
    for g in range(p.n_groups):
        cols = np.flatnonzero(groups == g)
        out[g * p.size:(g + 1) * p.size, cols] = w[:, cols]
    return out.T  # the layout `grouped().T.astype(...)` had, which the shipped models' timings were measured on


# Small projections' float weights, kept across runs while their mantissas live: id(weight) → (weak reference to
# the mantissas, the groups array, (payload peak, n_groups, size), the float weight). See `shared_grouped_weight`.
_SHARED: dict[int, tuple[weakref.ref, np.ndarray, tuple[int, int, int], np.ndarray]] = {}


def shared_grouped_weight(layer: QChipLayer, lean: bool = False
                          ) -> np.ndarray | list[tuple[slice | np.ndarray, np.ndarray]]:
    """`grouped_weight`, built once per projection rather than once per run: `executor.run` starts a fresh chip
    each time, and rebuilding every layer's float weight and dtype took 1-1.5 ms of a 20-50 ms run of the shipped
    LM families (measured, bench/runtime_speed.py).

    Only projections below BLOCK_MIN_WEIGHTS and not `lean`: their float weight is a fresh array, no view of the
    mantissas, so an entry never keeps the artifact's arrays alive; it is dropped when the mantissas die (a weak
    reference). An entry is used only for the very same mantissa and group arrays (alive, so their ids are unique)
    and the same payload peak and shape: everything `grouped_weight` reads. Artifacts are never edited in place."""
    p = layer.projection
    w = p.weight
    if lean or not isinstance(w, np.ndarray) or w.size >= BLOCK_MIN_WEIGHTS:
        return grouped_weight(layer, lean)
    facts = (payload_peak(layer), int(p.n_groups), int(p.size))
    entry = _SHARED.get(id(w))
    if entry is not None and entry[0]() is w and entry[1] is p.groups and entry[2] == facts:
        return entry[3]
    value, key = grouped_weight(layer), id(w)
    value.flags.writeable = False  # shared by every run of the program
    _SHARED[key] = (weakref.ref(w, lambda _, key=key: _SHARED.pop(key, None)), p.groups, facts, value)
    return value


def _columns(groups: np.ndarray, g: int) -> slice | np.ndarray:
    """Group g's input columns: a slice when they are one contiguous run (a fold's e and S parts), else indices."""
    cols = np.flatnonzero(groups == g)
    if cols.size and int(cols[-1]) - int(cols[0]) + 1 == cols.size:
        return slice(int(cols[0]), int(cols[-1]) + 1)
    return cols


TRANSPOSE_ROWS = 256  # rows per cache-sized tile of `_transposed`


def _transposed(w: np.ndarray, dtype: type[np.floating]) -> np.ndarray:
    """w.T as a C-contiguous `dtype` array, TRANSPOSE_ROWS rows at a time: 0.09 s for the 216M head's 50,277 × 768
    mantissas, against 0.35 s for numpy's whole-matrix transposing copy (measured, one core). Row-major [in, out]
    is the layout the row-by-row products of `project` run fastest on (2-3× a transposed view's, measured)."""
    out = np.empty((w.shape[1], w.shape[0]), dtype)
    for lo in range(0, w.shape[0], TRANSPOSE_ROWS):
        out[:, lo:lo + TRANSPOSE_ROWS] = w[lo:lo + TRANSPOSE_ROWS].T
    return out


def group_blocks(layer: QChipLayer, lean: bool = False) -> list[tuple[slice | np.ndarray, np.ndarray]]:
    """Per accumulator group: (its input columns, weight[:, columns].T [in_g, out] in `projection_dtype`). Groups
    whose mantissas are equal share one block (a real-embedding fold's two groups: compiler/hybrid/quantize.py
    `relay_repeat`), so the 216M shape's float copy is as large as its int16 mantissas' count, not twice.

    `lean`: the blocks are transposed views of the int16 mantissas, converted to `projection_dtype` per call, one
    layer at a time: for the compile's few calls of the per-layer error report, where the float copies of every
    layer (0.8 GB at the 216M shape) would set the compile's peak memory (bench/compile_published.py)."""
    p = layer.projection
    w, groups = np.asarray(p.weight), np.asarray(p.groups)
    dtype = None if lean else projection_dtype(layer)  # lean: the caller's, at each call (`_project_blocks`)
    blocks: list[tuple[slice | np.ndarray, np.ndarray]] = []
    for g in range(p.n_groups):
        cols = _columns(groups, g)
        mine = w[:, cols]
        same = next((b for c, b in blocks if b.shape[0] == mine.shape[1] and np.array_equal(w[:, c], mine)), None)
        blocks.append((cols, same if same is not None else mine.T if lean else _transposed(mine, dtype)))
    return blocks


def project(layer: QChipLayer, payloads: np.ndarray, weight: np.ndarray | list | None = None,
            lean_dtype: type | None = None, narrow: bool = False) -> np.ndarray:
    """Accumulators int64 [..., groups, out] = Σ_steps Σ_{i ∈ g} weight[o, i] · payload_i; `narrow`: int32 where
    the product ran in float32 (every accumulator below 2^24), the width the executor keeps host tensors in.

    One matmul of the step-summed payloads [positions, in] by `grouped_weight` [in, groups · out] (pass it to
    skip rebuilding it), where per-group column masks and a batched matmul cost several copies and BLAS calls
    (profiled in bench/runtime_speed.py); row by row up to FEW_ROWS positions. `lean_dtype`: see `_project_blocks`.
    """
    p = layer.projection
    if weight is None:
        weight = grouped_weight(layer)
    if isinstance(weight, list):
        total = payloads[0] if payloads.shape[0] == 1 else payloads.sum(0)
        return _project_blocks(layer, total, weight, lean_dtype)
    # the step sum straight in the weight's float type: exact, |Σ_steps payload| <= payload_peak (module doc)
    total = payloads[0] if payloads.shape[0] == 1 else payloads.sum(0, dtype=weight.dtype)
    x = total.reshape(-1, total.shape[-1]).astype(weight.dtype, copy=False)
    acc = (x[:, None, :] @ weight)[:, 0] if len(x) <= FEW_ROWS else x @ weight
    wide = np.int32 if narrow and acc.dtype == np.float32 else np.int64
    return acc.astype(wide).reshape(*total.shape[:-1], p.n_groups, p.size)


def _project_blocks(layer: QChipLayer, total: np.ndarray, blocks: list[tuple[slice | np.ndarray, np.ndarray]],
                    lean_dtype: type | None = None) -> np.ndarray:
    """`project` over `group_blocks`: group g's accumulators are its columns of the payload times its block
    (exact: integer products and sums in a float type that holds them). Groups sharing a block go through one
    matmul, their payload rows stacked. Lean (int16) blocks are converted to `lean_dtype`, the layer's
    `projection_dtype` (pass it: it scans every weight)."""
    p = layer.projection
    x = total.reshape(-1, total.shape[-1])
    acc = np.empty((len(x), p.n_groups, p.size), np.int64)
    for block in {id(b): b for _, b in blocks}.values():
        mine = [g for g, (_, b) in enumerate(blocks) if b is block]
        if block.dtype.kind != "f":  # lean: this call's float copy of one layer's mantissas
            block = block.astype(lean_dtype or projection_dtype(layer))
        rows = np.concatenate([x[:, blocks[g][0]] for g in mine]).astype(block.dtype)
        y = (rows[:, None, :] @ block)[:, 0] if len(rows) <= FEW_ROWS else rows @ block
        for k, g in enumerate(mine):
            acc[:, g] = y[k * len(x):(k + 1) * len(x)]
    return acc.reshape(*total.shape[:-1], p.n_groups, p.size)


def project_planes(layer: QChipLayer, payloads: np.ndarray, weight: np.ndarray | list,
                   lean_dtype: type | None = None) -> np.ndarray:
    """Binary encodings computed literally: each step's payload split into its binary planes
    (compiler/encodings.py), every plane through the synapses on its own, weighted by the plane's value (2^b for
    bit-serial, 1 for unary); equal to the graded product, which `torch_chip.py` computes (tested)."""
    p = layer.projection
    scales = unsigned_plane_scales(p.encoding, layer.max_level)
    planes = to_unsigned_planes(payloads, p.encoding, layer.max_level).sum(0)  # [..., P, width] events per plane
    acc = np.zeros((*planes.shape[:-2], p.n_groups * p.size), np.int64)
    for k, scale in enumerate(scales):
        if isinstance(weight, list):  # group blocks (big projections)
            y = _project_blocks(layer, planes[..., k, :], weight, lean_dtype).reshape(acc.shape)
        else:
            x = planes[..., k, :].reshape(-1, planes.shape[-1]).astype(weight.dtype)
            y = (x @ weight).astype(np.int64).reshape(acc.shape)
        acc += int(scale) * y
    return acc.reshape(*planes.shape[:-2], p.n_groups, p.size)


def chip_call(layer: QChipLayer, x: np.ndarray, state: LayerState, call: int,
              target: Target, narrow: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """(output tensor for the host, payloads [steps, ..., width]) of one call; `target` is the program's
    (`HybridProgram.target_spec`): its state width and LIF shifts; `narrow`: see `project`."""
    payloads = neuron_steps(layer, x, state, call, target)
    if layer.projection is None:
        return kind_of(layer).chip_output(payloads, state), payloads
    weight = cached(state, "weight", lambda: shared_grouped_weight(layer, state.lean))
    lean_dtype = cached(state, "dtype", lambda: projection_dtype(layer)) if state.lean else None  # once per layer
    if layer.projection.encoding == "graded":
        return project(layer, payloads, weight, lean_dtype, narrow=narrow), payloads
    return project_planes(layer, payloads, weight, lean_dtype), payloads
