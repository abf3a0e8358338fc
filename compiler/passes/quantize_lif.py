"""quantize (LIF graphs): NIR LIF, CubaLIF and IF populations → Lava's fixed_pt CUBA-LIF fields
(`lava/proc/lif/models.py`), in the target's widths.

The target gives three numbers (`compiler/targets.py`): the state width S (Lava 24), the decay resolution D bits
(Lava 12, unity U = 2^D = 4096) and the activation shift A (Lava 6). Forward Euler with step dt turns
τ dv/dt = (v_leak - v) + R·I into v ← (1 - dt/τ)·v + (dt/τ)·(R·I + v_leak) (IF: v ← v + dt·R·I; CubaLIF adds
I ← (1 - dt/τ_syn)·I + (dt/τ_syn)·w_in·S). The LIF computes u ← u·(U - du - 1) >> D + (a_in << A) and
v ← v·(U - dv) >> D + u + bias, spike if v > vth << A, then v ← 0. So, per population (`_euler` gives the three
per-step coefficients):

* du = round(dt/τ_syn · U) - 1 for CubaLIF; U - 1 for LIF and IF, so u is exactly this step's input;
* dv = round(dt/τ · U), 0 for IF (τ must be uniform in the population: Lava's dv is one register);
* weights W·w_in·R·(v input gain)·(synaptic fraction) → even 8-bit mantissas m ≈ W_eff / 2^(e-1), so one v
  LSB is δ = 2^(e-1) / 2^A;
* vth = round(v_threshold / 2^(e-1)) (S - 1 - A bits, Lava's 17; uniform per population);
* bias (Affine bias and v_leak, per step): round((dt/τ)(R·b + v_leak) / δ) = mant · 2^exp, mant 13-bit signed.

LI (leaky integrator, no spikes) gets the largest threshold and a proof that v stays below it; Threshold (a
stateless Heaviside) gets dv = U - 1, the most decay the field allows: v carries at most |v|/U into the next step
(an approximation of NIR's stateless node, bounded by that fraction). Delay nodes become per-synapse delays (Lava
DelayDense, 0..63 steps).

Refused with the node and field named: v_reset ≠ 0 (Lava resets to 0), dt/τ > 1, non-uniform τ or threshold,
input sums beyond a_in's 16 bits (Lava's LIF a_in is int16) or the S-bit current.
"""

from __future__ import annotations

import math

import numpy as np

from spikestack.errors import CompileError, TargetLimitError

from ..ir import FloatGraph, LIFPop, Program, QLIFPop, QProjection, QSpikeInput, frozen_array
from ..targets import Target
from .mantissas import WEIGHT_MANTISSA_MAX
from .mantissas import pow2_at_least as _pow2_at_least

# Field formats of the LIF compartment itself (lava/proc/lif/models.py declares them; they are not widths of the
# neuron state, which come from the Target): bias_mant int16 with precision 13, bias_exp precision 3, a_in int16.
BIAS_MANT_MAX = (1 << 12) - 1  # 13-bit signed bias mantissa
BIAS_EXP_MAX = 7  # 3-bit bias exponent
A_IN_MAX = (1 << 15) - 1  # Lava's fixed_pt LIF types a_in as int16
MAX_DELAY_STEPS = 63  # Lava's bit-accurate DelayDense: 6-bit delays, 0..63 (lava/proc/dense/models.py)


def _uniform(pop: LIFPop, field: str) -> float:
    values = np.asarray(getattr(pop, field))
    if not np.allclose(values, values[0]):
        raise CompileError(f"node {pop.name!r}: field {field!r} must be the same for all neurons of a population "
                           f"(Lava's LIF holds one value), got {np.unique(values)[:4]}…")
    return float(values[0])


def _euler(pop: LIFPop, dt: float) -> tuple[float, float, float]:
    """(v decay per step, v input gain per step, synaptic input fraction per step) under forward Euler.

    LIF/CubaLIF: v ← (1 - dt/τ)·v + (dt/τ)·(v_leak + R·I); IF: v ← v + dt·R·I.
    CubaLIF: I ← (1 - dt/τ_syn)·I + (dt/τ_syn)·w_in·S, which Lava's u holds scaled by the v input gain.
    LIF/IF: I = S (keep_syn = 1, so du = U - 1 and u is this step's input only).
    """
    if pop.kind == "Threshold":  # v = this step's input: full decay (v/U survives at most: dv < U)
        return 1.0, 1.0, 1.0
    tau = _uniform(pop, "tau")
    if pop.kind == "IF":
        decay_v, gain_v = 0.0, dt
    else:
        decay_v = gain_v = dt / tau
        if decay_v > 1:
            raise CompileError(f"node {pop.name!r}: dt/tau = {decay_v:.3g} > 1; forward Euler needs dt <= tau")
    keep_syn = 1.0
    if pop.kind == "CubaLIF":
        keep_syn = dt / _uniform(pop, "tau_syn")
        if keep_syn > 1:
            raise CompileError(f"node {pop.name!r}: dt/tau_syn = {keep_syn:.3g} > 1; forward Euler needs dt <= tau_syn")
    return decay_v, gain_v, keep_syn


