"""NIR → the compiler's float IR. The only place the compiler reads NIR (STYLE.md: NIR at the border).

Accepted graph shape (the spine): Input → spikestack.Embedding → Flatten → BiSpike → Affine → BiSpike → … →
Affine → Output, a chain. A BiSpike starts a population; an Affine joins the population before it to the next
BiSpike, or to a readout population when it feeds the Output. Anything else is a NIRFormatError naming the node.
"""

from __future__ import annotations

import warnings
from dataclasses import replace

import nir
import numpy as np
from spikestack.models.nir.io import read_nir, source_of
from spikestack.models.nir.nodes import MAX_STEPS, BiSpike, Embedding

from spikestack.errors import NIRFormatError

from .conv import LINEAR_NODES, compose, flatten, fold_columns, lower_linear
from .ir import (
    FloatGraph,
    FloatProjection,
    HostEmbedding,
    HostSpikeInput,
    LIFPop,
    ReadoutPop,
    SpikingPop,
    frozen_array,
)
from .nir_cycles import Feedback, fold_feedback, split_feedback

__all__ = ["DEFAULT_DT", "DEFAULT_SAMPLE_STEPS", "from_nir", "read_nir"]  # read_nir: the one reader, models/nir/io.py


def _chain(graph: nir.NIRGraph) -> list[str]:
    succ: dict[str, list[str]] = {}
    pred: dict[str, list[str]] = {}
    for a, b in graph.edges:
        succ.setdefault(a, []).append(b)
        pred.setdefault(b, []).append(a)
    for name in graph.nodes:
        if len(succ.get(name, [])) > 1 or len(pred.get(name, [])) > 1:
            raise NIRFormatError(f"node {name!r}: branching graphs are not supported by this lowering yet")
    starts = [n for n in graph.nodes if n not in pred]
    if len(starts) != 1:
        raise NIRFormatError(f"graph must have exactly one input node, found {starts}")
    order, node = [], starts[0]
    while True:
        order.append(node)
        nxt = succ.get(node, [])
        if not nxt:
            break
        node = nxt[0]
        if node in order:
            raise NIRFormatError(f"node {node!r}: cycle without state")
    if len(order) != len(graph.nodes):
        missing = sorted(set(graph.nodes) - set(order))
        raise NIRFormatError(f"nodes {missing} are not on the input→output chain")
    return order


def _finite(name: str, field_name: str, a: np.ndarray) -> np.ndarray:
    a = np.asarray(a, dtype=np.float64)
    if not np.all(np.isfinite(a)):
        raise NIRFormatError(f"node {name!r}: field {field_name!r} holds NaN or inf")
    return a


def _affine(name: str, node: nir.NIRNode) -> tuple[np.ndarray, np.ndarray]:
    weight = _finite(name, "weight", node.weight)
    bias = _finite(name, "bias", node.bias) if isinstance(node, nir.Affine) else np.zeros(weight.shape[0])
    if bias.shape != (weight.shape[0],):
        raise NIRFormatError(f"node {name!r}: bias shape {bias.shape} does not match weight {weight.shape}")
    return weight, bias


DEFAULT_DT = 1e-4  # s; the Euler step NIR's own Lava bridge uses (REFERENCE.md §5.6)
DEFAULT_SAMPLE_STEPS = 100  # steps per input sample of a foreign (LIF) graph unless the graph or caller says


def from_nir(graph: nir.NIRGraph, *, dt: float | None = None, steps: int | None = None) -> FloatGraph:
    """Lower a NIR graph to the float IR: bi-spike token graphs, or foreign Input → (Affine → LIF)+ → Output.
    Errors name the file the graph was read from (`read_nir` records it), also when memory runs out."""
    source = source_of(graph)
    try:
        _warn_batch_dims(graph)
        chain, feedback = split_feedback(graph)  # recurrence: feedback paths become extra projections
        order = _chain(chain)
        if feedback or any(isinstance(chain.nodes[n], NEURON_NODES) for n in order):
            return _with_feedback(graph, _from_lif_chain(chain, order, dt, steps), feedback)
        return _from_token_chain(graph, order)
    except NIRFormatError as exc:
        if source is None:
            raise
        raise NIRFormatError(f"{source}: {exc}") from None
    except MemoryError:
        raise NIRFormatError(f"{source or 'graph'}: out of memory while lowering its {len(graph.nodes)} nodes "
                             f"to the compiler's IR") from None


