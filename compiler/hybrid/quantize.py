"""quantize: chip layers of a cut plan → integer `QChipLayer`s in Lava fixed_pt units, from calibration ranges.

Units (all powers of two, so host quantizers are exact scalings):

Widths come from the target (`compiler/targets.py`): the state width S (Lava 24), the decay unity U = 2^D (Lava
4096) and the activation shift A (Lava 6, so 2^A = 64).

* ``bispike``: input LSB δ; thresholds θ_{t,k} = round((k − ½)·α_t/δ) and carries as the spine
  (`compiler/passes/quantize.py`). δ is 2× the calibrated input peak / 2^16 (a power of two), coarsened
  until the worst-case membrane (carried over T steps) fits S bits. The payload is a_t·s with
  a_t = round(2^p·α_t/α_ref): α_ref is folded into the weights, p ≤ 7 is the largest precision whose
  worst-case accumulator fits S bits.
* ``lif`` (NIR LIF, Euler dt = 1 call): du = U − 1 (no current state), dv = round(U/τ), a_in =
  round(R·I/(τ·2^A·δ_v)) so that a_in << A is the Euler input in v-LSBs; threshold θ/δ_v. NIR fires on v > θ:
  vth = θ/(2^A δ_v); SpikeGPT's ≥ (node metadata) becomes vth·2^A = θ/δ_v − 2^A (fires from 2^A − 1 LSBs below
  θ, a relative error of 2^-14 at the chosen δ_v; reported).
* ``gif``: the input is the charge (codes, unit 1); accumulators are in weight-mantissa units, dequantized per
  group with Δ and z on the host.

Weights: m = 2·round(W/2^e), |m| ≤ 254 (Lava's mixed-sign truncation is a no-op on even mantissas,
REFERENCE.md §5.3); real weight m·2^(e−1). Accumulators must fit S bits for the worst input: if not, e grows
(a coarser weight grid), never a silent wrap. Target limits (neuron kinds, payload bits) raise
`TargetLimitError` naming the layer and the limit.
"""

from __future__ import annotations

import math
from dataclasses import replace

import nir
import numpy as np
from spikestack.models.nir.neurons import GIF

from spikestack.errors import CompileError, TargetLimitError

from ..ir import SpikingPop, frozen_array
from ..passes.quantize import _spiking_tables, state_bound
from ..targets import Target
from .cut import CutPlan, PlannedLayer
from .ir import QChipLayer, QChipProjection

MAX_AMPLITUDE_BITS = 7
# Bi-spike input resolution: 2× the calibrated peak spans 2^16 LSBs. Finer buys nothing: the host computes in
# float32 (24-bit mantissa), and at 2^21 LSBs its op-order noise already flips ~1 % of roundings (measured,
# tests/compiler/test_hybrid.py::test_host_stages_match_torch).
BISPIKE_INPUT_BITS = 16
THRESHOLD_TEST_KEY = "spikestack.threshold_test"


def _pow2_ceil(x: float) -> int:
    return math.ceil(math.log2(x)) if x > 0 else 0


MANTISSA_CHUNK = 1 << 22  # weights per chunk of `_mantissas` (a 32 MB float64 scratch)


def _mantissas(w: np.ndarray, payload_max: int, name: str, target: Target) -> tuple[np.ndarray, int]:
    """Even 8-bit mantissas and exponent e (real = m·2^(e−1)) whose worst accumulator fits the target's state.

    Row chunks through one scratch buffer, straight into the int16 result: the 216M shape's head relay is
    50,277 × 1,536 weights, and whole-matrix temporaries cost 0.6 GB each. Every step is exact (a power-of-two
    division, rounding, clipping, integer row sums), so chunking changes no mantissa."""
    peak = max(float(w.max()), -float(w.min()))
    e = _pow2_ceil(peak / 127) if peak > 0 else 0
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
            np.clip(q, -127, 127, out=q)
            m = out[lo:hi]
            np.multiply(q, 2, out=m, casting="unsafe")  # even integers |m| <= 254: exact in int16
            if int(np.abs(m, dtype=np.int32).sum(1, dtype=np.int64).max()) * payload_max > target.state_max:
                fits = False
                break
        if fits:
            return out, e
        e += 1
    raise TargetLimitError(f"layer {name!r}: no weight exponent keeps the accumulator within the "
                           f"{target.state_bits}-bit state of target {target.name}")


