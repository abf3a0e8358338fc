"""A small NIR graph builder shared by the language-model exporters, and the module maps they have in common.

Why not nirtorch's `torch_to_nir` for SpikeGPT and SpikeLLM (REFERENCE.md §4.3, nirtorch 2.6 `torch_tracer.py`):
it traces only module calls and additions, gives a two-input leaf two indistinguishable edges (WKV's k and v,
attention's q, k, v), and skips every argument that follows an addition in a call (`break` in its edge loop),
so a residual sum feeding a two-input op loses the other operand. Our exporters therefore walk the model's
own module tree (its structure is fixed and documented) and map each module with a module map, as nirtorch
would; the BiSpikeMLP, a plain chain, still goes through `torch_to_nir`.
"""

from __future__ import annotations

from typing import Any

import nir
import numpy as np
import torch
from torch import nn

from spikestack.errors import NIRFormatError


def to_numpy(t: torch.Tensor) -> np.ndarray:
    """A float64 numpy copy of a parameter (exact: float32 → float64 is). One copy, not two: the conversion
    already allocates a fresh array unless the parameter is float64 (SpikeGPT-216M: 1.7 GB of weights, the second
    copy cost 2 s in bench/compile_published.py). numpy converts float32 and float16: its big allocations ask for
    transparent huge pages, so 1.7 GB of fresh float64 takes far fewer page faults than torch's `.to(float64)`
    (0.07 s against 0.35 s for the 50,277 × 768 head, measured on the 2-core VM; the same values)."""
    t = t.detach().cpu()
    if t.dtype == torch.float64:
        return t.numpy().copy()
    if t.dtype in (torch.float32, torch.float16):
        return t.numpy().astype(np.float64)
    return t.to(torch.float64).numpy()


def linear_node(m: nn.Linear) -> nir.NIRNode:
    """nn.Linear → nir.Linear, or nir.Affine when it has a bias (weights [out, in], float64)."""
    if m.bias is None:
        return nir.Linear(weight=to_numpy(m.weight))
    return nir.Affine(weight=to_numpy(m.weight), bias=to_numpy(m.bias))


def residual_node(width: int) -> nir.Scale:
    """A sum point for a residual add: its input edges are summed by NIR, and × 1 is exact in floating point.

    Why a node at all: without it every later consumer would take the whole residual history as separate
    edges, and float sums of three or more terms depend on their order."""
    return nir.Scale(scale=np.ones(width))


class GraphBuilder:
    """Nodes in insertion order plus edges; `add(name, node, *sources)` wires the sources into the node."""

    def __init__(self) -> None:
        self.nodes: dict[str, nir.NIRNode] = {}
        self.edges: list[tuple[str, str]] = []

    def add(self, name: str, node: nir.NIRNode, *sources: str) -> str:
        if name in self.nodes:
            raise NIRFormatError(f"exporter bug: node {name!r} added twice")
        self.nodes[name] = node
        self.edges.extend((src, name) for src in sources)
        return name

    def graph(self, metadata: dict[str, Any]) -> nir.NIRGraph:
        graph = nir.NIRGraph(nodes=self.nodes, edges=self.edges, type_check=True)
        graph.metadata = metadata
        return graph
