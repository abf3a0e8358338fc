"""cut_host: the ops that cannot run as synapses or neurons become a host program, written as ONNX models.

Why ONNX: the host part must run the same everywhere (our executor, the Lava backend, a real board's x86 cores)
and be inspectable with standard tools; onnxruntime runs it. The cut is minimal for the spine: everything
between the first and the last spiking population is on the cores, so the host

* `encode`: token ids int64 [N, context] → Gather(table) → Reshape → input currents int32 [N, context·D]
  (the embedding table is already in the input population's state units; traffic: context·D values per step)
* `decode`: readout accumulators int64 [N, V] → Cast(double) · unit / T + bias → logits double [N, V]
  (same operation order as `runtime/reference.readout_logits`, so results are bit-identical)

The models carry fixed producer fields and no timestamps, so the bytes are deterministic.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from ..ir import HostProgram, Program, QReadoutPop
from ..targets import Target

OPSET = 17  # onnxruntime >= 1.14 supports it fully


def _model(graph: onnx.GraphProto) -> bytes:
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)],
                              producer_name="spikestack", producer_version="1")
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model.SerializeToString(deterministic=True)


def encode_model(program: Program, output: str = "currents", with_bias: bool = False) -> bytes:
    """ids [N, context] → the concatenated int32 embedding rows, named `output`; `with_bias`: plus the first
    population's integer bias (the chain executor adds it on the chip side; a hybrid stage hands the chip the sum:
    compiler/chain_hybrid.py)."""
    host = program.host_input
    table = numpy_helper.from_array(np.asarray(host.table, np.int32), "table")
    shape = numpy_helper.from_array(np.array([-1, host.size], np.int64), "shape")
    nodes = [helper.make_node("Gather", ["table", "ids"], ["rows"], axis=0),
             helper.make_node("Reshape", ["rows", "shape"], ["currents" if with_bias else output])]
    initializer = [table, shape]
    if with_bias:
        nodes.append(helper.make_node("Add", ["currents", "bias"], [output]))
        initializer.append(numpy_helper.from_array(np.asarray(program.populations[0].bias, np.int32), "bias"))
    graph = helper.make_graph(
        nodes, "spikestack_host_encode",
        [helper.make_tensor_value_info("ids", TensorProto.INT64, ["N", host.context])],
        [helper.make_tensor_value_info(output, TensorProto.INT32, ["N", host.size])],
        initializer=initializer,
    )
    return _model(graph)


def decode_model(program: Program, acc_type: int = TensorProto.INT64) -> bytes:
    """Readout accumulators `acc` (int64, or `acc_type`: the hybrid executor's int32) → logits, float64."""
    out = program.populations[-1]
    assert isinstance(out, QReadoutPop)
    consts = [numpy_helper.from_array(np.array(out.state_unit, np.float64), "unit"),
              numpy_helper.from_array(np.array(float(program.steps), np.float64), "steps"),
              numpy_helper.from_array(np.asarray(out.host_bias, np.float64), "bias")]
    graph = helper.make_graph(
        [helper.make_node("Cast", ["acc"], ["acc_f"], to=TensorProto.DOUBLE),
         helper.make_node("Mul", ["acc_f", "unit"], ["scaled"]),
         helper.make_node("Div", ["scaled", "steps"], ["mean"]),
         helper.make_node("Add", ["mean", "bias"], ["logits"])],
        "spikestack_host_decode",
        [helper.make_tensor_value_info("acc", acc_type, ["N", out.size])],
        [helper.make_tensor_value_info("logits", TensorProto.DOUBLE, ["N", out.size])],
        initializer=consts,
    )
    return _model(graph)


def cut_host(program: Program, target: Target) -> Program:
    if program.timing == "delayed":  # foreign LIF graphs: the host only forwards input events, no host ops
        report = dict(program.report, host={"ops": [], "values_in_per_token": program.host_input.size,
                                            "values_out_per_token": program.populations[-1].size})
        return replace(program, report=report)
    hosts = (HostProgram(name="encode", onnx=encode_model(program)),
             HostProgram(name="decode", onnx=decode_model(program)))
    report = dict(program.report, host={
        "ops": ["Gather", "Reshape", "Cast", "Mul", "Div", "Add"],
        "values_in_per_token": program.host_input.size * program.steps,
        "values_out_per_token": program.populations[-1].size,
    })
    return replace(program, host_programs=hosts, report=report)
