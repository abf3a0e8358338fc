"""Counts, energy and latency of a hybrid program (compiler/hybrid/ir.py) from its trace (runtime/hybrid/).

The chain simulator (`counts.py`, `model.py`) prices a `Program` whose host sits only at both ends. A hybrid
program alternates host stages and chip segments on every call, so this module counts per chip layer, per call
and per neuron step, and prices the same events with the same profiles (`profiles.py`) and the same latency
model (REFERENCE.md §6.4, §7.6):

* a chip layer's neurons are replicated per position (the trace's lead axes: sequences, positions), time-
  multiplexed on the layer's cores, so a core's work in a step is summed over positions;
* event = one non-zero graded payload (binary LIF spike, bi-spike a_t·s, GIF level s_k);
* synaptic op = (event, non-zero quantised synapse of its input column) pair; a layer without a projection has
  none (its payloads go straight to the host);
* message = (event, destination core holding at least one of the sender's synapses), the convention of
  `counts.py`; hops and link loads follow the placed cores under X-Y routing (`counts.xy_route`);
* neuron updates: every neuron of every chip core every step of its layer, per position. Active: a spiking
  neuron in the first step of a call (the host writes its input then, dense) or when it emits; an accumulator
  (projection neuron) when it receives at least one event. The rest are idle updates;
* host ↔ chip traffic: values written into chip layers (width per position per call) and read back (width, or
  groups × outputs of the projection); host MACs: `HostStage.macs_per_position` (Linear/Affine weights) per
  position per call, plus the activation × activation matmuls (attention QKᵀ and P·V) found in the stage's ONNX
  graph. Host work is reported, never priced: no profile gives a host figure.

Latency (chip only): a call runs its segments one after another (a host stage sits between two segments), each
segment for its layers' steps; a chip step costs max over the segment's cores of the serial work + max(longest
route, busiest link load) · t_hop + barrier(tiles of the program), as `model.step_latency_s`. Host stages and
host ↔ chip transfers are not timed, so latencies are lower bounds and tokens/s an upper bound.

Tokens: SpikeGPT (`time_axis = tokens`) runs one call per token over B sequences, so tokens = calls · B;
SpikeLM (`steps`) runs T calls over all B·L positions and SpikeLLM (`sequence`) one call: tokens = B·L.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np
from spikestack.compiler.encodings import events_per_spike
from spikestack.compiler.hybrid.ir import HostStage, HybridProgram, QChipLayer

from .conventions import PAPER_E_AC_PJ, PAPER_E_MAC_PJ, PAPER_SOURCE, PJ, WHY
from .counts import xy_route
from .model import NS, SAME_TECH_PROFILES, report_header, same_tech_profiles
from .profiles import EVENTS, Profile


# ----------------------------------------------------------------------------------------------------- counts
@dataclass(frozen=True, slots=True)
class LayerCounts:
    """One chip layer's events. Arrays are [calls, steps, cores] over `cores` (its spiking cores, then its
    projection's cores) unless said otherwise."""

    name: str
    segment: int
    positions: int  # copies of the layer per call (product of the trace's lead axes)
    cores: tuple[int, ...]
    neurons: np.ndarray  # [cores]: neuron updates per step (neurons × positions), active or idle
    synaptic_ops: np.ndarray
    active_updates: np.ndarray
    spikes_out: np.ndarray
    messages_out: np.ndarray
    hops: np.ndarray
    max_hops: np.ndarray  # [calls, steps]: longest route a message of this layer took
    link_load: np.ndarray  # [calls, steps, links] messages of this layer over each directed link
    events: int  # binary messages (1 per graded payload, s unary, popcount(s) bit-serial), all calls and positions
    spikes: int  # non-zero payloads (what fires, whatever the encoding)
    slots: int  # calls × steps × positions × width
    levels_unit: np.ndarray  # bool [calls, steps]: every spike level of the step is in {-1, 0, 1} (NeuroBench)
    sops_by_projection: int  # == synaptic_ops.sum()


@dataclass(frozen=True, slots=True)
class HybridCounts:
    layers: tuple[LayerCounts, ...]
    calls: int
    positions: int  # per call
    tokens: int
    links: tuple[tuple[int, int, int, int], ...]
    host_values_in: int  # all calls
    host_values_out: int
    host_linear_macs: int
    host_matmul_macs: int  # activation × activation (attention), all calls
    host_macs_by_stage: tuple[dict, ...]


