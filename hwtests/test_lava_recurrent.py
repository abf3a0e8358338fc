"""Recurrent foreign graphs on Lava's stock LIF and Dense (issue #14): a feedback Dense from a LIF to itself and,
through a DelayDense, to an earlier LIF, bit-exact with the reference executor and the torch backend."""

import numpy as np
import pytest

from spikestack import api
from tests.compiler.test_recurrent import one_pulse, recurrent_graph, two_layer_recurrent

pytestmark = pytest.mark.lava


def test_hand_computed_recurrent_raster_on_lava():
    program = api.compile(recurrent_graph(), "loihi2")
    result = api.run(program, one_pulse(), backend="lava")
    want = np.array([[0, 1, 1, 1, 1, 1, 1, 1, 1, 1], [0, 0, 0, 1, 0, 1, 0, 1, 0, 1]], np.int8).T
    np.testing.assert_array_equal(result.trace.spikes["lif"][0], want)


def test_two_layer_recurrent_on_lava_bit_exact():
    program = api.compile(two_layer_recurrent(steps=20), "loihi2")
    x = (np.random.default_rng(1).random((1, 20, 6)) < 0.3).astype(np.int64)
    check = api.verify(program, ("reference", "torch", "lava"), inputs=x)
    assert check.bit_exact, check.problems
    assert int(check.traces["lava"].spikes["a"].sum()) > 10
