"""Event counts per core and step, from an artifact and an event trace (vectorised; no per-event loop).

Conventions (REFERENCE.md §7; docs/simulator.md has each rule and its source):

* synaptic op: one (non-zero incoming event, non-zero synapse) pair, so a graded or signed spike counts once per
  target synapse whatever its payload (NeuroBench's Effective ACs on binary spikes; §7.2);
* spike out: every non-zero spike of every on-chip population, the output layer's included (SANA-FE charges a
  soma's spike whether or not anything listens);
* message: one per (spiking neuron, destination core holding at least one of its synapses); it travels
  |Δx|+|Δy| tile hops (X-Y routing: all of Δx first, then Δy) and every directed mesh link it crosses is charged
  one message, so the busiest link's load bounds the step's serialisation (`model.step_latency_s`). A core's
  (x, y) is its tile on the whole system's grid (compiler/passes/place.py: chip position × chip mesh + tile), so
  a message between chips crosses |Δchip_x| + |Δchip_y| chip-to-chip links on its way (`chip_hops`, priced per
  link by the profile's [chip_link]); `chip_crossings` counts the messages that leave their chip;
* input message: one per host event (a host-fed projection's event, per destination core) or per non-zero value
  the host writes into the input population; it enters the mesh at tile (0, 0) of chip 0 (the host interface,
  assumed: Loihi's host link is not described per message) and is routed and counted like any message;
* messages in: what each core's message-in pipeline receives (spikes and input messages);
* neuron update: every neuron of every core, every step; which are active follows the profile's `update_rule`
  (`activity.py`). Host traffic: values written into the input population per step, values read from the readout
  per token.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from spikestack.compiler.encodings import events_per_spike
from spikestack.compiler.ir import Program
from spikestack.runtime.trace import Trace

from .activity import nonzero_updates, replayable

HOST_ENTRY = (0, 0)  # (x, y) tile where host messages enter chip 0 (assumed; module docstring)


@dataclass(frozen=True, slots=True)
class Counts:
    """All arrays are per (token, step, core) unless said otherwise."""

    synaptic_ops: np.ndarray  # [tokens, T, cores] arriving at the core
    neuron_updates: np.ndarray  # [cores]: neurons updated per step (all of them, active or idle)
    active_updates: np.ndarray  # [tokens, T, cores]: active under the update rule (the rest idle)
    spikes_out: np.ndarray  # [tokens, T, cores] non-zero spikes emitted
    messages_out: np.ndarray  # [tokens, T, cores]
    messages_in: np.ndarray  # [tokens, T, cores]: spike and input messages received
    hops: np.ndarray  # [tokens, T, cores]: Σ hops of messages leaving the core
    chip_crossings: np.ndarray  # [tokens, T, cores]: messages leaving the core that cross to another chip
    chip_hops: np.ndarray  # [tokens, T, cores]: Σ chip-to-chip links those messages cross
    max_chip_hops: np.ndarray  # [tokens, T]: most chip links one message (or input message) crossed in the step
    input_chip_hops: np.ndarray  # [tokens, T]: chip links crossed by host → chip messages
    input_messages: np.ndarray  # [tokens, T]: host → chip messages
    input_hops: np.ndarray  # [tokens, T]: their Σ hops from the host entry tile
    max_hops: np.ndarray  # [tokens, T]: longest route taken in the step
    busiest_link: np.ndarray  # [tokens, T]: messages crossing the most loaded directed link in the step
    links: tuple[tuple[int, int, int, int], ...]  # directed links (x0, y0, x1, y1) that carry traffic
    link_messages: np.ndarray  # [links]: messages over all tokens and steps per link
    host_values_in: int  # per token
    host_values_out: int  # per token
    update_rule: str = "event"
    update_rule_fallback: tuple[str, ...] = ()  # populations counted by the event rule under "nonzero"


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


class _Links:
    """Index of the directed links used by any route, and link-incidence rows per (source tile, destination)."""

    def __init__(self) -> None:
        self.index: dict[tuple[int, int, int, int], int] = {}

    def route(self, src: tuple[int, int], dst: tuple[int, int]) -> list[int]:
        return [self.index.setdefault(link, len(self.index)) for link in xy_route(src, dst)]


def _routes(program: Program) -> tuple[list[tuple[int, int, int, int]], dict[tuple, list[int]]]:
    """Every link used by a (source, destination core) pair of some projection (source: a core index, or "host"
    for host-fed projections and the input population), and each pair's link indices."""
    links = _Links()
    routes: dict[tuple, list[int]] = {}
    cores = program.cores
    pop_names = {p.name for p in program.populations}
    for proj in program.projections:
        srcs = [("host", HOST_ENTRY)] if proj.src not in pop_names else \
            [(s, (cores[s].x, cores[s].y)) for s, _, _ in core_slices(program, proj.src)]
        for s, xy in srcs:
            for d, _, _ in core_slices(program, proj.dst):
                routes[(s, d)] = links.route(xy, (cores[d].x, cores[d].y))
    if program.input_pop is not None:
        for d, _, _ in core_slices(program, program.input_pop):
            routes[("host", d)] = links.route(HOST_ENTRY, (cores[d].x, cores[d].y))
    return list(links.index), routes


