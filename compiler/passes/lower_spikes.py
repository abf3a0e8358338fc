"""lower_spikes: signed multi-level spikes → a signed graded event stream.

A spike of level s at step t travels as one message whose payload is s · amplitude[t] (REFERENCE.md §1.4: "lower
as a signed graded payload"); the synapse multiplies it by the weight mantissa (Lava Dense with
num_message_bits > 0 computes W·s; with 0 it would turn -1 into +1, §5.3). The payload needs
bits(K · max amplitude) + 1 sign bits; a target whose graded payload is narrower (Loihi 1: binary spikes) is a
TargetLimitError naming the projection — unary and bit-serial encodings are issue 5's.
"""

from __future__ import annotations

from dataclasses import replace

from spikestack.errors import TargetLimitError

from ..ir import Program, QSpikingPop
from ..targets import Target


def payload_bits(pop: QSpikingPop) -> int:
    """Signed width of the largest payload K·max(amplitude)."""
    return int(pop.levels * int(max(pop.amplitude))).bit_length() + 1


def lower_spikes(program: Program, target: Target) -> Program:
    projections = []
    encodings = {}
    names = {p.name for p in program.populations}
    for proj in program.projections:
        src = program.pop(proj.src) if proj.src in names else None
        if not isinstance(src, QSpikingPop):  # LIF neurons and host inputs emit binary events
            projections.append(replace(proj, message_bits=0))
            encodings[proj.name] = {"encoding": "binary", "payload_bits": 1}
            continue
        bits = payload_bits(src)
        if bits > target.max_payload_bits:
            raise TargetLimitError(
                f"projection {proj.name!r}: graded payload needs {bits} bits, target {target.name} allows "
                f"{target.max_payload_bits} (over by {bits - target.max_payload_bits}); unary lowering is not "
                f"implemented yet")
        projections.append(replace(proj, message_bits=bits))
        encodings[proj.name] = {"encoding": "graded", "payload_bits": bits}
    report = dict(program.report, encodings=encodings)
    return replace(program, projections=tuple(projections), report=report)