def _warn_batch_dims(graph: nir.NIRGraph) -> None:
    """Rockpool writes Input/Output types as [1, N]: a batch of one, harmless (the lowering counts prod(shape)
    values), so it is accepted with one warning line rather than refused. Only [1, N] in a graph without
    convolutions: there a leading 1 is one channel ([C, L] or [C, H, W]), not a batch."""
    if any(isinstance(node, (nir.Conv1d, nir.Conv2d)) for node in graph.nodes.values()):
        return
    for name, node in graph.nodes.items():
        if isinstance(node, (nir.Input, nir.Output)):
            types = node.input_type if isinstance(node, nir.Input) else node.output_type
            shape = np.asarray(next(iter(types.values()), []), dtype=np.int64).reshape(-1)
            if shape.size == 2 and shape[0] == 1:
                warnings.warn(f"node {name!r}: type {shape.tolist()} read as {shape[1:].tolist()} (a leading batch "
                              f"dimension of 1)", stacklevel=3)


def _node_dt(name: str, node: nir.NIRNode) -> float | None:
    """A producer's per-node time base (node metadata "dt", seconds): that node's Euler step; None: the graph's."""
    value = (getattr(node, "metadata", None) or {}).get("dt")
    if value is None:
        return None
    try:
        dt = float(np.asarray(value).reshape(-1)[0]) if np.size(value) == 1 else float("nan")
    except (TypeError, ValueError):
        dt = float("nan")
    if not 0 < dt < np.inf:
        raise NIRFormatError(f"node {name!r}: metadata 'dt' must be one finite number of seconds > 0, got "
                             f"{value!r:.60}")
    return dt


def _with_feedback(graph: nir.NIRGraph, lowered: FloatGraph, feedback: list[Feedback]) -> FloatGraph:
    """Each feedback path (compiler/nir_cycles.py) as one more projection into its destination: under delayed
    timing it reads its source's events of the previous step like every other projection."""
    if not feedback:
        return lowered
    sizes = {p.name: p.size for p in lowered.populations}
    extra = []
    for path in feedback:
        weight, bias, delay = fold_feedback(graph, path, lowered.dt, sizes, _finite)
        name = next(n for n in path.nodes if isinstance(graph.nodes[n], (nir.Affine, nir.Linear)))
        extra.append(FloatProjection(name=name, src=path.src, dst=path.dst, weight=frozen_array(weight),
                                     bias=frozen_array(bias), delay=None if delay is None else frozen_array(delay)))
    return replace(lowered, projections=lowered.projections + tuple(extra))


def _meta_int(graph: nir.NIRGraph, key: str, default: int) -> int:
    """A step count in [0, MAX_STEPS] from the metadata (`read_nir` checks files; this covers in-memory graphs)."""
    value = (graph.metadata or {}).get(key, default)
    try:
        number = int(value)
    except (TypeError, ValueError, OverflowError):
        raise NIRFormatError(f"graph metadata {key!r} must be an integer, got {value!r:.60}") from None
    if number != value or not 0 <= number <= MAX_STEPS:
        raise NIRFormatError(f"graph metadata {key!r} must be a whole number of steps <= {MAX_STEPS}, got "
                             f"{value!r:.60}")
    return number


