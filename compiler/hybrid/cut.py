"""cut: split a branching NIR graph into chip layers and host nodes, and schedule them per call.

What goes on the chip: every spiking neuron node (`spikestack.BiSpike`, `nir.LIF`, `spikestack.GIF`) and, when
the neuron's only consumer is a `nir.Linear`/`nir.Affine` whose only input is that neuron, the projection too
(its synapses are event-driven: they only see spikes). Everything else is a host op: norms, attention, WKV,
gates, embeddings, heads and every Linear that reads real values (REFERENCE.md §3.7's honest count).

Why this is the minimal cut for these graphs: a Linear of real values has no spike to carry its input, and a
neuron's input is always a real-valued sum computed on the host (the residual stream passes through norms), so
no further node can move to the cores without rewriting the math (SpikeGPT's "dataflow" folding is such a
rewrite; docs/roadmap.md).

Chained layers: a stateless bi-spike fed only by a chip projection (SpikeLM's K/V re-spikes) takes that
projection's dendritic sums directly, in the same segment, so its input never crosses to the host.

Schedule: a host node runs in stage `level` = the latest stage at which all its operands exist; a chip layer
runs in segment s = the stage its input is complete in, and its output is available from stage s + 1. A `Delay`
is host state: its value (last call's input) exists from stage 0, and its new value is taken where its input is
complete.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import nir
import numpy as np
from spikestack.models.nir.nodes import BiSpike, Embedding
from spikestack.models.nir.ops import check_operands
from spikestack.models.nir.to_torch import _topological_order

from spikestack.errors import CompileError, NIRFormatError

from ..kinds import KINDS
from .fold import Fold, find_folds

NEURON_TYPES = tuple(t for kind in KINDS.values() for t in kind.node_types)  # what goes on the chip


def chip_kind(node: nir.NIRNode) -> str:
    """The registered kind (compiler/kinds/) that lowers this neuron node."""
    return next(kind.name for kind in KINDS.values() if isinstance(node, kind.node_types))


@dataclass(frozen=True, slots=True)
class PlannedLayer:
    neuron: str
    kind: str
    projection: str | None
    segment: int
    inputs: tuple[str, ...]  # NIR predecessors of the neuron, summed
    fold: Fold | None = None  # relay layers (fold.py): the folded Linear
    source: str | None = None  # chained: the chip layer whose projection feeds this neuron on the chip

    @property
    def value_name(self) -> str:
        """The NIR node whose value the chip layer delivers to the host."""
        return self.projection or self.neuron


@dataclass
class CutPlan:
    graph: nir.NIRGraph
    order: list[str]  # host nodes in topological order (Input, Delay and Output excluded)
    preds: dict[str, list[str]]
    layers: list[PlannedLayer]
    level: dict[str, int]  # host node → stage
    delays: dict[str, int] = field(default_factory=dict)  # Delay → stage where its next value is taken
    input_name: str = ""
    output_name: str = ""
    stages: int = 0

    def layer_of(self, value: str) -> PlannedLayer | None:
        return next((la for la in self.layers if value in (la.neuron, la.projection)), None)


def plan_cut(graph: nir.NIRGraph, dataflow: bool = False) -> CutPlan:
    """The cut; `dataflow` also folds Linears of normed integer residual streams onto the chip (fold.py)."""
    check_operands(graph)
    preds: dict[str, list[str]] = {}
    succs: dict[str, list[str]] = {}
    for src, dst in graph.edges:
        if src not in graph.nodes or dst not in graph.nodes:
            raise NIRFormatError(f"edge {(src, dst)}: names a node that is not in the graph")
        preds.setdefault(dst, []).append(src)
        succs.setdefault(src, []).append(dst)
    inputs = [n for n, v in graph.nodes.items() if isinstance(v, nir.Input)]
    outputs = [n for n, v in graph.nodes.items() if isinstance(v, nir.Output)]
    if len(inputs) != 1 or len(outputs) != 1:
        raise NIRFormatError(f"graph needs exactly one Input and one Output node, got {inputs} and {outputs}")
    for name, node in graph.nodes.items():
        if isinstance(node, nir.NIRGraph):
            raise NIRFormatError(f"node {name!r}: nested NIR graphs are not supported; flatten the graph first")
        if isinstance(node, nir.Delay) and not np.all(np.asarray(node.delay) == 1):
            raise NIRFormatError(f"node {name!r}: only one-call delays (token shift) are supported on the host, got "
                                 f"{np.unique(node.delay).tolist()}")
    takers = [n for n in succs.get(inputs[0], []) if not isinstance(graph.nodes[n], Embedding)]
    if takers:
        kind = type(graph.nodes[takers[0]]).__name__
        raise CompileError(f"node {takers[0]!r}: branching graphs compile as language models, whose Input (token ids) "
                           f"feeds only spikestack.Embedding nodes; {takers[0]!r} is a {kind} (foreign networks "
                           "compile when they are chains: docs/architecture.md)")
    delays = {n for n, v in graph.nodes.items() if isinstance(v, nir.Delay)}
    order = _topological_order(graph, preds, {inputs[0], *delays})

    fused: dict[str, str] = {}  # neuron → its projection
    for name in order:
        if isinstance(graph.nodes[name], NEURON_TYPES):
            out = succs.get(name, [])
            if len(out) == 1 and isinstance(graph.nodes[out[0]], nir.Linear | nir.Affine) and preds[out[0]] == [name]:
                fused[name] = out[0]
    projections = set(fused.values())
    folded = {f.linear: f for f in find_folds(graph, preds)} if dataflow else {}

    avail: dict[str, int] = {inputs[0]: 0, **{d: 0 for d in delays}}
    level: dict[str, int] = {}
    layers: list[PlannedLayer] = []
    host_order: list[str] = []
    for name in order:
        node = graph.nodes[name]
        if name in projections:
            continue  # placed with its neuron
        ready = max((avail[p] for p in preds[name]), default=0)
        if name in folded:
            fold = folded[name]
            sources = (*fold.embed, *fold.spikes, *((fold.normed,) if fold.normed else ()))
            ready = max(avail[p] for p in sources)
            layers.append(PlannedLayer(neuron=name, kind="relay", projection=name, segment=ready, inputs=(),
                                       fold=fold))
            avail[name] = ready + 1
        elif isinstance(node, NEURON_TYPES) and _chainable(graph, preds, succs, name, projections):
            source = next(n for n, p in fused.items() if p == preds[name][0])
            segment = next(la.segment for la in layers if la.neuron == source)
            layers.append(PlannedLayer(neuron=name, kind=chip_kind(node), projection=fused.get(name), segment=segment,
                                       inputs=tuple(preds[name]), source=source))
            avail[name] = segment + 1
            if fused.get(name):
                avail[fused[name]] = segment + 1
        elif isinstance(node, NEURON_TYPES):
            layer = PlannedLayer(neuron=name, kind=chip_kind(node), projection=fused.get(name), segment=ready,
                                 inputs=tuple(preds[name]))
            layers.append(layer)
            avail[name] = ready + 1
            if layer.projection:
                avail[layer.projection] = ready + 1
        else:
            level[name] = ready
            avail[name] = ready
            host_order.append(name)
    out = outputs[0]
    level[out] = max(avail[p] for p in preds[out])
    if folded:  # LayerNorms, mixes and shifts read only by folded Linears are no longer computed
        needed = _needed(graph, preds, out, layers)
        host_order = [n for n in host_order if n in needed]
        delays = {d for d in delays if d in needed}
    delay_stage = {d: max(avail[p] for p in preds[d]) for d in delays}
    stages = max([*(level[n] for n in host_order), level[out], *(la.segment + 1 for la in layers),
                  *delay_stage.values()]) + 1
    level[out] = stages - 1  # the output is the last stage's job
    return CutPlan(graph=graph, order=host_order, preds=preds, layers=layers, level=level, delays=delay_stage,
                   input_name=inputs[0], output_name=out, stages=stages)


def _chainable(graph: nir.NIRGraph, preds: dict[str, list[str]], succs: dict[str, list[str]], name: str,
               projections: set[str]) -> bool:
    """A stateless bi-spike (reset_scale 0: u = x, SpikeLM's K/V re-spikes) fed only by a chip projection that
    feeds nothing else: the projection's synapses land on this neuron, so the edge stays on the chip."""
    node = graph.nodes[name]
    src = preds.get(name, [])
    return (isinstance(node, BiSpike) and float(node.reset_scale) == 0.0 and len(src) == 1 and src[0] in projections
            and succs.get(src[0], []) == [name])


def _needed(graph: nir.NIRGraph, preds: dict[str, list[str]], out: str, layers: list[PlannedLayer]) -> set[str]:
    """Host nodes (and Delays) that the output or a chip layer's input still depends on."""
    chip_values = {la.value_name: la for la in layers}
    stack = list(preds[out])
    for la in layers:
        stack += list(la.inputs)
        if la.fold is not None:
            stack += [*la.fold.spikes, *la.fold.embed, *((la.fold.normed,) if la.fold.normed else ())]
    seen: set[str] = set()
    while stack:
        n = stack.pop()
        if n in seen:
            continue
        seen.add(n)
        if n in chip_values:
            continue  # a chip layer's own inputs are roots already
        stack += preds.get(n, [])
    return seen
