"""The float reference: the NIR graph's own float equations, simulated in numpy with the compiled program's timing,
so that a user can tell quantisation loss (a few raster entries) from a wrong graph (most of them).

It runs the compiler's float IR (`compiler.ir.FloatGraph`, what `from_nir` read from the user's file) with:

* forward Euler at the same dt the program was compiled with (`compiler/passes/quantize_lif.py` records it in the
  report as `dt_s`):
      LIF:      v ← v + dt/τ·(v_leak − v + R·I)               spike when v > v_threshold, then v ← v_reset
      CubaLIF:  I_s ← I_s + dt/τ_syn·(w_in·I − I_s), then the LIF update with I_s in place of I
      IF:       v ← v + dt·R·I                                  (no leak)
      LI:       the LIF update without spikes; the output is v
      Threshold: z = [I > threshold], stateless
* the same delays as the compiled program: every projection's input I at step t is W·(its source's events of step
  t−1−d) + bias, d the synapse's NIR Delay in steps; the Affine bias acts from step 0 (like Lava's bias field;
  docs/foreign_snn.md says why).

Why it takes the FloatGraph and not the artifact: an artifact holds integers only (its format is the contract of
every backend and of the simulator), and carrying a second, float copy of every parameter in it would double the
format for one diagnostic. The NIR file the user compiled is the definition of the float model anyway, so the
float reference is built from it (`spikestack.api` checks that its populations, sizes and steps are the
program's). Floats only: this is no fixed-point path.
"""

from __future__ import annotations

import numpy as np
from spikestack.compiler.ir import FloatGraph, LIFPop

from .reference import delay_groups
from .trace import Trace


def _coefficients(pop: LIFPop, dt: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(v decay per step, v input gain per step, synaptic fraction per step) of forward Euler, per neuron."""
    tau = np.asarray(pop.tau, np.float64)
    if pop.kind == "IF":
        return np.zeros(pop.size), np.full(pop.size, dt), np.ones(pop.size)
    frac = np.ones(pop.size)
    if pop.kind == "CubaLIF":
        frac = dt / np.asarray(pop.tau_syn, np.float64)
    return dt / tau, dt / tau, frac


def run_float(graph: FloatGraph, spikes_in: np.ndarray) -> Trace:
    """Spike rasters int8 [samples, steps, n] of every population; readout = the last population's spike counts
    (or its final v for an LI output, like the integer executors)."""
    x = np.asarray(spikes_in, np.float64)
    n_s, steps = x.shape[0], graph.steps
    pops = [p for p in graph.populations if isinstance(p, LIFPop)]
    host = graph.host_input.name
    delays = {p.name: np.zeros(p.weight.shape, np.int64) if p.delay is None else np.asarray(p.delay, np.int64)
              for p in graph.projections}
    depth = 1 + max((int(d.max(initial=0)) for d in delays.values()), default=0)
    sizes = {host: graph.host_input.size} | {p.name: p.size for p in pops}
    history = {n: np.zeros((depth, n_s, size)) for n, size in sizes.items()}  # [t-1, t-2, …]
    v = {p.name: np.zeros((n_s, p.size)) for p in pops}
    syn = {p.name: np.zeros((n_s, p.size)) for p in pops}
    coef = {p.name: _coefficients(p, p.dt or graph.dt) for p in pops}  # a node's own time base, else the graph's
    spikes = {p.name: np.zeros((n_s, steps, p.size), np.int8) for p in pops}
    groups = {proj.name: [(lag, w.T) for lag, w in delay_groups(np.asarray(proj.weight, np.float64), proj.delay)]
              for proj in graph.projections}  # once, not once per step
    for t in range(steps):
        current = {p.name: np.zeros((n_s, p.size)) for p in pops}
        for proj in graph.projections:
            for lag, w_t in groups[proj.name]:
                current[proj.dst] += history[proj.src][lag] @ w_t
            current[proj.dst] += np.asarray(proj.bias, np.float64)
        for p in pops:
            spikes[p.name][:, t] = _step(p, v, syn, current[p.name], coef[p.name])
        for name in history:
            history[name] = np.roll(history[name], 1, axis=0)
            history[name][0] = x[:, t] if name == host else spikes[name][:, t]
    out = pops[-1]
    if out.kind == "LI":
        return Trace(spikes=spikes, readout=v[out.name], logits=v[out.name].copy(), inputs=x,
                     saturations={p.name: 0 for p in pops})
    counts = spikes[out.name].sum(1).astype(np.int64)
    return Trace(spikes=spikes, readout=counts, logits=counts.astype(np.float64), inputs=x,
                 saturations={p.name: 0 for p in pops})


def _step(pop: LIFPop, v: dict, syn: dict, current: np.ndarray, coef: tuple) -> np.ndarray:
    """One Euler step of one population in place on v[pop] (and syn[pop]); returns its 0/1 spikes."""
    decay, gain, frac = coef
    if pop.kind == "Threshold":
        return (current > np.asarray(pop.v_threshold)).astype(np.int8)
    drive = current
    if pop.kind == "CubaLIF":
        syn[pop.name] = syn[pop.name] + frac * (np.asarray(pop.w_in) * current - syn[pop.name])
        drive = syn[pop.name]
    r, leak = np.asarray(pop.r), np.asarray(pop.v_leak)
    v_new = v[pop.name] - decay * v[pop.name] + gain * (r * drive) + decay * leak
    if pop.kind == "LI":
        v[pop.name] = v_new
        return np.zeros(v_new.shape, np.int8)
    fired = v_new > np.asarray(pop.v_threshold)
    v[pop.name] = np.where(fired, np.asarray(pop.v_reset), v_new)
    return fired.astype(np.int8)


def agreement(program, compiled: Trace, floating: Trace) -> dict:
    """How closely the compiled program follows the float model on the same inputs: the fraction of equal raster
    entries (every spiking layer, sample, step and neuron), and per output neuron the spike counts of both and
    their agreement 1 − |Δ| / max(counts, 1) (summed over samples)."""
    equal = total = 0
    for name, ras in compiled.spikes.items():
        other = floating.spikes.get(name)
        if other is None or other.shape != ras.shape:
            raise ValueError(f"layer {name!r}: float reference raster {None if other is None else other.shape} "
                             f"vs compiled {ras.shape}")
        equal += int((np.asarray(ras) == np.asarray(other)).sum())
        total += int(np.asarray(ras).size)
    out = program.populations[-1].name
    a = np.asarray(compiled.spikes[out], np.int64).sum((0, 1))
    b = np.asarray(floating.spikes[out], np.int64).sum((0, 1))
    per_neuron = 1.0 - np.abs(a - b) / np.maximum(np.maximum(a, b), 1)
    return {"raster_agreement": round(equal / max(total, 1), 6), "output_layer": out,
            "output_spike_counts": {"compiled": a.tolist(), "float": b.tolist()},
            "output_count_agreement": [round(float(c), 6) for c in per_neuron]}
