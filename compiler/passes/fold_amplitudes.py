"""fold_amplitudes: move each spiking population's largest α into the weights it drives.

Why: a spike's real value is α_t · s_t with α varying per step (REFERENCE.md §1.4). Folding α_ref = max_t α_t into
W leaves a per-step ratio α_t/α_ref in (0, 1] that `quantize` turns into the integer payload amplitude, so the
synapses stay static and the event still carries the exact step-dependent value. Thresholds keep the
population's own α_t (they are compared with its own membrane) and are set by `quantize`.
"""

from __future__ import annotations

from dataclasses import replace

from ..ir import FloatGraph, SpikingPop, frozen_array


def fold_amplitudes(graph: FloatGraph) -> FloatGraph:
    pops = tuple(
        replace(p, alpha_ref=float(p.alpha.max())) if isinstance(p, SpikingPop) else p for p in graph.populations
    )
    by_name = {p.name: p for p in pops}
    projections = []
    for proj in graph.projections:
        src = by_name.get(proj.src)
        if isinstance(src, SpikingPop) and src.alpha_ref is not None:
            proj = replace(proj, weight=frozen_array(proj.weight * src.alpha_ref))
        projections.append(proj)  # LIF and host sources emit unit spikes: nothing to fold
    return replace(graph, populations=pops, projections=tuple(projections))
