"""NIR graph → executable torch module: ours or foreign, standard nodes and spikestack extension nodes.

Place in the picture (STYLE.md): the import side of models/nir; the CLI's `import` and the round-trip tests
use it. One call of the module is one time step of the graph (`forward(x, state=None) -> (y, state)`, the
interface nirtorch's `nir_to_torch` also produces), so recurrent state (neuron membranes, `Delay` queues,
WKV) carries between calls.

Why our own executor and not `nirtorch.nir_to_torch` (2.6): it sums all inputs of a node in set order, so it
cannot run `Product`, `WKV` or `Attention` (ordered, non-summed operands), and its float sums then depend on
hash order. Node → module construction is a node map (`torch_modules.NODE_MAP`) that is also valid for
nirtorch: `nirtorch.nir_to_torch(graph, NODE_MAP)` runs graphs of single-input nodes the same way (tested).

Execution: nodes run in topological order; edges out of a `Delay` are not dependencies (its output is its
input from `delay` steps ago, zero at first), so a loop through a `Delay` is fine and any other cycle is a
`NIRFormatError`. Several edges into a node are summed in edge-list order.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

import nir
import numpy as np
import torch
from torch import Tensor, nn

from spikestack.errors import NIRFormatError

from .io import check_finite, read_graph
from .ops import check_operands
from .torch_modules import NODE_MAP, NodeMap


def _key(name: str) -> str:
    """ModuleDict keys cannot contain '.'; node names can."""
    return name.replace(".", "\u00b7")


def _delay_steps(name: str, node: nir.Delay) -> int:
    delay = np.asarray(node.delay, dtype=np.float64)
    steps = int(delay.flat[0]) if delay.size else 0
    if delay.size == 0 or steps < 1 or not np.all(delay == steps):
        raise NIRFormatError(f"node {name!r}: field 'delay' must hold one integer number of steps >= 1 for all "
                             f"channels, got {delay.tolist()}")
    return steps


def _topological_order(graph: nir.NIRGraph, preds: dict[str, list[str]], sources: set[str]) -> list[str]:
    """Compute nodes in dependency order; nodes in `sources` (Input, Delay) are available from the start."""
    pending = {n for n, node in graph.nodes.items() if n not in sources and not isinstance(node, nir.Output)}
    ready, order = set(sources), []
    while pending:
        runnable = sorted(n for n in pending if all(p in ready for p in preds.get(n, [])))
        if not runnable:
            raise NIRFormatError(f"node {sorted(pending)[0]!r}: cycle without state (no Delay on the loop) or input "
                                 "from a missing node")
        for n in runnable:
            if not preds.get(n):
                raise NIRFormatError(f"node {n!r}: has no input edge")
            order.append(n)
            ready.add(n)
            pending.discard(n)
    return order


class NIRModule(nn.Module):
    """A NIR graph as a torch module; `forward(x, state=None) -> (output, state)`, one time step per call."""

    stateful = True

    def __init__(self, graph: nir.NIRGraph, node_map: NodeMap | None = None) -> None:
        super().__init__()
        node_map = NODE_MAP if node_map is None else node_map
        check_operands(graph)
        check_finite(graph)
        unknown_edge = [e for e in graph.edges if e[0] not in graph.nodes or e[1] not in graph.nodes]
        if unknown_edge:
            raise NIRFormatError(f"edge {unknown_edge[0]}: names a node that is not in the graph (sub-graph "
                                 "addressing 'G.B' is not supported)")
        inputs = [n for n, node in graph.nodes.items() if isinstance(node, nir.Input)]
        outputs = [n for n, node in graph.nodes.items() if isinstance(node, nir.Output)]
        if len(inputs) != 1 or len(outputs) != 1:
            raise NIRFormatError(f"graph needs exactly one Input and one Output node, got {inputs} and {outputs}")
        self.input_name, self.output_name = inputs[0], outputs[0]
        input_shape = graph.nodes[self.input_name].input_type.get("input")
        if input_shape is None:
            raise NIRFormatError(f"node {self.input_name!r}: the Input node has no shape")
        self.input_ndim = len(input_shape)
        self.preds: dict[str, list[str]] = {}
        for src, dst in graph.edges:
            self.preds.setdefault(dst, []).append(src)
        self.delays = {n: (_delay_steps(n, node), tuple(int(s) for s in np.shape(node.delay)))
                       for n, node in graph.nodes.items() if isinstance(node, nir.Delay)}
        self.order = _topological_order(graph, self.preds, {self.input_name, *self.delays})
        self.mods = nn.ModuleDict()
        for name in self.order:
            node = graph.nodes[name]
            if isinstance(node, nir.NIRGraph):
                self.mods[_key(name)] = NIRModule(node, node_map)
            elif type(node) in node_map:
                self.mods[_key(name)] = node_map[type(node)](node)
            else:
                raise NIRFormatError(f"node {name!r}: type {type(node).__name__} has no torch mapping")
        self.metadata = dict(graph.metadata or {})

    def _arguments(self, name: str, module: nn.Module, values: dict[str, Tensor]) -> list[Tensor]:
        operands = getattr(module, "operands", None)
        if operands is not None:
            return [values[o] for o in operands]
        if getattr(module, "multiplies", False):
            return [values[p] for p in self.preds[name]]
        return [self._summed_input(name, values)]

    def _summed_input(self, name: str, values: dict[str, Tensor]) -> Tensor:
        inputs = [values[p] for p in self.preds.get(name, [])]
        if not inputs:
            raise NIRFormatError(f"node {name!r}: has no input edge")
        total = inputs[0]
        for x in inputs[1:]:
            total = total + x
        return total

    def forward(self, x: Tensor, state: dict[str, Any] | None = None) -> tuple[Tensor, dict[str, Any]]:
        state = state or {}
        new_state: dict[str, Any] = {}
        batch_shape = tuple(x.shape[: x.ndim - self.input_ndim])
        dtype = next((p.dtype for p in self.parameters() if p.is_floating_point()), torch.get_default_dtype())
        values: dict[str, Tensor] = {self.input_name: x}
        for name, (steps, shape) in self.delays.items():
            queue = state.get(name) or [torch.zeros(*batch_shape, *shape, dtype=dtype, device=x.device)] * steps
            values[name] = queue[0]
        for name in self.order:
            module = self.mods[_key(name)]
            args = self._arguments(name, module, values)
            if getattr(module, "stateful", False):
                values[name], new_state[name] = module(*args, state=state.get(name))
            else:
                values[name] = module(*args)
        for name, (steps, _) in self.delays.items():
            queue = state.get(name) or [values[name]] * steps
            new_state[name] = [*queue[1:], self._summed_input(name, values)]
        return self._summed_input(self.output_name, values), new_state


def nir_to_module(graph: nir.NIRGraph | str | Path, node_map: NodeMap | None = None,
                  dtype: torch.dtype = torch.float32) -> NIRModule:
    """Import a NIR graph (or file) as a torch module in `dtype`; see the module docstring for the semantics."""
    if not isinstance(graph, nir.NIRGraph):
        graph = read_graph(graph)
    return NIRModule(graph, node_map).to(dtype)


def run_steps(module: nn.Module, inputs: Iterable[Tensor]) -> Tensor:
    """Feed one input per step from a fresh state; the outputs stacked on a new axis 0."""
    state = None
    outputs = []
    for x in inputs:
        y, state = module(x, state)
        outputs.append(y)
    return torch.stack(outputs)


def run_tokens(module: NIRModule, ids: Tensor) -> Tensor:
    """Token ids [B, L] → logits [B, L, vocab] for any exported family, by its graph metadata.

    `spikestack.time_axis`: `tokens` (SpikeGPT) feeds one token per call; `sequence` (SpikeLLM) the whole
    sequence in one call; `steps` runs `spikestack.steps_per_token` calls and averages them, or, with
    `spikestack.readout: last_step` (a graph whose head follows a `StepMean`), takes the last call's.
    `spikestack.input`: `position` (one id per token position: SpikeLM) or `window` (default; the graph input is
    a context window, BiSpikeMLP: `ids` [B, context] → [B, vocab]).
    """
    axis = module.metadata.get("spikestack.time_axis", "steps")
    axis = axis.decode() if isinstance(axis, bytes) else str(axis)
    if axis == "tokens":
        return run_steps(module, [ids[:, t:t + 1] for t in range(ids.shape[1])]).transpose(0, 1)
    if axis == "sequence":
        return module(ids[..., None])[0]
    if axis != "steps":
        raise NIRFormatError(f"graph metadata 'spikestack.time_axis' is {axis!r}; expected tokens, sequence or steps")
    steps = int(module.metadata.get("spikestack.steps_per_token", 1))
    kind = module.metadata.get("spikestack.input", "window")
    x = ids[..., None] if (kind.decode() if isinstance(kind, bytes) else str(kind)) == "position" else ids
    outputs = run_steps(module, [x] * steps)
    return outputs[-1] if readout_of(module.metadata) == "last_step" else outputs.mean(0)


def readout_of(metadata: dict) -> str:
    """How a `steps` graph's output is read over a token's calls: `mean_over_steps` (the default) or `last_step`
    (the graph averages inside, ops.py `StepMean`)."""
    value = metadata.get("spikestack.readout", "mean_over_steps")
    value = value.decode() if isinstance(value, bytes) else str(value)
    if value not in ("mean_over_steps", "last_step"):
        raise NIRFormatError(f"graph metadata 'spikestack.readout' is {value!r}; expected mean_over_steps or last_step")
    return value
