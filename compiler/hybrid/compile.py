"""compile_hybrid: a branching NIR graph (SpikeLM, SpikeGPT, SpikeLLM) → `HybridProgram`.

Passes, each verified after it (`verify_hybrid`): cut (chip layers and host schedule, `cut.py`) → calibrate (float
run of the NIR graph on sample ids, peak input per chip layer) → quantize (`quantize.py`) → host (stages to ONNX,
`host_stages.py`) → partition and place (the spine's passes, on the chip layers' populations).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import replace
from typing import Any

import nir
import numpy as np
import torch
from spikestack.models.nir.to_torch import NIRModule, _key, run_tokens
from spikestack.models.threads import one_torch_thread

from spikestack.errors import CompileError

from ..passes.partition import Edge, check_core_count, slice_populations
from ..passes.place import place
from ..targets import Target, load_target
from ..verify import verify_lif_fields
from .cut import CutPlan, plan_cut
from .host_stages import build_stages, cache_states, decode_supported, export_onnx, host_states
from .ir import CHIP_KINDS, HostStage, HybridProgram, QChipLayer
from .quantize import quantize_layers

CALIBRATION_POSITIONS = 16  # sequence length of the example tensors used to trace the host stages


def _meta(graph: nir.NIRGraph, key: str, default):
    value = (graph.metadata or {}).get(f"spikestack.{key}", default)
    return value.decode() if isinstance(value, bytes) else value


def calibrate(graph: nir.NIRGraph, plan: CutPlan, ids: np.ndarray) -> dict[str, float]:
    """Peak |input| of every chip neuron over a float64 run of the graph on `ids` [B, L]."""
    module = NIRModule(graph).double().eval()
    peaks = {la.neuron: 0.0 for la in plan.layers}
    hooks = []
    for la in plan.layers:
        def hook(_m, args, _out, name=la.neuron):
            peaks[name] = max(peaks[name], float(args[0].abs().max()))
        hooks.append(module.mods[_key(la.neuron)].register_forward_hook(hook))
    with torch.no_grad(), one_torch_thread():
        run_tokens(module, torch.as_tensor(ids, dtype=torch.long))
    for h in hooks:
        h.remove()
    return peaks


def _example_env(plan: CutPlan, time_axis: str) -> dict[str, torch.Tensor]:
    lead = (1,) if time_axis == "tokens" else (1, CALIBRATION_POSITIONS)
    env = {plan.input_name: torch.zeros(*lead, 1, dtype=torch.int64)}
    for spec in host_states(plan):
        env[spec.name] = torch.full((*lead, *spec.shape), spec.init, dtype=torch.float32)
    return env


def chip_output_shape(layer: QChipLayer, lead: tuple[int, ...]) -> tuple[int, ...]:
    if layer.projection is None:
        return (*lead, layer.width)
    return (*lead, layer.projection.n_groups, layer.projection.size)


def _chip_example(layer: QChipLayer, x: torch.Tensor) -> torch.Tensor:
    """Zeros shaped as the layer's output; a chained layer's input is its source's accumulators [..., 1, out]."""
    lead = tuple(x.shape[:-2] if layer.source is not None else x.shape[:-1])
    return torch.zeros(chip_output_shape(layer, lead), dtype=torch.int32)


def _partition(program: HybridProgram, target: Target) -> HybridProgram:
    """One core group per chip population: the spiking neurons (host-written, no synapses) and the accumulators
    of their projection (fan-in = the layer's width, dense rows), each split under the target's limits."""
    pops = [(pop.name, pop.size, fan_in) for pop, fan_in in _populations(program)]
    planes = _planes(program)
    edges = [Edge(src=p.src, dst=p.dst, weight=np.asarray(p.weight), planes=planes[p.name])
             for p in program.projections]
    cores = slice_populations(pops, edges, target)
    check_core_count(len(cores), target)
    return replace(program, cores=tuple(cores))


def _planes(program: HybridProgram) -> dict[str, int]:
    """Axon planes per presynaptic neuron of each projection (binary encodings: one axon per plane)."""
    return {la.projection.name: la.planes for la in program.layers if la.projection is not None}


def _populations(program: HybridProgram):
    planes = _planes(program)
    fan_in = {p.dst: int(p.weight.shape[1]) * planes[p.name] for p in program.projections}
    return [(pop, fan_in.get(pop.name, 0)) for pop in program.populations]


