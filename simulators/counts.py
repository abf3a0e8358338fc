"""Event counts per core and step, from an artifact and an event trace (vectorised; no per-event loop).

Conventions (REFERENCE.md §7): a synaptic op is one (non-zero incoming event, non-zero synapse) pair, so a
graded or signed spike counts once per target synapse whatever its payload (NeuroBench's Effective ACs on
binary spikes; counters that treat signed spikes as non-spikes undercount, §7.2). One message per (spiking
neuron, destination core holding at least one of its synapses); it travels |Δx|+|Δy| tile hops (X-Y routing:
all of Δx first, then Δy), and every directed mesh link it crosses is charged one message, so the busiest link's
load bounds the step's serialisation (`model.step_latency_s`). Chips are not told apart in routing: cores on
different chips route as if on one mesh (inter-chip links are not modelled).
Every neuron of a core updates every step (our neurons all see input each step; inactive-compartment savings are
not modelled). Host traffic: values written into the input population per step, values read from the readout
per token.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from spikestack.compiler.encodings import events_per_spike
from spikestack.compiler.ir import Program
from spikestack.runtime.trace import Trace


@dataclass(frozen=True, slots=True)
class Counts:
    """All arrays are per (token, step, core) unless said otherwise."""

    synaptic_ops: np.ndarray  # [tokens, T, cores] arriving at the core
    neuron_updates: np.ndarray  # [cores]: neurons updated per step (all of them, active or idle)
    active_updates: np.ndarray  # [tokens, T, cores]: neurons that received input or spiked (the rest idle)
    spikes_out: np.ndarray  # [tokens, T, cores] non-zero spikes emitted
    messages_out: np.ndarray  # [tokens, T, cores]
    hops: np.ndarray  # [tokens, T, cores]: Σ hops of messages leaving the core
    max_hops: np.ndarray  # [tokens, T]: longest route taken in the step
    busiest_link: np.ndarray  # [tokens, T]: messages crossing the most loaded directed link in the step
    links: tuple[tuple[int, int, int, int], ...]  # directed links (x0, y0, x1, y1) that carry traffic
    link_messages: np.ndarray  # [links]: messages over all tokens and steps per link
    host_values_in: int  # per token
    host_values_out: int  # per token


def core_slices(program: Program, pop: str) -> list[tuple[int, int, int]]:
    return [(c.index, c.lo, c.hi) for c in program.cores if c.pop == pop]


def xy_route(src: tuple[int, int], dst: tuple[int, int]) -> list[tuple[int, int, int, int]]:
    """Directed links crossed from tile src to tile dst, X first then Y (dimension-order routing, §6.4)."""
    (x, y), (x1, y1) = src, dst
    links = []
    while x != x1:
        nx = x + (1 if x1 > x else -1)
        links.append((x, y, nx, y))
        x = nx
    while y != y1:
        ny = y + (1 if y1 > y else -1)
        links.append((x, y, x, ny))
        y = ny
    return links


def _route_incidence(program: Program) -> tuple[list[tuple[int, int, int, int]], dict[tuple[int, int], list[int]]]:
    """Every link used by a (src core, dst core) pair of some projection, and each pair's link indices."""
    index: dict[tuple[int, int, int, int], int] = {}
    routes: dict[tuple[int, int], list[int]] = {}
    cores = program.cores
    for proj in program.projections:
        for s, _, _ in core_slices(program, proj.src):
            for d, _, _ in core_slices(program, proj.dst):
                path = xy_route((cores[s].x, cores[s].y), (cores[d].x, cores[d].y))
                routes[(s, d)] = [index.setdefault(link, len(index)) for link in path]
    return list(index), routes


