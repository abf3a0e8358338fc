"""`inspect_nir` on a shipped export, and `read_graph`'s one-line errors for bad files."""

from __future__ import annotations

from pathlib import Path

import h5py
import nir
import numpy as np
import pytest
from spikestack.models.nir.export import export_any
from spikestack.models.nir.inspect import inspect_nir
from spikestack.models.nir.io import read_graph

from spikestack.errors import NIRFormatError

CHECKPOINTS = Path(__file__).resolve().parents[2] / "models" / "checkpoints"


@pytest.fixture(scope="module")
def bispike_file(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("nir") / "bispike-mlp.nir"
    export_any(CHECKPOINTS / "bispike-mlp.pt", path)
    return path


def test_inspect_table_of_the_shipped_bispike_mlp(bispike_file):
    lines = inspect_nir(bispike_file).splitlines()
    assert lines[0].split() == ["node", "type", "input", "output", "spikes", "params"]
    rows = {line.split()[0]: line.split() for line in lines[2:12]}
    assert [line.split()[0] for line in lines[2:12]] == [  # flow order, not the file's alphabetical order
        "ids", "emb", "flatten", "spike1", "fc1", "spike2", "fc2", "spike3", "head", "output"]
    assert rows["emb"] == ["emb", "spikestack.Embedding", "8", "8x16", "-", "1520"]  # 95 x 16
    assert rows["fc1"] == ["fc1", "Affine", "128", "128", "-", "16512"]  # 128 x 128 + 128
    assert rows["head"] == ["head", "Affine", "128", "95", "-", "12255"]  # 95 x 128 + 95
    assert rows["spike2"][1:4] == ["spikestack.BiSpike", "128", "128"] and rows["spike2"][-1] == "4"  # α [T]
    assert " ".join(rows["spike2"][4:-1]) == "signed -1..1 x4 steps"
    assert "10 nodes, 9 edges, 46811 parameters" in lines  # 1520 + 2·16512 + 12255 + 3·4
    assert "spikestack.steps_per_token: 4" in lines


def test_inspect_spikegpt_shows_standard_lif_with_its_threshold_test(tmp_path):
    path = tmp_path / "g.nir"
    export_any(CHECKPOINTS / "spikegpt-char-2x64.pt", path)
    lif = next(line for line in inspect_nir(path).splitlines() if line.startswith("blocks.1.lif2 "))
    assert lif.split() == ["blocks.1.lif2", "LIF", "64", "64", "binary", "(v", ">=", "thr)", "320"]  # 5 x 64


def test_truncated_file_is_one_line_error(bispike_file, tmp_path):
    cut = tmp_path / "cut.nir"
    cut.write_bytes(bispike_file.read_bytes()[:400])
    with pytest.raises(NIRFormatError, match="not a readable NIR file"):
        inspect_nir(cut)


def test_bad_node_field_is_named_with_its_node(bispike_file, tmp_path):
    bad = tmp_path / "bad.nir"
    bad.write_bytes(bispike_file.read_bytes())
    with h5py.File(bad, "r+") as f:
        del f["node/nodes/spike2/alpha"]
        f["node/nodes/spike2"].create_dataset("alpha", data=[1.0, float("nan"), 1.0, 1.0])
    with pytest.raises(NIRFormatError, match=r"node 'spike2': spikestack.BiSpike: field 'alpha'"):
        read_graph(bad)


def test_unknown_type_and_missing_file(bispike_file, tmp_path):
    bad = tmp_path / "unknown.nir"
    bad.write_bytes(bispike_file.read_bytes())
    with h5py.File(bad, "r+") as f:
        del f["node/nodes/fc2/type"]
        f["node/nodes/fc2"].create_dataset("type", data="acme.Mystery")
    with pytest.raises(NIRFormatError, match=r"node 'fc2' has unknown type 'acme.Mystery'"):
        read_graph(bad)
    with pytest.raises(NIRFormatError, match="file not found"):
        read_graph(tmp_path / "nope.nir")
    assert isinstance(nir.read(str(bispike_file)).nodes["fc2"], nir.Affine)


def test_nan_in_a_standard_node_and_shape_mismatch_are_named(tmp_path):
    nan_path = tmp_path / "nan.nir"
    weight = np.array([[1.0, np.nan]])
    nir.write(str(nan_path), nir.NIRGraph.from_list(nir.Affine(weight=weight, bias=np.zeros(1))))
    with pytest.raises(NIRFormatError, match=r"node 'affine': field 'weight' holds NaN or inf"):
        read_graph(nan_path)
    bad_path = tmp_path / "mismatch.nir"
    graph = nir.NIRGraph(nodes={"in": nir.Input(input_type={"input": np.array([3])}),
                                "fc": nir.Linear(weight=np.ones((2, 4))),
                                "out": nir.Output(output_type={"output": np.array([2])})},
                         edges=[("in", "fc"), ("fc", "out")], type_check=False)
    nir.write(str(bad_path), graph)
    with pytest.raises(NIRFormatError, match=r"type mismatch: in.output: \[\[3\]\] -> fc.input: \[\[4\]\]"):
        read_graph(bad_path)
