"""`spikestack inspect ART`: what a compiled artifact holds, as a human table.

Cores used and their load (neurons, synaptic memory, input axons, mesh position), the encoding chosen per
projection, the host's share of the work and traffic, and the quantisation error summary from `quantize`.
"""

from __future__ import annotations

from .ir import Program, QLIFPop, QReadoutPop, QSpikeInput, QSpikingPop


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    widths = [max(len(str(x)) for x in col) for col in zip(header, *rows, strict=False)]
    fmt = "  ".join(f"{{:<{w}}}" for w in widths)
    return [fmt.format(*header), fmt.format(*("-" * w for w in widths))] + [fmt.format(*map(str, r)) for r in rows]


def inspect_artifact(program: Program) -> str:
    per = "token" if program.timing == "token" else "sample (delayed timing)"
    lines = [f"target {program.target}: {len(program.cores)} cores, {program.steps} steps per {per}, "
             f"{program.state_bits}-bit state"]
    lines.append("")
    lines += _table(
        ["core", "layer", "neurons", "syn. memory bits", "axons in", "chip", "x,y", "slot"],
        [[c.index, c.pop, f"{c.lo}..{c.hi - 1}", c.synaptic_memory_bits, c.axons_in, c.chip, f"{c.x},{c.y}", c.slot]
         for c in program.cores])
    lines.append("")
    layers = program.report.get("layers", {})
    encodings = program.report.get("encodings", {})
    rows = []
    for proj in program.projections:
        q = layers.get(proj.name, {})
        enc = encodings.get(proj.name, {})
        rows.append([proj.name, f"{proj.src} → {proj.dst}", f"{proj.weight.shape[1]}x{proj.weight.shape[0]}",
                     f"{enc.get('encoding', '?')} {proj.message_bits}b", q.get("weight_exp", ""),
                     f"{q.get('max_abs_weight_error', float('nan')):.2e}", q.get("state_headroom_bits", "")])
    lines += _table(["projection", "edge", "in x out", "encoding", "weight exp", "max |Δw|", "headroom bits"], rows)
    lines.append("")
    calibration = program.report.get("calibration")
    if calibration:
        order = [n for p in program.populations for n in (p.name, *(q.name for q in program.projections
                                                                    if q.src == p.name))]
        layers = calibration["layers"]
        rows = [[name, f"{layers[name]['spike_agreement']:.4f}" if "spike_agreement" in layers[name] else "",
                 f"{layers[name]['mean_abs_error']:.3g}" if "mean_abs_error" in layers[name] else "",
                 f"{layers[name]['mean_rel_error']:.3g}" if "mean_rel_error" in layers[name] else "",
                 layers[name].get("saturations", "")]
                for name in order if name in layers]
        lines.append(f"quantisation error on {calibration['tokens']} validation windows (float model vs compiled):")
        lines += _table(["layer", "spike agreement", "mean |Δ current|", "relative", "saturations"], rows)
        lines.append("")
    spiking = [p for p in program.populations if isinstance(p, QSpikingPop)]
    readout = [p for p in program.populations if isinstance(p, QReadoutPop)]
    host = program.host_input
    if isinstance(host, QSpikeInput):  # foreign LIF program: the host only forwards binary input events
        lifs = [p for p in program.populations if isinstance(p, QLIFPop)]
        out = lifs[-1]
        first = program.incoming(lifs[0].name).name
        read = "final v" if out.neuron == "LI" else "spike counts"
        lines.append(f"host: forwards {host.size} binary input events per step into {first!r}; reads {read} of "
                     f"{out.name!r} ({out.size} values)")
        lines.append("neurons (Lava CUBA-LIF fields): " + ", ".join(
            f"{p.name} ({p.neuron}: du {p.du}, dv {p.dv}, vth {p.vth})" for p in lifs))
        return "\n".join(lines)
    lines.append(f"host ops: embedding lookup ({host.table.shape[0]} x {host.table.shape[1]}, context {host.context}) "
                 f"→ {host.size} input currents per step into {program.input_pop!r}; readout scaling of "
                 f"{', '.join(p.name for p in readout)} (÷T, + bias)")
    lines.append(f"host traffic per token: {host.size * program.steps} values in, "
                 f"{sum(p.size for p in readout)} values out")
    lines.append(f"spiking layers: {', '.join(f'{p.name} (K={p.levels})' for p in spiking)}")
    return "\n".join(lines)
