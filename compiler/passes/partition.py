"""partition: split each population into cores under the target's per-core limits.

A core holds a contiguous slice of one population (dense layers gain nothing from mixing slices: every neuron of
a slice sees the same presynaptic axons). Per core: neurons <= max_neurons; synaptic memory = neurons × fan-in ×
weight bits (dense rows, Loihi stores one entry per synapse) <= synaptic_memory_bits; input axons = fan-in <=
max_axons_in. Binary encodings multiply the fan-in by their planes (compiler/encodings.py). The population fed
by the host has no synapses (its input is written into the cores by the host).
Slices are balanced (sizes differ by at most one) so the busiest core, which sets the step latency
(REFERENCE.md §7.6), is as light as possible.
"""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np

from spikestack.errors import TargetLimitError

from ..encodings import planes_count
from ..ir import Core, Program, QSpikingPop
from ..targets import Target


def _capacity(pop_name: str, fan_in: int, target: Target) -> int:
    cap = target.max_neurons
    if fan_in:
        if fan_in > target.max_axons_in:
            raise TargetLimitError(
                f"layer {pop_name!r}: fan-in {fan_in} exceeds {target.max_axons_in} input axons per core of "
                f"target {target.name} (over by {fan_in - target.max_axons_in})")
        per_neuron_bits = fan_in * target.weight_mantissa_bits
        if per_neuron_bits > target.synaptic_memory_bits:
            raise TargetLimitError(
                f"layer {pop_name!r}: one neuron needs {per_neuron_bits} bits of synaptic memory, a core of target "
                f"{target.name} has {target.synaptic_memory_bits}")
        cap = min(cap, target.synaptic_memory_bits // per_neuron_bits)
    return cap


def partition(program: Program, target: Target) -> Program:
    cores: list[Core] = []
    for pop in program.populations:
        proj = program.incoming(pop.name)
        fan_in = 0
        if proj is not None:  # binary encodings give every presynaptic neuron one axon per plane
            src = program.pop(proj.src) if proj.src in {p.name for p in program.populations} else None
            planes = planes_count(proj.encoding, src.levels) if isinstance(src, QSpikingPop) else 1
            fan_in = int(proj.weight.shape[1]) * planes
        cores += slice_population(pop.name, pop.size, fan_in, target, len(cores))
    check_core_count(len(cores), target)
    return replace(program, cores=tuple(cores))


def slice_population(name: str, size: int, fan_in: int, target: Target, first_index: int) -> list[Core]:
    """Balanced contiguous slices of one population, each within the target's per-core limits."""
    cap = _capacity(name, fan_in, target)
    n_cores = math.ceil(size / cap)
    bounds = np.linspace(0, size, n_cores + 1).round().astype(int)
    return [Core(index=first_index + i, pop=name, lo=int(lo), hi=int(hi),
                 synaptic_memory_bits=int((hi - lo) * fan_in * target.weight_mantissa_bits), axons_in=fan_in)
            for i, (lo, hi) in enumerate(zip(bounds[:-1], bounds[1:], strict=True))]


def check_core_count(n_cores: int, target: Target) -> None:
    capacity = target.chip_cores * 64  # more than 64 chips is not a deployment we model
    if n_cores > capacity:
        raise TargetLimitError(f"program needs {n_cores} cores, more than {capacity} on 64 chips of {target.name}")