def _verify_schedule(program: HybridProgram, stages: tuple[HostStage, ...], states) -> None:
    """Every stage input and chip layer input is produced earlier in the call; the logits are produced."""
    produced = {program.input_name} | {s.name for s in states}
    for k, stage in enumerate(stages):
        missing = [n for n in stage.inputs if n not in produced]
        if missing:
            raise CompileError(f"host stage {k}: input {missing[0]!r} is produced by no earlier stage")
        produced |= set(stage.outputs)
        for la in sorted(program.segment_layers(k), key=lambda layer: layer.source is not None):
            if la.input not in produced:
                raise CompileError(f"chip layer {la.name!r}: its input {la.input!r} is not produced by stage {k}")
            produced.add(la.output)
        if len(stage.state_in) != len(stage.state_out):
            raise CompileError(f"host stage {k}: state inputs and outputs differ in number")
    if program.output_name not in produced:
        raise CompileError("hybrid program: no stage produces the logits")


def verify_hybrid(program: HybridProgram) -> None:
    """Structural invariants every backend relies on; a failure is a compiler bug."""
    if program.target != program.target_spec.name:
        raise CompileError(f"hybrid program for target {program.target!r} carries the spec of target "
                           f"{program.target_spec.name!r}")
    names = [la.name for la in program.layers]
    if len(set(names)) != len(names):
        raise CompileError("hybrid program: two chip layers share a name")
    _verify_schedule(program, program.stages, program.states)
    if program.decode_stages:
        _verify_schedule(program, program.decode_stages, program.decode_states)
    for la in program.layers:
        if la.kind not in CHIP_KINDS:
            raise CompileError(f"chip layer {la.name!r}: unknown kind {la.kind!r}")
        w = None if la.projection is None else np.asarray(la.projection.weight)
        if w is not None and not _even_mantissas(w):
            raise CompileError(f"chip layer {la.name!r}: weight mantissas must be even and |m| <= 254")
        if la.kind == "lif":
            verify_lif_fields(la.name, la.du, la.dv, la.vth, program.target_spec)
    if program.cores:
        covered = {}
        for c in program.cores:
            covered[c.pop] = covered.get(c.pop, 0) + (c.hi - c.lo)
        for pop in program.populations:
            if covered.get(pop.name) != pop.size:
                raise CompileError(f"population {pop.name!r}: cores cover {covered.get(pop.name, 0)} of {pop.size}")


def _even_mantissas(w: np.ndarray) -> bool:
    """Every entry even with |m| <= 254. Integer weights: min, max and an OR of all entries (the low bit), no
    temporary (the 216M shape's relays hold 400 M mantissas, checked after every pass)."""
    if w.size == 0:
        return True
    if np.issubdtype(w.dtype, np.integer):
        return int(w.min()) >= -254 and int(w.max()) <= 254 and not int(np.bitwise_or.reduce(w, axis=None)) & 1
    return not (np.abs(w).max() > 254 or np.any(w % 2))


def _macs(plan: CutPlan, nodes: list[str]) -> int:
    total = 0
    for n in nodes:
        node = plan.graph.nodes[n]
        if isinstance(node, nir.Linear | nir.Affine):
            total += int(np.asarray(node.weight).size)
    return total


@contextmanager
def _phase(timings: dict[str, float] | None, name: str) -> Iterator[None]:
    start = time.perf_counter()
    try:
        yield
    finally:
        if timings is not None:
            timings[name] = timings.get(name, 0.0) + time.perf_counter() - start


def compile_hybrid(graph: nir.NIRGraph, target: Target | str, calibration_ids: np.ndarray,
                   timings: dict[str, float] | None = None, *, dataflow: bool = False,
                   on_pass: Callable[[str, Any], None] | None = None, encoding: str | None = None) -> HybridProgram:
    """`timings`, when given, receives the seconds of each pass: cut, calibrate, quantize, host_build,
    onnx_export, partition_place (bench/compile_scale.py). `dataflow` folds Linears of SpikeGPT's normed
    residual stream onto the cores (compiler/hybrid/fold.py). `on_pass(name, ir)` sees the IR after each of
    HYBRID_PASSES (`compile --dump-after`)."""
    target = load_target(target) if isinstance(target, str) else target
    seen = on_pass or (lambda _name, _ir: None)
    with _phase(timings, "cut"):
        plan = plan_cut(graph, dataflow=dataflow)
    seen("cut", plan_summary(plan))
    if not plan.layers:
        raise CompileError("graph has no spiking neuron node (BiSpike, LIF or GIF): nothing to put on the chip")
    time_axis = str(_meta(graph, "time_axis", "tokens"))
    with _phase(timings, "calibrate"):
        x_max = calibrate(graph, plan, calibration_ids)
    seen("calibrate", x_max)
    with _phase(timings, "quantize"):
        layers = quantize_layers(plan, x_max, target, encoding)
    seen("quantize", layers)
    max_positions = int(_meta(graph, "max_seq_len", graph_context(graph)))
    positions = max(max_positions, CALIBRATION_POSITIONS)
    states = host_states(plan)
    stages = _host_program(plan, layers, _example_env(plan, time_axis), states, positions, timings, target)
    decode_stages: tuple[HostStage, ...] = ()
    decode_states = tuple(cache_states(plan)) if decode_supported(plan) else ()
    if decode_states:  # the KV-cache program for token-by-token generation
        example = {plan.input_name: torch.zeros(1, 1, 1, dtype=torch.int64)}
        example.update({s.name: torch.zeros(1, 3, *s.shape[1:]) for s in decode_states})
        decode_stages = _host_program(plan, layers, example, list(decode_states), positions, timings, target,
                                      decode=True)
    program = HybridProgram(
        family=str(_meta(graph, "family", "unknown")), target=target.name, target_spec=target, time_axis=time_axis,
        steps_per_token=int(_meta(graph, "steps_per_token", 1)) if time_axis == "steps" else 1,
        vocab_size=int(_meta(graph, "vocab_size", 0)), layers=tuple(layers), stages=stages,
        states=tuple(states), input_name=plan.input_name, decode_stages=decode_stages,
        decode_states=decode_states, max_positions=max_positions,
        report={"calibration_peaks": {k: round(v, 6) for k, v in x_max.items()},
                "encodings": {la.name: la.projection.encoding for la in layers if la.projection is not None}})
    program = replace(program, report=dict(program.report, host_traffic_values_per_position=_traffic(program)))
    verify_hybrid(program)
    seen("host", program.stages)
    with _phase(timings, "partition_place"):
        program = _partition(program, target)
        verify_hybrid(program)
        seen("partition", program.cores)
        program = place(program, target)
        verify_hybrid(program)
        seen("place", program)
    return program


