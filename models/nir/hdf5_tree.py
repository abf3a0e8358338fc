"""A NIR file's HDF5 tree as plain data, parsed in a child process with a deadline. Used only by `io.read_nir`.

Place in the picture (STYLE.md): the lowest layer of the border. The HDF5 C library is not safe against damaged
files: one flipped byte in a variable-length string heap makes it spin forever inside `dataset[()]` (no Python
signal can interrupt it), others make it crash. So the file is parsed in a forked child; the parent waits with a
deadline, kills a child that runs over it, and turns a crash into one error line. The child, in two passes:

1. survey, without loading any data: every node has a known `type`; links stay inside the file; nesting and
   node counts are bounded; the bytes the graph needs are estimated from the *declared* shapes and dtypes
   (`dataset.shape`/`dtype`) times COPY_FACTOR, and refused when over what this process may allocate;
2. read: the tree as nested dicts of numpy values (bytes decoded to str), as `nir.serialization.hdf2dict` gives it.

A graph comes back as {"nodes": {name: Node | Graph}, "edges": array, "metadata": dict}; errors come back as the
NIRFormatError message, naming the file, node and field.
"""

from __future__ import annotations

import dataclasses
import math
import os
import pickle
import resource
import select
import signal
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import h5py
import nir
import numpy as np

from spikestack.errors import NIRFormatError

from .nodes import MAX_BISPIKE_LEVELS, MAX_ELEMENTS, MAX_STEPS, BiSpike

MAX_NESTING = 8  # sub-graphs inside sub-graphs; our exporters write flat graphs, the compiler takes no nesting
MAX_FIELD_DEPTH = 4  # groups inside one node (metadata, NIR's input_type dicts use 1)
MAX_NODES = 100_000  # nodes in all (sub-)graphs together; the largest shipped language model has a few hundred
MAX_FIELDS = 256  # datasets and groups in one node; NIR's widest node (Conv2d) has 10
COPY_FACTOR = 8  # bytes needed per byte declared: h5py's read, the transfer from the child, float64 conversion,
# the IR's frozen copy, scaled and quantized weights, mantissa/exponent arrays and the artifact each hold one copy
STRING_BYTES = 64  # a variable-length string read into a Python object
READ_TIMEOUT_S = 60.0  # the child's deadline for any file, plus the file's size at READ_BYTES_PER_S
READ_BYTES_PER_S = 5e6  # far below gzip's ~100 MB/s, so only a stuck HDF5 read reaches the deadline
READ_ERRORS = (OSError, RuntimeError, KeyError, ValueError, TypeError, AssertionError, IndexError, AttributeError,
               OverflowError, ZeroDivisionError, RecursionError, UnicodeDecodeError, NotImplementedError)
GRAPH_KEYS = {"type", "nodes", "edges", "metadata"}


@dataclasses.dataclass(frozen=True)
class Node:
    """A non-graph node as read: its type and its fields (nested dicts of numpy values and str)."""

    type_name: str
    fields: dict[str, Any]


def text(value: Any, where: str) -> str:
    """An HDF5 string (bytes, str or a 0-d array of either) as str."""
    if isinstance(value, np.ndarray) and value.shape == ():
        value = value.item()
    if isinstance(value, bytes):
        try:
            return value.decode("utf8")
        except UnicodeDecodeError:
            raise NIRFormatError(f"{where} is not UTF-8 text") from None
    if not isinstance(value, str):
        raise NIRFormatError(f"{where} must be a string, got {type(value).__name__} {value!r:.60}")
    return value


def _proc_bytes(path: str, key: str) -> int | None:
    """A `key: N kB` line of a /proc file, in bytes."""
    try:
        for line in Path(path).read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        return None
    return None


def available_bytes() -> tuple[int, str] | None:
    """(bytes this process may still allocate, where that number comes from), or None where unknown."""
    limits = []
    available = _proc_bytes("/proc/meminfo", "MemAvailable")
    if available is not None:
        limits.append((available, "MemAvailable in /proc/meminfo"))
    soft, _ = resource.getrlimit(resource.RLIMIT_AS)
    if soft != resource.RLIM_INFINITY:
        used = _proc_bytes("/proc/self/status", "VmSize") or 0
        limits.append((max(soft - used, 0), f"RLIMIT_AS {soft} less {used} in use"))
    return min(limits) if limits else None


