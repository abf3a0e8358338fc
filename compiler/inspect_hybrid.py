"""`spikestack inspect ART` for hybrid programs (the language models): chip layers with their kind, payload
bits, synapses and cores; host stages; the KV-cache program; chained edges; host↔chip traffic; the per-layer
quantization error; the placement (`inspect.py` does the same for chain programs)."""

from __future__ import annotations

import numpy as np

from .hybrid.ir import HybridProgram
from .targets import target_of


def inspect_hybrid(program: HybridProgram) -> str:
    """The human table of `spikestack inspect` for a hybrid artifact."""
    lines = [f"hybrid artifact: family {program.family}, target {program.target}, time axis {program.time_axis}"
             f" ({program.steps_per_token} call(s) per token), {len(program.layers)} chip layers, "
             f"{len(program.stages)} host stages, {len(program.cores)} cores"]
    cores: dict[str, int] = {}
    for c in program.cores:
        cores[c.pop] = cores.get(c.pop, 0) + 1
    lines.append(f"{'chip layer':44s} {'kind':8s} {'width':>5s} {'steps':>5s} {'payload':>7s} {'synapses':>9s} "
                 f"{'cores':>5s} seg")
    for la in program.layers:
        syn = 0 if la.projection is None else int(np.count_nonzero(la.projection.weight))
        n_cores = cores.get(la.name, 0) + (cores.get(la.projection.name, 0) if la.projection else 0)
        lines.append(f"{la.name:44s} {la.kind:8s} {la.width:5d} {la.steps:5d} {la.payload_bits:5d} b "
                     f"{syn:9d} {n_cores:5d} {la.segment:3d}")
    if program.cores:
        target = target_of(program)
        neurons = np.array([c.hi - c.lo for c in program.cores])
        memory = np.array([c.synaptic_memory_bits for c in program.cores]) / target.synaptic_memory_bits
        chips = len({c.chip for c in program.cores})
        lines.append(f"per-core load: neurons max {neurons.max()} / mean {neurons.mean():.0f} of "
                     f"{target.max_neurons}; synaptic memory max {memory.max():.1%} / mean {memory.mean():.1%}; "
                     f"{chips} chip(s)")
    lines.append("host stages (ONNX):")
    for st in program.stages:
        ops = ", ".join(st.ops[:4]) + (f", … (+{len(st.ops) - 4})" if len(st.ops) > 4 else "")
        lines.append(f"  stage {st.index}: {len(st.ops)} ops, {st.macs_per_position} MACs/position, "
                     f"{len(st.state_in)} states; {ops}")
    if program.decode_stages:
        per_step = f", one set per spiking step (x{program.steps_per_token})" if program.time_axis == "steps" else ""
        lines.append(f"KV-cache decode program: {len(program.decode_stages)} stages, {len(program.decode_states)} "
                     f"caches{per_step}, up to {program.max_positions} positions")
    chained = [la for la in program.layers if la.source is not None]
    if chained:
        lines.append("chained on the chip: " + ", ".join(f"{la.source} → {la.name}" for la in chained))
    traffic = program.report.get("host_traffic_values_per_position", {})
    lines.append(f"host↔chip traffic per position and call: {traffic.get('host_to_chip', 0)} values to the chip, "
                 f"{traffic.get('chip_to_host', 0)} back")
    calibration = program.report.get("calibration")
    if calibration:
        lines.append(f"quantization error vs the float model ({calibration['positions']} positions; compounding):")
        for name, e in ((la.name, calibration["layers"][la.name]) for la in program.layers
                        if la.name in calibration["layers"]):
            lines.append(f"  {name:44s} max {e['max_abs']:.4g}  mean {e['mean_abs']:.4g}  "
                         f"rel {100 * e['rel_mean']:.2f} %  saturations {e['saturations']}")
    placement = program.report.get("placement", {})
    if placement:
        lines.append(f"placement: {placement.get('chosen_per_chip')} hop-weighted routes "
                     f"{placement.get('hop_weighted_routes')}")
    return "\n".join(lines)
