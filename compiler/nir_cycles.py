"""Recurrence in foreign NIR graphs: find the feedback paths of a graph and split them off its feed-forward chain.

Why a separate step: `from_nir` lowers a chain (Input → Affine → LIF → … → Output), and snnTorch's `RLeaky` (or a
hand-built recurrent network) is that chain plus a feedback path LIF → Affine → (an earlier or the same) LIF. On
Loihi and in Lava a feedback path is just one more Dense into the destination's `a_in`, and every projection of a
delayed-timing program reads its source's events of the previous step, so a cycle needs nothing special once it
has been cut out of the graph's walk. A cycle is accepted only through a stateful neuron (LIF, CubaLIF, IF, LI):
without state, the cycle's nodes would have to agree on a value within one step (an algebraic loop), which neither
NIR nor the hardware defines, so such a cycle is refused with its nodes named.

Feedback paths are found as the back edges of a depth-first walk from the graph's input(s); each path is walked
back from its back edge through Affine, Linear, Scale and Delay nodes to the neuron that feeds it.
"""

from __future__ import annotations

from dataclasses import dataclass

import nir
import numpy as np

from spikestack.errors import NIRFormatError

from .program_kind import LM_FAMILIES

STATEFUL_NODES = (nir.LIF, nir.CubaLIF, nir.IF, nir.LI)
PATH_NODES = (nir.Affine, nir.Linear, nir.Scale, nir.Delay)


@dataclass(frozen=True, slots=True)
class Feedback:
    """One feedback path: `src` neuron → `nodes` (Affine/Linear/Scale/Delay, in order) → `dst` neuron."""

    src: str
    nodes: tuple[str, ...]
    dst: str


def _adjacency(graph: nir.NIRGraph) -> tuple[dict[str, list[str]], dict[str, list[str]]]:
    succ: dict[str, list[str]] = {n: [] for n in graph.nodes}
    pred: dict[str, list[str]] = {n: [] for n in graph.nodes}
    for a, b in graph.edges:
        if a in succ and b in pred:
            succ[a].append(b)
            pred[b].append(a)
    return succ, pred


def back_edges(graph: nir.NIRGraph) -> list[tuple[str, str]]:
    """Edges (a, b) that close a cycle in a depth-first walk from the nodes without inputs (then any other)."""
    succ, pred = _adjacency(graph)
    state: dict[str, int] = {}  # 1 = on the walk's stack, 2 = done
    found: list[tuple[str, str]] = []
    roots = [n for n in graph.nodes if not pred[n]] + list(graph.nodes)
    for root in roots:
        if root in state:
            continue
        state[root] = 1
        stack = [(root, iter(succ[root]))]
        while stack:  # iterative: a long chain must not hit Python's recursion limit
            node, children = stack[-1]
            child = next(children, None)
            if child is None:
                state[node] = 2
                stack.pop()
            elif state.get(child) == 1:
                found.append((node, child))
            elif child not in state:
                state[child] = 1
                stack.append((child, iter(succ[child])))
    return found


def is_recurrent_chain(graph: nir.NIRGraph) -> bool:
    """A graph with a cycle that is not a language model: the chain compiler takes it (and refuses a cycle without
    state by name) rather than the language-model cut, which would misread it."""
    family = (graph.metadata or {}).get("spikestack.family", "")
    family = family.decode() if isinstance(family, bytes) else str(family)
    return family not in LM_FAMILIES and bool(back_edges(graph))