def _positions(lead: tuple[int, ...]) -> int:
    return int(np.prod(lead, dtype=np.int64)) if lead else 1


def tokens_of(program: HybridProgram, calls: int, lead: tuple[int, ...]) -> int:
    """Tokens a trace covers: calls · B for per-token calls, else B · L (module docstring)."""
    return _positions(lead) * (calls if program.time_axis == "tokens" else 1)


def _spike_levels(layer: QChipLayer, payloads: np.ndarray) -> np.ndarray:
    """Payloads [calls, steps, ...] → spike levels: bi-spike payloads are s · a_t (a_t the per-step amplitude,
    t = call mod T), GIF and LIF payloads are the levels themselves."""
    if layer.kind != "bispike":
        return payloads
    amp = np.asarray(layer.amplitude, np.int64)[np.arange(payloads.shape[0]) % layer.period]
    return payloads // amp.reshape((-1,) + (1,) * (payloads.ndim - 1))


def _routes(program: HybridProgram) -> tuple[dict[tuple[int, int, int, int], int], dict[tuple[int, int], list[int]]]:
    index: dict[tuple[int, int, int, int], int] = {}
    routes: dict[tuple[int, int], list[int]] = {}
    cores = program.cores
    for la in program.layers:
        if la.projection is None:
            continue
        for s in (c for c in cores if c.pop == la.name):
            for d in (c for c in cores if c.pop == program.projection_target(la)):
                routes[(s.index, d.index)] = [index.setdefault(link, len(index))
                                              for link in xy_route((s.x, s.y), (d.x, d.y))]
    return index, routes


def count_layer(program: HybridProgram, layer: QChipLayer, payloads: np.ndarray, n_links: int,
                routes: dict[tuple[int, int], list[int]]) -> LayerCounts:
    """Counts of one chip layer from its payloads [calls, steps, *lead, width] (matmuls, no per-event loop)."""
    payloads = np.asarray(payloads)
    calls, steps, width = payloads.shape[0], payloads.shape[1], payloads.shape[-1]
    positions = _positions(payloads.shape[2:-1])
    nz = (payloads != 0).reshape(calls, steps, positions, width)
    encoding = "graded" if layer.projection is None else layer.projection.encoding
    # binary messages per payload: 1 (graded), s (unary), popcount(s) (bit-serial) — compiler/encodings.py
    per_event = events_per_spike(payloads, encoding).reshape(calls, steps, positions, width)
    ev = per_event.sum(2).astype(np.float64)  # [calls, steps, width] events per neuron, summed over positions
    src = [c for c in program.cores if c.pop == layer.name]
    proj = layer.projection
    target = program.projection_target(layer) if proj is not None else None
    dst = [c for c in program.cores if proj is not None and c.pop == target]
    cores = src + dst
    shape = (calls, steps, len(cores))
    synops, active, spikes_out, msgs, hops = (np.zeros(shape, np.int64) for _ in range(5))
    max_hops = np.zeros((calls, steps), np.int64)
    link_load = np.zeros((calls, steps, n_links))
    neurons = np.array([(c.hi - c.lo) * positions for c in cores], np.int64)
    first = np.zeros(steps, bool)
    first[0] = True  # the host writes every spiking neuron's input in the call's first step
    for j, c in enumerate(src):
        spikes_out[..., j] = np.rint(ev[..., c.lo:c.hi].sum(-1)).astype(np.int64)
        emitted = nz[..., c.lo:c.hi].sum((2, 3))
        active[..., j] = np.where(first[None, :], neurons[j], emitted)
    if proj is not None:
        nzw = np.asarray(proj.weight) != 0  # [out, in]
        fanout = np.stack([nzw[d.lo:d.hi].sum(0) for d in dst], 1).astype(np.float64)  # [in, C_dst]
        synops[..., len(src):] = np.rint(ev @ fanout).astype(np.int64)
        received = (nz.astype(np.float64) @ nzw.T.astype(np.float64)) > 0  # [calls, steps, positions, out]
        for j, d in enumerate(dst):
            active[..., len(src) + j] = received[..., d.lo:d.hi].sum((2, 3))
        reach = (fanout > 0).astype(np.float64)
        for j, c in enumerate(src):
            per_dst = ev[..., c.lo:c.hi] @ reach[c.lo:c.hi]  # [calls, steps, C_dst] messages to each dst core
            dist = np.array([abs(d.x - c.x) + abs(d.y - c.y) for d in dst], np.float64)
            msgs[..., j] = np.rint(per_dst.sum(-1)).astype(np.int64)
            hops[..., j] = np.rint(per_dst @ dist).astype(np.int64)
            incidence = np.zeros((len(dst), n_links))
            for k, d in enumerate(dst):
                incidence[k, routes[(c.index, d.index)]] = 1.0
            link_load += per_dst @ incidence
            max_hops = np.maximum(max_hops, np.where(per_dst > 0, dist, 0).max(-1, initial=0).astype(np.int64))
    levels = _spike_levels(layer, payloads.reshape(calls, steps, -1).astype(np.int64))
    return LayerCounts(name=layer.name, segment=layer.segment, positions=positions,
                       cores=tuple(c.index for c in cores), neurons=neurons, synaptic_ops=synops,
                       active_updates=active, spikes_out=spikes_out, messages_out=msgs, hops=hops,
                       max_hops=max_hops, link_load=link_load, events=int(per_event.sum()),
                       spikes=int(nz.sum()), slots=int(nz.size),
                       levels_unit=~(np.abs(levels) > 1).any(-1), sops_by_projection=int(synops.sum()))


