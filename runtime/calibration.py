"""Quantisation error on sample data, per layer: the float graph (NIR semantics) against the compiled program.

For each population after the first, compare the real-valued input current of the float model with the compiled
one (integer current × the layer's state unit), and the float spike levels with the integer ones: max and mean
absolute error, relative error, spike agreement, saturations. Run at compile time (`spikestack compile
--calibrate N`) and stored in the artifact's report, so `spikestack inspect ART` shows what fixed point cost.
"""

from __future__ import annotations

import numpy as np
from spikestack.compiler.ir import FloatGraph, Program, QSpikingPop, SpikingPop

from .reference import projection_input, run


def _float_levels(pop: SpikingPop, x: np.ndarray, steps: int) -> tuple[np.ndarray, np.ndarray]:
    """Float neuron over [tokens, T, n] inputs → (levels, outputs α_t·s_t), REFERENCE.md §1.1."""
    u = np.zeros(x.shape[::2])
    s = np.zeros_like(u)
    levels, outs = np.empty(x.shape), np.empty(x.shape)
    for t in range(steps):
        u = x[:, t] if t == 0 else pop.reset_scale * pop.alpha[t - 1] * (1 - s / pop.levels) * u + x[:, t]
        s = np.clip(np.round(u / pop.alpha[t]), -pop.levels, pop.levels)
        levels[:, t], outs[:, t] = s, pop.alpha[t] * s
    return levels, outs


def layer_errors(graph: FloatGraph, program: Program, ids: np.ndarray) -> dict[str, dict]:
    """Per spiking population: spike agreement with the float model; per projection: error of the input current
    it delivers. `graph` is the float graph as read from NIR (before fold_amplitudes)."""
    if program.timing != "token":
        return {}
    trace = run(program, ids)
    host = graph.host_input
    x = np.asarray(host.table)[np.asarray(ids)].reshape(len(ids), -1)
    current = np.repeat(x[:, None, :], graph.steps, axis=1)  # float input current of the first population
    report: dict[str, dict] = {}
    for pop in graph.populations:
        qpop = program.pop(pop.name)
        if not isinstance(pop, SpikingPop) or not isinstance(qpop, QSpikingPop):
            continue
        levels, outs = _float_levels(pop, current, graph.steps)
        report[pop.name] = {"spike_agreement": round(float((levels == trace.spikes[pop.name]).mean()), 6),
                            "saturations": int(trace.saturations.get(pop.name, 0))}
        proj_f = next(p for p in graph.projections if p.src == pop.name)
        proj_q = next(p for p in program.projections if p.src == pop.name)
        dst = program.pop(proj_f.dst)
        float_next = outs @ proj_f.weight.T + proj_f.bias
        int_next = projection_input(trace.spikes[pop.name], qpop, proj_q, program.state_bits)
        bias = np.asarray(dst.bias) if isinstance(dst, QSpikingPop) else 0
        real_next = (int_next + bias) * dst.state_unit
        if not isinstance(dst, QSpikingPop):
            real_next = real_next + np.asarray(dst.host_bias)
        err = np.abs(real_next - float_next)
        scale = float(np.abs(float_next).mean()) or 1.0
        report[proj_f.name] = {"max_abs_error": float(err.max()), "mean_abs_error": float(err.mean()),
                               "mean_rel_error": float(err.mean() / scale)}
        current = float_next
    return report