def count_events(program: Program, trace: Trace) -> Counts:
    n_cores = len(program.cores)
    n_tok, steps = trace.tokens, program.steps
    shape = (n_tok, steps, n_cores)
    synops, spikes_out, msgs, hops = (np.zeros(shape, np.int64) for _ in range(4))
    max_hops = np.zeros((n_tok, steps), np.int64)
    xy = np.array([(c.x, c.y) for c in program.cores])
    links, link_routes = _route_incidence(program)
    link_load = np.zeros((n_tok, steps, len(links)))  # float64: exact below 2^53 messages
    pop_names = {p.name for p in program.populations}
    received: dict[str, np.ndarray] = {}  # destination → bool [tok, T, n]: got at least one event this step
    for proj in program.projections:
        from_host = proj.src not in pop_names  # host-written events: synaptic ops on chip, no on-chip messages
        # binary messages per neuron and step in this projection's encoding: 1 per non-zero graded spike,
        # |s| unary events, popcount(|s|) bit-serial events (compiler/encodings.py)
        levels = trace.inputs if from_host else trace.spikes[proj.src]
        events = events_per_spike(levels, proj.encoding).astype(np.float64)  # [tok, T, n]
        nz = np.asarray(proj.weight) != 0  # [n_dst, n_src]
        received[proj.dst] = (events @ nz.T.astype(np.float64)) > 0
        dst_cores = core_slices(program, proj.dst)
        fanout = np.stack([nz[lo:hi].sum(0) for _, lo, hi in dst_cores], 1)  # [n_src, C_dst]
        synops[..., [c for c, _, _ in dst_cores]] += np.rint(events @ fanout).astype(np.int64)
        routes = (fanout > 0).astype(np.float64)
        dst_idx = [c for c, _, _ in dst_cores]
        incidence = {}  # src core → [C_dst, links]: 1 where the route to that dst core crosses the link
        for core, _, _ in core_slices(program, proj.src):
            incidence[core] = np.zeros((len(dst_cores), len(links)))
            for j, d in enumerate(dst_idx):
                incidence[core][j, link_routes[(core, d)]] = 1.0
        for core, lo, hi in core_slices(program, proj.src):
            ev = events[..., lo:hi]
            spikes_out[..., core] += ev.sum(-1).astype(np.int64)
            per_dst = ev @ routes[lo:hi]  # [tok, T, C_dst] messages to each dst core (exact small integers)
            dist = np.abs(xy[dst_idx] - xy[core]).sum(1)  # tile hops to each dst core
            msgs[..., core] += np.rint(per_dst.sum(-1)).astype(np.int64)
            hops[..., core] += np.rint(per_dst @ dist.astype(np.float64)).astype(np.int64)
            # float BLAS matmuls: numpy's int64 matmul has no BLAS path and dominated many-core runs (bench)
            link_load += per_dst @ incidence[core]
            if dist.max(initial=0) > 0:
                max_hops = np.maximum(max_hops, np.where(per_dst > 0, dist, 0).max(-1, initial=0))
    updates = np.array([c.hi - c.lo for c in program.cores], np.int64)
    # active: received an event or spiked; the population the host writes currents into is active every step
    active = np.zeros(shape, np.int64)
    for pop in program.populations:
        if pop.name == program.input_pop:
            flags = np.ones((n_tok, steps, pop.size), bool)
        else:
            flags = received.get(pop.name, np.zeros((n_tok, steps, pop.size), bool))
            if pop.name in trace.spikes:
                flags = flags | (trace.spikes[pop.name] != 0)
        for core, lo, hi in core_slices(program, pop.name):
            active[..., core] = flags[..., lo:hi].sum(-1)
    busiest = np.rint(link_load.max(-1, initial=0)).astype(np.int64)
    per_link = np.rint(link_load.sum((0, 1))).astype(np.int64)
    return Counts(synaptic_ops=synops, neuron_updates=updates, active_updates=active, spikes_out=spikes_out,
                  messages_out=msgs,
                  hops=hops, max_hops=max_hops, busiest_link=busiest, links=tuple(links), link_messages=per_link,
                  host_values_in=program.host_input.size * steps, host_values_out=program.populations[-1].size)
