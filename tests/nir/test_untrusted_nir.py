"""NIR files from strangers: small files written by stock `nir.write`, damaged with h5py, through the one reader
(`read_nir`) and through `spikestack compile` / `spikestack inspect`: one NIRFormatError line naming the file and the
node, exit 2, no traceback, no output written."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import h5py
import nir
import numpy as np
import pytest
from spikestack.compiler.from_nir import read_nir as compiler_read_nir
from spikestack.models.nir import hdf5_tree
from spikestack.models.nir.io import read_graph, read_nir, source_of

from spikestack.cli import main
from spikestack.errors import NIRFormatError
from tests.conftest import make_nir_chain

BUDGET = (2**30, "test budget")  # bytes the reader may plan for, in place of this machine's MemAvailable


def _lif_graph() -> nir.NIRGraph:
    """Input(3) → Affine → LIF(2) → Output, plain NIR, dt in the metadata."""
    one = np.ones(2)
    graph = nir.NIRGraph.from_list(
        nir.Affine(weight=np.array([[0.5, 1.0, -0.5], [1.0, 0.2, 0.3]]), bias=np.zeros(2)),
        nir.LIF(tau=2e-3 * one, r=one, v_leak=0 * one, v_threshold=one, v_reset=0 * one))
    graph.metadata = {"spikestack.dt": 1e-4}
    return graph


@pytest.fixture(scope="module")
def sources(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("sources")
    files = {"lif": root / "lif.nir", "token": root / "token.nir"}
    nir.write(str(files["lif"]), _lif_graph())
    nir.write(str(files["token"]), make_nir_chain(levels=2))
    return files


def _replace(f: h5py.File, path: str, **dataset) -> None:
    del f[path]
    f.create_dataset(path, **dataset)


def _nest(f: h5py.File, depth: int) -> None:
    """Add a node 'sub': an empty sub-graph holding an empty sub-graph 'sub' … `depth` levels down."""
    inner = f["node/nodes"].create_group("sub")
    for _ in range(depth):
        inner.create_dataset("type", data="NIRGraph")
        inner.create_dataset("edges", data=np.zeros((0, 2)))
        inner = inner.create_group("nodes").create_group("sub")
    inner.create_dataset("type", data="NIRGraph")


def _flip_heap_length(path: Path) -> None:
    """Flip the length of the string 'input' in the edges' heap: HDF5 2.0 (h5py 3.16) then spins forever in
    `edges[()]`, inside C where no Python signal reaches it."""
    data = bytearray(path.read_bytes())
    at = data.index(b"\x05\x00\x00\x00\x00\x00\x00\x00input")
    data[at] ^= 0xFF
    path.write_bytes(bytes(data))


def _flip_chunk(path: Path, dataset: str) -> None:
    """Flip every byte of a dataset's first stored chunk (gzip data: the inflate check fails)."""
    with h5py.File(path, "r") as f:
        info = f[dataset].id.get_chunk_info(0)
    data = bytearray(path.read_bytes())
    for at in range(info.byte_offset, info.byte_offset + info.size):
        data[at] ^= 0xFF
    path.write_bytes(bytes(data))


Edit = Callable[[h5py.File], object]
Rewrite = Callable[[Path], object]


def _edit(source: str, edit: Edit, pattern: str) -> tuple[str, Edit | None, Rewrite | None, str]:
    return source, edit, None, pattern


def _rewrite(source: str, rewrite: Rewrite, pattern: str) -> tuple[str, Edit | None, Rewrite | None, str]:
    return source, None, rewrite, pattern


def _external_tau(f: h5py.File) -> None:
    del f["node/nodes/lif/tau"]
    f["node/nodes/lif/tau"] = h5py.ExternalLink("/etc/passwd", "/x")


