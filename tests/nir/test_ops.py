"""Extension node set: round trip through stock nir.write/nir.read, hand-computed reference values, bad fields."""

from __future__ import annotations

import dataclasses

import h5py
import nir
import numpy as np
import pytest
import torch
from spikestack.models.nir.neurons import GIF, Quantizer
from spikestack.models.nir.nodes import all_extension_nodes
from spikestack.models.nir.ops import (
    GELU,
    WKV,
    Attention,
    LayerNorm,
    PositionEmbedding,
    Product,
    ReLU2,
    RMSNorm,
    RoPE,
    Sigmoid,
    SiLU,
    StepMean,
    check_operands,
)
from spikestack.models.nir.torch_modules import NODE_MAP

from spikestack.errors import NIRFormatError

C = 4


def _factories() -> dict[str, nir.NIRNode]:
    """One small node of every new type, with distinctive values."""
    rng = np.random.default_rng(0)
    return {
        "gif": GIF(bits=2, addbit=1, salient=np.array([0, 1, 0, 1])),
        "quant": Quantizer(bits=3, shape=np.array([C]), min_step=1e-4),
        "ln": LayerNorm(weight=rng.normal(size=C), bias=rng.normal(size=C), epsilon=1e-5),
        "rms": RMSNorm(weight=rng.normal(size=C), epsilon=1e-6),
        "sig": Sigmoid(shape=np.array([C])),
        "relu2": ReLU2(shape=np.array([C])),
        "silu": SiLU(shape=np.array([C])),
        "gelu": GELU(shape=np.array([C])),
        "pos": PositionEmbedding(weight=rng.normal(size=(3, C))),
        "prod": Product(shape=np.array([C])),
        "wkv": WKV(time_decay=rng.normal(size=C), time_first=rng.normal(size=C), operands="sig,relu2"),
        "att": Attention(n_heads=2, n_kv_heads=1, head_dim=2, causal=1, scale=0.5, operands="rope,silu,prod"),
        "rope": RoPE(n_heads=2, head_dim=2, theta=10000.0),
        "mean": StepMean(shape=np.array([C])),
    }


def _graph() -> nir.NIRGraph:
    nodes = {"in": nir.Input(input_type={"input": np.array([C])}), **_factories(),
             "out": nir.Output(output_type={"output": np.array([C])})}
    edges = [("in", "gif"), ("gif", "quant"), ("quant", "pos"), ("pos", "ln"), ("ln", "rms"), ("rms", "sig"),
             ("rms", "relu2"),
             ("sig", "wkv"), ("relu2", "wkv"), ("wkv", "silu"), ("wkv", "gelu"), ("gelu", "prod"), ("wkv", "prod"),
             ("silu", "prod"),
             ("wkv", "rope"), ("rope", "att"), ("silu", "att"), ("prod", "att"), ("att", "mean"),
             ("mean", "out")]
    return nir.NIRGraph(nodes=nodes, edges=edges)


def test_every_extension_type_is_covered_and_registered():
    covered = {type(n).type_name for n in _factories().values()} | {"spikestack.BiSpike", "spikestack.Embedding"}
    assert covered == {cls.type_name for cls in all_extension_nodes()}
    assert covered <= set(vars(nir.ir)["__all_ir"])


def test_round_trip_keeps_every_field(tmp_path):
    graph = _graph()
    nir.write(str(tmp_path / "g.nir"), graph)
    back = nir.read(str(tmp_path / "g.nir"))
    assert sorted(back.edges) == sorted(graph.edges)
    for name, node in _factories().items():
        read = back.nodes[name]
        assert type(read) is type(node)
        for f in dataclasses.fields(node):
            if f.name in ("input_type", "output_type", "metadata"):
                continue
            want, got = getattr(node, f.name), getattr(read, f.name)
            assert type(got) is type(want), (name, f.name)
            np.testing.assert_array_equal(got, want)
    check_operands(back)


def test_gif_hand_example():
    # L = 4, K = 2. Non-salient {0, 1}: Δ = 3/3 = 1, z = 0. Salient {2, 3}: Δ = 7/7 = 1, z = 0, code 7 → 6.
    node = GIF(bits=2, addbit=1, salient=np.array([0, 0, 1, 1]))
    x = np.array([0.0, 3.0, 0.0, 7.0])
    np.testing.assert_array_equal(node.reference(x), [0, 3, 0, 6])
    np.testing.assert_array_equal(node.spikes(x), [[0, 3, 0, 3], [0, 0, 0, 3]])
    assert (node.levels, node.steps) == (4, 2)


def test_gif_zero_point_hand_example():
    node = GIF(bits=1, addbit=0, salient=np.zeros(3))
    # one group, N = 1: Δ = 4, z = round(0.25) = 0; x/Δ rounds to 0, 0, 1 → y = 0, 0, 4 (-1 lost: z = 0)
    np.testing.assert_array_equal(node.reference(np.array([-1.0, 0.4, 3.0])), [0.0, 0.0, 4.0])
    # Δ = 2, z = round(0.5) = 0 and x/Δ = ±0.5 → 0: rounding is half to even, so every code is 0
    np.testing.assert_array_equal(node.reference(np.array([-1.0, 0.4, 1.0])), [0.0, 0.0, 0.0])


def test_quantizer_hand_example():
    node = Quantizer(bits=2, shape=np.array([3]))
    # Δ = (2 - -1)/3 = 1, z = 1: codes clip(round(x) + 1) = [0, 1, 3] → y = [-1, 0, 2]
    np.testing.assert_array_equal(node.reference(np.array([-1.0, 0.2, 2.0])), [-1.0, 0.0, 2.0])


