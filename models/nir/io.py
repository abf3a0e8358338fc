"""The one reader of NIR files: every file that enters spikestack (compile, sweep, import, inspect) comes through here.

Place in the picture (STYLE.md): the border between a stranger's file and everything downstream, which trusts what
this returns. Stock `nir.read` fails on a bad file with whatever h5py, numpy or a dataclass raises (an assertion
on an unknown type, a RuntimeError on a damaged file, a MemoryError on a huge dataset, REFERENCE.md §4.2), so
`read_nir`:

1. accepts only a regular, non-empty file under MAX_FILE_BYTES (a FIFO or device is refused unopened);
2. parses the HDF5 tree in a child process (hdf5_tree.py: known types, links inside the file, bounded nesting,
   the memory the declared shapes need checked against what the process may allocate, a deadline);
3. builds each node from its fields, each checked first for kind (numbers where numbers belong, text only where
   the node declares a string field), finiteness and the magnitude cap (nodes.MAX_MAGNITUDE), then NIR's own
   `dict2NIRNode` (our extension nodes check their fields and caps on construction), then the stock nodes'
   shape and sign rules; then edges naming existing nodes, the graph's known metadata numbers, NIR's type check
   and our operands.

Every failure is one NIRFormatError line naming the file and, where known, the node and field.
"""

from __future__ import annotations

import dataclasses
import os
import stat
import warnings
import weakref
from pathlib import Path
from typing import Any

import nir
import numpy as np

from spikestack.errors import NIRFormatError

from . import neurons  # noqa: F401 - defining GIF and Quantizer registers them: every reader knows every type
from .hdf5_tree import READ_ERRORS, Node, parse_isolated, text
from .nodes import (
    MAX_STEPS,
    MAX_TOKENS,
    _as_float,
    _as_int,
    _as_shape,
    _in_range,
    _numeric,
    all_extension_nodes,
    register,
)
from .ops import check_operands

MAX_FILE_BYTES = 4 * 2**30  # float64 weights of ~32 full Loihi 2 chips (16.8M synapses each); shipped models < 1 MB
MAX_VOCAB = 2**24  # token ids stay exact in float32, the host stages' dtype
# Graph metadata numbers that the compiler and runtime use: key -> (integer, lowest, highest). dt must be > 0.
METADATA_NUMBERS: dict[str, tuple[bool, float, float]] = {
    "spikestack.dt": (False, 0.0, 1e9),
    "spikestack.steps_per_token": (True, 1, MAX_STEPS),
    "spikestack.steps_per_sample": (True, 1, MAX_STEPS),
    "spikestack.vocab_size": (True, 0, MAX_VOCAB),
    "spikestack.max_seq_len": (True, 0, MAX_TOKENS),
    "spikestack.spiking": (True, 0, 1),
}
POSITIVE_FIELDS = {"LIF": ("tau",), "LI": ("tau",), "CubaLIF": ("tau_mem", "tau_syn"), "CubaLI": ("tau_mem", "tau_syn")}
NON_NEGATIVE_FIELDS = {"Delay": ("delay",)}

_SOURCES: dict[int, Path] = {}  # id(graph) -> file, while the graph lives (NIRGraph is unhashable)


def source_of(graph: nir.NIRGraph) -> Path | None:
    """The file `read_nir` built this graph from, so later stages can name it in their errors."""
    return _SOURCES.get(id(graph))


def _string_fields() -> dict[str, set[str]]:
    """Per extension type, the fields declared `str` (WKV/Attention `operands`); every other field is numeric."""
    return {cls.type_name: {f.name for f in dataclasses.fields(cls) if f.type in ("str", str)}
            for cls in all_extension_nodes()}


def _check_file(path: Path) -> None:
    """A regular, non-empty file under the size cap; a FIFO or device is refused without opening it."""
    try:
        info = os.stat(path)
    except FileNotFoundError:
        raise NIRFormatError(f"{path}: file not found") from None
    except OSError as exc:
        raise NIRFormatError(f"{path}: cannot stat the file ({exc.strerror})") from None
    if stat.S_ISDIR(info.st_mode):
        raise NIRFormatError(f"{path}: is a directory, not a NIR file")
    if not stat.S_ISREG(info.st_mode):
        kind = ("FIFO" if stat.S_ISFIFO(info.st_mode) else "device" if stat.S_ISCHR(info.st_mode) or
                stat.S_ISBLK(info.st_mode) else "socket" if stat.S_ISSOCK(info.st_mode) else "special file")
        raise NIRFormatError(f"{path}: is a {kind}, not a regular file; refusing to open it")
    if info.st_size == 0:
        raise NIRFormatError(f"{path}: empty file (0 bytes), not a NIR file")
    if info.st_size > MAX_FILE_BYTES:
        raise NIRFormatError(f"{path}: file is {info.st_size} bytes, over the {MAX_FILE_BYTES}-byte cap for NIR files")


