"""quantize: chip layers of a cut plan → integer `QChipLayer`s in Lava fixed_pt units, from calibration ranges.

Input units are powers of two, so host quantizers are exact scalings; weight units need not be (below).

Widths come from the target (`compiler/targets.py`): the state width S (Lava 24), the decay unity U = 2^D (Lava
4096) and the activation shift A (Lava 6, so 2^A = 64).

Each kind's lowering (its thresholds, decays, amplitudes and units) is its `ChipKind.lower` in `compiler/kinds/`;
this module holds what they share (weight mantissas, projections, GIF groups, relay weights), the encoding
choice and the target checks, and walks the plan.

Weights: m = 2·round(W/2^e), |m| ≤ 2^b − 2 for the target's weight_mantissa_bits b (254 for b = 8; Lava's
mixed-sign truncation is a no-op on even mantissas, REFERENCE.md §5.3); real weight m·2^(e−1). Accumulators
must fit S bits for the worst input: if not, e grows (a coarser weight grid), never a silent wrap. A projection
whose accumulators the host reads (gif, bispike, lif: `projection`) needs no power of two at all: the chip sums
integer mantissas and only the host's dequantizer knows the step, so `fitted_mantissas` spans the full b bits
(step = peak/(2^(b−1) − 1)); the power-of-two grid wastes up to one bit (docs/hybrid.md, "Weight grid").
Target limits (neuron kinds, payload bits) raise `TargetLimitError` naming the layer and the limit.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import replace

import nir
import numpy as np
from spikestack.models.nir.neurons import GIF

from spikestack.errors import TargetLimitError

from ..ir import frozen_array
from ..kinds import KINDS, kind_of
from ..passes.mantissas import weight_mantissa_max
from ..targets import Target
from .cut import CutPlan, PlannedLayer
from .fold import embed_scale
from .ir import QChipLayer, QChipProjection

MAX_AMPLITUDE_BITS = 7
# Bi-spike input resolution: 2× the calibrated peak spans 2^16 LSBs. Finer buys nothing: the host computes in
# float32 (24-bit mantissa), and at 2^21 LSBs its op-order noise already flips ~1 % of roundings (measured,
# tests/compiler/test_hybrid.py::test_host_stages_match_torch).
BISPIKE_INPUT_BITS = 16


def pow2_ceil(x: float) -> int:
    return math.ceil(math.log2(x)) if x > 0 else 0


MANTISSA_CHUNK = 1 << 18  # weights per chunk of `mantissas`: a 2 MB float64 scratch stays in cache through its
# five passes (0.033 s against 0.053 s with 1 << 22 for 6,144 × 1,536 weights, measured on the 2-core VM)


def mantissas(w: np.ndarray, payload_max: int, name: str, target: Target, repeat: int = 1,
              divisor: float = 1.0) -> tuple[np.ndarray, int]:
    """Even mantissas |m| ≤ 2^b − 2 (b = the target's weight_mantissa_bits) and exponent e (real = m·2^(e−1))
    whose worst accumulator fits the target's state.

    Row chunks through one scratch buffer, straight into the int16 result: the 216M shape's head relay is
    50,277 × 1,536 weights, and whole-matrix temporaries cost 0.6 GB each. Every step is exact (a power-of-two
    division, rounding, clipping, integer row sums), so chunking changes no mantissa. `repeat` > 1: `w` stands for
    `repeat` identical copies side by side (a real-embedding fold's two column groups, `relay_weights`): each
    mantissa is computed once and the result tiled — the same integers, half the work. `divisor` ≠ 1 (float64
    `w` only): the mantissas of the array `w / divisor`, each chunk divided as it is read, so that array (and its
    peak pass) is never made; its peak is max(w)/divisor, as division by a positive number is monotone."""
    peak = max(float(w.max()) / divisor, -(float(w.min()) / divisor))  # exact for divisor 1
    q_max = weight_mantissa_max(target)
    e = pow2_ceil(peak / q_max) if peak > 0 else 0
    rows = max(1, MANTISSA_CHUNK // max(w.shape[1], 1))
    scratch = np.empty((min(rows, w.shape[0]), w.shape[1]), np.float64)
    width = w.shape[1]
    out = np.empty((w.shape[0], width * repeat), np.int16)
    for _ in range(32):
        fits = True
        clip = peak / 2.0**e > q_max  # else every |W|/2^e ≤ q_max already, and so is its rounding (q_max integer)
        for lo in range(0, w.shape[0], rows):
            hi = min(lo + rows, w.shape[0])
            q = scratch[: hi - lo]
            if divisor != 1.0:  # (w / divisor) / 2^e: the two divisions of the unchunked path, in its order
                np.divide(w[lo:hi], divisor, out=q)
                np.divide(q, 2.0**e, out=q)
            else:
                np.divide(w[lo:hi], 2.0**e, out=q)
            np.rint(q, out=q)
            if clip:
                np.clip(q, -q_max, q_max, out=q)
            m = out[lo:hi, :width]
            np.multiply(q, 2, out=m, casting="unsafe")  # even integers |m| <= 2^b - 2: exact in int16
            for k in range(1, repeat):  # the copies, while the chunk is in cache
                out[lo:hi, k * width:(k + 1) * width] = m
            # Σ|m| = 2 Σ|q|: sums of small integers, exact in float64
            row_l1 = 2 * int(np.abs(q, out=q).sum(1).max()) * repeat
            if row_l1 * payload_max > target.state_max:
                fits = False
                break
        if fits:
            return out, e
        e += 1
    raise TargetLimitError(f"layer {name!r}: no weight exponent keeps the accumulator within the "
                           f"{target.state_bits}-bit state of target {target.name}")


def projection(plan: CutPlan, layer: PlannedLayer, weight_scale: float, payload_max: int, groups: np.ndarray,
                n_groups: int, payload_unit: float, message_bits: int, target: Target) -> QChipProjection | None:
    if layer.projection is None:
        return None
    node = plan.graph.nodes[layer.projection]
    w = np.asarray(node.weight, np.float64)
    if weight_scale != 1.0:  # × 1.0 is exact: no 8-byte copy of a 7B layer's matrix for nothing
        w = w * weight_scale
    m, step = fitted_mantissas(w, payload_max, layer.projection, target)
    bias = np.asarray(node.bias, np.float64) if isinstance(node, nir.Affine) else None
    return QChipProjection(name=layer.projection, weight=frozen_array(m), unit=step / 2 * payload_unit,
                           message_bits=message_bits, groups=frozen_array(groups.astype(np.int8)), n_groups=n_groups,
                           bias=None if bias is None else frozen_array(bias))


# per-projection weight errors of the quantize pass in progress (`quantize_layers(grid_report=...)`): the kinds'
# `lower` has a fixed signature, so the report travels beside it rather than through it
_GRID_REPORT: ContextVar[dict[str, dict[str, float]] | None] = ContextVar("grid_report", default=None)


def fitted_mantissas(w: np.ndarray, payload_max: int, name: str, target: Target) -> tuple[np.ndarray, float]:
    """Even mantissas as `mantissas`, on a real step: (m, step) with real weight m·step/2, step = peak/q_max
    (q_max = 2^(b−1) − 1), so the largest |W| takes the largest mantissa. The grid of `mantissas` is a power of
    two, 2^ceil(log2(peak/q_max)): its largest mantissa lies anywhere in (q_max/2, q_max], one bit lost at worst.
    Only for host-read accumulators (the host's dequantizer multiplies by any real unit; the chip's integers are
    the same kind of integers). A step that overflows the state grows by powers of two, as in `mantissas`.
    Adds {rel_rms_pow2, rel_rms} of this weight matrix to the active grid report, if any. `w`: float64."""
    peak = max(float(w.max()), -float(w.min())) if w.size else 0.0
    q_max = weight_mantissa_max(target)
    step = peak / q_max if peak > 0 else 1.0
    # the largest |w / step| is peak / step (division by a positive number is monotone), so the scalar decides
    # whether a division lands one ulp above q_max, and `mantissas` divides chunk by chunk: no w / step array
    while peak > 0 and peak / step > q_max:
        step = float(np.nextafter(step, np.inf))
    m, e = mantissas(w, payload_max, name, target, divisor=step)  # e = 0 unless the accumulator bound needs more
    step *= 2.0**e
    report = _GRID_REPORT.get()
    if report is not None:
        m2, e2 = mantissas(w, payload_max, name, target)
        pow2, fitted = _rel_rms(w, [(m2, 2.0**e2), (m, step)])
        report[name] = {"rel_rms_pow2": pow2, "rel_rms": fitted}
    return m, step


SUM_CHUNK_BLOCKS = 32  # numpy reduction blocks per chunk of `_rel_rms`: 32 × 8,192 float64 = a 2 MB scratch


def _rel_rms(w: np.ndarray, grids: list[tuple[np.ndarray, float]]) -> list[float]:
    """‖m·step/2 − W‖ / ‖W‖ (Frobenius) of each (m, step): the weight matrix's relative quantisation errors, the
    floats `np.sqrt(np.square(m.astype(np.float64) * (step / 2) - w).sum())` and `np.sqrt(np.square(w).sum())` give.

    In one pass over W through a cache-sized scratch, not five whole-matrix temporaries (0.36 GB each for a
    LLaMA-7B MLP matrix): numpy sums a contiguous float64 array in buffer-sized blocks (`np.getbufsize()`
    elements, 8,192), each block pairwise, the block sums added in order; chunks here hold whole blocks, each
    block is summed by the same numpy reduction, and the block sums are added in the same order, so every sum is
    the same float (tests/compiler/test_compile_7b_paths.py checks it against the whole-matrix expression)."""
    block = np.getbufsize()
    flat_w = w.reshape(-1)
    flat_m = [m.reshape(-1) for m, _ in grids]
    chunk = block * SUM_CHUNK_BLOCKS
    scratch = np.empty(min(chunk, flat_w.size), np.float64)
    sums = [0.0] * (1 + len(grids))  # Σ W², then Σ error² per grid

    def add(k: int, x: np.ndarray) -> None:
        whole = x.size - x.size % block
        for part in np.add.reduce(x[:whole].reshape(-1, block), axis=1).tolist():
            sums[k] += part
        if whole < x.size:
            sums[k] += float(np.add.reduce(x[whole:]))

    for lo in range(0, flat_w.size, chunk):
        hi = min(lo + chunk, flat_w.size)
        x = scratch[: hi - lo]
        add(0, np.square(flat_w[lo:hi], out=x))
        for k, (m, (_, step)) in enumerate(zip(flat_m, grids, strict=True), start=1):
            np.multiply(m[lo:hi], step / 2, out=x, dtype=np.float64)  # m widened to float64, then × step/2
            np.subtract(x, flat_w[lo:hi], out=x)
            add(k, np.square(x, out=x))
    norm = float(np.sqrt(sums[0]))
    return [round(float(np.sqrt(err)) / norm, 6) if norm > 0 else 0.0 for err in sums[1:]]


def fan_in_sum(plan: CutPlan, layer: PlannedLayer) -> float:
    """Σ|W| of the busiest output row (real units): bounds the accumulator per unit payload."""
    if layer.projection is None:
        return 0.0
    return float(np.abs(np.asarray(plan.graph.nodes[layer.projection].weight)).sum(1).max())


def gif_groups(node: GIF) -> list[tuple[np.ndarray, int, int]]:
    """(channel mask, intervals N, max code) of the GIF node's non-empty groups, as the node defines them."""
    return [(mask, n_steps, max_code) for mask, _, n_steps, max_code in node.groups()]


def gif_group_of(node: GIF) -> np.ndarray:
    """int64 [C]: the accumulator group (index into `gif_groups`) of every channel."""
    out = np.zeros(node.salient.size, np.int64)
    for g, (mask, _, _) in enumerate(gif_groups(node)):
        out[mask] = g
    return out


def relay_weights(plan: CutPlan, layer: PlannedLayer, *, unique: bool = False) -> tuple[np.ndarray, np.ndarray, int]:
    """Real weights [branches·out, parts·C] of a folded Linear, its column groups and channel count C.

    Columns: e (the LN0 input, if any) then S (the spike sum, if any); rows: the current token's branch, then
    the shifted branch (fold.py has the algebra). `unique`: when the parts are equal (a real embedding: γ0 is
    ones, and c·γ·1 = c·γ exactly) only the first part's columns [branches·out, C]; `relay_repeat` says how many
    parts they stand for (the groups still cover all of them)."""
    fold = layer.fold
    if unique and relay_repeat(plan, layer) > 1:
        full = replace(fold, spikes=())  # the e part alone: c·γ·γ0 with γ0 = ones
        v, _, width = relay_weights(plan, replace(layer, fold=full))
        return v, np.repeat(np.arange(2), width), width
    w = np.asarray(plan.graph.nodes[fold.linear].weight, np.float64)
    norm = plan.graph.nodes[fold.norm]
    gamma = np.asarray(norm.weight, np.float64)
    gamma0 = embed_scale(plan.graph, fold)  # γ0 (integer e), ones (a real embedding's quantized LN0 output)
    coefs = (fold.now, *(() if fold.prev is None else (fold.prev,)))
    out, width = w.shape
    n_parts = int(gamma0 is not None) + int(bool(fold.spikes))
    v = np.empty((len(coefs) * out, n_parts * width), np.float64)  # written in place: no stacking copies
    for b, coef in enumerate(coefs):
        scales = ([coef * gamma * gamma0] if gamma0 is not None else []) + ([coef * gamma] if fold.spikes else [])
        for k, scale in enumerate(scales):
            np.multiply(w, scale[None, :], out=v[b * out:(b + 1) * out, k * width:(k + 1) * width])
    groups = np.repeat(np.arange(n_parts), width)
    return v, groups, width


def relay_repeat(plan: CutPlan, layer: PlannedLayer) -> int:
    """2 when a folded Linear's two column groups hold the same weights (a real embedding's u and the spike sum
    S both scaled by c·γ), else 1."""
    fold = layer.fold
    return 2 if fold.normed is not None and fold.real_embedding and fold.spikes else 1


def _check_target(q: QChipLayer, target: Target) -> None:
    if kind_of(q).programmable and "programmable" not in target.neuron_models:
        raise TargetLimitError(f"layer {q.name!r}: neuron kind {q.kind!r} needs programmable neurons; target "
                               f"{target.name} offers {', '.join(target.neuron_models)} only")
    bits = q.payload_bits
    binary = q.projection is not None and q.projection.encoding != "graded"
    if not binary and bits > target.max_payload_bits and not (bits == 0 and target.max_payload_bits >= 1):
        raise TargetLimitError(f"layer {q.name!r}: graded spikes of {bits} bits exceed target {target.name}'s "
                               f"{target.max_payload_bits}-bit payload (over by {bits - target.max_payload_bits})")


def choose_encoding(q: QChipLayer, target: Target, forced: str | None) -> QChipLayer:
    """The projection's event encoding (compiler/encodings.py): `forced` on every layer that can carry it (gif,
    relay), else graded when the target carries the payload, else the binary code with fewer messages per event
    (bit-serial from a maximum level of 3 up, as the chain's cost model: compiler/passes/lower_spikes.py)."""
    p = q.projection
    if p is None or not kind_of(q).binary_encodings:
        return q
    if forced is not None:
        encoding = forced
    elif q.payload_bits <= target.max_payload_bits:
        encoding = "graded"
    else:
        encoding = "bitserial" if q.max_level.bit_length() < q.max_level else "unary"
    if encoding == "graded":
        return q
    return replace(q, projection=replace(p, encoding=encoding, message_bits=0))


def quantize_layers(plan: CutPlan, x_max: dict[str, float], target: Target,
                    encoding: str | None = None, grid_report: dict[str, dict[str, float]] | None = None
                    ) -> list[QChipLayer]:
    """Every planned layer lowered by its kind. `grid_report`, when given, receives per projection on a fitted
    grid (`fitted_mantissas`) its weight error on the power-of-two grid and on the grid used."""
    out: list[QChipLayer] = []
    with _reporting(grid_report):
        for layer in plan.layers:
            q = KINDS[layer.kind].lower(plan, layer, x_max, target, out)
            q = choose_encoding(q, target, encoding)
            _check_target(q, target)
            out.append(q)
    return out


@contextmanager
def _reporting(report: dict[str, dict[str, float]] | None) -> Iterator[None]:
    token = _GRID_REPORT.set(report)
    try:
        yield
    finally:
        _GRID_REPORT.reset(token)
