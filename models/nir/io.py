"""Reading NIR files with errors that name the file, the node and the field.

Place in the picture (STYLE.md): the border where NIR files enter spikestack (import, inspect). Stock
`nir.read` fails with a bare AssertionError on an unknown type and a bare TypeError/ValueError on bad content
(REFERENCE.md §4.2); `read_graph` turns every such failure into one NIRFormatError line.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import h5py
import nir
import numpy as np
from nir.serialization import hdf2dict

from spikestack.errors import NIRFormatError

from .nodes import register
from .ops import check_operands


def _scan(group: h5py.Group, known: set[str], path: Path, prefix: str = "") -> None:
    """Name the first node whose type nir.read would reject, and the first node that fails to build."""
    for name in group["nodes"]:
        node = group["nodes"][name]
        if "type" not in node:
            raise NIRFormatError(f"{path}: node {prefix + name!r} has no 'type' field")
        node_type = node["type"][()]
        node_type = node_type.decode() if isinstance(node_type, bytes) else str(node_type)
        if node_type not in known:
            raise NIRFormatError(f"{path}: node {prefix + name!r} has unknown type {node_type!r}")
        if node_type == "NIRGraph":
            _scan(node, known, path, f"{prefix}{name}.")
            continue
        try:
            nir.ir.dict2NIRNode(hdf2dict(node))
        except NIRFormatError as exc:
            raise NIRFormatError(f"{path}: node {prefix + name!r}: {exc}") from None
        except Exception as exc:  # noqa: BLE001 - nir raises bare AssertionError/TypeError/ValueError
            raise NIRFormatError(f"{path}: node {prefix + name!r} ({node_type}): {type(exc).__name__}: {exc}") from None


def check_finite(graph: nir.NIRGraph, prefix: str = "") -> None:
    """Every floating-point array field of every node is finite. Our nodes check themselves on construction;
    stock NIR nodes accept NaN silently, so this names the node and field for them."""
    for name, node in graph.nodes.items():
        if isinstance(node, nir.NIRGraph):
            check_finite(node, f"{prefix}{name}.")
            continue
        for f in dataclasses.fields(node):
            value = getattr(node, f.name, None)
            floating = isinstance(value, np.ndarray) and np.issubdtype(value.dtype, np.floating)
            if floating and not np.isfinite(value).all():
                raise NIRFormatError(f"node {prefix + name!r}: field {f.name!r} holds NaN or inf")


def read_graph(path: str | Path) -> nir.NIRGraph:
    """Stock `nir.read` after `register()`, with node-named errors; also checks WKV/Attention operands."""
    path = Path(path)
    if not path.exists():
        raise NIRFormatError(f"{path}: file not found")
    register()
    known = set(vars(nir.ir)["__all_ir"])
    try:
        with h5py.File(path, "r") as f:
            _scan(f["node"], known, path)
    except NIRFormatError:
        raise
    except (OSError, KeyError) as exc:
        raise NIRFormatError(f"{path}: not a readable NIR file ({type(exc).__name__}: {exc})") from None
    try:
        graph = nir.read(str(path))
    except Exception as exc:  # noqa: BLE001 - graph-level failures: edges, type check
        raise NIRFormatError(f"{path}: malformed NIR graph ({type(exc).__name__}: {exc})") from None
    try:
        check_operands(graph)
        check_finite(graph)
    except NIRFormatError as exc:
        raise NIRFormatError(f"{path}: {exc}") from None
    return graph
