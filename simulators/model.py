"""Latency and energy from event counts and a profile (REFERENCE.md §6.4, §7.5, §7.6; docs/simulator.md).

A core runs two pipelines side by side, as SANA-FE models a Loihi core (Boyle et al., IEEE TCAD 2025): message-in
processing (per message received t_message_in, per synaptic op t_synaptic_op) and neuron processing (active and
idle updates, spikes out, messages out); the core's step takes the longer of the two. The host's input messages
leave through their own pipeline (t_message each). Cores run in parallel and the step ends at a barrier:

    latency(step) = max(max_core max(message-in, neuron), host messages out)
                    + longest route · t_hop + barrier(tiles, chips)

The network term is the last message's flight (hops · t_hop): routers forward messages pipelined, so the load of
the busiest link is reported (`busiest_link_messages_per_step`) but not added: SANA-FE 2.2.9's detailed
timing, which simulates each message through the mesh, shows no such serialisation on the agreement networks
(bench/sanafe_agreement.py; README). What neither term models is head-of-line blocking when one core sends many
messages to slow receivers (SANA-FE's detailed model does): there the step can take up to ~2x longer (measured).
barrier(tiles, chips) is the profile's table by tiles plus one chip-link time per extra chip; a step adds one
chip-link time per chip link its most-travelled message crossed (the longest route's chip hops; one for
neighbouring chips). Energy prices every chip-link crossing (`chip_hops`) at the profile's [chip_link] energy.

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
    counts = count_events(program, trace, profile.update_rule)
    return report(program, trace, counts, profile)


def core_pipelines_ns(neurons: np.ndarray, active: np.ndarray, messages_in: np.ndarray, synaptic_ops: np.ndarray,
                      spikes_out: np.ndarray, messages_out: np.ndarray,
                      profile: Profile) -> tuple[np.ndarray, np.ndarray]:
    """A core's two pipelines per step (ns), for chain and hybrid programs alike: message-in (messages received,
    synaptic ops) and neuron (active and idle updates, spikes, messages sent). `neurons` [cores] broadcasts over
    the leading axes of the per-step arrays [..., cores]."""
    t = profile.time_ns
    idle = neurons - active
    message_in = messages_in * t.get("message_in", 0.0) + synaptic_ops * t["synaptic_op"]
    neuron = (active * t["neuron_update"] + idle * t["neuron_update_idle"] + spikes_out * t["spike_out"]
              + messages_out * t["message"])
    return message_in, neuron


def pipelines_ns(counts: Counts, profile: Profile) -> tuple[np.ndarray, np.ndarray]:
    """Per (token, step, core): the message-in pipeline's and the neuron pipeline's time (ns)."""
    return core_pipelines_ns(counts.neuron_updates, counts.active_updates, counts.messages_in, counts.synaptic_ops,
                             counts.spikes_out, counts.messages_out, profile)


def step_latency_s(counts: Counts, profile: Profile, tiles: int, chips: int = 1) -> np.ndarray:
    t = profile.time_ns
    message_in, neuron = pipelines_ns(counts, profile)
    cores = np.maximum(message_in, neuron).max(-1, initial=0)
    host = counts.input_messages * t["message"]  # the host's messages leave through their own pipeline
    network = counts.max_hops * t["hop"]  # the last message's flight; links pipelined (module docstring)
    crossing = counts.max_chip_hops * profile.chip_link_ns  # chip links on the way (module docstring)
    return (np.maximum(cores, host) + network + crossing + profile.barrier_time_ns(tiles, chips)) * NS


# event kind → (events per token, the profile's energy key); input messages and chip links are their own lines
def energy_breakdown_j(counts: Counts) -> dict[str, np.ndarray]:
    """Per-token event totals by kind (multiply by per-event energies, `energy_by_kind_j`)."""
    steps = counts.synaptic_ops.shape[1]
    return {
        "synaptic_op": counts.synaptic_ops.sum((1, 2)),
        "neuron_update": counts.active_updates.sum((1, 2)),
        "neuron_update_idle": counts.neuron_updates.sum() * steps - counts.active_updates.sum((1, 2)),
        "spike_out": counts.spikes_out.sum((1, 2)),
        "message": counts.messages_out.sum((1, 2)),
        "input_message": counts.input_messages.sum(1),
        "hop": counts.hops.sum((1, 2)) + counts.input_hops.sum(1),
        "chip_link": counts.chip_hops.sum((1, 2)) + counts.input_chip_hops.sum(1),
    }


PRICE_KEY = {"input_message": "message"}  # an input message costs what any message out costs (SANA-FE axon_out)


def energy_by_kind_j(events: dict[str, np.ndarray], profile: Profile) -> dict[str, float]:
    def price(kind: str) -> float:
        return profile.chip_link_pj if kind == "chip_link" else profile.energy_pj[PRICE_KEY.get(kind, kind)]

    return {k: float(np.sum(v)) * price(k) * PJ for k, v in events.items()}


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
    chips = len({c.chip for c in program.cores})
    per_token_events = energy_breakdown_j(counts)
    energy_by_kind = energy_by_kind_j(per_token_events, profile)
    total_energy = sum(energy_by_kind.values())
    n_tok = trace.tokens
    latency = step_latency_s(counts, profile, tiles, chips) if profile.timing else None
    mean_step = float(latency.mean()) if latency is not None else None
    comparison = ann_comparison(program, n_tok, per_token_events, profile)
    # the keys a hybrid report has, in its terms: a call is one step of the graph over every token (or sample)
    step_latency = latency.sum(0) if latency is not None else None  # [T]: the tokens of a step, one after another
    return {
        "kind": "chain",
        "family": program.family,
        "time_axis": "steps" if program.timing == "token" else "delayed",
        **report_header(profile, program.target, n_tok),
        "calls": program.steps,
        "positions_per_call": n_tok,
        "steps_per_token": program.steps,
        "chip_steps_per_call": 1,
        "cores": len(program.cores),
        "tiles": tiles,
        "chips": chips,
        "sops": int(counts.synaptic_ops.sum()),
        "sops_per_token": float(counts.synaptic_ops.sum()) / n_tok,
        "spikes": int(counts.spikes_out.sum()),
        "messages": int(counts.messages_out.sum()),
        "hops": int(counts.hops.sum()),
        "input_messages": int(counts.input_messages.sum()),
        "input_hops": int(counts.input_hops.sum()),
        "chip_crossings": int(counts.chip_crossings.sum()),
        **chip_link_summary(int(counts.chip_crossings.sum()), int(counts.chip_hops.sum()), n_tok),
        "busiest_link_messages_per_step": float(counts.busiest_link.mean()),
        "busiest_link_messages_per_step_max": int(counts.busiest_link.max(initial=0)),
        "links": [{"link": list(link), "messages_per_step": float(n) / (n_tok * program.steps)}
                  for link, n in zip(counts.links, counts.link_messages, strict=True)],
        "neuron_updates": int(counts.neuron_updates.sum()) * program.steps * n_tok,
        "neuron_updates_active": int(counts.active_updates.sum()),
        "update_rule": counts.update_rule,
        "update_rule_fallback": list(counts.update_rule_fallback),
        "energy_j": total_energy,
        "energy_per_token_j": total_energy / n_tok,
        "energy_breakdown_j": energy_by_kind,
        "timing": profile.timing,
        "latency_s_per_step": mean_step,
        "latency_s_per_step_max": float(latency.max()) if latency is not None else None,
        "latency_s_per_call": float(step_latency.mean()) if step_latency is not None else None,
        "latency_s_per_call_max": float(step_latency.max()) if step_latency is not None else None,
        "tokens_per_s": 1.0 / (program.steps * mean_step) if mean_step else None,
        # Lava schedule (runtime/lava/backend.py): population k runs token 0's step t at step t + k + 1, so the
        # first token's readout is complete after T + (number of populations) steps
        "time_to_first_token_s": (program.steps + len(program.populations)) * mean_step if mean_step else None,
        "firing_rate": {k: round(v, 6) for k, v in trace.firing_rate().items()},
        "per_layer": per_layer_counts(program, counts),
        "per_call": [{"call": t, "events": int(counts.spikes_out[:, t].sum()),
                      "sops": int(counts.synaptic_ops[:, t].sum()), "messages": int(counts.messages_out[:, t].sum()),
                      "hops": int(counts.hops[:, t].sum()),
                      "latency_s": float(step_latency[t]) if step_latency is not None else None}
                     for t in range(program.steps)],
        "per_core": per_core_counts(program, counts, profile),
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


def chip_link_summary(crossings: int, chip_hops: int, n_tok: int) -> dict[str, float | int]:
    """Chip-to-chip traffic of core → core messages: crossings per token, chip links crossed, and the mean chip
    links per crossing message (1.0 when every crossing is to a neighbouring chip)."""
    return {"chip_crossings_per_token": crossings / n_tok, "chip_link_hops": chip_hops,
            "mean_chip_hops": chip_hops / crossings if crossings else 0.0}


def _core_totals(counts: Counts, core: int) -> dict[str, int]:
    steps_tokens = counts.synaptic_ops.shape[0] * counts.synaptic_ops.shape[1]
    active = int(counts.active_updates[..., core].sum())
    return {"spikes": int(counts.spikes_out[..., core].sum()),
            "synaptic_ops": int(counts.synaptic_ops[..., core].sum()),
            "updates_active": active, "updates_idle": int(counts.neuron_updates[core]) * steps_tokens - active,
            "messages_out": int(counts.messages_out[..., core].sum()),
            "messages_in": int(counts.messages_in[..., core].sum()), "hops": int(counts.hops[..., core].sum())}


def per_core_counts(program: Program, counts: Counts, profile: Profile) -> list[dict]:
    """Every core's totals over all tokens and steps, its place, and (with timing) its mean pipeline times."""
    synops = counts.synaptic_ops.mean((0, 1))
    times = pipelines_ns(counts, profile) if profile.timing else None
    out = []
    for c in program.cores:
        row = {"core": c.index, "layer": c.pop, "neurons": c.hi - c.lo, "tile": [c.chip, c.x, c.y], "slot": c.slot,
               "synaptic_ops_per_step": float(synops[c.index]), **_core_totals(counts, c.index)}
        if times is not None:
            row["message_in_ns_per_step"] = float(times[0][..., c.index].mean())
            row["neuron_ns_per_step"] = float(times[1][..., c.index].mean())
        out.append(row)
    return out


def per_layer_counts(program: Program, counts: Counts) -> dict[str, dict]:
    """Totals per population (sums over its cores), so that one layer can be checked against another model."""
    out: dict[str, dict] = {}
    for c in program.cores:
        row = out.setdefault(c.pop, {"cores": 0, "neurons": 0})
        row["cores"] += 1
        row["neurons"] += c.hi - c.lo
        for k, v in _core_totals(counts, c.index).items():
            row[k] = row.get(k, 0) + v
    return out