def _without_batch_dimension(nodes: dict[str, nir.NIRNode]) -> dict[str, nir.NIRNode] | None:
    """The nodes with every Input/Output type of shape [1, …, 1, N] read as [N]; None when there is none.

    Only types that become one-dimensional are squeezed: a [1, H, W] image type keeps its channel."""
    out, changed = dict(nodes), False
    for name, node in nodes.items():
        for cls, field in ((nir.Input, "input_type"), (nir.Output, "output_type")):
            if not isinstance(node, cls):
                continue
            types = getattr(node, field)
            shapes = {k: np.asarray(v) for k, v in types.items()}
            if any(s.ndim == 1 and s.size >= 2 and np.all(s[:-1] == 1) for s in shapes.values()):
                squeezed = {k: (s[-1:] if s.ndim == 1 and s.size >= 2 and np.all(s[:-1] == 1) else s)
                            for k, s in shapes.items()}
                out[name] = cls(**{field: squeezed}, metadata=dict(node.metadata))
                changed = True
    return out if changed else None


@dataclasses.dataclass
class _Builder:
    """Nodes and graphs from the parsed tree, each field checked before NIR's own constructors see it."""

    path: Path
    strings: dict[str, set[str]] = dataclasses.field(default_factory=_string_fields)

    def fail(self, message: str) -> NIRFormatError:
        return NIRFormatError(f"{self.path}: {message}")

    def graph(self, tree: dict[str, Any], prefix: str = "") -> nir.NIRGraph:
        where = f"graph {prefix[:-1]!r}" if prefix else "graph"
        nodes: dict[str, nir.NIRNode] = {}
        for name, item in tree["nodes"].items():
            label = f"node {prefix + name!r}"
            nodes[name] = (self.node(item, label) if isinstance(item, Node)
                           else self.graph(item, f"{prefix}{name}."))
        edges = self.edges(tree["edges"], where, nodes)
        self.check_metadata(tree["metadata"], where)
        try:
            return nir.NIRGraph(nodes=nodes, edges=edges, metadata=tree["metadata"], type_check=True)
        except MemoryError:
            raise self.fail(f"{where}: out of memory while type-checking it") from None
        except READ_ERRORS as exc:  # NIR's type inference: mismatched shapes between nodes
            squeezed = _without_batch_dimension(nodes)
            if squeezed is not None:  # Rockpool and Norse write Input/Output as [1, N]: retry as [N]
                try:  # Norse's scalar neuron parameters infer a [] type: from_nir checks every size by node
                    graph = nir.NIRGraph(nodes=squeezed, edges=edges, metadata=tree["metadata"], type_check=False)
                except (MemoryError, *READ_ERRORS):
                    pass
                else:
                    for name in sorted(set(squeezed) - {n for n in nodes if nodes[n] is squeezed[n]}):
                        warnings.warn(f"{self.path}: node {prefix + name!r}: a leading batch dimension of 1 in its "
                                      "type was dropped (as Rockpool and Norse write it)", stacklevel=2)
                    return graph
            raise self.fail(f"{where}: malformed NIR graph ({type(exc).__name__}: {exc})") from None

    def node(self, item: Node, label: str) -> nir.NIRNode:
        # our nodes name their type in their own messages; stock ones are named by the node alone
        owner = f"{label}: {item.type_name}" if item.type_name in self.strings else label
        data = dict(item.fields, type=item.type_name)
        try:
            for key, value in item.fields.items():
                if key not in ("type", "metadata"):
                    self.check_value(value, owner, key, key in self.strings.get(item.type_name, ()))
            node = nir.ir.dict2NIRNode(data)
            self.check_stock(node, item.type_name, label)
        except NIRFormatError as exc:
            message = str(exc)
            raise self.fail(message if message.startswith(label) else f"{label}: {message}") from None
        except MemoryError:
            raise self.fail(f"{label}: out of memory while building it") from None
        except READ_ERRORS as exc:  # a stock NIR constructor's bare assertion or TypeError
            raise self.fail(f"{label} ({item.type_name}) is malformed: {type(exc).__name__}: {exc}") from None
        return node

    def check_value(self, value: Any, owner: str, key: str, is_text: bool) -> None:
        """Text where the node declares a string field; elsewhere finite numbers within the magnitude cap."""
        if isinstance(value, dict):
            for sub, item in value.items():
                self.check_value(item, owner, f"{key}.{sub}", is_text)
        elif is_text:
            text(value, f"{owner}: field {key!r}")
        else:
            _in_range(_numeric(value, owner, key), owner, key)

    def check_stock(self, node: nir.NIRNode, type_name: str, label: str) -> None:
        """The shape and sign rules that stock NIR does not check and that everything downstream relies on."""
        if isinstance(node, (nir.Affine, nir.Linear)) and np.ndim(node.weight) != 2:
            raise NIRFormatError(f"{label}: field 'weight' must be 2-D [out, in], got shape {np.shape(node.weight)}")
        if isinstance(node, nir.Affine) and np.shape(node.bias) != (np.shape(node.weight)[0],):
            raise NIRFormatError(f"{label}: field 'bias' has shape {np.shape(node.bias)}, the weight "
                                 f"{np.shape(node.weight)} needs ({np.shape(node.weight)[0]},)")
        for name in POSITIVE_FIELDS.get(type_name, ()):
            if np.any(np.asarray(getattr(node, name)) <= 0):
                raise NIRFormatError(f"{label}: field {name!r} must be > 0 (a time constant), got "
                                     f"min {np.min(getattr(node, name)):.3g}")
        for name in NON_NEGATIVE_FIELDS.get(type_name, ()):
            if np.any(np.asarray(getattr(node, name)) < 0):
                raise NIRFormatError(f"{label}: field {name!r} must be >= 0, got min {np.min(getattr(node, name)):.3g}")
        if isinstance(node, nir.Input):
            _as_shape(node.input_type["input"], label)
        if isinstance(node, nir.Output):
            _as_shape(node.output_type["output"], label)

    def edges(self, raw: np.ndarray, where: str, nodes: dict[str, nir.NIRNode]) -> list[tuple[str, str]]:
        if raw.size == 0:
            return []
        if raw.ndim != 2 or raw.shape[1] != 2:
            raise self.fail(f"{where}: field 'edges' must be [n, 2] node names, got shape {raw.shape}")
        edges = []
        try:
            for a, b in raw:
                edges.append((text(a, f"{where}: field 'edges'"), text(b, f"{where}: field 'edges'")))
        except NIRFormatError as exc:
            raise self.fail(str(exc)) from None
        for edge in edges:
            for end in edge:
                if end not in nodes:
                    raise self.fail(f"{where}: edge {edge} names node {end!r}, which the graph does not have")
        return edges

    def check_metadata(self, metadata: dict[str, Any], where: str) -> None:
        owner = f"{where} metadata"
        for key, (integer, low, high) in METADATA_NUMBERS.items():
            if key not in metadata:
                continue
            try:
                value = metadata[key]
                number = _as_int(value, owner, key) if integer else _as_float(value, owner, key)
            except NIRFormatError as exc:
                raise self.fail(str(exc)) from None
            if not low <= number <= high or (key == "spikestack.dt" and number <= 0):
                bounds = f"(0, {high:g}] s" if key == "spikestack.dt" else f"[{low}, {high}]"
                raise self.fail(f"{owner}: field {key!r} must be in {bounds}, got {number}")


