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
  `counts.py`; hops and link loads follow the placed cores under X-Y routing (`counts.xy_route`), and so do the
  chip-to-chip links a message between chips crosses (`chip_hops`, priced by the profile's [chip_link]);
* neuron updates: every neuron of every chip core every step of its layer, per position. Active: a spiking
  neuron in the first step of a call (the host writes its input then, dense) or when it emits; an accumulator
  (projection neuron) when it receives at least one event. The rest are idle updates;
* a core holding one input chunk of a split fan-in (`Core.in_lo`, `in_hi`; compiler/passes/partition.py)
  receives only the messages of its chunk's source neurons: its synaptic ops are the events × its slice's
  synapses from those inputs, its accumulators are active when one of them reaches them, and a message goes to
  it when the sender has a synapse on it, as on any core. The chunks partition the synapses, so a split
  projection's synaptic ops total the unsplit ones;
* host ↔ chip traffic: values written into chip layers (width per position per call) and read back (width, or
  groups × outputs of the projection, times its input chunks when split: the host sums the partial
  accumulators); host MACs: `HostStage.macs_per_position` (Linear/Affine weights) per
  position per call, plus the activation × activation matmuls (attention QKᵀ and P·V) found in the stage's ONNX
  graph. Host work is reported, never priced: no profile gives a host figure.

Latency (chip only): a call runs its segments one after another (a host stage sits between two segments), each
segment for its layers' steps; a chip step costs max over the segment's cores of the serial work + max(longest
route, busiest link load) · t_hop + most chip links crossed · t_chip_link + barrier(tiles, chips of the
program), as `model.step_latency_s`. Host stages and
host ↔ chip transfers are not timed, so latencies are lower bounds and tokens/s an upper bound.

Tokens: SpikeGPT (`time_axis = tokens`) runs one call per token over B sequences, so tokens = calls · B;
SpikeLM (`steps`) runs T calls over all B·L positions and SpikeLLM (`sequence`) one call: tokens = B·L.
"""

from __future__ import annotations

import numpy as np
from spikestack.compiler.hybrid.ir import HybridProgram

from .conventions import PAPER_E_AC_PJ, PAPER_E_MAC_PJ, PAPER_SOURCE, PJ, WHY
from .hybrid_counts import (
    HybridCounts,
    LayerCounts,
    count_hybrid,
    count_layer,
    host_reads,
    input_chunks,
    layer_io_values,
    tokens_of,
)
from .model import (
    NS,
    SAME_TECH_PROFILES,
    chip_link_summary,
    core_pipelines_ns,
    energy_by_kind_j,
    report_header,
    same_tech_profiles,
)
from .profiles import Profile


# ------------------------------------------------------------------------------------------- latency, energy
def layer_pipelines_ns(lc: LayerCounts, profile: Profile) -> tuple[np.ndarray, np.ndarray]:
    """Message-in and neuron pipeline times per core and step [calls, steps, cores] in ns."""
    return core_pipelines_ns(lc.neurons, lc.active_updates, lc.messages_in, lc.synaptic_ops, lc.spikes_out,
                             lc.messages_out, profile)


def layer_work_ns(lc: LayerCounts, profile: Profile) -> np.ndarray:
    """A core's time per step [calls, steps, cores] in ns: the longer of its two pipelines."""
    return np.maximum(*layer_pipelines_ns(lc, profile))


def chip_step_latency_s(program: HybridProgram, counts: HybridCounts, profile: Profile) -> dict[int, np.ndarray]:
    """Per segment: latency [calls, steps of the segment] of every chip step (s)."""
    tiles = len({(c.chip, c.x, c.y) for c in program.cores})
    chips = len({c.chip for c in program.cores})
    out = {}
    for seg in sorted({lc.segment for lc in counts.layers}):
        mine = [lc for lc in counts.layers if lc.segment == seg]
        steps = max(lc.synaptic_ops.shape[1] for lc in mine)
        work = np.zeros((counts.calls, steps))
        route = np.zeros((counts.calls, steps))
        chip_links = np.zeros((counts.calls, steps))
        load = np.zeros((counts.calls, steps, len(counts.links)))
        for lc in mine:
            s = lc.synaptic_ops.shape[1]
            work[:, :s] = np.maximum(work[:, :s], layer_work_ns(lc, profile).max(-1, initial=0))
            route[:, :s] = np.maximum(route[:, :s], lc.max_hops)
            chip_links[:, :s] = np.maximum(chip_links[:, :s], lc.max_chip_hops)
            load[:, :s] += lc.link_load
        # the last message's flight and its chip links (model.py's docstring)
        network = route * profile.time_ns["hop"] + chip_links * profile.chip_link_ns
        out[seg] = (work + network + profile.barrier_time_ns(tiles, chips)) * NS
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
        "input_message": counts.host_values_in,  # one message per value the host writes into a chip layer
        "hop": sum(int(lc.hops.sum()) for lc in counts.layers),
        "chip_link": sum(int(lc.chip_hops.sum()) for lc in counts.layers),  # chip-to-chip links crossed
    }