def split_feedback(graph: nir.NIRGraph) -> tuple[nir.NIRGraph, list[Feedback]]:
    """The graph without its feedback paths (a chain for `from_nir`) and the paths themselves, checked."""
    edges = back_edges(graph)
    if not edges:
        return graph, []
    succ, pred = _adjacency(graph)
    paths: list[Feedback] = []
    for a, b in edges:
        nodes: list[str] = []
        node = a
        while isinstance(graph.nodes[node], PATH_NODES) and len(pred[node]) == 1 and len(succ[node]) == 1 \
                and node not in nodes:
            nodes.insert(0, node)
            node = pred[node][0]
        cycle = [node, *nodes, b]
        if not isinstance(graph.nodes[node], STATEFUL_NODES) or not isinstance(graph.nodes[b], STATEFUL_NODES):
            raise NIRFormatError(f"nodes {cycle}: a cycle without state (it must run from a stateful neuron — "
                                 f"LIF, CubaLIF, IF or LI — through Affine/Linear/Scale/Delay back to one)")
        if not any(isinstance(graph.nodes[n], (nir.Affine, nir.Linear)) for n in nodes):
            raise NIRFormatError(f"nodes {cycle}: a feedback path needs an Affine or Linear node (its synapses)")
        paths.append(Feedback(src=node, nodes=tuple(nodes), dst=b))
    removed = {n for p in paths for n in p.nodes}
    cut = {(p.nodes[-1], p.dst) for p in paths} | {(p.src, p.nodes[0]) for p in paths}
    kept_edges = [(x, y) for x, y in graph.edges if x not in removed and y not in removed and (x, y) not in cut]
    kept = {k: v for k, v in graph.nodes.items() if k not in removed}
    chain = nir.NIRGraph(nodes=kept, edges=kept_edges, metadata=graph.metadata, type_check=False)
    return chain, paths


def fold_feedback(graph: nir.NIRGraph, path: Feedback, dt: float, sizes: dict[str, int],
                  finite) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """A feedback path's (weight [n_dst, n_src], bias [n_dst], delay in steps or None): Scale nodes fold into the
    rows (after the Affine) or columns (before it), Delay nodes into per-synapse delays, exactly as on the chain."""
    n_src, n_dst = sizes[path.src], sizes[path.dst]
    col_scale, row_scale = np.ones(n_src), np.ones(n_dst)
    col_delay, row_delay = np.zeros(n_src), np.zeros(n_dst)
    weight = bias = None
    for name in path.nodes:
        node = graph.nodes[name]
        after = weight is not None
        if isinstance(node, (nir.Affine, nir.Linear)):
            if after:
                raise NIRFormatError(f"node {name!r}: two Affine nodes on one feedback path; fold them before export")
            weight = finite(name, "weight", node.weight)
            bias = finite(name, "bias", node.bias) if isinstance(node, nir.Affine) else np.zeros(weight.shape[0])
            if weight.shape != (n_dst, n_src) or bias.shape != (n_dst,):
                raise NIRFormatError(f"node {name!r}: weight {weight.shape} on the feedback path {path.src!r} → "
                                     f"{path.dst!r} must be ({n_dst}, {n_src}), bias ({n_dst},)")
            continue
        values = finite(name, "scale" if isinstance(node, nir.Scale) else "delay",
                        node.scale if isinstance(node, nir.Scale) else np.asarray(node.delay) / dt).reshape(-1)
        width = n_dst if after else n_src
        if values.size not in (1, width):
            raise NIRFormatError(f"node {name!r}: {values.size} values on the feedback path, its signal has {width}")
        if isinstance(node, nir.Scale):
            if after:
                row_scale = row_scale * values
            else:
                col_scale = col_scale * values
            continue
        if np.any(values < 0) or not np.allclose(values, np.round(values)):
            raise NIRFormatError(f"node {name!r}: field 'delay' must be a non-negative multiple of dt={dt}")
        if after:
            row_delay = row_delay + np.round(values)
        else:
            col_delay = col_delay + np.round(values)
    assert weight is not None and bias is not None  # split_feedback checked the path holds an Affine or Linear
    weight = weight * row_scale[:, None] * col_scale[None, :]
    delay = (row_delay[:, None] + col_delay[None, :]).astype(np.int64)
    return weight, bias * row_scale, delay if delay.any() else None