def _bias(bias_int: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    exp = np.zeros(bias_int.shape, np.int32)
    mant = bias_int.astype(np.int64)
    while np.any(np.abs(mant) > BIAS_MANT_MAX) and exp.max() < BIAS_EXP_MAX:
        big = np.abs(mant) > BIAS_MANT_MAX
        exp[big] += 1
        mant = np.round(bias_int / 2.0**exp).astype(np.int64)
    return mant.astype(np.int32), exp


def quantize_lif(graph: FloatGraph, target: Target) -> Program:
    state_max, unity, shift, vth_max = target.state_max, target.decay_unity, target.activation_shift, \
        target.activation_max
    qpops: list[QLIFPop] = []
    qprojs: list[QProjection] = []
    report: dict = {"layers": {}}
    for pop in graph.populations:
        assert isinstance(pop, LIFPop)
        proj = next(p for p in graph.projections if p.dst == pop.name)
        if np.any(np.asarray(pop.v_reset) != 0):
            raise CompileError(f"node {pop.name!r}: field 'v_reset' must be 0 (Lava's LIF resets to 0)")
        decay_v, gain_v, keep_syn = _euler(pop, graph.dt)
        dv = min(round(decay_v * unity), unity - 1)
        du = round(keep_syn * unity) - 1  # the LIF keeps u·(U - du - 1)/U (Lava's ds_offset 1)
        if keep_syn < 1 and np.any(np.asarray(proj.bias) != 0):
            raise CompileError(f"node {proj.name!r}: field 'bias' must be 0 before a {pop.kind} (a constant synaptic "
                               f"current has no Lava field); fold it into the neuron's v_leak")
        w_eff = proj.weight * (np.asarray(pop.r) * np.asarray(pop.w_in) * gain_v * keep_syn)[:, None]
        peak = float(np.abs(w_eff).max()) or 1.0
        e = _pow2_at_least(peak / WEIGHT_MANTISSA_MAX)
        m = (2 * np.clip(np.round(w_eff / 2.0**e), -WEIGHT_MANTISSA_MAX, WEIGHT_MANTISSA_MAX)).astype(np.int16)
        step = 2.0 ** (e - 1)  # real value of one mantissa unit in v
        unit = step / 2**shift
        row_sum = int(np.abs(m.astype(np.int64)).sum(1).max(initial=0))
        if row_sum > A_IN_MAX or row_sum << shift > state_max:
            raise TargetLimitError(f"layer {pop.name!r}: worst-case input {row_sum} exceeds Lava LIF's 16-bit a_in "
                                   f"({A_IN_MAX}) or the {target.state_bits}-bit current")
        vth = vth_max if pop.kind == "LI" else round(_uniform(pop, "v_threshold") / step)
        if not 0 < vth <= vth_max:
            raise TargetLimitError(f"layer {pop.name!r}: threshold mantissa {vth} outside 1..{vth_max} (vth << {shift} "
                                   f"must fit the {target.state_bits}-bit state of target {target.name})")
        bias_real = gain_v * np.asarray(pop.r) * proj.bias + decay_v * np.asarray(pop.v_leak)
        mant, exp = _bias(np.round(bias_real / unit))
        if np.any(np.abs(mant) > BIAS_MANT_MAX):
            raise TargetLimitError(
                f"layer {pop.name!r}: bias needs more than Lava's 13-bit mantissa and 3-bit exponent")
        if pop.kind == "LI":  # must never reach the threshold: bound v's steady state from the worst input
            worst = ((row_sum << shift) + int(np.abs(mant.astype(np.int64) << exp).max(initial=0))) / (dv / unity)
            if worst >= vth_max << shift:
                raise TargetLimitError(f"layer {pop.name!r}: leaky integrator may reach {worst:.3g}, the largest "
                                       f"threshold of target {target.name} is {vth_max << shift}: it could spike")
        delay = None
        if proj.delay is not None:
            delay = np.asarray(proj.delay, np.int64)
            if delay.max(initial=0) > MAX_DELAY_STEPS:
                raise TargetLimitError(f"layer {pop.name!r}: synaptic delay {int(delay.max())} steps exceeds "
                                       f"{MAX_DELAY_STEPS} (6-bit delays of Lava's DelayDense)")
            delay = frozen_array(delay)
        qpops.append(QLIFPop(name=pop.name, size=pop.size, du=du, dv=dv, vth=vth, neuron=pop.kind,
                             bias_mant=frozen_array(mant), bias_exp=frozen_array(exp), state_unit=unit))
        qprojs.append(QProjection(name=proj.name, src=proj.src, dst=proj.dst, weight=frozen_array(m),
                                  weight_exp=0, message_bits=0, delay=delay))
        effective = m.astype(np.float64) * step
        report["layers"][proj.name] = {
            "weight_exp": e - 1,
            "max_abs_weight_error": float(np.abs(effective - w_eff).max()),
            "mean_abs_weight_error": float(np.abs(effective - w_eff).mean()),
            "du": du, "dv": dv, "dv_error": abs(dv / unity - decay_v),
            "threshold_error": 0.0 if pop.kind == "LI" else abs(vth * step - _uniform(pop, "v_threshold")),
            "state_headroom_bits": round(math.log2(state_max / max(row_sum << shift, 1)), 2),
        }
    host = graph.host_input
    return Program(target=target.name, target_spec=target, steps=graph.steps,
                   host_input=QSpikeInput(name=host.name, size=host.size), input_pop=None,
                   populations=tuple(qpops), projections=tuple(qprojs), report=report, timing="delayed")