def _projection(plan: CutPlan, layer: PlannedLayer, weight_scale: float, payload_max: int, groups: np.ndarray,
                n_groups: int, payload_unit: float, message_bits: int, target: Target) -> QChipProjection | None:
    if layer.projection is None:
        return None
    node = plan.graph.nodes[layer.projection]
    w = np.asarray(node.weight, np.float64) * weight_scale
    m, e = _mantissas(w, payload_max, layer.projection, target)
    bias = np.asarray(node.bias, np.float64) if isinstance(node, nir.Affine) else None
    return QChipProjection(name=layer.projection, weight=frozen_array(m), unit=2.0 ** (e - 1) * payload_unit,
                           message_bits=message_bits, groups=frozen_array(groups.astype(np.int8)), n_groups=n_groups,
                           bias=None if bias is None else frozen_array(bias))


def _fan_in_sum(plan: CutPlan, layer: PlannedLayer) -> float:
    """Σ|W| of the busiest output row (real units): bounds the accumulator per unit payload."""
    if layer.projection is None:
        return 0.0
    return float(np.abs(np.asarray(plan.graph.nodes[layer.projection].weight)).sum(1).max())


def _amplitudes(alpha: np.ndarray, p: int) -> np.ndarray:
    """Payload amplitudes a_t = round(2^p · α_t / α_ref) ≥ 1, α_ref = max α (the spine's fold_amplitudes)."""
    return np.maximum(np.round(2.0**p * alpha / float(alpha.max())), 1).astype(np.int64)


def _bispike(plan: CutPlan, layer: PlannedLayer, x_max: float, segment: int, target: Target,
             source: QChipLayer | None = None) -> QChipLayer:
    node = plan.graph.nodes[layer.neuron]
    alpha = np.asarray(node.alpha, np.float64)
    steps, levels = alpha.size, int(node.levels)
    pop = SpikingPop(name=layer.neuron, size=int(node.shape[0]), alpha=alpha, levels=levels,
                     reset_scale=float(node.reset_scale))
    if source is not None:
        return _chained_bispike(plan, layer, pop, source, segment, target)
    unit = 2.0 ** _pow2_ceil(max(2 * x_max, 1e-30) / 2**BISPIKE_INPUT_BITS)
    for _ in range(64):
        tables = _spiking_tables(pop, unit, np.zeros(pop.size), target.decay_bits)
        x_int = np.array([math.ceil(2 * x_max / unit)])
        if state_bound(x_int, np.asarray(tables.carry), tables.carry_shift, steps) <= target.state_max:
            break
        unit *= 2
    alpha_ref = float(alpha.max())
    # largest payload precision p whose worst-case accumulator fits (estimated on the float weights; `_mantissas`
    # then guarantees it on the integer ones)
    p = MAX_AMPLITUDE_BITS
    if layer.projection is not None:
        w_peak = float(np.abs(np.asarray(plan.graph.nodes[layer.projection].weight)).max()) * alpha_ref
        rows = _fan_in_sum(plan, layer) * alpha_ref
        while p > 1 and rows / max(w_peak / 127, 1e-300) * 2 * levels * 2**p > target.state_max:
            p -= 1
    amplitude = _amplitudes(alpha, p)
    payload_unit = alpha_ref / 2**p
    payload_max = int(amplitude.max()) * levels
    width = pop.size
    proj = _projection(plan, layer, alpha_ref, payload_max, np.zeros(width), 1, 1.0 / 2**p,
                       payload_max.bit_length() + 1, target)
    return QChipLayer(name=layer.neuron, kind="bispike", width=width, steps=1, input=f"chip_in:{layer.neuron}",
                      output=f"chip_out:{layer.neuron}", in_unit=unit, payload_unit=payload_unit, segment=segment,
                      thresholds=tables.thresholds, carry=tables.carry, carry_shift=tables.carry_shift,
                      amplitude=frozen_array(amplitude), period=steps, levels=levels, projection=proj)


