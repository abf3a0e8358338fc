"""quantize: chip layers of a cut plan → integer `QChipLayer`s in Lava fixed_pt units, from calibration ranges.

Units (all powers of two, so host quantizers are exact scalings):

Widths come from the target (`compiler/targets.py`): the state width S (Lava 24), the decay unity U = 2^D (Lava
4096) and the activation shift A (Lava 6, so 2^A = 64).

Each kind's lowering (its thresholds, decays, amplitudes and units) is its `ChipKind.lower` in `compiler/kinds/`;
this module holds what they share (weight mantissas, projections, GIF groups, relay weights), the encoding
choice and the target checks, and walks the plan.

Weights: m = 2·round(W/2^e), |m| ≤ 2^b − 2 for the target's weight_mantissa_bits b (254 for b = 8; Lava's
mixed-sign truncation is a no-op on even mantissas, REFERENCE.md §5.3); real weight m·2^(e−1). Accumulators
must fit S bits for the worst input: if not, e grows (a coarser weight grid), never a silent wrap. Target limits (neuron
kinds, payload bits) raise `TargetLimitError` naming the layer and the limit.
"""

from __future__ import annotations

import math
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


MANTISSA_CHUNK = 1 << 22  # weights per chunk of `mantissas` (a 32 MB float64 scratch)


def mantissas(w: np.ndarray, payload_max: int, name: str, target: Target) -> tuple[np.ndarray, int]:
    """Even mantissas |m| ≤ 2^b − 2 (b = the target's weight_mantissa_bits) and exponent e (real = m·2^(e−1))
    whose worst accumulator fits the target's state.

    Row chunks through one scratch buffer, straight into the int16 result: the 216M shape's head relay is
    50,277 × 1,536 weights, and whole-matrix temporaries cost 0.6 GB each. Every step is exact (a power-of-two
    division, rounding, clipping, integer row sums), so chunking changes no mantissa."""
    peak = max(float(w.max()), -float(w.min()))
    q_max = weight_mantissa_max(target)
    e = pow2_ceil(peak / q_max) if peak > 0 else 0
    rows = max(1, MANTISSA_CHUNK // max(w.shape[1], 1))
    scratch = np.empty((min(rows, w.shape[0]), w.shape[1]), np.float64)
    out = np.empty(w.shape, np.int16)
    for _ in range(32):
        fits = True
        for lo in range(0, w.shape[0], rows):
            hi = min(lo + rows, w.shape[0])
            q = scratch[: hi - lo]
            np.divide(w[lo:hi], 2.0**e, out=q)
            np.round(q, out=q)
            np.clip(q, -q_max, q_max, out=q)
            m = out[lo:hi]
            np.multiply(q, 2, out=m, casting="unsafe")  # even integers |m| <= 2^b - 2: exact in int16
            if int(np.abs(m, dtype=np.int32).sum(1, dtype=np.int64).max()) * payload_max > target.state_max:
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
    w = np.asarray(node.weight, np.float64) * weight_scale
    m, e = mantissas(w, payload_max, layer.projection, target)
    bias = np.asarray(node.bias, np.float64) if isinstance(node, nir.Affine) else None
    return QChipProjection(name=layer.projection, weight=frozen_array(m), unit=2.0 ** (e - 1) * payload_unit,
                           message_bits=message_bits, groups=frozen_array(groups.astype(np.int8)), n_groups=n_groups,
                           bias=None if bias is None else frozen_array(bias))


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


def relay_weights(plan: CutPlan, layer: PlannedLayer) -> tuple[np.ndarray, np.ndarray, int]:
    """Real weights [branches·out, parts·C] of a folded Linear, its column groups and channel count C.

    Columns: e (the LN0 input, if any) then S (the spike sum, if any); rows: the current token's branch, then
    the shifted branch (fold.py has the algebra)."""
    fold = layer.fold
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
                    encoding: str | None = None) -> list[QChipLayer]:
    out: list[QChipLayer] = []
    for layer in plan.layers:
        q = KINDS[layer.kind].lower(plan, layer, x_max, target, out)
        q = choose_encoding(q, target, encoding)
        _check_target(q, target)
        out.append(q)
    return out
