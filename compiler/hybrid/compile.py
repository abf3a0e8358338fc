"""compile_hybrid: a branching NIR graph (SpikeLM, SpikeGPT, SpikeLLM) → `HybridProgram`.

`HYBRID_PIPELINE`, run by the shared pass manager (`compiler/passes/manager.py`) with a verifier after every pass:
cut (chip layers and host schedule, `cut.py`) → calibrate (float run of the NIR graph on sample ids, peak input per
chip layer) → quantize (`quantize.py`) → host (stages to ONNX, `host_stages.py`) → partition and place (the
spine's passes, on the chip layers' populations). Each pass adds one thing to a typed stage (`CutStage` …
`HybridProgram`); `verify_hybrid` runs after every pass that yields a program."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from typing import Any

import nir
import numpy as np
import torch
from spikestack.models.nir.to_torch import NIRModule, _key, readout_of, run_tokens
from spikestack.models.threads import one_torch_thread

from spikestack.errors import CompileError

from ..kinds import kind_of
from ..passes.manager import Pass, run_passes
from ..passes.mantissas import weight_mantissa_max
from ..passes.partition import Edge, check_core_count, check_cover, slice_populations
from ..passes.place import place
from ..targets import Target, load_target
from .cut import CutPlan, plan_cut
from .host_export import export_stages
from .host_stages import build_stages, cache_states, decode_supported, host_states
from .ir import HostStage, HybridProgram, QChipLayer
from .quantize import quantize_layers

CALIBRATION_POSITIONS = 16  # sequence length of the example tensors used to trace the host stages
# Token-by-token graphs (SpikeGPT) read every weight once per call of the float64 calibration run, so its cost is
# weights × calls (memory-bound: 1.7 GB of float64 weights per call at the 216M shape). Above this budget the run
# takes fewer calls (never under CALIBRATION_MIN_CALLS): 2·10^9 keeps all 32 calls of the API's default windows
# up to 62 M weights (every shipped checkpoint) and gives the 216M shape 9 (bench/compile_published.py).
CALIBRATION_WEIGHT_CALLS = 2_000_000_000
CALIBRATION_MIN_CALLS = 8


def _meta(graph: nir.NIRGraph, key: str, default):
    value = (graph.metadata or {}).get(f"spikestack.{key}", default)
    return value.decode() if isinstance(value, bytes) else value


def calibration_calls(graph: nir.NIRGraph, ids: np.ndarray) -> np.ndarray:
    """`ids` [B, L], cut to the calls that the CALIBRATION_WEIGHT_CALLS budget allows for a token-by-token graph."""
    if str(_meta(graph, "time_axis", "")) != "tokens":
        return ids
    weights = sum(int(np.asarray(getattr(node, "weight", ())).size) for node in graph.nodes.values())
    calls = max(CALIBRATION_MIN_CALLS, CALIBRATION_WEIGHT_CALLS // max(weights, 1))
    return ids[..., :calls]


def calibrate(graph: nir.NIRGraph, plan: CutPlan, ids: np.ndarray) -> dict[str, float]:
    """Peak |input| of every chip neuron over a float64 run of the graph on `ids` [B, L] (big token-by-token
    graphs: the first calls only, `calibration_calls`)."""
    ids = calibration_calls(graph, ids)
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
    of their projection (fan-in = the layer's width, dense rows), each split under the target's limits; a fan-in
    over the input axons is split into input chunks where the host reads the accumulators (it sums the chunks)."""
    pops = [(pop.name, pop.size, fan_in) for pop, fan_in in _populations(program)]
    planes = _planes(program)
    edges = [Edge(src=p.src, dst=p.dst, weight=np.asarray(p.weight), planes=planes[p.name])
             for p in program.projections]
    chained = {la.source for la in program.layers}  # their sources' accumulators stay on the chip
    host_summed = {la.projection.name for la in program.layers if la.projection is not None and la.name not in chained}
    cores = slice_populations(pops, edges, target, host_summed=host_summed)
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
    m_max = 2 * weight_mantissa_max(program.target_spec)  # 254 at the shipped targets' 8 bits
    for la in program.layers:
        kind = kind_of(la)  # CompileError for an unregistered kind
        w = None if la.projection is None else np.asarray(la.projection.weight)
        if w is not None and not _even_mantissas(w, m_max):
            raise CompileError(f"chip layer {la.name!r}: weight mantissas must be even and |m| <= {m_max} "
                               f"({program.target_spec.weight_mantissa_bits}-bit mantissas of target "
                               f"{program.target_spec.name})")
        kind.verify(la, program.target_spec)
    if program.cores:
        wrong = check_cover(program.cores, {p.name: p.size for p in program.populations},
                            {p.dst: int(p.weight.shape[1]) for p in program.projections})
        if wrong:
            raise CompileError(wrong)