def _chained_bispike(plan: CutPlan, layer: PlannedLayer, pop: SpikingPop, source: QChipLayer,
                     segment: int, target: Target) -> QChipLayer:
    """A stateless bi-spike on the chip edge of `source`'s projection: its input LSB is that projection's
    accumulator LSB (the dendritic sum arrives unscaled), the projection's bias becomes the neuron's integer bias.
    Without a carry u = x, so the state holds whatever the accumulator (bounded by `_mantissas`) plus the
    bias holds; beyond it the neuron saturates and counts (`bispike_step`)."""
    proj = source.projection
    unit = proj.unit
    tables = _spiking_tables(pop, unit, np.zeros(pop.size), target.decay_bits)
    if np.any(np.asarray(tables.carry)):
        raise CompileError(f"layer {layer.neuron!r}: only stateless bi-spikes (reset_scale 0) can be chained")
    if int(np.asarray(tables.thresholds).max()) > target.state_max:
        raise TargetLimitError(f"layer {layer.neuron!r}: threshold {int(np.asarray(tables.thresholds).max())} LSB of "
                               f"{source.name!r}'s accumulator exceeds the {target.state_bits}-bit state")
    bias = np.zeros(pop.size) if proj.bias is None else np.round(np.asarray(proj.bias) / unit)
    alpha_ref = float(pop.alpha.max())
    amplitude = _amplitudes(pop.alpha, MAX_AMPLITUDE_BITS)
    return QChipLayer(name=layer.neuron, kind="bispike", width=pop.size, steps=1, input=source.output,
                      output=f"chip_out:{layer.neuron}", in_unit=unit,
                      payload_unit=alpha_ref / 2**MAX_AMPLITUDE_BITS,
                      segment=segment, thresholds=tables.thresholds, carry=tables.carry,
                      carry_shift=tables.carry_shift, amplitude=frozen_array(amplitude), period=pop.alpha.size,
                      levels=pop.levels, projection=None, source=source.name,
                      bias=frozen_array(np.clip(bias, -target.state_max, target.state_max).astype(np.int64)))


def _uniform(node: nir.NIRNode, name: str, field_name: str) -> float:
    values = np.asarray(getattr(node, field_name), np.float64).reshape(-1)
    if values.size == 0 or not np.all(values == values[0]):
        raise CompileError(f"node {name!r}: field {field_name!r} must be the same for every neuron on the chip, got "
                           f"{np.unique(values)[:4].tolist()}")
    return float(values[0])


def _lif(plan: CutPlan, layer: PlannedLayer, x_max: float, segment: int, target: Target) -> QChipLayer:
    node: nir.LIF = plan.graph.nodes[layer.neuron]
    tau, r = _uniform(node, layer.neuron, "tau"), _uniform(node, layer.neuron, "r")
    theta = _uniform(node, layer.neuron, "v_threshold")
    for f in ("v_leak", "v_reset"):
        if _uniform(node, layer.neuron, f) != 0:
            raise CompileError(f"node {layer.neuron!r}: field {f!r} must be 0 for the chip LIF (Lava resets to 0 and "
                               "has no leak potential)")
    if tau < 1 or theta <= 0:
        raise CompileError(f"node {layer.neuron!r}: needs tau >= 1 step and v_threshold > 0, got {tau}, {theta}")
    dv = round(target.decay_unity / tau)
    gain = r / tau  # Euler input gain in v units per unit of I
    shifted = 1 << target.activation_shift  # one a_in LSB in v LSBs
    # 2× the calibrated input spans a_in's range; the threshold (in v LSBs) stays within a quarter of the state
    unit_v = 2.0 ** _pow2_ceil(max(2 * x_max * gain / ((target.activation_max + 1) * shifted),
                                   theta / 2 ** (target.state_bits - 2)))
    theta_int = round(theta / unit_v)
    test = (node.metadata or {}).get(THRESHOLD_TEST_KEY, ">")
    test = test.decode() if isinstance(test, bytes) else str(test)
    vth = theta_int // shifted - (1 if test == ">=" else 0)
    width = int(np.asarray(node.v_threshold).size)
    proj = _projection(plan, layer, 1.0, 1, np.zeros(width), 1, 1.0, 0, target)
    return QChipLayer(name=layer.neuron, kind="lif", width=width, steps=1, input=f"chip_in:{layer.neuron}",
                      output=f"chip_out:{layer.neuron}", in_unit=shifted * unit_v / gain, payload_unit=1.0,
                      segment=segment, du=target.decay_unity - 1, dv=dv, vth=int(vth), projection=proj)


def gif_groups(node: GIF) -> list[tuple[np.ndarray, int, int]]:
    """(channel mask, intervals N, max code) of the GIF node's non-empty groups, as the node defines them."""
    return [(mask, n_steps, max_code) for mask, _, n_steps, max_code in node.groups()]


def gif_group_of(node: GIF) -> np.ndarray:
    """int64 [C]: the accumulator group (index into `gif_groups`) of every channel."""
    out = np.zeros(node.salient.size, np.int64)
    for g, (mask, _, _) in enumerate(gif_groups(node)):
        out[mask] = g
    return out


