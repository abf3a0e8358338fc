"""quantize: the float graph → integer program in Lava `fixed_pt` arithmetic (REFERENCE.md §5.3, §5.4).

Units. Every population state is an integer in units of δ (a power of two, so the fake-quant model is exact in
float64):

* host input: δ_in = 2^ceil(log2(max|table| / 2^(state_bits-10))) — the embedding gets ~14 bits of the 24-bit state.
* projection P from S to D: W'·(α_t/α_ref) = W·α_t. Mantissas q = round(W' / 2^e) in [-Q, Q] with
  Q = 2^(b-1) - 1 for the target's weight_mantissa_bits b (127 for b = 8) and 2^e = 2^ceil(log2(max|W'| / Q));
  Lava sees m = 2q (even, |m| <= 2^b - 2), which its mixed-sign truncation leaves unchanged. S's payload
  amplitude a_t = round(2^p · α_t/α_ref) in [1, 2^p]. Then x = m·(a_t s)·2^(e-1-p):
  δ_D = 2^(e-1-p), and the Dense keeps weight_exp = 0.
* thresholds θ_{t,k} = round((k - 1/2)·α_t/δ), carries round(reset_scale·α_t·(1 - s/K)·2^decay_bits)
  (dimensionless, as the seed multiplies u by α; in units of the target's decay resolution, Lava's 2^-12), bias
  round(b/δ).

Overflow is never silent: the pass bounds |u| over a token's steps from the worst-case input and picks the
largest payload precision p <= 7 that keeps every destination inside the state width; if even p = 1 does not
fit it raises TargetLimitError naming the population, the bound and the limit. Under that bound the executors
can use float64 matmuls exactly (every partial sum < 2^53).
"""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np

from spikestack.errors import TargetLimitError

from ..ir import (
    FloatGraph,
    FloatProjection,
    Program,
    QHostInput,
    QProjection,
    QReadoutPop,
    QSpikingPop,
    SpikingPop,
    frozen_array,
)
from ..targets import Target
from .mantissas import pow2_at_least as _pow2_at_least
from .mantissas import weight_mantissa_max
from .quantize_lif import quantize_lif

MAX_AMPLITUDE_BITS = 7  # payload amplitude precision tried first (a_t <= 128)


def _weight_mantissas(proj: FloatProjection, target: Target) -> tuple[np.ndarray, int]:
    w = np.asarray(proj.weight)
    peak = float(np.abs(w).max())
    q_max = weight_mantissa_max(target)
    e = _pow2_at_least(peak / q_max) if peak > 0 else 0
    q = np.clip(np.round(w / 2.0**e), -q_max, q_max)
    return (2 * q).astype(np.int16), e


def _spiking_tables(pop: SpikingPop, unit: float, bias: np.ndarray, carry_shift: int) -> QSpikingPop:
    """Thresholds and carry factors of a bi-spike population; carries in units of 2^-carry_shift (the target's
    decay resolution, `Target.decay_bits`)."""
    k = np.arange(1, pop.levels + 1)
    thresholds = np.round((k[None, :] - 0.5) * pop.alpha[:, None] / unit).astype(np.int64)
    thresholds = np.maximum(thresholds, 0)
    s = np.arange(-pop.levels, pop.levels + 1)
    carry = np.round(pop.reset_scale * pop.alpha[:, None] * (1 - s[None, :] / pop.levels) * 2**carry_shift)
    return QSpikingPop(
        name=pop.name, size=pop.size, levels=pop.levels, thresholds=frozen_array(thresholds),
        carry=frozen_array(carry.astype(np.int64)), carry_shift=carry_shift,
        amplitude=frozen_array(np.ones(pop.alpha.size, np.int64)), bias=frozen_array(bias.astype(np.int64)),
        state_unit=unit, amplitude_unit=1.0,
    )


def state_bound(x_max: np.ndarray, carry: np.ndarray | None, carry_shift: int, steps: int) -> int:
    """Worst |u| over a token: u_0 = x, u_t = |carry|max · u_{t-1} + x (readouts: carry 1 → T·x)."""
    u = x_max.astype(np.float64)
    worst = float(u.max()) if u.size else 0.0
    for t in range(1, steps):
        factor = 1.0 if carry is None else float(np.abs(carry[t - 1]).max()) / 2**carry_shift
        u = factor * u + x_max
        worst = max(worst, float(u.max()))
    return math.ceil(worst)