def read_nir(path: str | Path) -> nir.NIRGraph:
    """The NIR graph in `path`, checked (see the module docstring); NIRFormatError naming file, node and field."""
    path = Path(path)
    _check_file(path)
    register()  # before the fork: the child checks node types against the registered names
    builder = _Builder(path)
    try:
        graph = builder.graph(parse_isolated(path))
        check_operands(graph)
    except NIRFormatError as exc:
        raise exc if str(exc).startswith(f"{path}:") else builder.fail(str(exc)) from None
    except MemoryError:  # taking the child's tree over, or a node's copy of it
        raise builder.fail("out of memory while reading the file") from None
    _SOURCES[id(graph)] = path
    weakref.finalize(graph, _SOURCES.pop, id(graph), None)
    return graph


read_graph = read_nir  # the name import/inspect used; one reader


def check_finite(graph: nir.NIRGraph, prefix: str = "") -> None:
    """Every floating-point array field of every node is finite. For graphs built in memory (not read from a
    file, which `read_nir` checks): stock NIR nodes accept NaN silently, so this names the node and field."""
    for name, node in graph.nodes.items():
        if isinstance(node, nir.NIRGraph):
            check_finite(node, f"{prefix}{name}.")
            continue
        for f in dataclasses.fields(node):
            value = getattr(node, f.name, None)
            floating = isinstance(value, np.ndarray) and np.issubdtype(value.dtype, np.floating)
            if floating and value.size and not _finite(value):
                raise NIRFormatError(f"node {prefix + name!r}: field {f.name!r} holds NaN or inf")


def _finite(value: np.ndarray) -> bool:
    """No NaN or ±inf, from the minimum and maximum (both propagate NaN; ±inf is one of them): two reads and no
    mask per array. SpikeGPT-216M's 1.7 GB of float64 weights are checked twice per compile (calibration and the
    layer-error report build `NIRModule`s); the masks took 0.9 s of the profiled compile (bench/compile_published.py)
    """
    return bool(np.isfinite(np.min(value)) and np.isfinite(np.max(value)))
