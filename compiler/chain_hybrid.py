"""A token-timing chain program (the bi-spike spine: compiler/ir.py `Program`) as the smallest hybrid program:
host stage 0, one chip segment, host stage 1 (docs/roadmap.md, one program, step 1).

    stage 0 (ONNX): token windows [N, context] → the embedding rows, concatenated, plus the first population's
                    integer bias → its input currents (int32, state units): the chain's encode with the bias
    segment 0:      the bi-spike populations as `BiSpikeLayer`s, each chained from the one before (its projection
                    lands on the next population on the chip: the chain's "every layer sees the same step"),
                    the last one's projection chained into a `ReadoutLayer` (accumulators over the T calls)
    stage 1 (ONNX): the accumulators → logits, acc · unit / T + bias in float64 (the chain's decode, fed int32)

One call is one step t of every token, T calls per token (`time_axis: steps`), and the logits are the last call's
(`readout: last_step`), when the readout holds the token's sum. Every integer is the chain's: the same tables,
mantissas, biases and saturation (tests/compiler/test_chain_hybrid.py compares spikes, accumulators and logits
bit for bit with runtime/reference.py). Only graded projections so far: the signed unary and bit-serial encodings
of bi-spike payloads are not in the hybrid projection yet (docs/roadmap.md).
"""

from __future__ import annotations

import numpy as np
from onnx import TensorProto

from spikestack.errors import CompileError

from .hybrid.ir import BiSpikeLayer, HostStage, HybridProgram, QChipProjection
from .ir import Program, QProjection, QReadoutPop, QSpikingPop, frozen_array
from .kinds import ReadoutLayer
from .passes.cut_host import decode_model, encode_model

INPUT, OUTPUT, ACC = "ids", "logits", "acc"  # the names of the chain's host programs (compiler/passes/cut_host.py)


def chain_as_hybrid(program: Program) -> HybridProgram:
    """The hybrid program computing exactly what `program` computes (module docstring); CompileError naming what
    is not expressible yet."""
    if program.timing != "token":
        raise CompileError("chain program with delayed timing (foreign LIF): not expressible as a hybrid program "
                           "yet (docs/roadmap.md, one program, step 3)")
    *pops, readout = program.populations
    if not pops or not isinstance(readout, QReadoutPop) or not all(isinstance(p, QSpikingPop) for p in pops):
        raise CompileError("chain program: expected bi-spike populations followed by one readout")
    projs = [_projection_between(program, a.name, b.name) for a, b in zip(pops, [*pops[1:], readout], strict=True)]
    layers: list = []
    for pop, proj in zip(pops, projs, strict=True):
        dst = program.pop(proj.dst)
        source = layers[-1] if layers else None
        layers.append(BiSpikeLayer(
            name=pop.name, width=pop.size, steps=1, input=source.output if source else f"chip_in:{pop.name}",
            output=f"chip_out:{pop.name}", in_unit=pop.state_unit, payload_unit=pop.amplitude_unit, segment=0,
            thresholds=pop.thresholds, carry=pop.carry, carry_shift=pop.carry_shift, amplitude=pop.amplitude,
            period=program.steps, levels=pop.levels,
            projection=QChipProjection(name=proj.name, weight=proj.weight, unit=dst.state_unit,
                                       message_bits=proj.message_bits,
                                       groups=frozen_array(np.zeros(pop.size, np.int8)), n_groups=1),
            source=source.name if source else None, bias=pop.bias if source else None))
    layers.append(ReadoutLayer(name=readout.name, width=readout.size, steps=1, input=layers[-1].output, output=ACC,
                               in_unit=readout.state_unit, payload_unit=readout.state_unit, segment=0,
                               period=program.steps, source=layers[-1].name,
                               bias=frozen_array(np.zeros(readout.size, np.int64))))
    host = program.host_input
    return HybridProgram(
        family=program.family, target=program.target, target_spec=program.target_spec, time_axis="steps",
        steps_per_token=program.steps, vocab_size=int(host.table.shape[0]), layers=tuple(layers),
        stages=(HostStage(index=0, onnx=encode_model(program, layers[0].input, with_bias=True), inputs=(INPUT,),
                          outputs=(layers[0].input,)),
                HostStage(index=1, onnx=decode_model(program, TensorProto.INT32), inputs=(ACC,), outputs=(OUTPUT,))),
        cores=program.cores, report=dict(program.report), input_name=INPUT, output_name=OUTPUT,
        readout="last_step", input_window=int(host.context))


def _projection_between(program: Program, src: str, dst: str) -> QProjection:
    found = [p for p in program.projections if p.src == src]
    if len(found) != 1 or found[0].dst != dst:
        raise CompileError(f"population {src!r}: a chain program projects it once, onto {dst!r}")
    proj = found[0]
    if proj.encoding != "graded" or proj.weight_exp != 0 or proj.delay is not None:
        raise CompileError(f"projection {proj.name!r}: {proj.encoding} events (weight_exp {proj.weight_exp}) are not "
                           "in hybrid projections yet; graded only (docs/roadmap.md)")
    return proj