def layer_io_values(program: HybridProgram, layer: QChipLayer) -> tuple[int, int]:
    """Values per position and call: host → chip (the layer's input), chip → host (payloads or accumulators);
    a chained edge (compiler/hybrid/cut.py) stays on the chip and counts for neither."""
    return program.from_host(layer), program.to_host(layer)


def count_hybrid(program: HybridProgram, payloads: dict[str, np.ndarray]) -> HybridCounts:
    """Every chip layer's counts, host traffic and host MACs. `payloads`: the trace's, by layer name."""
    missing = [la.name for la in program.layers if la.name not in payloads]
    if missing:
        raise ValueError(f"trace has no payloads for chip layer {missing[0]!r}")
    if not program.cores:
        raise ValueError("program has no placed cores: compile it (partition and place) before simulating")
    index, routes = _routes(program)
    layers = tuple(count_layer(program, la, payloads[la.name], len(index), routes) for la in program.layers)
    first = np.asarray(payloads[program.layers[0].name])
    calls, lead = int(first.shape[0]), tuple(int(n) for n in first.shape[2:-1])
    positions = _positions(lead)
    values_in = sum(layer_io_values(program, la)[0] for la in program.layers) * positions * calls
    values_out = sum(layer_io_values(program, la)[1] for la in program.layers) * positions * calls
    by_stage = []
    for st in program.stages:
        linear = st.macs_per_position * positions * calls
        matmul = _matmul_macs(st, program.time_axis, lead) * calls
        by_stage.append({"stage": st.index, "linear_macs": linear, "activation_matmul_macs": matmul})
    return HybridCounts(layers=layers, calls=calls, positions=positions, tokens=tokens_of(program, calls, lead),
                        links=tuple(index), host_values_in=values_in, host_values_out=values_out,
                        host_linear_macs=sum(s["linear_macs"] for s in by_stage),
                        host_matmul_macs=sum(s["activation_matmul_macs"] for s in by_stage),
                        host_macs_by_stage=tuple(by_stage))


# ----------------------------------------------------------------------------------- host matmuls from ONNX
def _matmul_macs(stage: HostStage, time_axis: str, lead: tuple[int, ...]) -> int:
    """MACs of the stage's MatMuls whose operands are both activations (attention QKᵀ and P·V; Linear layers
    have a constant operand and are `macs_per_position`), for one call over `lead` positions: the stage is run
    once on zeros of one sequence's shape, and the shapes it sees give Π(output) · K per MatMul (dense: causal
    masks do not skip work in the ONNX graph)."""
    if not stage.onnx:
        return 0
    seq = lead if time_axis == "tokens" else (1, *lead[1:])
    per_sequence = _matmul_macs_for(stage.onnx, seq)
    return per_sequence * (lead[0] if time_axis != "tokens" and lead else 1)


