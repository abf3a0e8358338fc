"""Latency and energy from event counts and a profile (REFERENCE.md §6.4, §7.6).

A core is one pipeline, so its work in a step adds serially: synaptic ops + neuron updates + spikes out +
messages out, each times its per-event time. Cores run in parallel and the step ends at a barrier:

    latency(step) = max_core(work) + max(longest route, busiest link load) · t_hop + barrier(tiles used)

The network term is a lower bound: the last message over the busiest link cannot leave it before
(load · t_hop), and the longest route takes (hops · t_hop). Adding the two would not be a lower bound (the
busiest link may sit on a one-hop route), so the larger one is taken; queueing beyond that is not modelled.

Layers run pipelined (the Lava backend's schedule), so a token costs T steps of throughput:
tokens/s = 1 / (T · mean step latency); the first token waits T + (number of populations) steps for the
pipeline to fill (mean step latency assumed for the partly filled steps). Energy is dynamic only: Σ counts ×
per-event energy (no static power, which no profile here gives per core). SANA-FE's own accuracy against
silicon is 12 % energy / 25 % latency (§7.5): claim nothing tighter.
"""

from __future__ import annotations

from functools import cache

import numpy as np
from spikestack.compiler.ir import Program
from spikestack.runtime.trace import Trace

from .conventions import ann_twin_macs_per_token, counting_conventions
from .counts import Counts, count_events
from .profiles import Profile, load_profile

PJ = 1e-12  # J per pJ
NS = 1e-9  # s per ns
# Same-technology comparison with the ANN twin: 45 nm CMOS op energies (REFERENCE.md §7.3).
SAME_TECH_PROFILES = ("horowitz45_int8", "horowitz45_fp32")


def report_header(profile: Profile, target: str, tokens: int) -> dict:
    """The keys every simulation report opens with: the profile (and whether it is an assumption), target, tokens."""
    return {"profile": profile.name, "profile_is_assumption": profile.assumption,
            "profile_description": profile.description, "profile_sources": dict(profile.sources),
            "target": target, "tokens": tokens}


def simulate(program: Program, trace: Trace, profile: Profile) -> dict:
    counts = count_events(program, trace)
    return report(program, trace, counts, profile)


def step_latency_s(counts: Counts, profile: Profile, tiles: int) -> np.ndarray:
    t = profile.time_ns
    idle = counts.neuron_updates - counts.active_updates
    work = (counts.synaptic_ops * t["synaptic_op"] + counts.active_updates * t["neuron_update"]
            + idle * t["neuron_update_idle"] + counts.spikes_out * t["spike_out"] + counts.messages_out * t["message"])
    network = np.maximum(counts.max_hops, counts.busiest_link) * t["hop"]
    return (work.max(-1) + network + profile.barrier_time_ns(tiles)) * NS


def energy_breakdown_j(counts: Counts) -> dict[str, np.ndarray]:
    """Per-token event totals by kind (multiply by per-event energies)."""
    steps = counts.synaptic_ops.shape[1]
    return {
        "synaptic_op": counts.synaptic_ops.sum((1, 2)),
        "neuron_update": counts.active_updates.sum((1, 2)),
        "neuron_update_idle": counts.neuron_updates.sum() * steps - counts.active_updates.sum((1, 2)),
        "spike_out": counts.spikes_out.sum((1, 2)),
        "message": counts.messages_out.sum((1, 2)),
        "hop": counts.hops.sum((1, 2)),
    }


def energy_by_kind_j(events: dict[str, np.ndarray], profile: Profile) -> dict[str, float]:
    return {k: float(v.sum()) * profile.energy_pj[k] * PJ for k, v in events.items()}


@cache
def same_tech_profiles() -> tuple[Profile, ...]:
    """Loaded once per process: parsing the TOML files cost more than counting a 1,000-step run (bench)."""
    return tuple(load_profile(name) for name in SAME_TECH_PROFILES)


