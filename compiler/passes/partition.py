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
A destination whose fan-in exceeds max_axons_in is split into input chunks when its accumulators go to the host
(`host_summed`: a hybrid projection no chained layer reads): balanced contiguous ranges of its concatenated
inputs, each core holding a (destination slice, input chunk) pair (`Core.in_lo`, `in_hi`) whose memory and input
axons count only the chunk's synapses. The host sums the chunks' partial accumulators, so the integer result is
the unsplit one. A destination whose accumulators stay on the chip (a chained layer, every chain `Program`) is
refused: nothing on a core would sum the partials.
Slices are balanced (sizes differ by at most one) so the busiest core, which sets the step latency
(REFERENCE.md §7.6), is as light as possible.
"""

from __future__ import annotations

import math
from collections.abc import Collection
from dataclasses import dataclass, replace

import numpy as np

from spikestack.errors import TargetLimitError

from ..encodings import planes_count
from ..ir import Core, Program, QSpikingPop
from ..targets import Target


def _capacity(pop_name: str, fan_in: int, target: Target, why_whole: str = "") -> int:
    """Neurons per core for rows of `fan_in` axons (planes included); `why_whole` ends the refusal of a fan-in
    over the input axons (why this destination cannot be split)."""
    cap = target.max_neurons
    if fan_in:
        if fan_in > target.max_axons_in:
            raise TargetLimitError(
                f"layer {pop_name!r}: fan-in {fan_in} exceeds {target.max_axons_in} input axons per core of "
                f"target {target.name} (over by {fan_in - target.max_axons_in}){why_whole}")
        per_neuron_bits = fan_in * target.weight_mantissa_bits
        if per_neuron_bits > target.synaptic_memory_bits:
            raise TargetLimitError(
                f"layer {pop_name!r}: one neuron needs {per_neuron_bits} bits of synaptic memory, a core of target "
                f"{target.name} has {target.synaptic_memory_bits}")
        cap = min(cap, target.synaptic_memory_bits // per_neuron_bits)
    return cap


def _why_whole(name: str, edges: list[Edge]) -> str:
    """Why `name`'s fan-in cannot be split: its accumulators feed its own neurons on the chip."""
    sources = [repr(e.src) for e in edges if e.dst == name]
    feeds = f"layer {sources[0]} feeds" if len(sources) == 1 else f"layers {', '.join(sources)} feed"
    return f"; a split fan-in must be summed by the host; {feeds} chip layer {name!r}"


def input_chunks(name: str, edges: list[Edge], target: Target) -> list[tuple[int, int, int]]:
    """(in_lo, in_hi, axons) of each input chunk of `name`: ceil(inputs / (max_axons_in // planes)) balanced
    contiguous ranges of its concatenated inputs (sizes differ by at most one), so that a chunk's inputs, each
    with the most planes any incoming projection has, fit one core's input axons."""
    incoming = [e for e in edges if e.dst == name]
    planes = max(e.planes for e in incoming)
    per_chunk = target.max_axons_in // planes
    if per_chunk == 0:
        raise TargetLimitError(f"layer {name!r}: one input needs {planes} axons (planes), a core of target "
                               f"{target.name} has {target.max_axons_in} input axons")
    offsets = np.cumsum([0] + [int(e.weight.shape[1]) for e in incoming])
    b = _bounds(int(offsets[-1]), per_chunk)
    chunks = []
    for lo, hi in zip(b[:-1].tolist(), b[1:].tolist(), strict=True):
        axons = sum(max(0, min(hi, o_hi) - max(lo, o_lo)) * e.planes
                    for e, o_lo, o_hi in zip(incoming, offsets[:-1].tolist(), offsets[1:].tolist(), strict=True))
        chunks.append((lo, hi, int(axons)))
    return chunks


def partition(program: Program, target: Target) -> Program:
    """Cores of a chain program: every population's accumulators feed its own neurons on the chip, so a fan-in
    over the input axons is refused, never split (nothing on a core would sum the partial accumulators)."""
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


