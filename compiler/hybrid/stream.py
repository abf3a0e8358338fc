"""compile_stream: a language model too big for memory → `HybridProgram`, one piece (decoder block) at a time.

Place in the picture (STYLE.md): the same passes as `compile_hybrid` (compile.py), in a different order of work.
`compile_hybrid` runs each pass over the whole graph, so the whole model's weights are in memory (float64 NIR
copies, their float64 calibration run, the quantized mantissas): 4–6× the fp16 checkpoint. Here

    cut        on the model's *skeleton* (every node and edge, chip weights of a narrow twin: the cut is
               structural, so the plan is the full graph's);
    calibrate, quantize
               piece by piece (`StreamedModel.pieces`: the embedding, each decoder block, the head): the piece's
               float64 run on the residual stream carried over from the previous piece gives its chip layers'
               peaks, its layers are quantized and their arrays written to the artifact at once (`ArtifactWriter`)
               and read back memory-mapped; the piece's chip weights in the graph become zero-stride stand-ins;
    host, partition, place
               over the whole program as in compile.py (host stages hold only host weights; partition and place
               read the memory-mapped mantissas).

Every number is computed by the same functions on the same values as `compile_hybrid` (a piece's float64 run is
the whole run's, node for node), so the artifact is byte-identical (tests/compiler/test_stream.py). Peak memory is
one block's float64 nodes and run plus the host weights (embedding and head), not the model.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import fields, replace
from typing import Protocol

import nir
import numpy as np
import torch
from spikestack.models.nir.to_torch import NIRModule, _key
from spikestack.models.threads import one_torch_thread

from spikestack.errors import CompileError

from ..artifact_writer import ArtifactWriter
from ..targets import Target, load_target
from .compile import (
    HybridContext,
    QuantizedStage,
    _host,
    _partition_pass,
    _phase,
    _place_pass,
    _verify_peaks,
    _verify_quantized,
    verify_hybrid,
)
from .cut import CutPlan, plan_cut
from .ir import HybridProgram, QChipLayer
from .quantize import quantize_layers

RELEASE_EVERY_S = 0.2  # at ~2 GB/s from the page cache, at most ~0.4 GB of mapped mantissas resident at once


class StreamedModel(Protocol):
    """What the streaming compile reads of a model (models/published/hf_llama.py `LlamaStream`)."""

    skeleton: nir.NIRGraph  # every node name, edge and metadata of the full export; chip weights may be stand-ins

    def pieces(self) -> Iterator[Mapping[str, nir.NIRNode]]:
        """The real nodes, in graph order, a few at a time; each piece's nodes replace the skeleton's."""
        ...


def compile_stream(model: StreamedModel, target: Target | str, calibration_ids: np.ndarray, writer: ArtifactWriter,
                   *, encoding: str | None = None, timings: dict[str, float] | None = None) -> HybridProgram:
    """The program `compile_hybrid(full graph, …)` gives, built piece by piece; its chip arrays are already in
    `writer` (and memory-mapped from there), so `artifact.save(program, out, writer)` completes the artifact."""
    with _released(writer):
        return _compile(model, target, calibration_ids, writer, encoding, timings)


@contextmanager
def _released(writer: ArtifactWriter) -> Iterator[None]:
    """Every RELEASE_EVERY_S, drop the written arrays' mapped pages from the resident set: the host, partition,
    place and verify passes read every mantissa, and a 7B model's are 13 GB; with this the process holds what
    it read in the last interval (the page cache, not the process, keeps the rest)."""
    stop = threading.Event()

    def loop() -> None:
        while not stop.wait(RELEASE_EVERY_S):
            writer.release_pages()

    thread = threading.Thread(target=loop, name="release-pages", daemon=True)
    # it only calls madvise on the writer's mappings: no lock that host_export's forked child (which never
    # touches the writer) could wait on, so the host stages still export on two cores
    thread.fork_safe = True  # type: ignore[attr-defined]
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()


def _compile(model: StreamedModel, target: Target | str, calibration_ids: np.ndarray, writer: ArtifactWriter,
             encoding: str | None, timings: dict[str, float] | None) -> HybridProgram:
    target = load_target(target) if isinstance(target, str) else target
    ctx = HybridContext(target=target, calibration_ids=calibration_ids, encoding=encoding, timings=timings)
    skeleton = model.skeleton
    with _phase(timings, "cut"):
        plan = plan_cut(skeleton)
    if not plan.layers:
        raise CompileError("graph has no spiking neuron node (BiSpike, LIF or GIF): nothing to put on the chip")
    nodes = dict(skeleton.nodes)
    graph = nir.NIRGraph(nodes=nodes, edges=list(skeleton.edges), type_check=False)
    graph.metadata = dict(skeleton.metadata or {})
    plan = replace(plan, graph=graph)
    x_max: dict[str, float] = {la.neuron: 0.0 for la in plan.layers}
    grid: dict[str, dict[str, float]] = {}
    quantized: dict[str, QChipLayer] = {}
    values = {plan.input_name: torch.as_tensor(calibration_ids, dtype=torch.long)[..., None]}
    for piece in model.pieces():
        unknown = next((n for n in piece if n not in nodes), None)
        if unknown is not None:
            raise CompileError(f"streamed piece: node {unknown!r} is not in the model's skeleton")
        nodes.update(piece)
        mine = [pl for pl in plan.layers if pl.neuron in piece]
        with _phase(timings, "calibrate"):  # every piece: a later one reads the residual stream it hands on
            _calibrate_piece(plan, piece, mine, values, x_max)
        if not mine:
            continue
        _verify_peaks(_Peaks({pl.neuron: x_max[pl.neuron] for pl in mine}))
        with _phase(timings, "quantize"):
            layers = quantize_layers(replace(plan, layers=mine), x_max, target, encoding, grid_report=grid)
            for la in layers:
                quantized[la.name] = _written(la, writer)
        for pl in mine:  # the mantissas live in the artifact now; the graph keeps each weight's shape only
            if pl.projection is not None:
                node = nodes[pl.projection]
                nodes[pl.projection] = replace(node, weight=np.broadcast_to(np.zeros((), node.weight.dtype),
                                                                            node.weight.shape))
        del piece, layers  # before the next piece is read
    missing = [pl.neuron for pl in plan.layers if pl.neuron not in quantized]
    if missing:
        raise CompileError(f"streamed model: no piece held chip layer {missing[0]!r}")
    stage = QuantizedStage(graph=graph, plan=plan, x_max=x_max, layers=tuple(quantized[pl.neuron]
                                                                              for pl in plan.layers),
                           weight_grid=grid)
    _verify_quantized(stage)
    program = _host(stage, ctx)
    for run in (_partition_pass, _place_pass):
        verify_hybrid(program)
        program = run(program, ctx)
    verify_hybrid(program)
    return program


class _Peaks:
    """The view `_verify_peaks` reads (a CalibratedStage's `x_max`)."""

    def __init__(self, x_max: dict[str, float]) -> None:
        self.x_max = x_max


def _calibrate_piece(plan: CutPlan, piece: Mapping[str, nir.NIRNode], mine: list, values: dict[str, torch.Tensor],
                     x_max: dict[str, float]) -> None:
    """Peak |input| of the piece's chip layers over its float64 run, fed the value the previous pieces left in
    `values` (the one node outside the piece that it reads); its one value read by later nodes goes back there.
    Same modules, same inputs, same thread count as compile.py `calibrate`'s whole run: the same floats."""
    graph = plan.graph
    outside = sorted({src for src, dst in graph.edges if dst in piece and src not in piece})
    leaving = sorted({src for src, dst in graph.edges if src in piece and dst not in piece})
    if len(outside) != 1 or len(leaving) != 1 or outside[0] not in values:
        raise CompileError(f"streamed piece {sorted(piece)[0]!r}: reads {outside} and hands on {leaving}; a piece "
                           "must read one earlier value and hand on one")
    source, out = outside[0], leaving[0]
    x = values.pop(source)
    inner = [(s, d) for s, d in graph.edges if d in piece]
    sub = nir.NIRGraph(nodes={source: nir.Input(input_type={"input": np.array([int(x.shape[-1])])}), **piece,
                              "piece_output": nir.Output(output_type={"output": np.array([1])})},
                       edges=[*inner, (out, "piece_output")], type_check=False)
    module = NIRModule(sub).double().eval()
    hooks = []
    for pl in mine:
        def hook(_m, args, _out, name=pl.neuron):
            x_max[name] = max(x_max[name], float(args[0].abs().max()))
        hooks.append(module.mods[_key(pl.neuron)].register_forward_hook(hook))
    with torch.no_grad(), one_torch_thread():
        values[out] = module(x)[0]
    for h in hooks:
        h.remove()


def _written(layer: QChipLayer, writer: ArtifactWriter) -> QChipLayer:
    """`layer` with every array written under the key `artifact.save` gives it, and read back memory-mapped."""
    def arrays(obj, prefix: str) -> dict[str, np.ndarray]:
        return {f.name: writer.add(f"{prefix}.{f.name}", getattr(obj, f.name)) for f in fields(obj)
                if isinstance(getattr(obj, f.name), np.ndarray)}

    if layer.projection is not None:
        layer = replace(layer, projection=replace(layer.projection,
                                                  **arrays(layer.projection, f"proj.{layer.projection.name}")))
    return replace(layer, **arrays(layer, f"layer.{layer.name}"))
