"""`spikestack inspect FILE.nir`: a table of a NIR file's nodes: type, shapes, spike kind, parameter count.

Place in the picture (STYLE.md): a read-only view of the models → compiler border, for people. Reads through
`io.read_nir`, the reader compile uses, so a bad file gives the same one NIRFormatError line naming the node and
field.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import nir
import numpy as np

from .io import read_nir
from .neurons import GIF, Quantizer
from .nodes import BiSpike
from .torch_standard import THRESHOLD_TEST_KEY

NOT_PARAMETERS = {"delay"}  # float arrays that are timing, not learned values


def spike_kind(node: nir.NIRNode) -> str:
    """What the node emits: binary, signed or graded spikes, a host code, or '-' (real values)."""
    if isinstance(node, (nir.LIF, nir.IF, nir.CubaLIF, nir.Threshold)):
        test = (node.metadata or {}).get(THRESHOLD_TEST_KEY, ">")
        test = test.decode() if isinstance(test, bytes) else str(test)
        return f"binary (v {test} thr)" if not isinstance(node, nir.Threshold) else "binary (x > thr)"
    if isinstance(node, BiSpike):
        return f"signed -{node.levels}..{node.levels} x{node.steps} steps"
    if isinstance(node, GIF):
        return (f"graded 0..{node.levels - 1} x{node.steps} steps on {int(node.salient.sum())}/"
                f"{node.salient.size} ch")
    if isinstance(node, Quantizer):
        return f"{node.bits}-bit code (host)"
    return "-"


def parameter_count(node: nir.NIRNode) -> int:
    """Elements of the node's floating-point array fields (weights, biases, neuron constants)."""
    if isinstance(node, nir.NIRGraph):
        return sum(parameter_count(n) for n in node.nodes.values())
    total = 0
    for f in dataclasses.fields(node):
        value = getattr(node, f.name)
        if f.name not in NOT_PARAMETERS and isinstance(value, np.ndarray) and np.issubdtype(value.dtype, np.floating):
            total += value.size
    return total


def _shape(types: dict | None) -> str:
    if not types:
        return "-"
    return ", ".join("x".join(str(int(s)) for s in np.atleast_1d(v)) if v is not None else "?" for v in types.values())


def flow_order(graph: nir.NIRGraph) -> list[str]:
    """Node names from inputs to outputs (files store them alphabetically); a cycle is broken at its first name."""
    preds: dict[str, set[str]] = {name: set() for name in graph.nodes}
    for src, dst in graph.edges:
        if src in preds and dst in preds:
            preds[dst].add(src)
    order: list[str] = []
    done: set[str] = set()
    while len(order) < len(graph.nodes):
        ready = [n for n in graph.nodes if n not in done and preds[n] <= done]
        batch = ready or [min(n for n in graph.nodes if n not in done)]
        order.extend(batch)
        done.update(batch)
    return order


def _rows(graph: nir.NIRGraph, prefix: str = "") -> list[tuple[str, ...]]:
    rows = []
    for name in flow_order(graph):
        node = graph.nodes[name]
        type_name = getattr(type(node), "type_name", "") or type(node).__name__
        rows.append((prefix + name, type_name, _shape(node.input_type), _shape(node.output_type), spike_kind(node),
                     str(parameter_count(node))))
        if isinstance(node, nir.NIRGraph):
            rows.extend(_rows(node, f"{prefix}{name}."))
    return rows


def inspect_nir(path: str | Path) -> str:
    """The table as text: one line per node (sub-graph nodes as `G.B`), then totals and the graph metadata."""
    graph = read_nir(path)
    header = ("node", "type", "input", "output", "spikes", "params")
    rows = _rows(graph)
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    lines = ["  ".join(cell.ljust(w) if i < 5 else cell.rjust(w)
                       for i, (cell, w) in enumerate(zip(row, widths, strict=True)))
             for row in [header, *rows]]
    lines.insert(1, "  ".join("-" * w for w in widths))
    total = sum(parameter_count(n) for n in graph.nodes.values())
    lines.append(f"{len(graph.nodes)} nodes, {len(graph.edges)} edges, {total} parameters")
    for key, value in sorted((graph.metadata or {}).items()):
        value = value.decode() if isinstance(value, bytes) else value
        lines.append(f"{key}: {value}")
    return "\n".join(line.rstrip() for line in lines)