def _even_mantissas(w: np.ndarray, m_max: int) -> bool:
    """Every entry even with |m| <= m_max. Integer weights: min, max and an OR of all entries (the low bit), no
    temporary (the 216M shape's relays hold 400 M mantissas, checked after every pass)."""
    if w.size == 0:
        return True
    if np.issubdtype(w.dtype, np.integer):
        return int(w.min()) >= -m_max and int(w.max()) <= m_max and not int(np.bitwise_or.reduce(w, axis=None)) & 1
    return not (np.abs(w).max() > m_max or np.any(w % 2))


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


@dataclass(frozen=True, slots=True, kw_only=True)
class HybridContext:
    """What the language-model passes read besides their stage: the user's choices and where timings go."""

    target: Target
    calibration_ids: np.ndarray  # [B, L] token ids of the float calibration run
    dataflow: bool = False  # fold SpikeGPT's normed-residual Linears onto the cores (fold.py)
    encoding: str | None = None  # force one spike encoding (None: the cost model picks per layer)
    timings: dict[str, float] | None = None  # seconds per phase, accumulated (bench/compile_scale.py)


# The stages before a HybridProgram exists, typed so each pass states what it needs and adds one thing.
@dataclass(frozen=True, slots=True, kw_only=True)
class CutStage:
    graph: nir.NIRGraph
    plan: CutPlan


@dataclass(frozen=True, slots=True, kw_only=True)
class CalibratedStage:
    graph: nir.NIRGraph
    plan: CutPlan
    x_max: dict[str, float]  # peak |input| per chip neuron (float64 run)


@dataclass(frozen=True, slots=True, kw_only=True)
class QuantizedStage:
    graph: nir.NIRGraph
    plan: CutPlan
    x_max: dict[str, float]
    layers: tuple[QChipLayer, ...]
    # per projection on a fitted grid: relative weight error on the power-of-two grid and on the grid used
    weight_grid: dict[str, dict[str, float]]


def _cut(graph: nir.NIRGraph, ctx: HybridContext) -> CutStage:
    with _phase(ctx.timings, "cut"):
        return CutStage(graph=graph, plan=plan_cut(graph, dataflow=ctx.dataflow))


def _verify_cut(stage: CutStage) -> None:
    if not stage.plan.layers:
        raise CompileError("graph has no spiking neuron node (BiSpike, LIF or GIF): nothing to put on the chip")


def _calibrate(stage: CutStage, ctx: HybridContext) -> CalibratedStage:
    with _phase(ctx.timings, "calibrate"):
        x_max = calibrate(stage.graph, stage.plan, ctx.calibration_ids)
    return CalibratedStage(graph=stage.graph, plan=stage.plan, x_max=x_max)


def _verify_peaks(stage: CalibratedStage) -> None:
    """Quantisation divides by these peaks: an overflowing float run would give every unit as infinity."""
    for name, peak in stage.x_max.items():
        if not np.isfinite(peak):
            raise CompileError(f"chip layer {name!r}: calibration peak input {peak} is not finite")


def _quantize(stage: CalibratedStage, ctx: HybridContext) -> QuantizedStage:
    with _phase(ctx.timings, "quantize"):
        grid: dict[str, dict[str, float]] = {}
        layers = quantize_layers(stage.plan, stage.x_max, ctx.target, ctx.encoding, grid_report=grid)
    return QuantizedStage(graph=stage.graph, plan=stage.plan, x_max=stage.x_max, layers=tuple(layers),
                          weight_grid=grid)


def _verify_quantized(stage: QuantizedStage) -> None:
    if len(stage.layers) != len(stage.plan.layers):
        raise CompileError(f"quantize: {len(stage.layers)} chip layers for {len(stage.plan.layers)} planned")


def _host(stage: QuantizedStage, ctx: HybridContext) -> HybridProgram:
    """Trace and export the host stages around the chip layers (and the KV-cache program where supported)."""
    graph, plan, layers, target = stage.graph, stage.plan, list(stage.layers), ctx.target
    time_axis = str(_meta(graph, "time_axis", "tokens"))
    max_positions = int(_meta(graph, "max_seq_len", graph_context(graph)))
    positions = max(max_positions, CALIBRATION_POSITIONS)
    states = host_states(plan)
    stages = _host_program(plan, layers, _example_env(plan, time_axis), states, positions, ctx.timings, target)
    decode_stages: tuple[HostStage, ...] = ()
    decode_states = tuple(cache_states(plan)) if decode_supported(plan) else ()
    if decode_states:  # the KV-cache program for token-by-token generation
        example = {plan.input_name: torch.zeros(1, 1, 1, dtype=torch.int64)}
        example.update({s.name: torch.zeros(1, 3, *s.shape[1:]) for s in decode_states})
        decode_stages = _host_program(plan, layers, example, list(decode_states), positions, ctx.timings, target,
                                      decode=True)
    program = HybridProgram(
        family=str(_meta(graph, "family", "unknown")), target=target.name, target_spec=target, time_axis=time_axis,
        steps_per_token=int(_meta(graph, "steps_per_token", 1)) if time_axis == "steps" else 1,
        vocab_size=int(_meta(graph, "vocab_size", 0)), layers=tuple(layers), stages=stages,
        states=tuple(states), input_name=plan.input_name, decode_stages=decode_stages,
        decode_states=decode_states, max_positions=max_positions,
        readout=readout_of(graph.metadata or {}) if time_axis == "steps" else "mean_over_steps",
        report={"calibration_peaks": {k: round(v, 6) for k, v in stage.x_max.items()},
                "encodings": {la.name: la.projection.encoding for la in layers if la.projection is not None},
                "weight_grid": stage.weight_grid})
    return replace(program, report=dict(program.report, host_traffic_values_per_position=_traffic(program)))