@dataclasses.dataclass
class _Parser:
    """One parse of one open file: the survey's tallies, then the tree."""

    path: Path
    node_count: int = 0
    declared: dict[str, int] = dataclasses.field(default_factory=dict)  # label -> bytes its data declares

    def fail(self, message: str) -> NIRFormatError:
        return NIRFormatError(f"{self.path}: {message}")

    @contextmanager
    def naming(self, label: str) -> Iterator[None]:
        """Turn h5py/numpy failures and MemoryError inside `label` into one line naming it."""
        try:
            yield
        except NIRFormatError as exc:
            message = str(exc)
            if message.startswith(f"{self.path}:"):
                raise
            raise self.fail(message if message.startswith(label) else f"{label}: {message}") from None
        except MemoryError:
            raise self.fail(f"{label}: out of memory while reading it") from None
        except READ_ERRORS as exc:
            raise self.fail(f"{label} cannot be read ({type(exc).__name__}: {exc})") from None

    def child(self, group: h5py.Group, key: str, label: str) -> h5py.Group | h5py.Dataset:
        """group[key], refusing soft and external links (they reach outside the file) and other HDF5 objects."""
        link = group.get(key, getlink=True)
        if not isinstance(link, h5py.HardLink):
            kind = {"SoftLink": "soft", "ExternalLink": "external"}.get(type(link).__name__, "special")
            raise self.fail(f"{label}: {key!r} points elsewhere ({kind} link); a NIR file holds its data inline")
        item = group[key]
        if not isinstance(item, (h5py.Group, h5py.Dataset)):
            raise self.fail(f"{label}: {key!r} is a {type(item).__name__}, not a dataset or group")
        return item

    def node_type(self, node: h5py.Group | h5py.Dataset, label: str) -> str:
        if not isinstance(node, h5py.Group):
            raise self.fail(f"{label} is a dataset, not a node group")
        if "type" not in node:
            raise self.fail(f"{label} has no 'type' field")
        dataset = self.child(node, "type", label)
        if (not isinstance(dataset, h5py.Dataset) or dataset.shape != ()
                or h5py.check_string_dtype(dataset.dtype) is None):
            raise self.fail(f"{label}: field 'type' must be one string")
        type_name = text(dataset[()], f"{label}: field 'type'")
        if type_name not in vars(nir.ir)["__all_ir"]:
            raise self.fail(f"{label} has unknown type {type_name!r}")
        return type_name

    # ---------------------------------------------------------------------------------------------- pass 1: survey
    def survey_graph(self, group: h5py.Group, prefix: str, nesting: int) -> None:
        where = f"graph {prefix[:-1]!r}" if prefix else "graph"
        if nesting > MAX_NESTING:
            raise self.fail(f"{where}: sub-graphs nested more than {MAX_NESTING} deep")
        with self.naming(where):
            missing = sorted({"nodes", "edges"} - set(group))
            unknown = sorted(set(group) - GRAPH_KEYS)
            if missing or unknown:
                raise self.fail(f"{where}: entries must be {sorted(GRAPH_KEYS)}; missing {missing}, unknown {unknown}")
            nodes = self.child(group, "nodes", where)
            if not isinstance(nodes, h5py.Group):
                raise self.fail(f"{where}: 'nodes' must be a group")
            self.declared[where] = self.survey_fields(group, where, 0, skip="nodes")
        for name in nodes:
            label = f"node {prefix + name!r}"
            self.node_count += 1
            if self.node_count > MAX_NODES:
                raise self.fail(f"{label}: more than {MAX_NODES} nodes in the file")
            with self.naming(label):
                node = self.child(nodes, name, where)
                type_name = self.node_type(node, label)
                if type_name == "NIRGraph":
                    self.survey_graph(node, f"{prefix}{name}.", nesting + 1)
                    continue
                self.declared[label] = self.survey_fields(node, label, 0) + 8 * self.declared_values(node, type_name)

    def survey_fields(self, group: h5py.Group, label: str, depth: int, skip: str = "") -> int:
        """Bytes the group's datasets declare, from their shapes and dtypes only; nothing is loaded."""
        if depth > MAX_FIELD_DEPTH or len(group) > MAX_FIELDS:
            raise self.fail(f"{label}: more than {MAX_FIELDS} fields, or groups nested over {MAX_FIELD_DEPTH} deep")
        total = 0
        for key in group:
            if key == skip:
                continue
            item = self.child(group, key, label)
            if isinstance(item, h5py.Group):
                total += self.survey_fields(item, label, depth + 1)
                continue
            if item.shape is None:
                raise self.fail(f"{label}: field {key!r} holds no value (empty dataspace)")
            if item.is_virtual or item.external:
                raise self.fail(f"{label}: field {key!r} keeps its data outside the file")
            if h5py.check_string_dtype(item.dtype) is not None:
                per_value = max(item.dtype.itemsize, STRING_BYTES)
            elif item.dtype.kind in "biuf":
                per_value = max(item.dtype.itemsize, 8)  # read as stored, then converted to float64
            else:
                raise self.fail(f"{label}: field {key!r} has HDF5 type {item.dtype}, not numbers or text")
            total += math.prod(item.shape) * per_value
        return total

    def declared_values(self, node: h5py.Group, type_name: str) -> int:
        """Values the compiler allocates from a node's declared sizes: a `shape` (per-neuron arrays) and a BiSpike's
        per-level thresholds [T, K] and carries [T, 2K+1]. Out-of-range sizes count 0: the node check names them."""
        values = 0
        shape = self.small_ints(node, "shape")
        if shape and min(shape) >= 1 and math.prod(shape) <= MAX_ELEMENTS:
            values += math.prod(shape)
        levels = self.small_ints(node, "levels")
        if type_name == BiSpike.type_name and len(levels) == 1 and 1 <= levels[0] <= MAX_BISPIKE_LEVELS:
            alpha = node.get("alpha")
            steps = math.prod(alpha.shape or ()) if isinstance(alpha, h5py.Dataset) else 0
            values += (3 * levels[0] + 1) * min(steps, MAX_STEPS)
        return values

    @staticmethod
    def small_ints(node: h5py.Group, key: str) -> list[int]:
        item = node.get(key)
        if not isinstance(item, h5py.Dataset) or item.dtype.kind not in "iuf" or not 0 < (item.size or 0) <= 32:
            return []
        values = np.asarray(item[()], dtype=np.float64).reshape(-1)
        if not np.all(np.isfinite(values)) or np.any(np.abs(values) > 2**62):
            return []
        return [int(v) for v in values]

    def check_budget(self) -> None:
        need = COPY_FACTOR * sum(self.declared.values())
        budget = available_bytes()
        if budget is None or need <= budget[0]:
            return
        label, largest = max(self.declared.items(), key=lambda item: item[1])
        raise self.fail(f"reading and compiling this graph needs about {need} bytes ({need / 2**30:.1f} GiB; "
                        f"{label} alone {COPY_FACTOR * largest}), more than the {budget[0]} bytes this process may "
                        f"allocate ({budget[1]})")

    # ------------------------------------------------------------------------------------------------ pass 2: read
    def read_graph(self, group: h5py.Group, prefix: str) -> dict[str, Any]:
        where = f"graph {prefix[:-1]!r}" if prefix else "graph"
        nodes: dict[str, Node | dict[str, Any]] = {}
        for name in group["nodes"]:
            label = f"node {prefix + name!r}"
            with self.naming(label):
                node = group["nodes"][name]
                type_name = self.node_type(node, label)
                if type_name == "NIRGraph":
                    nodes[name] = self.read_graph(node, f"{prefix}{name}.")
                else:
                    nodes[name] = Node(type_name, self.read_fields(node, label, 0))
        with self.naming(where):
            edges = self.child(group, "edges", where)
            if not isinstance(edges, h5py.Dataset):
                raise self.fail(f"{where}: 'edges' must be a dataset of node-name pairs")
            metadata = self.read_fields(self.child(group, "metadata", where), where, 0) if "metadata" in group else {}
            return {"nodes": nodes, "edges": np.asarray(edges[()]), "metadata": metadata}

    def read_fields(self, group: h5py.Group | h5py.Dataset, label: str, depth: int) -> dict[str, Any]:
        """The group as nested dicts, as `nir.serialization.hdf2dict` gives it (bytes decoded to str)."""
        if not isinstance(group, h5py.Group):
            raise self.fail(f"{label}: {group.name!r} must be a group of fields")
        out: dict[str, Any] = {}
        for key in group:
            item = self.child(group, key, label)
            if isinstance(item, h5py.Group):
                out[key] = self.read_fields(item, label, depth + 1)
                continue
            try:
                value = item[()]
            except MemoryError:
                raise self.fail(f"{label}: field {key!r} ({item.shape} {item.dtype}): out of memory") from None
            except READ_ERRORS as exc:
                raise self.fail(f"{label}: field {key!r} cannot be read ({type(exc).__name__}: {exc})") from None
            out[key] = text(value, f"{label}: field {key!r}") if isinstance(value, bytes) else value
        return out


