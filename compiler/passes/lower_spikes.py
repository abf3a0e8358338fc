"""lower_spikes: signed multi-level spikes → an event stream, one encoding per edge (`compiler/encodings.py`).

Cost model, per projection from a bi-spike population with K levels and max payload amplitude a:

| encoding  | messages per spike (worst) | payload bits      | synaptic memory | needs            |
|-----------|----------------------------|-------------------|-----------------|------------------|
| graded    | 1                          | bits(K·a) + 1     | 1 × W           | target payload ≥ |
| unary     | K                          | 1                 | 2K × W          | —                |
| bitserial | bits(K)                    | 1                 | 2·bits(K) × W   | —                |

Graded wins whenever the target carries its payload (fewest messages, least memory: REFERENCE.md §1.4); else
bitserial (fewer messages than unary for K ≥ 3, equal below), unary on ties. `encoding=` forces one (`compile
--encoding`). All three are exact: binary encodings move the per-step amplitude into a destination gain.
LIF and host sources emit binary events already (encoding "graded" with 0 payload bits, Lava's default).
"""

from __future__ import annotations

from dataclasses import replace

from spikestack.errors import TargetLimitError

from ..encodings import planes_count
from ..ir import Program, QSpikingPop
from ..targets import Target


def payload_bits(pop: QSpikingPop) -> int:
    """Signed width of the largest graded payload K·max(amplitude)."""
    return int(pop.levels * int(max(pop.amplitude))).bit_length() + 1


def edge_costs(pop: QSpikingPop) -> dict[str, dict[str, int]]:
    k = pop.levels
    return {
        "graded": {"messages_per_spike": 1, "payload_bits": payload_bits(pop), "memory_planes": 1},
        "unary": {"messages_per_spike": k, "payload_bits": 1, "memory_planes": planes_count("unary", k)},
        "bitserial": {"messages_per_spike": k.bit_length(), "payload_bits": 1,
                      "memory_planes": planes_count("bitserial", k)},
    }


def choose_encoding(pop: QSpikingPop, target: Target) -> str:
    costs = edge_costs(pop)
    if costs["graded"]["payload_bits"] <= target.max_payload_bits:
        return "graded"
    if costs["bitserial"]["messages_per_spike"] < costs["unary"]["messages_per_spike"]:
        return "bitserial"
    return "unary"


def lower_spikes(program: Program, target: Target, encoding: str | None = None) -> Program:
    projections = []
    encodings = {}
    names = {p.name for p in program.populations}
    for proj in program.projections:
        src = program.pop(proj.src) if proj.src in names else None
        if not isinstance(src, QSpikingPop):  # LIF neurons and host inputs emit binary events
            projections.append(replace(proj, message_bits=0))
            encodings[proj.name] = {"encoding": "binary", "payload_bits": 1}
            continue
        chosen = encoding or choose_encoding(src, target)
        costs = edge_costs(src)
        if chosen == "graded":
            bits = costs["graded"]["payload_bits"]
            if bits > target.max_payload_bits:
                raise TargetLimitError(
                    f"projection {proj.name!r}: graded payload needs {bits} bits, target {target.name} allows "
                    f"{target.max_payload_bits} (over by {bits - target.max_payload_bits}); use --encoding unary "
                    f"or bitserial")
            projections.append(replace(proj, message_bits=bits, encoding="graded"))
        else:
            projections.append(replace(proj, message_bits=0, encoding=chosen, gain=src.amplitude))
        encodings[proj.name] = {"encoding": chosen, "forced": encoding is not None, "costs": costs}
    report = dict(program.report, encodings=encodings)
    return replace(program, projections=tuple(projections), report=report)