def _partition_pass(program: HybridProgram, ctx: HybridContext) -> HybridProgram:
    with _phase(ctx.timings, "partition_place"):
        return _partition(program, ctx.target)


def _place_pass(program: HybridProgram, ctx: HybridContext) -> HybridProgram:
    with _phase(ctx.timings, "partition_place"):
        return place(program, ctx.target)


def _layers_view(stage: QuantizedStage) -> list[QChipLayer]:
    return list(stage.layers)


HYBRID_PIPELINE: tuple[Pass[HybridContext], ...] = (
    Pass("cut", "split the graph into chip layers (spiking neurons + projections) and a per-call host schedule",
         _cut, verify=_verify_cut, view=lambda s: plan_summary(s.plan)),
    Pass("calibrate", "a float64 run on sample ids gives each chip layer's peak input, the range quantize needs",
         _calibrate, verify=_verify_peaks, view=lambda s: s.x_max),
    Pass("quantize", "chip layers → Lava fixed_pt integers and a spike encoding per projection",
         _quantize, verify=_verify_quantized, view=_layers_view),
    Pass("host", "everything off the chip → ONNX host stages on the per-call schedule (and the KV-cache program)",
         _host, verify=verify_hybrid, view=lambda p: p.stages),
    Pass("partition", "chip populations → cores under the target's neuron, memory and axon limits",
         _partition_pass, verify=verify_hybrid, view=lambda p: p.cores),
    Pass("place", "cores → mesh tiles minimising hop-weighted traffic (the spine's place pass)",
         _place_pass, verify=verify_hybrid),
)
HYBRID_PASSES = tuple(p.name for p in HYBRID_PIPELINE)


def compile_hybrid(graph: nir.NIRGraph, target: Target | str, calibration_ids: np.ndarray,
                   timings: dict[str, float] | None = None, *, dataflow: bool = False,
                   on_pass: Callable[[str, Any], None] | None = None, encoding: str | None = None) -> HybridProgram:
    """Run HYBRID_PIPELINE over `graph`. `timings`, when given, receives the seconds of each phase: cut, calibrate,
    quantize, host_build, onnx_export, partition_place (bench/compile_scale.py). `dataflow` folds Linears of
    SpikeGPT's normed residual stream onto the cores (compiler/hybrid/fold.py). `on_pass(name, ir)` sees each
    pass's view of its stage, in HYBRID_PASSES order (`compile --dump-ir`, `--dump-after`)."""
    target = load_target(target) if isinstance(target, str) else target
    ctx = HybridContext(target=target, calibration_ids=calibration_ids, dataflow=dataflow, encoding=encoding,
                        timings=timings)
    return run_passes(HYBRID_PIPELINE, graph, ctx, on_pass)


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
    traced: list = []
    with _phase(timings, "host_build"):
        modules = build_stages(plan, layers, example, _chip_example, positions, decode, target=target,
                               traced=traced)
    accumulators = {la.output for la in layers if la.projection is not None}
    state_names = {s.name for s in states}
    with _phase(timings, "onnx_export"):  # big models: half the stages in a forked child (host_export.py)
        exported = export_stages(modules, example, traced, accumulators, _chip_example)
    stages = []
    for k, ex in enumerate(exported):
        state_in = tuple(n for n in ex.inputs if n in state_names)
        stages.append(HostStage(index=k, onnx=ex.onnx, inputs=ex.inputs, outputs=ex.outputs, state_in=state_in,
                                state_out=tuple(f"{n}:next" for n in state_in), ops=ex.nodes,
                                macs_per_position=_macs(plan, ex.nodes)))
    for k, stage in enumerate(stages):  # a state written here but read elsewhere: pair it by name
        extra = [n[: -len(":next")] for n in stage.outputs if n.endswith(":next") and n[: -len(":next")]
                 not in stage.state_in]
        if extra:
            stages[k] = replace(stage, state_in=stage.state_in + tuple(extra),
                                state_out=stage.state_out + tuple(f"{n}:next" for n in extra))
    return tuple(stages)