def parse(path: Path) -> dict[str, Any]:
    """Survey, budget check and read, in this process (the child's work)."""
    parser = _Parser(path)
    try:
        with h5py.File(path, "r") as f:
            if not isinstance(f.get("node", getlink=True), h5py.HardLink):
                raise parser.fail("no 'node' group: not a NIR file")
            parser.survey_graph(f["node"], "", 0)
            parser.check_budget()
            return parser.read_graph(f["node"], "")
    except NIRFormatError:
        raise
    except MemoryError:
        raise parser.fail("out of memory while reading the file") from None
    except READ_ERRORS as exc:
        raise parser.fail(f"not a readable NIR file ({type(exc).__name__}: {exc})") from None


def parse_isolated(path: Path) -> dict[str, Any]:
    """`parse` in a forked child under a deadline; a stuck or crashed HDF5 read is one NIRFormatError."""
    deadline_s = READ_TIMEOUT_S + path.stat().st_size / READ_BYTES_PER_S
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: never returns, never runs the parent's cleanup or buffered output
        os.close(read_end)
        try:
            result: tuple[str, Any] = ("ok", parse(path))
        except NIRFormatError as exc:
            result = ("error", str(exc))
        except BaseException as exc:  # noqa: BLE001 - anything else still reaches the parent as one line
            result = ("error", f"{path}: not a readable NIR file ({type(exc).__name__}: {exc})")
        try:
            with os.fdopen(write_end, "wb") as out:
                pickle.dump(result, out, protocol=pickle.HIGHEST_PROTOCOL)
        finally:
            os._exit(0)
    os.close(write_end)
    payload = _collect(read_end, pid, deadline_s, path)
    _, status = os.waitpid(pid, 0)
    if not payload:
        cause = (f"signal {signal.Signals(os.WTERMSIG(status)).name}" if os.WIFSIGNALED(status)
                 else f"exit status {os.waitstatus_to_exitcode(status)}")
        raise NIRFormatError(f"{path}: the HDF5 reader died ({cause}); the file is damaged, or memory ran out")
    # our own child wrote these bytes: numpy values and str taken from the file, never code from it
    kind, value = pickle.loads(payload)
    if kind == "error":
        raise NIRFormatError(value)
    return value


def _collect(read_end: int, pid: int, deadline_s: float, path: Path) -> bytes:
    """Everything the child writes, or kill it when the deadline passes."""
    chunks: list[bytes] = []
    stop = time.monotonic() + deadline_s
    with os.fdopen(read_end, "rb", buffering=0) as pipe:
        while True:
            left = stop - time.monotonic()
            ready, _, _ = select.select([pipe], [], [], max(left, 0))
            if not ready:
                os.kill(pid, signal.SIGKILL)
                os.waitpid(pid, 0)
                raise NIRFormatError(f"{path}: HDF5 did not finish reading the file within {deadline_s:.0f} s; a "
                                     f"damaged file can make it loop forever")
            chunk = pipe.read(1 << 20)
            if not chunk:
                return b"".join(chunks)
            chunks.append(chunk)