def _gif(plan: CutPlan, layer: PlannedLayer, segment: int, target: Target) -> QChipLayer:
    node = plan.graph.nodes[layer.neuron]
    groups = gif_groups(node)
    max_code = max(code for _, _, code in groups)
    proj = _projection(plan, layer, 1.0, max_code, gif_group_of(node), len(groups), 1.0, int(node.bits), target)
    return QChipLayer(name=layer.neuron, kind="gif", width=int(node.salient.size), steps=2**node.addbit,
                      input=f"chip_in:{layer.neuron}", output=f"chip_out:{layer.neuron}", in_unit=1.0,
                      payload_unit=1.0, segment=segment, levels=2**node.bits, projection=proj)


def relay_weights(plan: CutPlan, layer: PlannedLayer) -> tuple[np.ndarray, np.ndarray, int]:
    """Real weights [branches·out, parts·C] of a folded Linear, its column groups and channel count C.

    Columns: e (the LN0 input, if any) then S (the spike sum, if any); rows: the current token's branch, then
    the shifted branch (fold.py has the algebra)."""
    fold = layer.fold
    w = np.asarray(plan.graph.nodes[fold.linear].weight, np.float64)
    norm = plan.graph.nodes[fold.norm]
    gamma = np.asarray(norm.weight, np.float64)
    gamma0 = np.asarray(plan.graph.nodes[fold.normed].weight, np.float64) if fold.normed else None
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


def _relay(plan: CutPlan, layer: PlannedLayer, target: Target) -> QChipLayer:
    fold = layer.fold
    v, groups, _ = relay_weights(plan, layer)
    payload_max = max(fold.bound_e, fold.bound_s, 1)
    m, e = _mantissas(v, payload_max, fold.linear, target)
    proj = QChipProjection(name=fold.linear, weight=frozen_array(m), unit=2.0 ** (e - 1),
                           message_bits=payload_max.bit_length(), groups=frozen_array(groups.astype(np.int8)),
                           n_groups=int(groups.max()) + 1, bias=None)
    return QChipLayer(name=fold.linear, kind="relay", width=int(groups.size), steps=1,
                      input=f"chip_in:{fold.linear}", output=f"chip_out:{fold.linear}", in_unit=1.0,
                      payload_unit=1.0, segment=layer.segment, levels=payload_max, projection=proj)


def _check_target(q: QChipLayer, target: Target) -> None:
    if q.kind not in ("lif", "relay") and "programmable" not in target.neuron_models:
        raise TargetLimitError(f"layer {q.name!r}: neuron kind {q.kind!r} needs programmable neurons; target "
                               f"{target.name} offers {', '.join(target.neuron_models)} only")
    bits = q.payload_bits
    binary = q.projection is not None and q.projection.encoding != "graded"
    if not binary and bits > target.max_payload_bits and not (bits == 0 and target.max_payload_bits >= 1):
        raise TargetLimitError(f"layer {q.name!r}: graded spikes of {bits} bits exceed target {target.name}'s "
                               f"{target.max_payload_bits}-bit payload (over by {bits - target.max_payload_bits})")


BINARY_CAPABLE = ("gif", "relay")  # unsigned payloads without a per-step amplitude (bi-spike keeps graded)


def choose_encoding(q: QChipLayer, target: Target, forced: str | None) -> QChipLayer:
    """The projection's event encoding (compiler/encodings.py): `forced` on every layer that can carry it (gif,
    relay), else graded when the target carries the payload, else the binary code with fewer messages per event
    (bit-serial from a maximum level of 3 up, as the chain's cost model: compiler/passes/lower_spikes.py)."""
    p = q.projection
    if p is None or q.kind not in BINARY_CAPABLE:
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
        if layer.kind == "bispike":
            source = next(q for q in out if q.name == layer.source) if layer.source else None
            if layer.projection is not None and source is not None:
                raise CompileError(f"layer {layer.neuron!r}: a chained bi-spike with its own projection is not "
                                   "supported")
            q = _bispike(plan, layer, x_max[layer.neuron], layer.segment, target, source)
        elif layer.kind == "lif":
            q = _lif(plan, layer, x_max[layer.neuron], layer.segment, target)
        elif layer.kind == "relay":
            q = _relay(plan, layer, target)
        else:
            q = _gif(plan, layer, layer.segment, target)
        q = choose_encoding(q, target, encoding)
        _check_target(q, target)
        out.append(q)
    return out