def _sparse_capacity(name: str, size: int, edges: list[Edge], target: Target, why_whole: str = "") -> int:
    """Neurons per core when only non-zero synapses take memory and only source neurons with a synapse into the
    slice take input axons (an unrolled convolution: a few dozen of thousands). Fully dense rows give exactly
    `_capacity`'s answer. The memory cap from the fullest row always fits; input axons of a slice depend on which
    rows share sources, so the cap shrinks until every balanced slice fits."""
    per_row, masks = _incoming_counts(name, size, edges)
    worst = int(per_row.max(initial=0))
    if worst == 0:
        return target.max_neurons
    cap = _capacity(name, worst, target, why_whole)  # one neuron's synapses are its fan-in: same errors and cap
    while True:
        b = _bounds(size, cap)
        axons = max(_slice_axons(masks, lo, hi) for lo, hi in zip(b[:-1], b[1:], strict=True))
        if axons <= target.max_axons_in or cap == 1:
            return cap
        cap = max(1, min(cap - 1, cap * target.max_axons_in // axons))


def slice_populations(pops: list[tuple[str, int, int]], edges: list[Edge], target: Target, *,
                      sparse: bool = False, host_summed: Collection[str] = ()) -> list[Core]:
    """Balanced contiguous slices of every population (name, size, fan-in) under the per-core limits: neurons,
    synaptic memory and input axons (`_capacity`), and output axons — one per (neuron, destination core) route
    (REFERENCE.md §6.1) — which depend on how the destinations are sliced. A source whose busiest core needs more
    output axons than the target has is cut into smaller slices; slices only shrink, so this reaches a fixed
    point. Sources outside `pops` (the host) have no output axons on a core.

    A population in `host_summed` whose fan-in exceeds max_axons_in (dense rows only) gets one core per (slice,
    input chunk), `input_chunks`; the routes are unchanged by the split: every input is in exactly one chunk, so a
    source neuron reaches, per destination slice, the one core of its chunk where it reached the slice's core."""
    chunks = {name: input_chunks(name, edges, target) for name, _, fan_in in pops
              if not sparse and name in host_summed and fan_in > target.max_axons_in}
    caps = {}
    for name, size, fan_in in pops:
        why = _why_whole(name, edges)
        if sparse:
            caps[name] = _sparse_capacity(name, size, edges, target, why)
        else:
            caps[name] = _capacity(name, max(a for *_, a in chunks[name]) if name in chunks else fan_in, target, why)
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
    bits = target.weight_mantissa_bits
    for name, size, fan_in in pops:
        b = bounds[name]
        if name in chunks:  # dense rows: a slice's memory is its rows × the chunk's axons
            cores += [Core(index=len(cores) + i, pop=name, lo=int(lo), hi=int(hi),
                           synaptic_memory_bits=int(hi - lo) * axons * bits, axons_in=axons, in_lo=in_lo, in_hi=in_hi)
                      for i, ((lo, hi), (in_lo, in_hi, axons))
                      in enumerate((s, c) for s in zip(b[:-1], b[1:], strict=True) for c in chunks[name])]
            continue
        per_row, masks = _incoming_counts(name, size, edges) if sparse else (np.full(size, fan_in), [])
        cores += [Core(index=len(cores) + i, pop=name, lo=int(lo), hi=int(hi),
                       synaptic_memory_bits=int(per_row[lo:hi].sum()) * bits,
                       axons_in=_slice_axons(masks, lo, hi) if sparse else fan_in)
                  for i, (lo, hi) in enumerate(zip(b[:-1], b[1:], strict=True))]
    return cores


def check_cover(cores: tuple[Core, ...], sizes: dict[str, int], inputs: dict[str, int]) -> str | None:
    """What is wrong with how `cores` cover the populations (name → size), or None. Every input chunk of a
    population (all its inputs, unless split) has cores whose slices cover [0, size) exactly once; a split
    population's chunks tile [0, inputs[name]) (its concatenated inputs) in contiguous ranges."""
    slices: dict[str, dict[tuple[int, int], list[tuple[int, int]]]] = {}
    for c in cores:
        slices.setdefault(c.pop, {}).setdefault((c.in_lo, c.in_hi), []).append((c.lo, c.hi))
    for name, size in sizes.items():
        by_chunk = slices.get(name)
        if not by_chunk:
            return f"population {name!r}: no core holds it"
        for chunk, covered in by_chunk.items():
            covered.sort()
            starts, ends = [lo for lo, _ in covered], [hi for _, hi in covered]
            if starts != [0, *ends[:-1]] or ends[-1] != size:
                return (f"population {name!r}: the cores of input chunk {list(chunk)} hold {covered[:3]}, not "
                        f"[0, {size}) once")
        chunks = sorted(by_chunk)
        if chunks == [(0, -1)]:
            continue
        starts, ends = [lo for lo, _ in chunks], [hi for _, hi in chunks]
        if starts != [0, *ends[:-1]] or any(lo >= hi for lo, hi in chunks) or ends[-1] != inputs.get(name, 0):
            return (f"population {name!r}: input chunks {chunks[:3]} do not tile its {inputs.get(name, 0)} inputs "
                    "in contiguous ranges")
    return None


def check_core_count(n_cores: int, target: Target) -> None:
    """The system's chips (the target's chip mesh; 64 where a target names none) hold at most this many cores."""
    capacity = target.cores_per_chip * target.chips
    if n_cores > capacity:
        raise TargetLimitError(f"program needs {n_cores} cores, more than {capacity} on the {target.chips} chips "
                               f"({target.chips_x} x {target.chips_y}) of {target.name}")