def _from_token_chain(graph: nir.NIRGraph, order: list[str]) -> FloatGraph:
    """Input → Embedding → Flatten → BiSpike → (Affine → BiSpike)* → Affine → Output."""
    steps = _meta_int(graph, "spikestack.steps_per_token", 0)
    host: HostEmbedding | None = None
    pops: list[SpikingPop | ReadoutPop] = []
    projs: list[FloatProjection] = []
    pending: tuple[str, np.ndarray, np.ndarray] | None = None  # an Affine waiting for its destination
    width: int | None = None
    for name in order:
        node = graph.nodes[name]
        if isinstance(node, (nir.Input, nir.Flatten)):
            continue
        if isinstance(node, Embedding):
            host = HostEmbedding(name=name, table=frozen_array(node.weight, np.float64), context=node.context)
            width = host.size
        elif isinstance(node, BiSpike):
            if width is not None and int(np.prod(node.shape)) != width:
                raise NIRFormatError(f"node {name!r}: shape {node.shape.tolist()} but its input has {width} values")
            size = int(np.prod(node.shape))
            if steps and node.steps != steps:
                raise NIRFormatError(f"node {name!r}: alpha has {node.steps} steps, graph says {steps}")
            steps = steps or node.steps
            if pops and pending is None:
                raise NIRFormatError(f"node {name!r}: two spiking nodes in a row need an Affine between them")
            if pending is not None:
                projs.append(_projection(pending, pops[-1].name, name))
                pending = None
            pops.append(SpikingPop(name=name, size=size, alpha=frozen_array(node.alpha), levels=node.levels,
                                   reset_scale=node.reset_scale))
            width = size
        elif isinstance(node, (nir.Affine, nir.Linear)):
            if not pops:
                raise NIRFormatError(f"node {name!r}: an Affine before the first spiking node is not supported")
            if pending is not None:
                raise NIRFormatError(f"node {name!r}: two Affine nodes in a row; fold them before export")
            weight, bias = _affine(name, node)
            if weight.shape[1] != pops[-1].size:
                raise NIRFormatError(
                    f"node {name!r}: weight has {weight.shape[1]} inputs, population {pops[-1].name!r} has "
                    f"{pops[-1].size}")
            pending = (name, weight, bias)
            width = weight.shape[0]
        elif isinstance(node, nir.Output):
            if pending is None:
                raise NIRFormatError(f"node {name!r}: the output must be fed by an Affine (the readout)")
            readout = ReadoutPop(name=pending[0], size=pending[1].shape[0])
            projs.append(_projection(pending, pops[-1].name, readout.name))
            pops.append(readout)
            pending = None
        else:
            raise NIRFormatError(f"node {name!r}: type {type(node).__name__} is not supported by this lowering yet")
    if host is None:
        raise NIRFormatError("graph has no spikestack.Embedding node feeding the first spiking node")
    if not pops or not isinstance(pops[-1], ReadoutPop):
        raise NIRFormatError("graph has no Affine readout feeding an Output node")
    return FloatGraph(host_input=host, input_pop=pops[0].name, populations=tuple(pops),
                      projections=tuple(projs), steps=steps)


def _projection(pending: tuple[str, np.ndarray, np.ndarray], src: str, dst: str) -> FloatProjection:
    name, weight, bias = pending
    return FloatProjection(name=name, src=src, dst=dst, weight=frozen_array(weight), bias=frozen_array(bias))


NEURON_NODES = (nir.LIF, nir.CubaLIF, nir.IF, nir.LI, nir.Threshold)


