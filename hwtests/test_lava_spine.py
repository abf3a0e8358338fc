"""Compiled programs on Lava's CPU backend (Loihi2SimCfg, fixed_pt) must agree with the reference executor and the
torch fake-quant model spike for spike, at every layer, token and step."""

import numpy as np
import pytest
from spikestack.compiler.pipeline import compile_graph
from spikestack.runtime import reference
from spikestack.runtime.lava import backend as lava_backend
from spikestack.runtime.verify import first_divergence, verify

from tests.conftest import make_nir_chain

pytestmark = pytest.mark.lava


@pytest.mark.parametrize("levels,target", [(1, "loihi2"), (3, "generic")])
def test_lava_equals_reference_on_small_graphs(levels, target):
    program = compile_graph(make_nir_chain(seed=7, levels=levels, hidden=9), target)
    ids = np.random.default_rng(2).integers(0, 11, size=(6, 2))
    ref, lava = reference.run(program, ids), lava_backend.run(program, ids)
    assert first_divergence(program, ref, lava, ("reference", "lava")) is None
    np.testing.assert_array_equal(ref.readout, lava.readout)
    assert sum(int((s != 0).sum()) for s in ref.spikes.values()) > 0  # the comparison saw real spikes


def test_shipped_checkpoint_three_way_bit_exact():
    from spikestack.models.bispike_mlp import evaluation_set, load_checkpoint
    from spikestack.models.nir.export import bispike_mlp_to_nir

    from spikestack.demo import SHIPPED

    model, _ = load_checkpoint(SHIPPED)
    program = compile_graph(bispike_mlp_to_nir(model), "loihi2")
    x, _ = evaluation_set(12)
    traces, problems = verify(program, x)
    assert problems == []
    assert set(traces) == {"torch", "reference", "lava"}
    assert traces["lava"].saturations == {p.name: 0 for p in program.populations}


def test_simulator_counts_match_lava_run():
    """The simulator's event counts computed from a Lava trace equal those from the reference trace."""
    from spikestack.simulators.counts import count_events

    program = compile_graph(make_nir_chain(seed=3, hidden=12), "generic")
    ids = np.random.default_rng(4).integers(0, 11, size=(5, 2))
    a = count_events(program, reference.run(program, ids))
    b = count_events(program, lava_backend.run(program, ids))
    np.testing.assert_array_equal(a.synaptic_ops, b.synaptic_ops)
    np.testing.assert_array_equal(a.messages_out, b.messages_out)


def test_generation_on_lava_equals_reference():
    from spikestack.models.bispike_mlp import load_checkpoint
    from spikestack.models.data import load_corpus
    from spikestack.models.nir.export import bispike_mlp_to_nir
    from spikestack.runtime.generate import generate

    from spikestack.demo import SHIPPED

    model, _ = load_checkpoint(SHIPPED)
    program = compile_graph(bispike_mlp_to_nir(model), "loihi2")
    vocab = load_corpus().vocab
    on_ref = generate(program, vocab, "def ", 3, reference.run)
    on_lava = generate(program, vocab, "def ", 3, lava_backend.run)
    assert on_lava == on_ref and len(on_ref[1]) == 3


@pytest.mark.parametrize("encoding,levels", [("unary", 2), ("bitserial", 3)])
def test_binary_encodings_on_lava(encoding, levels):
    """Unary (2K planes, one Dense ±W) and bit-serial (one Dense per bit, weight_exp = b) on Lava equal the
    graded reference spike for spike."""
    graph = make_nir_chain(seed=11, levels=levels, hidden=7)
    lowered = compile_graph(graph, "loihi2", encoding=encoding)
    graded = compile_graph(graph, "loihi2", encoding="graded")
    ids = np.random.default_rng(3).integers(0, 11, size=(5, 2))
    ref, lava = reference.run(graded, ids), lava_backend.run(lowered, ids)
    assert first_divergence(graded, ref, lava, ("graded reference", f"{encoding} lava")) is None
    np.testing.assert_array_equal(ref.readout, lava.readout)
    assert int(np.abs(ref.spikes["s1"]).max()) >= 2  # multi-level spikes really crossed the planes