def quantize(graph: FloatGraph, target: Target) -> Program:
    if graph.timing == "delayed":
        return quantize_lif(graph, target)
    state_max = target.state_max
    host = graph.host_input
    peak = float(np.abs(host.table).max()) or 1.0
    unit_in = 2.0 ** _pow2_at_least(peak / 2 ** (target.state_bits - 10))
    table_int = np.round(host.table / unit_in).astype(np.int32)
    q_host = QHostInput(name=host.name, table=frozen_array(table_int), context=host.context, unit=unit_in)

    incoming = {p.dst: p for p in graph.projections}
    qpops: dict[str, QSpikingPop | QReadoutPop] = {}
    qprojs: list[QProjection] = []
    report: dict = {"layers": {}}

    first = graph.pop(graph.input_pop)
    assert isinstance(first, SpikingPop)
    qpops[first.name] = _spiking_tables(first, unit_in, np.zeros(first.size), target.decay_bits)
    x_in = np.full(first.size, float(np.abs(table_int).max()))  # each input neuron sees one table entry per step
    bound_in = state_bound(x_in, qpops[first.name].carry, target.decay_bits, graph.steps)
    if bound_in > state_max:
        raise TargetLimitError(f"layer {first.name!r}: worst-case state {bound_in} exceeds the {target.state_bits}-bit "
                               f"limit {state_max} of target {target.name}")
    report["layers"][host.name] = {"max_abs_error": float(np.abs(table_int * unit_in - host.table).max()),
                                   "worst_case_state": int(bound_in),
                                   "state_headroom_bits": round(math.log2(state_max / max(bound_in, 1)), 2)}

    for pop in graph.populations[1:]:
        proj = incoming[pop.name]
        src = graph.pop(proj.src)
        assert isinstance(src, SpikingPop) and src.alpha_ref is not None
        weight, e = _weight_mantissas(proj, target)
        ratio = src.alpha / src.alpha_ref
        dst_carry = None
        for p in range(MAX_AMPLITUDE_BITS, 0, -1):
            unit = 2.0 ** (e - 1 - p)
            bias = np.round(proj.bias / unit) if isinstance(pop, SpikingPop) else np.zeros(pop.size)
            amplitude = np.maximum(np.round(ratio * 2**p), 1).astype(np.int64)
            x_max = np.abs(weight.astype(np.int64)).sum(1) * src.levels * int(amplitude.max()) + np.abs(bias)
            if isinstance(pop, SpikingPop):
                tables = _spiking_tables(pop, unit, bias, target.decay_bits)
                dst_carry = tables.carry
            bound = state_bound(x_max, dst_carry if isinstance(pop, SpikingPop) else None, target.decay_bits,
                                graph.steps)
            if bound <= state_max:
                break
        else:
            raise TargetLimitError(
                f"layer {pop.name!r}: worst-case state {bound} exceeds the {target.state_bits}-bit limit {state_max} "
                f"of target {target.name} even with 1-bit payload amplitudes")
        qsrc = qpops[src.name]
        assert isinstance(qsrc, QSpikingPop)
        qpops[src.name] = _with_amplitude(qsrc, amplitude, 2.0**-p)
        if isinstance(pop, SpikingPop):
            qpops[pop.name] = tables
        else:
            qpops[pop.name] = QReadoutPop(name=pop.name, size=pop.size, state_unit=unit,
                                          host_bias=frozen_array(proj.bias))
        qprojs.append(QProjection(name=proj.name, src=proj.src, dst=proj.dst, weight=frozen_array(weight),
                                  weight_exp=0, message_bits=0))
        effective = weight.astype(np.float64) * 2.0 ** (e - 1) / src.alpha_ref
        float_w = proj.weight / src.alpha_ref
        report["layers"][proj.name] = {
            "weight_exp": e - 1,
            "alpha_ref": src.alpha_ref,
            "payload_amplitude_bits": p,
            "max_abs_weight_error": float(np.abs(effective - float_w).max()),
            "mean_abs_weight_error": float(np.abs(effective - float_w).mean()),
            "worst_case_state": int(bound),
            "state_headroom_bits": round(math.log2(state_max / max(bound, 1)), 2),
        }
    ordered = tuple(qpops[p.name] for p in graph.populations)
    return Program(target=target.name, target_spec=target, steps=graph.steps, host_input=q_host,
                   input_pop=graph.input_pop, populations=ordered, projections=tuple(qprojs), report=report)


def _with_amplitude(pop: QSpikingPop, amplitude: np.ndarray, amplitude_unit: float) -> QSpikingPop:
    return replace(pop, amplitude=frozen_array(amplitude), amplitude_unit=amplitude_unit)