def _lif_fields(name: str, node: nir.NIRNode, size: int) -> dict:
    """Any of NIR's LIF, CubaLIF, IF → the fields of LIFPop (see its docstring for the mapping)."""

    def field(attr: str, default: float | None = None) -> np.ndarray:
        value = getattr(node, attr, None)
        if value is None:
            if default is None:
                raise NIRFormatError(f"node {name!r}: field {attr!r} is missing")
            value = default
        values = _finite(name, attr, value)
        if values.size not in (1, size):  # conv layers carry (C, H, W)-shaped parameters: C-order, like the neurons
            raise NIRFormatError(f"node {name!r}: field {attr!r} has shape {list(values.shape)}, its input {size} "
                                 f"values")
        return frozen_array(np.broadcast_to(values.reshape(-1) if values.size == size else values.reshape(()),
                                            (size,)))

    zeros, ones = frozen_array(np.zeros(size)), frozen_array(np.ones(size))
    if isinstance(node, nir.Threshold):
        return {"kind": "Threshold", "tau": frozen_array(np.full(size, np.inf)), "tau_syn": zeros, "w_in": ones,
                "r": ones, "v_threshold": field("threshold"), "v_reset": zeros, "v_leak": zeros}
    if isinstance(node, nir.LI):
        out = {"kind": "LI", "tau": field("tau"), "tau_syn": zeros, "w_in": ones,
               "v_threshold": frozen_array(np.full(size, np.inf)), "v_reset": zeros}
        out |= {"r": field("r"), "v_leak": field("v_leak", 0.0)}
        if np.any(out["tau"] <= 0):
            raise NIRFormatError(f"node {name!r}: time constants must be positive")
        return out
    if isinstance(node, nir.CubaLIF):
        out = {"kind": "CubaLIF", "tau": field("tau_mem"), "tau_syn": field("tau_syn"), "w_in": field("w_in")}
    elif isinstance(node, nir.IF):
        out = {"kind": "IF", "tau": frozen_array(np.full(size, np.inf)), "tau_syn": frozen_array(np.zeros(size)),
               "w_in": frozen_array(np.ones(size))}
    else:
        out = {"kind": "LIF", "tau": field("tau"), "tau_syn": frozen_array(np.zeros(size)),
               "w_in": frozen_array(np.ones(size))}
    out |= {"r": field("r"), "v_threshold": field("v_threshold"), "v_reset": field("v_reset", 0.0),
            "v_leak": field("v_leak", 0.0) if not isinstance(node, nir.IF) else frozen_array(np.zeros(size))}
    if np.any(out["tau"] <= 0) or np.any(out["tau_syn"] < 0):
        raise NIRFormatError(f"node {name!r}: time constants must be positive")
    return out


