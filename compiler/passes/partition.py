"""partition: split each population into cores under the target's per-core limits.

A core holds a contiguous slice of one population (dense layers gain nothing from mixing slices: every neuron of
a slice sees the same presynaptic axons). Per core: neurons <= max_neurons; synaptic memory = the slice's non-zero
synapses × weight bits (Loihi stores one entry per synapse, so an unrolled convolution, `compiler/conv.py`, costs
its kernel taps, not its dense matrix; a dense row costs its fan-in) <= synaptic_memory_bits; input axons = the
source neurons with a synapse into the slice <= max_axons_in (both counted so for delayed-timing programs, where
convolutions occur; token programs and `compiler/hybrid` still count dense rows: neurons × fan-in); output axons =
(neuron, destination core) routes <= max_axons_out. Binary encodings multiply the fan-in and the routes by their
planes (compiler/encodings.py). The population fed by the host has no synapses (its input is written into the
cores by the host).
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
        fan_in = 0
        # every incoming projection (a recurrent one too) brings its own input axons
        for proj in (p for p in program.projections if p.dst == pop.name):
            src = program.pop(proj.src) if proj.src in names else None
            planes = planes_count(proj.encoding, src.levels) if isinstance(src, QSpikingPop) else 1  # one per plane
            fan_in += int(proj.weight.shape[1]) * planes
            edges.append(Edge(src=proj.src, dst=pop.name, weight=np.asarray(proj.weight), planes=planes))
        pops.append((pop.name, pop.size, fan_in))
    cores = slice_populations(pops, edges, target, sparse=program.timing == "delayed")
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


def _incoming_counts(name: str, size: int, edges: list[Edge]) -> tuple[np.ndarray, list[tuple[np.ndarray, int]]]:
    """Per neuron of `name`: its non-zero synapses (× planes) over every incoming projection; and the non-zero
    masks, from which a slice's input axons are the source neurons (× planes) it has any synapse from."""
    masks = [(np.asarray(e.weight) != 0, e.planes) for e in edges if e.dst == name]
    per_row = np.zeros(size, np.int64)
    for mask, planes in masks:
        per_row += mask.sum(1) * planes
    return per_row, masks


def _slice_axons(masks: list[tuple[np.ndarray, int]], lo: int, hi: int) -> int:
    return sum(int(mask[lo:hi].any(0).sum()) * planes for mask, planes in masks)


def _sparse_capacity(name: str, size: int, edges: list[Edge], target: Target) -> int:
    """Neurons per core when only non-zero synapses take memory and only source neurons with a synapse into the
    slice take input axons (an unrolled convolution: a few dozen of thousands). Fully dense rows give exactly
    `_capacity`'s answer. The memory cap from the fullest row always fits; input axons of a slice depend on which
    rows share sources, so the cap shrinks until every balanced slice fits."""
    per_row, masks = _incoming_counts(name, size, edges)
    worst = int(per_row.max(initial=0))
    if worst == 0:
        return target.max_neurons
    cap = _capacity(name, worst, target)  # one neuron's synapses are its fan-in: the same errors, the same cap
    while True:
        b = _bounds(size, cap)
        axons = max(_slice_axons(masks, lo, hi) for lo, hi in zip(b[:-1], b[1:], strict=True))
        if axons <= target.max_axons_in or cap == 1:
            return cap
        cap = max(1, min(cap - 1, cap * target.max_axons_in // axons))


def slice_populations(pops: list[tuple[str, int, int]], edges: list[Edge], target: Target, *,
                      sparse: bool = False) -> list[Core]:
    """Balanced contiguous slices of every population (name, size, fan-in) under the per-core limits: neurons,
    synaptic memory and input axons (`_capacity`), and output axons — one per (neuron, destination core) route
    (REFERENCE.md §6.1) — which depend on how the destinations are sliced. A source whose busiest core needs more
    output axons than the target has is cut into smaller slices; slices only shrink, so this reaches a fixed
    point. Sources outside `pops` (the host) have no output axons on a core."""
    caps = {name: _sparse_capacity(name, size, edges, target) if sparse else _capacity(name, fan_in, target)
            for name, size, fan_in in pops}
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
    for name, size, fan_in in pops:
        b = bounds[name]
        per_row, masks = _incoming_counts(name, size, edges) if sparse else (np.full(size, fan_in), [])
        cores += [Core(index=len(cores) + i, pop=name, lo=int(lo), hi=int(hi),
                       synaptic_memory_bits=int(per_row[lo:hi].sum()) * target.weight_mantissa_bits,
                       axons_in=_slice_axons(masks, lo, hi) if sparse else fan_in)
                  for i, (lo, hi) in enumerate(zip(b[:-1], b[1:], strict=True))]
    return cores


def check_core_count(n_cores: int, target: Target) -> None:
    """The system's chips (the target's chip mesh; 64 where a target names none) hold at most this many cores."""
    capacity = target.cores_per_chip * target.chips
    if n_cores > capacity:
        raise TargetLimitError(f"program needs {n_cores} cores, more than {capacity} on the {target.chips} chips "
                               f"({target.chips_x} x {target.chips_y}) of {target.name}")
