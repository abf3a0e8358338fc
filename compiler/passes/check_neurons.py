"""check_neurons: every population's neuron kind must exist on the target, before any work is spent on it.

The bi-spike neuron has a multiplicative, spike-dependent reset and per-step thresholds: not a CUBA-LIF
compartment (REFERENCE.md §1.4), so it needs programmable neurons (Loihi 2 microcode). Readout accumulators are
plain integrators (a CUBA-LIF compartment with no leak and an unreachable threshold) and run anywhere.
"""

from __future__ import annotations

from spikestack.errors import TargetLimitError

from ..ir import FloatGraph, LIFPop, SpikingPop
from ..targets import Target

REQUIRED_MODEL = {SpikingPop: "programmable", LIFPop: "cuba_lif"}
KIND = {SpikingPop: "bi-spike neuron (multiplicative reset, per-step thresholds)", LIFPop: "LIF neuron"}


def check_neurons(graph: FloatGraph, target: Target) -> FloatGraph:
    for pop in graph.populations:
        needed = REQUIRED_MODEL.get(type(pop))
        if needed and needed not in target.neuron_models:
            raise TargetLimitError(
                f"layer {pop.name!r}: the {KIND[type(pop)]} needs "
                f"{needed} neurons; target {target.name} offers only {', '.join(target.neuron_models)}")
    return graph
