"""Seeded mutations of bytes, NIR (HDF5) files and TOML text. Every function takes a `random.Random`, so a case
id (kind, seed) always builds the same input; each returns a short note naming what it did."""

from __future__ import annotations

import random
import re
from pathlib import Path

import h5py
import numpy as np

# Values a number in a user file may be replaced with: zero, negative, tiny, huge, non-finite, wrong types.
NUMBER_TEXT = ["0", "-1", "1", "200", "1e9", "1e300", "-1e300", "nan", "inf", "-inf", '"abc"', '""', "true",
               "false", "0.5", "99999999999999999999999", "-9223372036854775809", "[]", "{}"]


# ---- bytes ------------------------------------------------------------------------------------------------------

def flip_bytes(rng: random.Random, data: bytes) -> tuple[bytes, str]:
    buf = bytearray(data)
    n = rng.choice([1, 2, 8, 64])
    for _ in range(n):
        if buf:
            buf[rng.randrange(len(buf))] ^= rng.randrange(1, 256)
    return bytes(buf), f"flip {n} bytes"


def truncate(rng: random.Random, data: bytes) -> tuple[bytes, str]:
    cut = rng.choice([0, 1, rng.randrange(max(len(data), 1)), max(len(data) - 1, 0), len(data) // 2])
    return data[:cut], f"truncate at {cut} of {len(data)}"


def append_junk(rng: random.Random, data: bytes) -> tuple[bytes, str]:
    junk = rng.randbytes(rng.choice([1, 16, 4096]))
    return data + junk, f"append {len(junk)} junk bytes"


def zero_range(rng: random.Random, data: bytes) -> tuple[bytes, str]:
    if not data:
        return data, "zero nothing"
    start = rng.randrange(len(data))
    length = rng.choice([1, 8, 512, len(data)])
    end = min(len(data), start + length)
    return data[:start] + bytes(end - start) + data[end:], f"zero bytes {start}:{end}"


BYTE_MUTATORS = (flip_bytes, truncate, append_junk, zero_range)


def mutate_bytes(rng: random.Random, path: Path) -> str:
    data, note = rng.choice(BYTE_MUTATORS)(rng, path.read_bytes())
    path.write_bytes(data)
    return f"bytes: {note}"


# ---- NIR (HDF5) -------------------------------------------------------------------------------------------------

def _datasets(f: h5py.File) -> list[str]:
    names: list[str] = []
    f["node/nodes"].visititems(lambda name, obj: names.append(name) if isinstance(obj, h5py.Dataset) else None)
    return [f"node/nodes/{n}" for n in names if not n.endswith("/type")]


def _replace(f: h5py.File, name: str, **kwargs) -> None:
    del f[name]
    f.create_dataset(name, **kwargs)


def _nodes(f: h5py.File) -> list[str]:
    return sorted(f["node/nodes"])


def _edges(f: h5py.File) -> list[list[str]]:
    return [[v.decode() if isinstance(v, bytes) else str(v) for v in row] for row in f["node/edges"][()]]


def _write_edges(f: h5py.File, edges: list[list[str]]) -> None:
    del f["node/edges"]
    f.create_dataset("node/edges", data=np.array(edges, dtype=object), dtype=h5py.string_dtype())


def nir_edit(rng: random.Random, f: h5py.File) -> str:
    """One structural or value edit of an open NIR file."""
    datasets, nodes = _datasets(f), _nodes(f)
    op = rng.choice(["string", "nan", "big", "huge_shape", "empty", "scalar", "int", "complex", "del_type",
                     "type", "rename", "missing_edge", "del_edge", "edge_shape", "cycle", "del_node", "levels",
                     "levels", "shape", "metadata", "del_field", "version", "transpose"])
    name = rng.choice(datasets)
    shape = f[name].shape
    if op == "string":
        _replace(f, name, data="garbage")
    elif op == "nan":
        _replace(f, name, data=np.full(shape, np.nan))
    elif op == "big":
        value = rng.choice([1e300, -1e300, np.inf, -np.inf, 2.0**70, -(2**62)])
        _replace(f, name, data=np.full(shape, value))
        return f"nir: big {value} {name}"
    elif op == "huge_shape":
        huge = rng.choice([(1 << 40,), (1 << 20, 1 << 20), (60_000, 60_000), (4096, 4096), (10_000_000,)])
        _replace(f, name, shape=huge, dtype=rng.choice(["float32", "float64", "int64"]))
        return f"nir: {name} shape {huge} (lazily allocated)"
    elif op == "empty":
        _replace(f, name, data=np.zeros(rng.choice([(0,), (0, 0), (0, 3)])))
    elif op == "scalar":
        _replace(f, name, data=rng.choice([0.0, -1.0, 7.0]))
    elif op == "int":
        _replace(f, name, data=np.full(shape, rng.choice([0, -1, 2**62]), dtype=np.int64))
    elif op == "complex":
        _replace(f, name, data=np.full(shape, 1 + 1j))
    elif op == "transpose" and len(shape) == 2:
        _replace(f, name, data=np.asarray(f[name][()]).T.copy())
    elif op == "del_field":
        del f[name]
    elif op == "del_type":
        node = rng.choice(nodes)
        del f[f"node/nodes/{node}/type"]
        return f"nir: delete {node}/type"
    elif op == "type":
        node, new = rng.choice(nodes), rng.choice(["Foo", "CubaLIF", "LIF", "Affine", "spikestack.BiSpike",
                                                   "NIRGraph", "", "Output", "spikestack.Embedding"])
        _replace(f, f"node/nodes/{node}/type", data=new)
        return f"nir: {node}/type = {new!r}"
    elif op == "rename":
        node = rng.choice(nodes)
        new = rng.choice([f"{node}_x", "", "../x", nodes[0] + "2"])
        if not new or new == "../x":
            new = f"{node}_renamed"
        f.move(f"node/nodes/{node}", f"node/nodes/{new}")
        return f"nir: rename node {node} → {new}"
    elif op in ("missing_edge", "del_edge", "cycle"):
        edges = _edges(f)
        if op == "missing_edge":
            edges.append([rng.choice(nodes), "ghost"] if rng.random() < 0.5 else ["ghost", rng.choice(nodes)])
        elif op == "del_edge" and edges:
            edges.pop(rng.randrange(len(edges)))
        else:
            back = rng.random() < 0.5 and edges  # an earlier edit may have left no edges
            edges.append([edges[-1][1], edges[0][0]] if back else [nodes[0], nodes[0]])
        _write_edges(f, edges)
        return f"nir: edges {op} → {edges[-1] if edges else 'none left'}"
    elif op == "edge_shape":
        del f["node/edges"]
        f.create_dataset("node/edges", data=rng.choice([np.array([["a", "b", "c"]], dtype=object).astype("S"),
                                                        np.zeros((2, 2)), np.array([], dtype="S1")]))
    elif op == "del_node":
        node = rng.choice(nodes)
        del f[f"node/nodes/{node}"]
        return f"nir: delete node {node}"
    elif op == "levels":
        hits = [d for d in datasets if d.endswith("/levels")] or [name]
        name, value = rng.choice(hits), rng.choice([0, -1, 2, 24, 1000, 2**40, 1.5, "x"])
        _replace(f, name, data=value)
        return f"nir: {name} = {value!r}"
    elif op == "shape":
        hits = [d for d in datasets if d.endswith("/shape") or d.endswith("input_type")] or [name]
        name, value = rng.choice(hits), rng.choice([[0], [-1], [10**9], [2**40], [3, 3], [1], []])
        _replace(f, name, data=np.array(value, dtype=np.int64))
        return f"nir: {name} = {value}"
    elif op == "metadata" and "node/metadata" in f:
        keys = sorted(f["node/metadata"])
        key, value = rng.choice(keys), rng.choice([0, -1, 2**40, "spikellm", "nope", 1e300, ""])
        _replace(f, f"node/metadata/{key}", data=value)
        return f"nir: metadata {key} = {value!r}"
    elif op == "version":
        _replace(f, "version", data=rng.choice(["0.0.1", "99", ""]))
    else:
        _replace(f, name, data=np.full(shape, np.nan))
        op = "nan"
    return f"nir: {op} {name}"


# One edit that no reader may accept: a non-finite number or a string where the node holds numbers.
MUST_FAIL_NIR = re.compile(r"^nir: (nan|string|big -?inf) ")


def mutate_nir(rng: random.Random, path: Path) -> tuple[str, bool]:
    """1-2 HDF5-level edits (3 in 4 cases), else a byte-level mutation of the whole file; returns (note, must
    fail). Two edits never must fail: the second may remove what made the first invalid."""
    if rng.random() < 0.25:
        return mutate_bytes(rng, path), False
    with h5py.File(path, "r+") as f:
        notes = [nir_edit(rng, f) for _ in range(rng.choice([1, 1, 2]))]
    return "; ".join(notes), len(notes) == 1 and bool(MUST_FAIL_NIR.match(notes[0]))


# ---- TOML text --------------------------------------------------------------------------------------------------

_ASSIGN = re.compile(r"^(\s*)([A-Za-z_][\w]*)\s*=\s*(.+)$")


# Values no hardware number may take (every number in a target or profile is a positive size or a cost).
INVALID_NUMBER_TEXT = {"-1", "-1e300", "nan", "inf", "-inf", '"abc"', '""', "true", "false", "[]", "{}",
                       "-9223372036854775809"}


def toml_edit(rng: random.Random, text: str, names: list[str]) -> tuple[str, str, bool]:
    """One line-level edit of a target/profile TOML: numbers, names (incl. `../`), lists, keys, sections.
    Returns (text, note, must fail): a number set to an invalid value, a duplicated key."""
    lines = text.splitlines()
    assigns = [i for i, line in enumerate(lines) if _ASSIGN.match(line) and not line.lstrip().startswith("#")]
    numbers = [i for i in assigns if re.match(r"^[-+0-9.]", _ASSIGN.match(lines[i]).group(3).strip())]
    strings = [i for i in assigns if _ASSIGN.match(lines[i]).group(2) in ("name", "default_profile")]
    lists = [i for i in assigns if _ASSIGN.match(lines[i]).group(3).strip().startswith("[")]
    sections = [i for i, line in enumerate(lines) if line.startswith("[")]
    op = rng.choice(["number"] * 6 + ["name", "list", "delete", "delete", "section", "duplicate", "broken"])
    pool = {"number": numbers, "name": strings, "list": lists, "section": sections}.get(op, assigns)
    if op == "broken" or not pool:
        junk = rng.choice(["= = [", "[chip", 'x = "unterminated', "\x00", "[core]"])
        lines.insert(rng.randrange(len(lines) + 1), junk)
        return "\n".join(lines) + "\n", f"toml: insert {junk!r}", False
    i = rng.choice(pool)
    old = lines[i]
    key = _ASSIGN.match(old).group(2) if _ASSIGN.match(old) else old
    must_fail = False
    if op == "number":
        value = rng.choice(NUMBER_TEXT)
        lines[i] = f"{key} = {value}"
        must_fail = value in INVALID_NUMBER_TEXT
    elif op == "name":
        lines[i] = f'{key} = "{rng.choice(names)}"'
    elif op == "list":
        value = rng.choice(["[]", "[1]", "[0, 0, 0, 0]", "[-1, 2, 3, 4]", "[nan]", '["x"]', "[[1]]", "1"])
        lines[i] = f"{key} = {value}"
    elif op == "delete":
        lines.pop(i)
        return "\n".join(lines) + "\n", f"toml: delete {old.strip()[:60]!r}", False
    elif op == "section":
        lines[i] = rng.choice(["", f"{old.strip()[1:-1]} = 1", "[extra]"])
    else:
        lines.insert(i, old)
        must_fail = True  # a key twice in one table is not TOML
    return "\n".join(lines) + "\n", f"toml: {op} {old.strip()[:50]!r} → {lines[i].strip()[:50]!r}", must_fail


def mutate_toml(rng: random.Random, path: Path, names: list[str]) -> tuple[str, bool]:
    """1-3 TOML edits (4 in 5 cases), else a byte-level mutation; returns (note, must fail). Only a single edit
    must fail (a later one may delete the line an earlier one broke)."""
    if rng.random() < 0.2:
        return mutate_bytes(rng, path), False
    text, notes, fails = path.read_text(), [], []
    for _ in range(rng.choice([1, 1, 2, 3])):
        text, note, fail = toml_edit(rng, text, names)
        notes.append(note)
        fails.append(fail)
    path.write_text(text)
    return "; ".join(notes), fails == [True]