def test_step_mean_hand_values():
    """The running mean over a token's calls: the reference, and the torch module call by call from a fresh state."""
    x = np.array([[2.0, -4.0], [4.0, 0.0], [0.0, 1.0]])  # three calls of two channels
    np.testing.assert_array_equal(StepMean(shape=[2]).reference(x), [[2.0, -4.0], [3.0, -2.0], [2.0, -1.0]])
    module, state, got = NODE_MAP[StepMean](StepMean(shape=[2])), None, []
    for row in torch.tensor(x):
        y, state = module(row, state=state)
        got.append(y.tolist())
    assert got == [[2.0, -4.0], [3.0, -2.0], [2.0, -1.0]]


def test_elementwise_and_norm_hand_values():
    assert Sigmoid(shape=[1]).reference(np.array([0.0]))[0] == 0.5
    np.testing.assert_array_equal(ReLU2(shape=[3]).reference(np.array([-2.0, 0.0, 3.0])), [0.0, 0.0, 9.0])
    assert SiLU(shape=[1]).reference(np.array([0.0]))[0] == 0.0
    np.testing.assert_allclose(GELU(shape=[2]).reference(np.array([0.0, 1.0])), [0.0, 0.8413447460685429], rtol=1e-15)
    np.testing.assert_array_equal(Product(shape=[2]).reference(np.array([2.0, 3.0]), np.array([4.0, -1.0])),
                                  [8.0, -3.0])
    ln = LayerNorm(weight=np.array([2.0, 2.0]), bias=np.array([1.0, 1.0]), epsilon=0.0)
    np.testing.assert_array_equal(ln.reference(np.array([1.0, 3.0])), [-1.0, 3.0])  # (±1)·2 + 1
    pos = PositionEmbedding(weight=np.array([[1.0, 2.0], [3.0, 4.0], [5.0, 6.0]]))
    np.testing.assert_array_equal(pos.reference(np.zeros((2, 2))), [[1.0, 2.0], [3.0, 4.0]])
    rms = RMSNorm(weight=np.array([1.0, 3.0]), epsilon=0.0)
    np.testing.assert_array_equal(rms.reference(np.array([3.0, 4.0])), [3 / np.sqrt(12.5), 12 / np.sqrt(12.5)])


def test_wkv_hand_values():
    node = WKV(time_decay=np.array([0.0]), time_first=np.array([0.0]), operands="k,v")
    k, v = np.zeros((2, 1)), np.array([[2.0], [4.0]])
    # t=0: e^0·2/e^0 = 2;  t=1: (e^{-0·1+0}·2 + e^0·4)/(1 + 1) = 3
    np.testing.assert_allclose(node.reference(k, v), [[2.0], [3.0]], rtol=0, atol=1e-15)


def test_attention_causal_and_rope_hand_values():
    att = Attention(n_heads=1, n_kv_heads=1, head_dim=1, causal=1, scale=1.0, operands="q,k,v")
    q, k, v = np.zeros((2, 1)), np.zeros((2, 1)), np.array([[2.0], [4.0]])
    np.testing.assert_array_equal(att.reference(q, k, v), [[2.0], [3.0]])  # token 0 sees itself; token 1 averages
    rope = RoPE(n_heads=1, head_dim=2, theta=1.0)  # f_0 = 1: position p rotates by p radians
    y = rope.reference(np.array([[1.0, 0.0], [1.0, 0.0]]))
    np.testing.assert_allclose(y, [[1.0, 0.0], [np.cos(1.0), np.sin(1.0)]], rtol=0, atol=1e-15)


@pytest.mark.parametrize(("make", "field"), [
    (lambda: LayerNorm(weight=np.ones(3), bias=np.ones(2), epsilon=1e-5), "bias"),
    (lambda: LayerNorm(weight=np.ones(3), bias=np.ones(3), epsilon=float("nan")), "epsilon"),
    (lambda: RMSNorm(weight=np.array([1.0, np.nan]), epsilon=1e-5), "weight"),
    (lambda: WKV(time_decay=np.ones(2), time_first=np.ones(3), operands="k,v"), "time_first"),
    (lambda: WKV(time_decay=np.ones(2), time_first=np.ones(2), operands="k"), "operands"),
    (lambda: Attention(n_heads=3, n_kv_heads=2, head_dim=2, causal=1, scale=1.0, operands="q,k,v"), "n_kv_heads"),
    (lambda: RoPE(n_heads=1, head_dim=3, theta=1e4), "head_dim"),
    (lambda: GIF(bits=2, addbit=1, salient=np.array([0, 2])), "salient"),
    (lambda: GIF(bits=0, addbit=1, salient=np.array([0, 1])), "bits"),
    (lambda: Quantizer(bits=2, shape=np.array([0])), "shape"),
    (lambda: Sigmoid(shape=np.array([[2]])), "shape"),
])
def test_bad_fields_name_node_and_field(make, field):
    with pytest.raises(NIRFormatError, match=rf"spikestack\.\w+: field.*'{field}'"):
        make()


def test_missing_field_in_file_names_type_and_field(tmp_path):
    path = tmp_path / "g.nir"
    nir.write(str(path), _graph())
    with h5py.File(path, "r+") as f:
        del f["node/nodes/wkv/time_first"]
    with pytest.raises(NIRFormatError, match=r"spikestack\.WKV: missing field 'time_first'"):
        nir.read(str(path))


def test_operands_must_match_edges():
    graph = _graph()
    graph.edges.remove(("relu2", "wkv"))
    graph.edges.append(("rms", "wkv"))
    with pytest.raises(NIRFormatError, match=r"node 'wkv': field 'operands'"):
        check_operands(graph)