@functools.lru_cache(maxsize=64)
def _matmul_macs_for(onnx_bytes: bytes, lead: tuple[int, ...]) -> int:
    import onnx
    import onnxruntime as ort

    model = onnx.load_from_string(onnx_bytes)
    constant = {i.name for i in model.graph.initializer}
    constant |= {o for n in model.graph.node if n.op_type == "Constant" for o in n.output}
    pairs = [n for n in model.graph.node if n.op_type == "MatMul" and not (set(n.input) & constant)]
    if not pairs:
        return 0
    wanted = sorted({x for n in pairs for x in (n.input[0], n.output[0])})
    known = {o.name for o in model.graph.output}
    model.graph.output.extend([onnx.ValueInfoProto(name=n) for n in wanted if n not in known])
    feeds = {}
    for inp in model.graph.input:
        dims = inp.type.tensor_type.shape.dim
        dynamic = [i for i, d in enumerate(dims) if not d.HasField("dim_value")]
        shape = [d.dim_value for d in dims]
        for k, i in enumerate(dynamic):
            shape[i] = lead[k] if k < len(lead) else 1
        dtype = onnx.helper.tensor_dtype_to_np_dtype(inp.type.tensor_type.elem_type)
        feeds[inp.name] = np.zeros(shape, dtype)
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    opts.log_severity_level = 3
    session = ort.InferenceSession(model.SerializeToString(), opts, providers=["CPUExecutionProvider"])
    values = dict(zip(wanted, session.run(wanted, feeds), strict=True))
    return int(sum(values[n.output[0]].size * values[n.input[0]].shape[-1] for n in pairs))


# ------------------------------------------------------------------------------------------- latency, energy
def layer_work_ns(lc: LayerCounts, profile: Profile) -> np.ndarray:
    """Serial work per core and step [calls, steps, cores] in ns (one core is one pipeline)."""
    t = profile.time_ns
    idle = lc.neurons - lc.active_updates
    return (lc.synaptic_ops * t["synaptic_op"] + lc.active_updates * t["neuron_update"]
            + idle * t["neuron_update_idle"] + lc.spikes_out * t["spike_out"] + lc.messages_out * t["message"])


def chip_step_latency_s(program: HybridProgram, counts: HybridCounts, profile: Profile) -> dict[int, np.ndarray]:
    """Per segment: latency [calls, steps of the segment] of every chip step (s)."""
    tiles = len({(c.chip, c.x, c.y) for c in program.cores})
    out = {}
    for seg in sorted({lc.segment for lc in counts.layers}):
        mine = [lc for lc in counts.layers if lc.segment == seg]
        steps = max(lc.synaptic_ops.shape[1] for lc in mine)
        work = np.zeros((counts.calls, steps))
        route = np.zeros((counts.calls, steps))
        load = np.zeros((counts.calls, steps, len(counts.links)))
        for lc in mine:
            s = lc.synaptic_ops.shape[1]
            work[:, :s] = np.maximum(work[:, :s], layer_work_ns(lc, profile).max(-1, initial=0))
            route[:, :s] = np.maximum(route[:, :s], lc.max_hops)
            load[:, :s] += lc.link_load
        network = np.maximum(route, load.max(-1, initial=0)) * profile.time_ns["hop"]
        out[seg] = (work + network + profile.barrier_time_ns(tiles)) * NS
    return out


def event_totals(counts: HybridCounts) -> dict[str, int]:
    steps_neurons = sum(int(lc.neurons.sum()) * lc.synaptic_ops.shape[0] * lc.synaptic_ops.shape[1]
                        for lc in counts.layers)
    active = sum(int(lc.active_updates.sum()) for lc in counts.layers)
    return {
        "synaptic_op": sum(int(lc.synaptic_ops.sum()) for lc in counts.layers),
        "neuron_update": active,
        "neuron_update_idle": steps_neurons - active,
        "spike_out": sum(int(lc.spikes_out.sum()) for lc in counts.layers),
        "message": sum(int(lc.messages_out.sum()) for lc in counts.layers),
        "hop": sum(int(lc.hops.sum()) for lc in counts.layers),
    }