# name: (source file, h5py edit of a copy, or a rewrite of the copy's bytes, regex the error must match)
DAMAGE = {
    "truncated": _rewrite("lif", lambda p: p.write_bytes(p.read_bytes()[: p.stat().st_size // 2]),
                          r"not a readable NIR file \(OSError"),
    "flipped weight chunk": _rewrite("lif", lambda p: _flip_chunk(p, "node/nodes/affine/weight"),
                                     r"node 'affine': field 'weight' cannot be read \(OSError"),
    "text file": _rewrite("lif", lambda p: p.write_text("not hdf5\n" * 100), r"not a readable NIR file \(OSError"),
    "string weight": _edit("lif", lambda f: _replace(f, "node/nodes/affine/weight", data="0.5"),
                           r"node 'affine': field 'weight' must be numeric, got text '0.5'"),
    "NaN weight": _edit("lif", lambda f: _replace(f, "node/nodes/affine/weight", data=[[np.nan, 1, 1], [1, 1, 1]]),
                        r"node 'affine': field 'weight' holds NaN or inf"),
    "1e300 weight": _edit("lif", lambda f: _replace(f, "node/nodes/affine/weight", data=[[1e300, 1, 1], [1, 1, 1]]),
                          r"node 'affine': field 'weight' holds 1e\+300, beyond the magnitude cap 1e\+09"),
    "huge levels": _edit("token", lambda f: _replace(f, "node/nodes/s1/levels", data=10**8),
                         r"node 's1': spikestack.BiSpike: field 'levels' must be in \[1, 1024\], got 100000000"),
    "huger levels": _edit("token", lambda f: _replace(f, "node/nodes/s2/levels", data=2**40),
                          r"node 's2': spikestack.BiSpike: field 'levels' holds 1.1e\+12, beyond the magnitude cap"),
    "levels as text": _edit("token", lambda f: _replace(f, "node/nodes/s1/levels", data="two"),
                            r"node 's1': spikestack.BiSpike: field 'levels' must be numeric, got text 'two'"),
    "declared 20000x20000": _edit(
        "lif", lambda f: _replace(f, "node/nodes/affine/weight", shape=(20000, 20000), dtype="f8", chunks=(1000, 1000),
                                  fillvalue=0.5),
        r"needs about 25600\d{6} bytes .*node 'affine' alone 25600000640\), more than the 1073741824 bytes this "
        r"process may allocate \(test budget\)"),
    "huge input shape": _edit("lif", lambda f: _replace(f, "node/nodes/input/shape", data=[2**20, 2**20]),
                              r"node 'input': field 'shape' \[1048576, 1048576\] declares more than 268435456 values"),
    "missing type": _edit("lif", lambda f: f.__delitem__("node/nodes/lif/type"), r"node 'lif' has no 'type' field"),
    "numeric type": _edit("lif", lambda f: _replace(f, "node/nodes/lif/type", data=5),
                          r"node 'lif': field 'type' must be one string"),
    "unknown type": _edit("lif", lambda f: _replace(f, "node/nodes/lif/type", data="acme.Mystery"),
                          r"node 'lif' has unknown type 'acme.Mystery'"),
    "non-UTF-8 type": _edit("lif", lambda f: _replace(f, "node/nodes/lif/type", data=np.bytes_(b"LI\xff")),
                            r"node 'lif': field 'type' is not UTF-8 text"),
    "edge to a missing node": _edit(
        "lif", lambda f: _replace(f, "node/edges", dtype=h5py.string_dtype(), data=[["input", "affine"],
                                                                                   ["affine", "ghost"]]),
        r"graph: edge \('affine', 'ghost'\) names node 'ghost', which the graph does not have"),
    "nested 12 deep": _edit("lif", lambda f: _nest(f, 12),
                            r"graph 'sub(\.sub){8}': sub-graphs nested more than 8 deep"),
    "hard-link cycle": _edit("lif", lambda f: f["node/nodes"].__setitem__("loop", f["node"]),
                             r"graph 'loop(\.loop){8}': sub-graphs nested more than 8 deep"),
    "zero tau": _edit("lif", lambda f: _replace(f, "node/nodes/lif/tau", data=np.zeros(2)),
                      r"node 'lif': field 'tau' must be > 0 \(a time constant\), got min 0"),
    "negative dt": _edit("lif", lambda f: _replace(f, "node/metadata/spikestack.dt", data=-1e-4),
                         r"graph metadata: field 'spikestack.dt' must be in \(0, 1e\+09\] s, got -0.0001"),
    "NaN dt": _edit("lif", lambda f: _replace(f, "node/metadata/spikestack.dt", data=np.nan),
                    r"graph metadata: field 'spikestack.dt' holds NaN or inf"),
    "bias too long": _edit("lif", lambda f: _replace(f, "node/nodes/affine/bias", data=np.zeros(3)),
                           r"node 'affine': field 'bias' has shape \(3,\), the weight \(2, 3\) needs \(2,\)"),
    "3-D weight": _edit("lif", lambda f: _replace(f, "node/nodes/affine/weight", data=np.ones((2, 3, 1))),
                        r"node 'affine': field 'weight' must be 2-D \[out, in\], got shape \(2, 3, 1\)"),
    "external link": _edit("lif", _external_tau, r"node 'lif': 'tau' points elsewhere \(external link\)"),
    "compound dtype": _edit("lif", lambda f: _replace(f, "node/nodes/lif/tau", data=np.zeros(2, [("a", "f8")])),
                            r"node 'lif': field 'tau' has HDF5 type .* not numbers or text"),
}


@pytest.fixture(autouse=True)
def _small_budget(monkeypatch):
    monkeypatch.setattr(hdf5_tree, "available_bytes", lambda: BUDGET)


def _damaged(sources: dict[str, Path], tmp_path: Path, name: str) -> tuple[Path, str]:
    src, edit, rewrite, pattern = DAMAGE[name]
    path = tmp_path / (name.replace(" ", "_") + ".nir")
    shutil.copy(sources[src], path)
    if edit is not None:
        with h5py.File(path, "r+") as f:
            edit(f)
    if rewrite is not None:
        rewrite(path)
    return path, pattern


def _special(tmp_path: Path, kind: str) -> tuple[Path, str]:
    path = tmp_path / f"{kind}.nir"
    if kind == "folder":
        path.mkdir()
        return path, "is a directory, not a NIR file"
    if kind == "fifo":
        os.mkfifo(path)  # opening it would block until a writer comes: the reader must refuse it from stat alone
        return path, "is a FIFO, not a regular file; refusing to open it"
    path.write_bytes(b"")
    return path, r"empty file \(0 bytes\)"


def _assert_one_error_line(capsys, code: int, pattern: str) -> str:
    captured = capsys.readouterr()
    lines = captured.err.splitlines()
    assert code == 2, captured
    assert len(lines) == 1 and lines[0].startswith("spikestack: error: "), lines
    assert "Traceback" not in captured.err + captured.out
    assert re.search(pattern, lines[0]), (pattern, lines[0])
    return lines[0]


@pytest.mark.parametrize("name", sorted(DAMAGE))
def test_damaged_file_is_one_error_naming_file_and_node(sources, tmp_path, capsys, name):
    path, pattern = _damaged(sources, tmp_path, name)
    with pytest.raises(NIRFormatError, match=pattern) as caught:
        read_nir(path)
    assert str(caught.value).startswith(f"{path}: ")
    out = tmp_path / "out"
    line = _assert_one_error_line(capsys, main(["compile", str(path), "-o", str(out)]), pattern)
    assert line == f"spikestack: error: {caught.value}"
    assert not out.exists() and not (tmp_path / "out.dump").exists()
    _assert_one_error_line(capsys, main(["inspect", str(path)]), pattern)


@pytest.mark.parametrize("kind", ["folder", "fifo", "empty"])
def test_special_files_are_refused_before_opening(tmp_path, capsys, kind):
    path, pattern = _special(tmp_path, kind)
    with pytest.raises(NIRFormatError, match=f"^{path}: {pattern}"):
        read_nir(path)
    out = tmp_path / "out"
    _assert_one_error_line(capsys, main(["compile", str(path), "-o", str(out)]), pattern)
    assert not out.exists()
    # a folder is an artifact to `inspect`, which names what the folder lacks instead
    _assert_one_error_line(capsys, main(["inspect", str(path)]), "manifest.json" if kind == "folder" else pattern)


def _assert_same(ours: object, stock: object, where: str) -> None:
    if isinstance(ours, dict):
        assert isinstance(stock, dict) and sorted(ours) == sorted(stock), where
        for key in ours:
            _assert_same(ours[key], stock[key], f"{where}.{key}")
    else:
        np.testing.assert_array_equal(ours, stock, err_msg=where)
        assert np.asarray(ours).dtype == np.asarray(stock).dtype, where


def test_the_undamaged_sources_compile_and_read_like_stock_nir(sources, tmp_path, capsys):
    out = tmp_path / "out"
    assert main(["compile", str(sources["lif"]), "-o", str(out)]) == 0 and (out / "manifest.json").exists()
    assert main(["inspect", str(sources["token"])]) == 0 and "spikestack.BiSpike" in capsys.readouterr().out
    for path in sources.values():
        ours, stock = read_nir(path), nir.read(str(path))
        assert ours.edges == stock.edges and ours.metadata == stock.metadata and list(ours.nodes) == list(stock.nodes)
        for name, node in ours.nodes.items():
            assert type(node) is type(stock.nodes[name])
            for key, value in vars(node).items():
                _assert_same(value, vars(stock.nodes[name])[key], f"{name}.{key}")
        assert source_of(ours) == path and source_of(stock) is None
    assert compiler_read_nir is read_nir and read_graph is read_nir  # one reader under every public name


def test_a_stuck_hdf5_read_is_killed_at_the_deadline(sources, tmp_path, monkeypatch):
    path = tmp_path / "stuck.nir"
    shutil.copy(sources["lif"], path)
    _flip_heap_length(path)
    monkeypatch.setattr(hdf5_tree, "READ_TIMEOUT_S", 1.0)
    start = time.monotonic()
    with pytest.raises(NIRFormatError, match=rf"^{path}: HDF5 did not finish reading the file within 1 s"):
        read_nir(path)
    assert time.monotonic() - start < 10


def test_flipping_bytes_gives_a_graph_or_one_format_error(sources, tmp_path, monkeypatch):
    """Every 199th byte of the first 8 KiB (superblock, object headers, heaps; the rest is mostly free space), one
    at a time: nothing but NIRFormatError escapes, and some flips do fail (0, 2189, 6169, … with HDF5 2.0)."""
    monkeypatch.setattr(hdf5_tree, "READ_TIMEOUT_S", 1.0)
    clean = sources["lif"].read_bytes()
    failures = 0
    for at in range(0, 8192, 199):
        path = tmp_path / f"flip{at}.nir"
        path.write_bytes(clean[:at] + bytes([clean[at] ^ 0xFF]) + clean[at + 1:])
        try:
            read_nir(path)
        except NIRFormatError as exc:
            assert str(exc).startswith(f"{path}: ")
            failures += 1
        path.unlink()
    assert failures >= 3


def test_memory_error_while_reading_names_file_node_and_field(sources, monkeypatch):
    getitem = h5py.Dataset.__getitem__

    def scarce(self, key):
        if self.name.endswith("/affine/weight"):
            raise MemoryError
        return getitem(self, key)

    monkeypatch.setattr(h5py.Dataset, "__getitem__", scarce)
    with pytest.raises(NIRFormatError, match=rf"^{sources['lif']}: node 'affine': field 'weight' \(\(2, 3\) float64\): "
                                             r"out of memory"):
        read_nir(sources["lif"])


def test_memory_error_while_lowering_names_the_file(sources, tmp_path, monkeypatch, capsys):
    def scarce(*_args):
        raise MemoryError

    monkeypatch.setattr("spikestack.compiler.from_nir._affine", scarce)
    out = tmp_path / "out"
    _assert_one_error_line(capsys, main(["compile", str(sources["lif"]), "-o", str(out)]),
                           rf"^spikestack: error: {sources['lif']}: out of memory while lowering its 4 nodes")
    assert not out.exists()


def test_budget_counts_declared_bytes_exactly(sources, monkeypatch):
    """lif.nir, by label: graph = type string 64 + edges 3x2 strings 6·64 + dt 8 = 456; input = type 64 + shape 8
    + 3 declared neurons 24 = 96; affine = 64 + (6 + 2)·8 = 128; lif = 64 + 5·2·8 = 144; output = 64 + 8 + 16 = 88.
    912 bytes in all, times COPY_FACTOR 8."""
    need = hdf5_tree.COPY_FACTOR * 912
    monkeypatch.setattr(hdf5_tree, "available_bytes", lambda: (need - 1, "one byte short"))
    with pytest.raises(NIRFormatError, match=rf"needs about {need} bytes \(0.0 GiB; graph alone {8 * 456}\)"):
        read_nir(sources["lif"])
    monkeypatch.setattr(hdf5_tree, "available_bytes", lambda: (need, "exactly enough"))
    assert set(read_nir(sources["lif"]).nodes) == {"input", "affine", "lif", "output"}


def test_rlimit_as_bounds_the_budget_in_a_fresh_process(sources, tmp_path):
    """No monkeypatch: a child process caps its own address space at 1 GiB above what it uses, then reads a file
    that declares 3.2 GB; the reader names RLIMIT_AS, whatever this machine's free memory."""
    path = tmp_path / "huge.nir"
    shutil.copy(sources["lif"], path)
    with h5py.File(path, "r+") as f:
        _replace(f, "node/nodes/affine/weight", shape=(20000, 20000), dtype="f8", chunks=(1000, 1000), fillvalue=0.5)
    code = f"""
import resource
from spikestack.models.nir.io import read_nir
from spikestack.models.nir.hdf5_tree import _proc_bytes
used = _proc_bytes("/proc/self/status", "VmSize")
resource.setrlimit(resource.RLIMIT_AS, (used + 2**30, resource.getrlimit(resource.RLIMIT_AS)[1]))
try:
    read_nir({str(path)!r})
except Exception as exc:
    print(type(exc).__name__, exc)
"""
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.stdout.startswith(f"NIRFormatError {path}: reading and compiling this graph needs about"), result
    assert "RLIMIT_AS" in result.stdout, result.stdout