def ann_comparison(program: Program, n_tok: int, events: dict[str, np.ndarray], profile: Profile) -> dict:
    """Energy per token of this SNN and of its ANN twin under the same 45 nm profiles (and this profile's [ann]).

    Why: a Loihi SNN figure next to a 45 nm GPU-style MAC figure compares technologies, not networks; the
    same-technology rows say how much of the gap is the network.
    """
    same_tech = list(same_tech_profiles())
    if profile.ann_mac_pj is not None and profile.name not in SAME_TECH_PROFILES:
        same_tech.append(profile)
    macs = ann_twin_macs_per_token(program)
    return {p.name: {"snn_energy_per_token_j": sum(energy_by_kind_j(events, p).values()) / n_tok,
                     "ann_energy_per_token_j": macs * (p.ann_mac_pj or 0.0) * PJ,
                     "ann_mac_pj": p.ann_mac_pj}
            for p in same_tech}


def report(program: Program, trace: Trace, counts: Counts, profile: Profile) -> dict:
    tiles = len({(c.chip, c.x, c.y) for c in program.cores})
    per_token_events = energy_breakdown_j(counts)
    energy_by_kind = energy_by_kind_j(per_token_events, profile)
    total_energy = sum(energy_by_kind.values())
    n_tok = trace.tokens
    latency = step_latency_s(counts, profile, tiles) if profile.timing else None
    mean_step = float(latency.mean()) if latency is not None else None
    comparison = ann_comparison(program, n_tok, per_token_events, profile)
    per_core_synops = counts.synaptic_ops.mean((0, 1))
    return {
        **report_header(profile, program.target, n_tok),
        "steps_per_token": program.steps,
        "cores": len(program.cores),
        "tiles": tiles,
        "chips": len({c.chip for c in program.cores}),
        "sops": int(counts.synaptic_ops.sum()),
        "sops_per_token": float(counts.synaptic_ops.sum()) / n_tok,
        "spikes": int(counts.spikes_out.sum()),
        "messages": int(counts.messages_out.sum()),
        "hops": int(counts.hops.sum()),
        "busiest_link_messages_per_step": float(counts.busiest_link.mean()),
        "busiest_link_messages_per_step_max": int(counts.busiest_link.max(initial=0)),
        "links": [{"link": list(link), "messages_per_step": float(n) / (n_tok * program.steps)}
                  for link, n in zip(counts.links, counts.link_messages, strict=True)],
        "neuron_updates": int(counts.neuron_updates.sum()) * program.steps * n_tok,
        "neuron_updates_active": int(counts.active_updates.sum()),
        "energy_j": total_energy,
        "energy_per_token_j": total_energy / n_tok,
        "energy_breakdown_j": energy_by_kind,
        "timing": profile.timing,
        "latency_s_per_step": mean_step,
        "latency_s_per_step_max": float(latency.max()) if latency is not None else None,
        "tokens_per_s": 1.0 / (program.steps * mean_step) if mean_step else None,
        # Lava schedule (runtime/lava/backend.py): population k runs token 0's step t at step t + k + 1, so the
        # first token's readout is complete after T + (number of populations) steps
        "time_to_first_token_s": (program.steps + len(program.populations)) * mean_step if mean_step else None,
        "firing_rate": {k: round(v, 6) for k, v in trace.firing_rate().items()},
        "per_core": [
            {"core": c.index, "layer": c.pop, "neurons": c.hi - c.lo, "tile": [c.chip, c.x, c.y],
             "synaptic_ops_per_step": float(per_core_synops[c.index])}
            for c in program.cores
        ],
        "host_values_in_per_token": counts.host_values_in,
        "host_values_out_per_token": counts.host_values_out,
        # host programs (compiler/passes/cut_host.py): encode gathers `context` embedding rows per token; decode
        # is Cast, Mul, Div, Add per logit, i.e. 3 arithmetic ops. Not priced: no profile has a host figure
        "host_ops_per_token": {"encode_values_gathered": program.host_input.size,
                               "decode_arith_ops": 3 * program.populations[-1].size},
        "counting_conventions": counting_conventions(
            program, trace, {k: v["ann_mac_pj"] for k, v in comparison.items()}),
        "ann_twin_comparison": comparison,
        "conventions": "sops = (non-zero event, non-zero synapse) pairs; energy dynamic only; see docs/simulator.md",
    }