def _energy_j(events: dict[str, int], profile: Profile) -> dict[str, float]:
    return {k: events[k] * profile.energy_pj[k] * PJ for k in EVENTS}


# ----------------------------------------------------------------------------------------------- conventions
def hybrid_conventions(program: HybridProgram, counts: HybridCounts, ann_mac_pj: dict[str, float]) -> dict:
    """The conventions of `conventions.py` for the chip projections, plus the host Linear MACs where a
    convention counts real-valued layers (paper: MAC term; ANN twin: every weight)."""
    n_tok = counts.tokens
    by_layer = {lc.name: lc for lc in counts.layers}
    flow, paper = {}, {}
    dense = acs = macs = 0
    for la in program.layers:
        if la.projection is None:
            continue
        lc = by_layer[la.name]
        nzw = np.asarray(la.projection.weight) != 0
        flow[la.projection.name] = lc.sops_by_projection
        calls_steps = lc.synaptic_ops.shape[0] * lc.synaptic_ops.shape[1]
        dense += int(nzw.size) * calls_steps * lc.positions
        per_step = lc.synaptic_ops.sum(-1)  # [calls, steps] (event, synapse) pairs
        acs += int(per_step[lc.levels_unit].sum())
        macs += int(per_step[~lc.levels_unit].sum())
        rate = lc.spikes / lc.slots if lc.slots else 0.0
        paper[la.projection.name] = rate * int(nzw.size) * calls_steps * lc.positions
    sops = sum(flow.values())
    paper_sop = sum(paper.values())
    host_macs = counts.host_linear_macs
    paper_energy = (host_macs * PAPER_E_MAC_PJ + paper_sop * PAPER_E_AC_PJ) * PJ
    ann_macs = ann_twin_macs_per_token(program) * n_tok
    nb = {"dense": dense, "effective_acs": acs, "effective_macs": macs}
    return {
        "dataflow": {"sops": sops, "sops_per_token": sops / n_tok, "by_projection": flow, "why": WHY["dataflow"]},
        "neurobench": {**nb, **{f"{k}_per_token": v / n_tok for k, v in nb.items()},
                       "version": "NeuroBench v2.3.0 SynapticOperations",
                       "why": WHY["neurobench"] + ". Chip projections only; spike levels are the payloads divided "
                                                  "by the per-step amplitude a_t (bi-spike), the payload itself "
                                                  "(GIF levels 0..L-1: MACs once any level >= 2)"},
        "paper": {"sops": paper_sop, "sops_per_token": paper_sop / n_tok, "by_projection": paper,
                  "macs_real_input": host_macs, "e_mac_pj": PAPER_E_MAC_PJ, "e_ac_pj": PAPER_E_AC_PJ,
                  "energy_j": paper_energy, "energy_per_token_j": paper_energy / n_tok, "source": PAPER_SOURCE,
                  "why": WHY["paper"].replace("No layer here takes real-valued input through synapses (the host "
                                              "embedding is a lookup), so the MAC term is zero",
                                              "every host Linear/Affine takes real-valued input, so all of "
                                              "them enter the MAC term (the papers count only the first layer; "
                                              "here real-valued layers recur in every block)")},
        "ann_twin": {"macs": ann_macs, "macs_per_token": ann_macs / n_tok,
                     "energy_j": {name: ann_macs * pj * PJ for name, pj in ann_mac_pj.items()},
                     "energy_per_token_j": {name: ann_macs * pj * PJ / n_tok for name, pj in ann_mac_pj.items()},
                     "why": WHY["ann_twin"] + "; here the chip projections' weights plus the host Linear/Affine "
                                              "weights, once per token; attention and WKV not counted"},
    }


def ann_twin_macs_per_token(program: HybridProgram) -> int:
    chip = sum(int(np.asarray(la.projection.weight).size) for la in program.layers if la.projection is not None)
    host = sum(st.macs_per_position for st in program.stages)
    return chip + host


# ----------------------------------------------------------------------------------------------------- report
CONVENTIONS = ("sops = (non-zero event, non-zero synapse) pairs on chip projections; energy dynamic and chip only "
               "(host stages counted, not priced); latency chip only; see docs/simulator.md")