HYBRID_PASSES = ("cut", "calibrate", "quantize", "host", "partition", "place")


def plan_summary(plan: CutPlan) -> dict[str, Any]:
    """The cut as data (no NIR objects): chip layers by segment, host nodes by stage, delays, stage count."""
    return {"stages": plan.stages, "layers": [
        {"name": la.neuron, "kind": la.kind, "projection": la.projection, "segment": la.segment,
         "inputs": list(la.inputs), "fold": None if la.fold is None else {
             "norm": la.fold.norm, "spikes": list(la.fold.spikes), "normed": la.fold.normed,
             "shifted": la.fold.prev is not None}} for la in plan.layers],
        "host": {n: plan.level[n] for n in plan.order}, "delays": plan.delays}


def graph_context(graph: nir.NIRGraph) -> int:
    from spikestack.models.nir.ops import PositionEmbedding

    pos = [n for n in graph.nodes.values() if isinstance(n, PositionEmbedding)]
    return int(pos[0].weight.shape[0]) if pos else 0


def _traffic(program: HybridProgram) -> dict[str, int]:
    """Values crossing the cut per position and call: host → chip inputs, chip → host outputs."""
    return {"host_to_chip": sum(program.from_host(la) for la in program.layers),
            "chip_to_host": sum(program.to_host(la) for la in program.layers)}


def _host_program(plan: CutPlan, layers: list[QChipLayer], example: dict[str, torch.Tensor], states: list,
                  positions: int, timings: dict[str, float] | None, target: Target,
                  decode: bool = False) -> tuple[HostStage, ...]:
    """Trace and export every stage (the sequence program, or with `decode` the KV-cache one)."""
    with _phase(timings, "host_build"):
        modules = build_stages(plan, layers, example, _chip_example, positions, decode, target=target)
    accumulators = {la.output for la in layers if la.projection is not None}
    env = dict(example)
    stages = []
    state_names = {s.name for s in states}
    with torch.no_grad(), _phase(timings, "onnx_export"):
        for k in range(len(modules)):
            # each stage's torch copy of its weights is dropped once exported: at the 216M shape they are
            # 0.9 GB that the ONNX bytes of the later stages can reuse (bench/compile_scale.py)
            module, modules[k] = modules[k], None
            onnx_bytes = export_onnx(module, env, accumulators)
            for name, value in zip(module.outputs, module(*(env[n] for n in module.inputs)), strict=True):
                env[name] = value
            for la in module.send:
                env[la.output] = _chip_example(la, env[la.input])
            state_in = tuple(n for n in module.inputs if n in state_names)
            stages.append(HostStage(index=k, onnx=onnx_bytes, inputs=tuple(module.inputs),
                                    outputs=tuple(module.outputs), state_in=state_in,
                                    state_out=tuple(f"{n}:next" for n in state_in), ops=tuple(module.nodes),
                                    macs_per_position=_macs(plan, module.nodes)))
    for k, stage in enumerate(stages):  # a state written here but read elsewhere: pair it by name
        extra = [n[: -len(":next")] for n in stage.outputs if n.endswith(":next") and n[: -len(":next")]
                 not in stage.state_in]
        if extra:
            stages[k] = replace(stage, state_in=stage.state_in + tuple(extra),
                                state_out=stage.state_out + tuple(f"{n}:next" for n in extra))
    return tuple(stages)