@dataclass(frozen=True, slots=True)
class Sent:
    """What one source's messages [tok, T, C_dst] cost on the way (`_send`)."""

    hops: np.ndarray  # [tok, T]
    crossings: np.ndarray  # [tok, T]: messages that leave the source's chip
    chip_hops: np.ndarray  # [tok, T]: chip-to-chip links crossed
    link_load: np.ndarray  # [tok, T, links]
    longest: np.ndarray  # [tok, T]: longest route taken (tile hops)
    most_chip_hops: np.ndarray  # [tok, T]: most chip links one message crossed
    per_dst: np.ndarray  # [tok, T, C_dst] messages, int


def chip_distance(xy: np.ndarray, src_xy: np.ndarray, mesh: tuple[int, int]) -> np.ndarray:
    """Chip-to-chip links an X-Y route crosses between global tiles: |Δ chip column| + |Δ chip row|."""
    m = np.asarray(mesh)
    return np.abs(xy // m - np.asarray(src_xy) // m).sum(-1).astype(np.float64)


@dataclass(frozen=True, slots=True)
class Priced:
    """What one source's messages [..., C_dst] cost on the mesh (`price`): every simulator's per-source figures."""

    hops: np.ndarray  # [...]: tile hops of all its messages
    crossings: np.ndarray  # [...]: messages that leave the source's chip
    chip_hops: np.ndarray  # [...]: chip-to-chip links crossed
    longest: np.ndarray  # [...]: longest route taken (tile hops)
    most_chip_hops: np.ndarray  # [...]: most chip links one message crossed


def price(per_dst: np.ndarray, src_xy: np.ndarray, dst_xy: np.ndarray, mesh: tuple[int, int]) -> Priced:
    """Messages [..., C_dst] from the tile `src_xy` to destination tiles `dst_xy` [C_dst, 2], priced by X-Y route
    length and chip links crossed; chain and hybrid programs alike. Float BLAS matmuls of integer-valued arrays,
    exact below 2^53 (numpy's int64 matmul has no BLAS path: bench/simulator_speed.py)."""
    dist = np.abs(dst_xy - src_xy).sum(1).astype(np.float64)
    links = chip_distance(dst_xy, src_xy, mesh)
    sent = per_dst > 0
    return Priced(hops=np.rint(per_dst @ dist).astype(np.int64),
                  crossings=np.rint(per_dst @ (links > 0).astype(np.float64)).astype(np.int64),
                  chip_hops=np.rint(per_dst @ links).astype(np.int64),
                  longest=np.where(sent, dist, 0).max(-1, initial=0).astype(np.int64),
                  most_chip_hops=np.where(sent, links, 0).max(-1, initial=0).astype(np.int64))


def _send(per_dst: np.ndarray, src_xy: np.ndarray, dst: list[int], program: Program, routes: list[list[int]],
          n_links: int) -> Sent:
    """Messages [tok, T, C_dst] from one source to its destination cores, priced along their routes (`price`)
    and counted on every link of their routes."""
    xy = np.array([(program.cores[d].x, program.cores[d].y) for d in dst]).reshape(-1, 2)
    target = program.target_spec
    p = price(per_dst, src_xy, xy, (target.mesh_x, target.mesh_y))
    incidence = np.zeros((len(dst), n_links))
    for j, r in enumerate(routes):
        incidence[j, r] = 1.0
    return Sent(hops=p.hops, crossings=p.crossings, chip_hops=p.chip_hops, link_load=per_dst @ incidence,
                longest=p.longest, most_chip_hops=p.most_chip_hops, per_dst=np.rint(per_dst).astype(np.int64))


def count_events(program: Program, trace: Trace, update_rule: str = "event") -> Counts:
    n_cores = len(program.cores)
    n_tok, steps = trace.tokens, program.steps
    shape = (n_tok, steps, n_cores)
    synops, spikes_out, msgs, msgs_in, hops, crossings, chip_hops = (np.zeros(shape, np.int64) for _ in range(7))
    input_msgs, input_hops, max_hops, max_chip_hops, input_chip_hops = (np.zeros((n_tok, steps), np.int64)
                                                                        for _ in range(5))
    links, routes = _routes(program)
    link_load = np.zeros((n_tok, steps, len(links)))  # float64: exact below 2^53 messages
    pop_names = {p.name for p in program.populations}
    cores = program.cores
    received: dict[str, np.ndarray] = {}  # destination → bool [tok, T, n]: got at least one event this step
    for proj in program.projections:
        from_host = proj.src not in pop_names
        # binary messages per neuron and step in this projection's encoding: 1 per non-zero graded spike,
        # |s| unary events, popcount(|s|) bit-serial events (compiler/encodings.py)
        levels = trace.inputs if from_host else trace.spikes[proj.src]
        events = events_per_spike(levels, proj.encoding).astype(np.float64)  # [tok, T, n]
        nz = np.asarray(proj.weight) != 0  # [n_dst, n_src]
        got = (events @ nz.T.astype(np.float64)) > 0  # a recurrent population has several projections
        received[proj.dst] = got | received[proj.dst] if proj.dst in received else got
        dst_cores = core_slices(program, proj.dst)
        dst_idx = [c for c, _, _ in dst_cores]
        fanout = np.stack([nz[lo:hi].sum(0) for _, lo, hi in dst_cores], 1)  # [n_src, C_dst]
        synops[..., dst_idx] += np.rint(events @ fanout).astype(np.int64)
        reach = (fanout > 0).astype(np.float64)
        sources = [("host", 0, events.shape[-1])] if from_host else core_slices(program, proj.src)
        for core, lo, hi in sources:
            per_dst = events[..., lo:hi] @ reach[lo:hi]  # [tok, T, C_dst] messages to each dst core
            src_xy = np.array(HOST_ENTRY) if core == "host" else np.array((cores[core].x, cores[core].y))
            out = _send(per_dst, src_xy, dst_idx, program, [routes[(core, d)] for d in dst_idx], len(links))
            link_load += out.link_load
            max_hops = np.maximum(max_hops, out.longest)
            max_chip_hops = np.maximum(max_chip_hops, out.most_chip_hops)
            msgs_in[..., dst_idx] += out.per_dst
            if core == "host":
                input_msgs += out.per_dst.sum(-1)
                input_hops += out.hops
                input_chip_hops += out.chip_hops
                continue
            spikes_out[..., core] += events[..., lo:hi].sum(-1).astype(np.int64)
            msgs[..., core] += out.per_dst.sum(-1)
            hops[..., core] += out.hops
            crossings[..., core] += out.crossings
            chip_hops[..., core] += out.chip_hops
    _count_output_spikes(program, trace, spikes_out, {p.src for p in program.projections})
    if program.input_pop is not None:  # the host writes each non-zero value into its neuron's core every step
        written = np.repeat((np.asarray(trace.inputs) != 0)[:, None, :], steps, 1).astype(np.float64)
        for core, lo, hi in core_slices(program, program.input_pop):
            per_dst = written[..., lo:hi].sum(-1, keepdims=True)
            out = _send(per_dst, np.array(HOST_ENTRY), [core], program, [routes[("host", core)]], len(links))
            link_load += out.link_load
            max_hops = np.maximum(max_hops, out.longest)
            max_chip_hops = np.maximum(max_chip_hops, out.most_chip_hops)
            msgs_in[..., core] += out.per_dst[..., 0]
            input_msgs += out.per_dst[..., 0]
            input_hops += out.hops
            input_chip_hops += out.chip_hops
    active, fallback = _active_updates(program, trace, received, update_rule)
    return Counts(synaptic_ops=synops, neuron_updates=np.array([c.hi - c.lo for c in cores], np.int64),
                  active_updates=active, spikes_out=spikes_out, messages_out=msgs, messages_in=msgs_in, hops=hops,
                  chip_crossings=crossings, chip_hops=chip_hops, max_chip_hops=max_chip_hops,
                  input_chip_hops=input_chip_hops, input_messages=input_msgs, input_hops=input_hops, max_hops=max_hops,
                  busiest_link=np.rint(link_load.max(-1, initial=0)).astype(np.int64), links=tuple(links),
                  link_messages=np.rint(link_load.sum((0, 1))).astype(np.int64),
                  host_values_in=program.host_input.size * steps, host_values_out=program.populations[-1].size,
                  update_rule=update_rule, update_rule_fallback=fallback)


def _count_output_spikes(program: Program, trace: Trace, spikes_out: np.ndarray, senders: set[str]) -> None:
    """Spikes of populations that feed no projection (the output layer): the soma still fires (module docstring)."""
    for pop in program.populations:
        if pop.name in senders or pop.name not in trace.spikes:
            continue
        nonzero = np.asarray(trace.spikes[pop.name]) != 0
        for core, lo, hi in core_slices(program, pop.name):
            spikes_out[..., core] += nonzero[..., lo:hi].sum(-1)


def _active_updates(program: Program, trace: Trace, received: dict[str, np.ndarray], rule: str
                    ) -> tuple[np.ndarray, tuple[str, ...]]:
    """Active neurons per (token, step, core) under the rule, and the populations that fell back to "event"."""
    n_tok, steps = trace.tokens, program.steps
    active = np.zeros((n_tok, steps, len(program.cores)), np.int64)
    replay = replayable(program) if rule == "nonzero" else set()
    fallback = []
    for pop in program.populations:
        if pop.name in replay:
            flags = nonzero_updates(program, trace, pop)
        elif pop.name == program.input_pop:  # the host writes currents into it every step
            flags = np.ones((n_tok, steps, pop.size), bool)
        else:
            if rule == "nonzero":
                fallback.append(pop.name)
            flags = received.get(pop.name, np.zeros((n_tok, steps, pop.size), bool))
            if pop.name in trace.spikes:
                flags = flags | (trace.spikes[pop.name] != 0)
        for core, lo, hi in core_slices(program, pop.name):
            active[..., core] = flags[..., lo:hi].sum(-1)
    return active, tuple(fallback)