def _calls_to_first_token(program: HybridProgram, calls: int) -> int:
    return min(calls, program.steps_per_token) if program.time_axis == "steps" else 1


def simulate_hybrid(program: HybridProgram, trace, profile: Profile) -> dict:
    """The JSON report of `model.simulate` for a hybrid program and its `HybridTrace` (docs/simulator.md)."""
    counts = count_hybrid(program, trace.payloads)
    return hybrid_report(program, counts, profile)


def hybrid_report(program: HybridProgram, counts: HybridCounts, profile: Profile) -> dict:
    n_tok = counts.tokens
    events = event_totals(counts)
    energy_by_kind = _energy_j(events, profile)
    total_energy = sum(energy_by_kind.values())
    tiles = len({(c.chip, c.x, c.y) for c in program.cores})
    latency = chip_step_latency_s(program, counts, profile) if profile.timing else None
    if latency is not None:
        steps_all = np.concatenate([v.reshape(-1) for v in latency.values()])
        per_call = sum(v.sum(1) for v in latency.values())
        mean_step, total_time = float(steps_all.mean()), float(per_call.sum())
        first = float(per_call[:_calls_to_first_token(program, counts.calls)].sum())
    link_load = sum(lc.link_load.sum((0, 1)) for lc in counts.layers) if counts.links else np.zeros(0)
    busiest = _busiest_per_step(counts)
    comparison = {}
    for p in _comparison_profiles(profile):
        snn = sum(_energy_j(events, p).values()) / n_tok
        host = counts.host_linear_macs * (p.ann_mac_pj or 0.0) * PJ / n_tok
        comparison[p.name] = {"snn_energy_per_token_j": snn, "snn_with_host_macs_per_token_j": snn + host,
                              "ann_energy_per_token_j": ann_twin_macs_per_token(program) * (p.ann_mac_pj or 0.0) * PJ,
                              "ann_mac_pj": p.ann_mac_pj}
    per_core = {}
    for lc in counts.layers:
        sops = lc.synaptic_ops.mean((0, 1))
        for j, core in enumerate(lc.cores):
            per_core[core] = float(sops[j])
    all_steps = sum(lc.neurons.sum() * lc.synaptic_ops.shape[0] * lc.synaptic_ops.shape[1] for lc in counts.layers)
    return {
        "kind": "hybrid",
        "family": program.family,
        "time_axis": program.time_axis,
        **report_header(profile, program.target, n_tok),
        "calls": counts.calls,
        "positions_per_call": counts.positions,
        "steps_per_token": program.steps_per_token,
        "chip_steps_per_call": int(sum(max(la.steps for la in program.segment_layers(s))
                                       for s in {la.segment for la in program.layers})),
        "cores": len(program.cores),
        "tiles": tiles,
        "chips": len({c.chip for c in program.cores}),
        "sops": events["synaptic_op"],
        "sops_per_token": events["synaptic_op"] / n_tok,
        "spikes": events["spike_out"],
        "messages": events["message"],
        "hops": events["hop"],
        "busiest_link_messages_per_step": float(busiest.mean()) if busiest.size else 0.0,
        "busiest_link_messages_per_step_max": int(busiest.max(initial=0)),
        "links": [{"link": list(link), "messages_per_step": float(n) / max(busiest.size, 1)}
                  for link, n in zip(counts.links, link_load, strict=True)],
        "neuron_updates": int(all_steps),
        "neuron_updates_active": events["neuron_update"],
        "energy_j": total_energy,
        "energy_per_token_j": total_energy / n_tok,
        "energy_breakdown_j": energy_by_kind,
        "timing": profile.timing,
        "latency_s_per_step": mean_step if latency is not None else None,
        "latency_s_per_step_max": float(steps_all.max()) if latency is not None else None,
        "latency_s_per_call": total_time / counts.calls if latency is not None else None,
        "latency_s_per_call_max": float(per_call.max()) if latency is not None else None,
        "tokens_per_s": n_tok / total_time if latency is not None and total_time else None,
        "time_to_first_token_s": first if latency is not None else None,
        "firing_rate": {lc.name: round(lc.spikes / lc.slots, 6) if lc.slots else 0.0 for lc in counts.layers},
        "per_layer": {lc.name: _layer_entry(program, lc, n_tok) for lc in counts.layers},
        "per_call": _per_call(counts, latency),
        "per_core": [
            {"core": c.index, "layer": c.pop, "neurons": c.hi - c.lo, "tile": [c.chip, c.x, c.y],
             "synaptic_ops_per_step": per_core.get(c.index, 0.0)}
            for c in program.cores
        ],
        "host_values_in_per_token": counts.host_values_in / n_tok,
        "host_values_out_per_token": counts.host_values_out / n_tok,
        "host_ops_per_token": {
            "linear_macs": counts.host_linear_macs / n_tok,
            "activation_matmul_macs": counts.host_matmul_macs / n_tok,
            "by_stage": [{k: (v / n_tok if k != "stage" else v) for k, v in s.items()}
                         for s in counts.host_macs_by_stage],
            "note": "host work (norms, softmax, WKV, gates, embeddings, head) runs on the host: counted, never "
                    "priced into energy_j (no profile has a host figure); linear_macs = macs_per_position "
                    "(Linear/Affine weights) per position and call; activation_matmul_macs = attention QK^T and "
                    "P.V from the stage's ONNX graph (dense); elementwise ops not counted",
        },
        "counting_conventions": hybrid_conventions(
            program, counts, {k: v["ann_mac_pj"] for k, v in comparison.items()}),
        "ann_twin_comparison": comparison,
        "conventions": CONVENTIONS,
    }


