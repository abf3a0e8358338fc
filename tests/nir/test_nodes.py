"""Extension nodes: round trip through stock nir.write/nir.read, stock-reader compatibility, bad input."""

import subprocess
import sys

import nir
import numpy as np
import pytest
import torch
from spikestack.compiler.from_nir import read_nir
from spikestack.models.bispike import ElasticBiSpike
from spikestack.models.nir.nodes import BiSpike, Embedding

from spikestack.errors import NIRFormatError
from tests.conftest import make_nir_chain


def test_round_trip_through_nir_write_and_read(tmp_path):
    graph = make_nir_chain(levels=2)
    path = tmp_path / "g.nir"
    nir.write(str(path), graph)
    back = nir.read(str(path))
    assert isinstance(back.nodes["s1"], BiSpike) and isinstance(back.nodes["emb"], Embedding)
    np.testing.assert_array_equal(back.nodes["s1"].alpha, graph.nodes["s1"].alpha)
    assert back.nodes["s1"].levels == 2 and back.nodes["s1"].reset_scale == 0.25
    np.testing.assert_array_equal(back.nodes["emb"].weight, graph.nodes["emb"].weight)
    np.testing.assert_array_equal(back.nodes["fc1"].bias, graph.nodes["fc1"].bias)
    assert sorted(back.edges) == sorted(graph.edges)
    assert int(back.metadata["spikestack.steps_per_token"]) == 4


def test_standard_only_file_reads_with_stock_nir_in_a_clean_process(tmp_path):
    path = tmp_path / "std.nir"
    graph = nir.NIRGraph.from_list(
        nir.Affine(weight=np.eye(3), bias=np.zeros(3)),
        nir.LIF(tau=np.full(3, 2.0), r=np.ones(3), v_leak=np.zeros(3), v_threshold=np.ones(3), v_reset=np.zeros(3)),
    )
    nir.write(str(path), graph)
    code = (f"import sys, nir; g = nir.read({str(path)!r}); "
            "assert not [m for m in sys.modules if m.split('.')[0] == 'spikestack']; "
            "print(sorted(type(n).__name__ for n in g.nodes.values()))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert "Affine" in out and "LIF" in out


def test_bispike_reference_matches_torch_neuron():
    rng = np.random.default_rng(3)
    alpha = np.array([0.7, 1.1, 1.6, 2.4])
    node = BiSpike(alpha=alpha, levels=2, reset_scale=0.25, shape=np.array([50]))
    x = rng.normal(0, 1.5, (4, 50))
    neuron = ElasticBiSpike(steps=4, levels=2).double().eval()
    neuron.alpha.data = torch.tensor(alpha)
    expected = neuron(torch.tensor(x)).numpy()
    np.testing.assert_array_equal(node.reference(x), expected)


def test_unknown_node_type_names_the_node(tmp_path):
    path = tmp_path / "bad.nir"
    nir.write(str(path), make_nir_chain())
    import h5py

    with h5py.File(path, "r+") as f:
        del f["node/nodes/s2/type"]
        f["node/nodes/s2"].create_dataset("type", data="acme.Mystery")
    with pytest.raises(NIRFormatError, match=r"node 's2' has unknown type 'acme.Mystery'"):
        read_nir(path)


def test_truncated_file_is_a_format_error(tmp_path):
    path = tmp_path / "cut.nir"
    nir.write(str(path), make_nir_chain())
    path.write_bytes(path.read_bytes()[:300])
    with pytest.raises(NIRFormatError, match="not a readable NIR file"):
        read_nir(path)


def test_invalid_fields_are_rejected():
    with pytest.raises(NIRFormatError, match="alpha"):
        BiSpike(alpha=np.array([1.0, np.nan]), levels=1, reset_scale=0.25, shape=np.array([3]))
    with pytest.raises(NIRFormatError, match="levels"):
        BiSpike(alpha=np.array([1.0]), levels=0, reset_scale=0.25, shape=np.array([3]))
    with pytest.raises(NIRFormatError, match="NaN"):
        Embedding(weight=np.array([[np.nan]]), context=1)