def _energy_j(events: dict[str, int], profile: Profile) -> dict[str, float]:
    return energy_by_kind_j(events, profile)


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
    per_core = _per_core(counts)
    chunks = input_chunks(program)
    crossings = sum(int(lc.chip_crossings.sum()) for lc in counts.layers)
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
        "chip_crossings": crossings,
        **chip_link_summary(crossings, events["chip_link"], n_tok),
        "busiest_link_messages_per_step": float(busiest.mean()) if busiest.size else 0.0,
        "busiest_link_messages_per_step_max": int(busiest.max(initial=0)),
        "links": [{"link": list(link), "messages_per_step": float(n) / max(busiest.size, 1)}
                  for link, n in zip(counts.links, link_load, strict=True)],
        "neuron_updates": int(all_steps),
        "neuron_updates_active": events["neuron_update"],
        "input_messages": events["input_message"],
        "input_hops": None,  # host values are priced per message, not routed (docs/roadmap.md: one rule set)
        "update_rule": profile.update_rule,
        # no potentials in a hybrid trace: under "nonzero" every layer is counted by the event rule
        "update_rule_fallback": [lc.name for lc in counts.layers] if profile.update_rule == "nonzero" else [],
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
        "per_layer": {lc.name: _layer_entry(program, lc, n_tok, chunks) for lc in counts.layers},
        "per_call": _per_call(counts, latency),
        "per_core": [
            {"core": c.index, "layer": c.pop, "neurons": c.hi - c.lo, "tile": [c.chip, c.x, c.y], "slot": c.slot,
             **per_core.get(c.index, {"synaptic_ops_per_step": 0.0})}
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


def _per_core(counts: HybridCounts) -> dict[int, dict]:
    """Per core: mean synaptic ops per step and totals (spikes, synaptic ops, updates, messages, hops); a core
    shared by two layers' counts (a projection's cores) sums both."""
    out: dict[int, dict] = {}
    keys = ("spikes", "synaptic_ops", "updates_active", "updates_idle", "messages_out", "messages_in", "hops")
    for lc in counts.layers:
        slots = lc.synaptic_ops.shape[0] * lc.synaptic_ops.shape[1]
        sops = lc.synaptic_ops.mean((0, 1))
        for j, core in enumerate(lc.cores):
            active = int(lc.active_updates[..., j].sum())
            row = out.setdefault(core, {"synaptic_ops_per_step": 0.0, **dict.fromkeys(keys, 0)})
            row["synaptic_ops_per_step"] += float(sops[j])
            for k, v in zip(keys, (int(lc.spikes_out[..., j].sum()), int(lc.synaptic_ops[..., j].sum()), active,
                                   int(lc.neurons[j]) * slots - active, int(lc.messages_out[..., j].sum()),
                                   int(lc.messages_in[..., j].sum()), int(lc.hops[..., j].sum())), strict=True):
                row[k] += v
    return out


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


def _layer_entry(program: HybridProgram, lc: LayerCounts, n_tok: int, chunks: dict[str, int]) -> dict:
    la = program.layer(lc.name)
    values_in, values_out = layer_io_values(program, la, chunks)
    calls, steps = lc.synaptic_ops.shape[:2]
    reads = host_reads(program, la, calls)
    return {"kind": la.kind, "segment": la.segment, "width": la.width, "steps_per_call": steps,
            "positions": lc.positions, "projection": None if la.projection is None else la.projection.name,
            "cores": len(lc.cores), "events": lc.events, "spikes": lc.spikes, "sops": int(lc.synaptic_ops.sum()),
            "messages": int(lc.messages_out.sum()), "messages_in": int(lc.messages_in.sum()),
            "hops": int(lc.hops.sum()),
            "neuron_updates": int(lc.neurons.sum()) * calls * steps,
            "neuron_updates_active": int(lc.active_updates.sum()),
            "events_per_call": lc.spikes_out.sum((1, 2)).tolist(),
            "sops_per_call": lc.synaptic_ops.sum((1, 2)).tolist(),
            "host_values_in_per_token": values_in * lc.positions * calls / n_tok,
            "host_values_out_per_token": values_out * lc.positions * reads / n_tok}


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
