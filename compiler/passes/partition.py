"""partition: split each population into cores under the target's per-core limits.

A core holds a contiguous slice of one population (dense layers gain nothing from mixing slices: every neuron of
a slice sees the same presynaptic axons). Per core: neurons <= max_neurons; synaptic memory = neurons × fan-in ×
weight bits (dense rows, Loihi stores one entry per synapse) <= synaptic_memory_bits; input axons = fan-in <=
max_axons_in; output axons = (neuron, destination core) routes <= max_axons_out. Binary encodings multiply the
fan-in and the routes by their planes (compiler/encodings.py). The population fed by the host has no synapses
(its input is written into the cores by the host).
Slices are balanced (sizes differ by at most one) so the busiest core, which sets the step latency
(REFERENCE.md §7.6), is as light as possible.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

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
    pops, edges = [], []
    names = {p.name for p in program.populations}
    for pop in program.populations:
        proj = program.incoming(pop.name)
        fan_in = 0
        if proj is not None:  # binary encodings give every presynaptic neuron one axon per plane
            src = program.pop(proj.src) if proj.src in names else None
            planes = planes_count(proj.encoding, src.levels) if isinstance(src, QSpikingPop) else 1
            fan_in = int(proj.weight.shape[1]) * planes
            edges.append(Edge(src=proj.src, dst=pop.name, weight=np.asarray(proj.weight), planes=planes))
        pops.append((pop.name, pop.size, fan_in))
    cores = slice_populations(pops, edges, target)
    check_core_count(len(cores), target)
    return replace(program, cores=tuple(cores))


@dataclass(frozen=True)
class Edge:
    """A projection as partitioning sees it: weight [n_dst, n_src]; `planes` axons per presynaptic neuron."""

    src: str
    dst: str
    weight: np.ndarray
    planes: int = 1


def _bounds(size: int, cap: int) -> np.ndarray:
    return np.linspace(0, size, math.ceil(size / cap) + 1).round().astype(int)


def _routes(edges: list[Edge], bounds: dict[str, np.ndarray], src: str, size: int) -> np.ndarray:
    """Output axons of each neuron of `src`: one per (destination core it has a synapse on, plane)."""
    out = np.zeros(size, np.int64)
    for e in edges:
        if e.src != src:
            continue
        nz = e.weight != 0
        b = bounds[e.dst]
        for lo, hi in zip(b[:-1], b[1:], strict=True):
            out += nz[lo:hi].any(0) * e.planes
    return out


def slice_populations(pops: list[tuple[str, int, int]], edges: list[Edge], target: Target) -> list[Core]:
    """Balanced contiguous slices of every population (name, size, fan-in) under the per-core limits: neurons,
    synaptic memory and input axons (`_capacity`), and output axons — one per (neuron, destination core) route
    (REFERENCE.md §6.1) — which depend on how the destinations are sliced. A source whose busiest core needs more
    output axons than the target has is cut into smaller slices; slices only shrink, so this reaches a fixed
    point. Sources outside `pops` (the host) have no output axons on a core."""
    caps = {name: _capacity(name, fan_in, target) for name, _, fan_in in pops}
    sizes = {name: size for name, size, _ in pops}
    bounds = {name: _bounds(sizes[name], caps[name]) for name in caps}
    changed = True
    while changed:
        changed = False
        for name in caps:
            routes = _routes(edges, bounds, name, sizes[name])
            peak = int(routes.max(initial=0))
            if peak > target.max_axons_out:
                raise TargetLimitError(
                    f"layer {name!r}: one neuron needs {peak} output axons (destination cores × planes), a core of "
                    f"target {target.name} has {target.max_axons_out} (over by {peak - target.max_axons_out})")
            b = bounds[name]
            worst = max(int(routes[lo:hi].sum()) for lo, hi in zip(b[:-1], b[1:], strict=True))
            if worst > target.max_axons_out:
                caps[name] = max(1, min(caps[name] - 1, caps[name] * target.max_axons_out // worst))
                bounds[name] = _bounds(sizes[name], caps[name])
                changed = True
    cores: list[Core] = []
    for name, _, fan_in in pops:
        b = bounds[name]
        cores += [Core(index=len(cores) + i, pop=name, lo=int(lo), hi=int(hi),
                       synaptic_memory_bits=int((hi - lo) * fan_in * target.weight_mantissa_bits), axons_in=fan_in)
                  for i, (lo, hi) in enumerate(zip(b[:-1], b[1:], strict=True))]
    return cores


def check_core_count(n_cores: int, target: Target) -> None:
    capacity = target.chip_cores * 64  # more than 64 chips is not a deployment we model
    if n_cores > capacity:
        raise TargetLimitError(f"program needs {n_cores} cores, more than {capacity} on 64 chips of {target.name}")