def _from_lif_chain(graph: nir.NIRGraph, order: list[str], dt: float | None, steps: int | None) -> FloatGraph:
    """Input → Affine → LIF → (Affine → LIF)* → Output; the host sends the input's binary events each step."""
    meta = graph.metadata or {}
    override = dt is not None  # --dt replaces every node's own time base too
    try:
        dt = float(dt if dt is not None else meta.get("spikestack.dt", DEFAULT_DT))
    except (TypeError, ValueError):
        raise NIRFormatError(f"dt must be a number of seconds, got {meta.get('spikestack.dt')!r:.60}") from None
    steps = int(steps if steps is not None else _meta_int(graph, "spikestack.steps_per_sample", DEFAULT_SAMPLE_STEPS))
    if not 0 < dt < np.inf or steps < 1:
        raise NIRFormatError(f"dt must be finite and > 0 and steps >= 1, got dt={dt}, steps={steps}")
    host: HostSpikeInput | None = None
    pops: list[LIFPop] = []
    projs: list[FloatProjection] = []
    pending: tuple[str, np.ndarray, np.ndarray] | None = None
    column_scale: np.ndarray | None = None  # a Scale between a spike source and its Affine
    column_delay: np.ndarray | None = None  # a Delay between a spike source and its Affine (steps)
    row_delay: np.ndarray | None = None  # a Delay between an Affine and its neuron (steps)
    shape: tuple[int, ...] = ()  # the current source's NIR shape (C, H, W …), for conv and pooling (conv.py)
    for name in order:
        node = graph.nodes[name]
        if isinstance(node, nir.Delay):
            steps_d = _finite(name, "delay", node.delay).reshape(-1) / dt
            if np.any(steps_d < 0) or np.any(steps_d > MAX_STEPS) or not np.allclose(steps_d, np.round(steps_d)):
                raise NIRFormatError(f"node {name!r}: field 'delay' must be a non-negative multiple of dt={dt} of at "
                                     f"most {MAX_STEPS} steps")
            if pending is None:
                column_delay = np.round(steps_d).astype(np.int64)
            else:
                row_delay = np.round(steps_d).astype(np.int64)
            continue
        if isinstance(node, nir.Input):
            host = HostSpikeInput(name=name, size=int(np.prod(node.input_type["input"])))
            shape = tuple(int(v) for v in np.asarray(node.input_type["input"]).reshape(-1))
        elif isinstance(node, nir.Flatten):
            shape = flatten(name, node, shape)
        elif isinstance(node, LINEAR_NODES):  # conv and pooling: matrices over the flattened neurons (conv.py)
            weight, bias, shape = lower_linear(name, node, shape)
            pending = (compose(pending, name, weight, bias) if pending is not None
                       else (name, fold_columns(name, weight, column_scale), bias))
            column_scale = None
        elif isinstance(node, nir.Scale):
            # exact folds: after an Affine it scales its rows (and bias); before one, its columns
            scale = _finite(name, "scale", node.scale).reshape(-1)
            if pending is not None:
                if scale.size not in (1, pending[1].shape[0]):
                    raise NIRFormatError(
                        f"node {name!r}: scale has {scale.size} values, its input {pending[1].shape[0]}")
                pending = (pending[0], pending[1] * scale[:, None], pending[2] * scale)
            else:
                column_scale = scale if column_scale is None else column_scale * scale
        elif isinstance(node, (nir.Affine, nir.Linear)):
            weight, bias = _affine(name, node)
            shape = (int(weight.shape[0]),)
            if pending is not None:  # after a conv or pooling node: one projection (conv.py)
                pending = compose(pending, name, weight, bias)
                continue
            src_size = pops[-1].size if pops else host.size if host else 0
            if weight.shape[1] != src_size:
                raise NIRFormatError(f"node {name!r}: weight has {weight.shape[1]} inputs, its source has {src_size}")
            if column_scale is not None:
                if column_scale.size not in (1, src_size):
                    raise NIRFormatError(f"node {name!r}: the Scale before it has {column_scale.size} values, "
                                         f"its source {src_size}")
                weight, column_scale = weight * column_scale[None, :], None
            pending = (name, weight, bias)
            if column_delay is not None and column_delay.size not in (1, src_size):
                raise NIRFormatError(f"node {name!r}: the Delay before it has {column_delay.size} values, "
                                     f"its source {src_size}")
        elif isinstance(node, NEURON_NODES):
            if pending is None:
                raise NIRFormatError(f"node {name!r}: every neuron node must be fed by an Affine or Linear node")
            size = pending[1].shape[0]
            src = pops[-1].name if pops else host.name  # type: ignore[union-attr]
            proj = _projection(pending, src, name)
            if column_delay is not None or row_delay is not None:
                delay = np.zeros(pending[1].shape, np.int64)
                if column_delay is not None:
                    delay += column_delay[None, :]
                if row_delay is not None:
                    if row_delay.size not in (1, size):
                        raise NIRFormatError(f"node {name!r}: the Delay before it has {row_delay.size} values, "
                                             f"the layer {size}")
                    delay += row_delay.reshape(-1, 1)
                proj = replace(proj, delay=frozen_array(delay))
                column_delay = row_delay = None
            projs.append(proj)
            pending = None
            pops.append(LIFPop(name=name, size=size, **_lif_fields(name, node, size),
                               dt=None if override else _node_dt(name, node)))
            shape = shape if int(np.prod(shape)) == size else (size,)
        elif isinstance(node, nir.Output):
            if pending is not None or not pops:
                raise NIRFormatError(f"node {name!r}: the output of a LIF graph must be fed by a neuron node")
        else:
            raise NIRFormatError(
                f"node {name!r}: type {type(node).__name__} is not supported in LIF graphs yet "
                f"(Affine, Linear, Scale, Delay, Conv1d, Conv2d, SumPool2d, AvgPool2d, Flatten, LIF, CubaLIF, IF, LI, "
                f"Threshold)")
    if host is None or not pops:
        raise NIRFormatError("LIF graph needs an Input node and at least one Affine → LIF pair")
    return FloatGraph(host_input=host, input_pop=None, populations=tuple(pops), projections=tuple(projs),
                      steps=steps, timing="delayed", dt=dt)
