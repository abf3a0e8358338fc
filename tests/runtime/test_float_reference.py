"""The float reference (runtime/float_reference.py): the NIR graph's own float equations against the compiled
program, exactly where quantisation is exact and closely where it is not."""

from __future__ import annotations

import numpy as np
import pytest
from spikestack.compiler.from_nir import from_nir
from spikestack.runtime.float_reference import agreement, run_float

from spikestack import api
from spikestack.errors import SpikestackError
from spikestack.evaluation import chain_inputs
from tests.compiler.test_recurrent import cuba_bias_graph, one_pulse, recurrent_graph
from tests.conftest import make_lif_graph


def test_float_reference_equals_the_hand_computed_recurrent_raster():
    """Every weight of this graph is exact in 8 bits (w_eff 2 and 0.75), so the float model spikes where the
    compiled one does: neuron 0 from step 1 on, neuron 1 at 3, 5, 7, 9 (v = 0.75, then 0.375 + 0.75 = 1.125)."""
    trace = run_float(from_nir(recurrent_graph()), one_pulse())
    want = np.array([[0, 1, 1, 1, 1, 1, 1, 1, 1, 1], [0, 0, 0, 1, 0, 1, 0, 1, 0, 1]], np.int8).T
    np.testing.assert_array_equal(trace.spikes["lif"][0], want)
    program = api.compile(recurrent_graph())
    result = api.run(program, one_pulse(), backend="float", float_source=recurrent_graph())
    assert result.output_spike_counts == [[9, 4]]
    check = api.verify(program, ("reference", "torch"), inputs=one_pulse(), float_source=recurrent_graph())
    assert check.bit_exact
    assert check.float_agreement == {"raster_agreement": 1.0, "output_layer": "lif",
                                     "output_spike_counts": {"compiled": [9, 4], "float": [9, 4]},
                                     "output_count_agreement": [1.0, 1.0]}


def test_float_reference_cubalif_bias_transient():
    """NIR's CubaLIF takes the bias through its synapse: I_s = 0.5, 0.75, 0.875, … and v = 0.25, 0.5, … (dt/τ =
    1/2), while the compiled bias adds the steady state to v from step 0 (docs/foreign_snn.md). Both approach
    R·w_in·b = 1."""
    graph = from_nir(cuba_bias_graph(threshold=10.0))
    pop = graph.populations[0]
    v, syn = {pop.name: np.zeros((1, 1))}, {pop.name: np.zeros((1, 1))}
    from spikestack.runtime.float_reference import _coefficients, _step

    values = []
    for _ in range(3):
        _step(pop, v, syn, np.ones((1, 1)), _coefficients(pop, graph.dt))
        values.append(float(v[pop.name][0, 0]))
    assert values == [0.25, 0.5, 0.6875]  # v ← v/2 + I_s/2 with I_s = 0.5, 0.75, 0.875


@pytest.mark.parametrize("second", ["LIF", "CubaLIF"])
def test_float_reference_agrees_with_the_compiled_program(second):
    """A random 10-12-4 LIF graph, 8 samples of seeded Bernoulli(0.2) events: quantisation (8-bit weights,
    rounded decays) changes a few raster entries, a wrong graph would change most."""
    graph = make_lif_graph(seed=1, steps=40, second=second)
    program = api.compile(graph)
    x = chain_inputs(program, 8).inputs
    compiled = api.run(program, x).trace
    result = agreement(program, compiled, run_float(from_nir(graph), x))
    assert result["raster_agreement"] >= 0.95
    assert result["output_layer"] == program.populations[-1].name
    assert len(result["output_count_agreement"]) == 4
    # the same check against another graph's float model (other weights) falls below the bar: it discriminates
    wrong = agreement(program, compiled, run_float(from_nir(make_lif_graph(seed=2, steps=40, second=second)), x))
    assert wrong["raster_agreement"] < 0.93


def test_float_source_must_be_the_compiled_graph():
    program = api.compile(recurrent_graph())
    with pytest.raises(SpikestackError, match="are not the artifact's"):
        api.run(program, one_pulse(), backend="float", float_source=make_lif_graph(steps=10))
    with pytest.raises(SpikestackError, match="needs the NIR file"):
        api.run(program, one_pulse(), backend="float")