def _comparison_profiles(profile: Profile) -> list[Profile]:
    same = list(same_tech_profiles())
    if profile.ann_mac_pj is not None and profile.name not in SAME_TECH_PROFILES:
        same.append(profile)
    return same


def _busiest_per_step(counts: HybridCounts) -> np.ndarray:
    """The most loaded link's messages in every chip step (segments' layers share the mesh)."""
    out = []
    for seg in sorted({lc.segment for lc in counts.layers}):
        mine = [lc for lc in counts.layers if lc.segment == seg]
        steps = max(lc.synaptic_ops.shape[1] for lc in mine)
        load = np.zeros((counts.calls, steps, len(counts.links)))
        for lc in mine:
            load[:, :lc.synaptic_ops.shape[1]] += lc.link_load
        out.append(np.rint(load.max(-1, initial=0)).astype(np.int64).reshape(-1))
    return np.concatenate(out) if out else np.zeros(0, np.int64)


def _layer_entry(program: HybridProgram, lc: LayerCounts, n_tok: int) -> dict:
    la = program.layer(lc.name)
    values_in, values_out = layer_io_values(program, la)
    calls, steps = lc.synaptic_ops.shape[:2]
    return {"kind": la.kind, "segment": la.segment, "width": la.width, "steps_per_call": steps,
            "positions": lc.positions, "projection": None if la.projection is None else la.projection.name,
            "cores": len(lc.cores), "events": lc.events, "sops": int(lc.synaptic_ops.sum()),
            "messages": int(lc.messages_out.sum()), "hops": int(lc.hops.sum()),
            "neuron_updates": int(lc.neurons.sum()) * calls * steps,
            "neuron_updates_active": int(lc.active_updates.sum()),
            "events_per_call": lc.spikes_out.sum((1, 2)).tolist(),
            "sops_per_call": lc.synaptic_ops.sum((1, 2)).tolist(),
            "host_values_in_per_token": values_in * lc.positions * calls / n_tok,
            "host_values_out_per_token": values_out * lc.positions * calls / n_tok}


def _per_call(counts: HybridCounts, latency: dict[int, np.ndarray] | None) -> list[dict]:
    out = []
    for call in range(counts.calls):
        row = {"call": call,
               "events": sum(int(lc.spikes_out[call].sum()) for lc in counts.layers),
               "sops": sum(int(lc.synaptic_ops[call].sum()) for lc in counts.layers),
               "messages": sum(int(lc.messages_out[call].sum()) for lc in counts.layers),
               "hops": sum(int(lc.hops[call].sum()) for lc in counts.layers),
               "latency_s": None if latency is None else float(sum(v[call].sum() for v in latency.values()))}
        out.append(row)
    return out


__all__ = ["HybridCounts", "LayerCounts", "count_hybrid", "count_layer", "hybrid_report", "simulate_hybrid",
           "tokens_of"]
