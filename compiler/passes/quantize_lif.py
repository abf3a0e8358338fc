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
* weights W·w_in·R·(v input gain)·(synaptic fraction) → even mantissas m ≈ W_eff / 2^(e-1), |m| <= 2^b - 2 for
  the target's weight_mantissa_bits b (Lava 8), so one v
  LSB is δ = 2^(e-1) / 2^A;
* vth = round(v_threshold / 2^(e-1)) (S - 1 - A bits, Lava's 17; uniform per population);
* bias (Affine biases of every incoming projection and v_leak, per step): round((dt/τ)(R·w_in·b + v_leak) / δ)
  = mant · 2^exp, mant 13-bit signed; before a CubaLIF that is the synaptic current's steady state
  (docs/foreign_snn.md, "Biases"). A recurrent population's projections share its δ and its input bound.

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

from ..ir import FloatGraph, FloatProjection, LIFPop, Program, QLIFPop, QProjection, QSpikeInput, frozen_array
from ..targets import Target
from .mantissas import pow2_at_least as _pow2_at_least
from .mantissas import weight_mantissa_max

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


# NIR files store τ as float32 (1e-6 s reads back as 9.99999997e-07 s): dt = τ must not be refused by one ulp
EULER_SLACK = 1e-6


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
        if decay_v > 1 + EULER_SLACK:
            raise CompileError(f"node {pop.name!r}: dt/tau = {decay_v:.3g} > 1 at dt = {dt:g} s, tau = {tau:g} s; "
                               f"forward Euler needs dt <= tau: dt = {tau:g} s (--dt) or smaller would fit")
    keep_syn = 1.0
    if pop.kind == "CubaLIF":
        keep_syn = dt / _uniform(pop, "tau_syn")
        if keep_syn > 1 + EULER_SLACK:
            tau_syn = _uniform(pop, "tau_syn")
            raise CompileError(f"node {pop.name!r}: dt/tau_syn = {keep_syn:.3g} > 1 at dt = {dt:g} s, tau_syn = "
                               f"{tau_syn:g} s; forward Euler needs dt <= tau_syn: dt = {tau_syn:g} s (--dt) or "
                               f"smaller would fit")
    return decay_v, gain_v, keep_syn


def _bias(bias_int: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    exp = np.zeros(bias_int.shape, np.int32)
    mant = bias_int.astype(np.int64)
    while np.any(np.abs(mant) > BIAS_MANT_MAX) and exp.max() < BIAS_EXP_MAX:
        big = np.abs(mant) > BIAS_MANT_MAX
        exp[big] += 1
        mant = np.round(bias_int / 2.0**exp).astype(np.int64)
    return mant.astype(np.int32), exp


def fitting_dt(pop: LIFPop, dt: float, gain_per_dt: float, exponent: int, q_max: int) -> float:
    """The dt at which the weights' shared exponent becomes `exponent` (so the threshold mantissa fits): the
    effective weights scale as dt (IF), dt/τ (LIF) or dt²/(τ·τ_syn) (CubaLIF), and e = ceil(log2(peak / q_max)),
    so peak = 2^e · q_max is the largest peak with that exponent. `gain_per_dt` is the peak at this dt."""
    target_gain = 2.0**exponent * q_max / gain_per_dt  # factor by which the peak must change
    if pop.kind == "CubaLIF":
        return dt * math.sqrt(target_gain)
    return dt * target_gain


def _threshold(pop: LIFPop, dt: float, peak: float, e: int, q_max: int, target: Target) -> int:
    """vth mantissa; refused with the dt that would make it fit (IF graphs on a seconds time base scale every
    weight by dt, so the time base, not the threshold, is usually the cause)."""
    vth_max, shift = target.activation_max, target.activation_shift
    if pop.kind == "LI":
        return vth_max
    v_threshold = _uniform(pop, "v_threshold")
    vth = round(v_threshold / 2.0 ** (e - 1))
    if 0 < vth <= vth_max:
        return vth
    hint = ""
    if peak > 0 and pop.kind != "Threshold" and v_threshold > 0:
        if vth > vth_max:  # smallest e with round(v_th / 2^(e-1)) <= vth_max
            e_fit = math.ceil(math.log2(v_threshold / (vth_max + 0.5))) + 1
        else:  # largest e with round(v_th / 2^(e-1)) >= 1
            e_fit = math.floor(math.log2(2 * v_threshold)) + 1
        hint = f"; dt = {fitting_dt(pop, dt, peak, e_fit, q_max):.6g} s (--dt) would make it fit"
    raise TargetLimitError(f"layer {pop.name!r}: threshold mantissa {vth} outside 1..{vth_max} (vth << {shift} "
                           f"must fit the {target.state_bits}-bit state of target {target.name}) at dt = {dt:g} s"
                           f"{hint}")


def _delay(pop: LIFPop, proj: FloatProjection) -> np.ndarray | None:
    if proj.delay is None:
        return None
    delay = np.asarray(proj.delay, np.int64)
    if delay.max(initial=0) > MAX_DELAY_STEPS:
        raise TargetLimitError(f"layer {pop.name!r}: synaptic delay {int(delay.max())} steps exceeds "
                               f"{MAX_DELAY_STEPS} (6-bit delays of Lava's DelayDense)")
    return frozen_array(delay)


def quantize_lif(graph: FloatGraph, target: Target) -> Program:
    """Every population with all its incoming projections (a recurrent one too): they share the destination's
    v unit, so one weight exponent covers them all and the worst-case input sums over all of them."""
    state_max, unity, shift, vth_max = target.state_max, target.decay_unity, target.activation_shift, \
        target.activation_max
    q_max = weight_mantissa_max(target)
    qpops: list[QLIFPop] = []
    qprojs: list[QProjection] = []
    # the float reference (runtime/float_reference.py) re-reads the NIR at these time bases
    report: dict = {"layers": {}, "dt_s": graph.dt,
                    "layer_dt_s": {p.name: p.dt or graph.dt for p in graph.populations if isinstance(p, LIFPop)}}
    for pop in graph.populations:
        assert isinstance(pop, LIFPop)
        projs = [p for p in graph.projections if p.dst == pop.name]
        if np.any(np.asarray(pop.v_reset) != 0):
            raise CompileError(f"node {pop.name!r}: field 'v_reset' must be 0 (Lava's LIF resets to 0)")
        dt = pop.dt or graph.dt  # a node's own time base (NIR node metadata), else the graph's
        decay_v, gain_v, keep_syn = _euler(pop, dt)
        dv = min(round(decay_v * unity), unity - 1)
        du = round(keep_syn * unity) - 1  # the LIF keeps u·(U - du - 1)/U (Lava's ds_offset 1)
        gain = np.asarray(pop.r) * np.asarray(pop.w_in) * gain_v * keep_syn
        w_effs = [proj.weight * gain[:, None] for proj in projs]
        peak = max(float(np.abs(w).max(initial=0)) for w in w_effs) or 1.0
        e = _pow2_at_least(peak / q_max)
        ms = [(2 * np.clip(np.round(w / 2.0**e), -q_max, q_max)).astype(np.int16) for w in w_effs]
        step = 2.0 ** (e - 1)  # real value of one mantissa unit in v
        unit = step / 2**shift
        row_sum = int(sum(np.abs(m.astype(np.int64)).sum(1) for m in ms).max(initial=0))
        if row_sum > A_IN_MAX or row_sum << shift > state_max:
            raise TargetLimitError(f"layer {pop.name!r}: worst-case input {row_sum} exceeds Lava LIF's 16-bit a_in "
                                   f"({A_IN_MAX}) or the {target.state_bits}-bit current")
        vth = _threshold(pop, dt, peak, e, q_max, target)
        # an Affine bias b is a constant synaptic current: its steady state w_in·b reaches v through the same gain
        # as a spike (a CubaLIF's synapse approaches it within ~τ_syn; Lava's bias adds to v from step 0 on, see
        # docs/foreign_snn.md). LIF and IF have w_in = 1 and keep_syn = 1.
        bias_in = sum(np.asarray(proj.bias) for proj in projs)
        bias_real = gain_v * np.asarray(pop.r) * np.asarray(pop.w_in) * bias_in + decay_v * np.asarray(pop.v_leak)
        mant, exp = _bias(np.round(bias_real / unit))
        if np.any(np.abs(mant) > BIAS_MANT_MAX):
            raise TargetLimitError(
                f"layer {pop.name!r}: bias needs more than Lava's 13-bit mantissa and 3-bit exponent")
        if pop.kind == "LI":  # must never reach the threshold: bound v's steady state from the worst input
            worst = ((row_sum << shift) + int(np.abs(mant.astype(np.int64) << exp).max(initial=0))) / (dv / unity)
            if worst >= vth_max << shift:
                raise TargetLimitError(f"layer {pop.name!r}: leaky integrator may reach {worst:.3g}, the largest "
                                       f"threshold of target {target.name} is {vth_max << shift}: it could spike")
        qpops.append(QLIFPop(name=pop.name, size=pop.size, du=du, dv=dv, vth=vth, neuron=pop.kind,
                             bias_mant=frozen_array(mant), bias_exp=frozen_array(exp), state_unit=unit))
        for proj, m, w_eff in zip(projs, ms, w_effs, strict=True):
            qprojs.append(QProjection(name=proj.name, src=proj.src, dst=proj.dst, weight=frozen_array(m),
                                      weight_exp=0, message_bits=0, delay=_delay(pop, proj)))
            effective = m.astype(np.float64) * step
            report["layers"][proj.name] = {
                "weight_exp": e - 1,
                "max_abs_weight_error": float(np.abs(effective - w_eff).max(initial=0)),
                "mean_abs_weight_error": float(np.abs(effective - w_eff).mean()) if w_eff.size else 0.0,
                "du": du, "dv": dv, "dv_error": abs(dv / unity - decay_v),
                "threshold_error": 0.0 if pop.kind == "LI" else abs(vth * step - _uniform(pop, "v_threshold")),
                "state_headroom_bits": round(math.log2(state_max / max(row_sum << shift, 1)), 2),
            }
    host = graph.host_input
    return Program(target=target.name, target_spec=target, steps=graph.steps,
                   host_input=QSpikeInput(name=host.name, size=host.size), input_pop=None,
                   populations=tuple(qpops), projections=tuple(qprojs), report=report, timing="delayed")
