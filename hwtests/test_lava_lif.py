"""Foreign NIR LIF graphs on Lava's *stock* fixed_pt LIF (PyLifModelBitAcc): our reference executor must match
Lava's own implementation spike for spike, on a Loihi 1 target (binary spikes, CUBA-LIF only)."""

import numpy as np
import pytest
from spikestack.compiler.pipeline import compile_graph
from spikestack.runtime import reference
from spikestack.runtime.lava import backend as lava_backend
from spikestack.runtime.verify import first_divergence

from tests.conftest import make_lif_graph

pytestmark = pytest.mark.lava


@pytest.mark.parametrize("seed,target,second", [(0, "loihi1", "LIF"), (5, "generic", "LIF"),
                                                (1, "loihi1", "CubaLIF"), (2, "loihi2", "IF")])
def test_stock_lava_lif_equals_reference(seed, target, second):
    program = compile_graph(make_lif_graph(seed=seed, hidden=20, steps=30, second=second), target)
    x = (np.random.default_rng(seed).random((2, 30, 10)) < 0.3).astype(np.int64)
    ref, lava = reference.run(program, x), lava_backend.run(program, x)
    assert first_divergence(program, ref, lava, ("reference", "lava")) is None
    last = program.populations[-1].name
    assert int(ref.spikes["lif"].sum()) > 10 and int(ref.spikes[last].sum()) > 0  # real activity compared
    np.testing.assert_array_equal(ref.readout, lava.readout)


@pytest.mark.parametrize("first,second", [("Threshold", "LIF"), ("LIF", "LI")])
def test_delay_threshold_and_li_on_lava(first, second):
    """NIR Delay → Lava DelayDense, Threshold → LIF with full decay, LI → never-spiking LIF read out by its v."""
    delays = np.arange(20) % 5
    program = compile_graph(make_lif_graph(seed=3, hidden=20, steps=30, first=first, second=second,
                                           delay_steps=delays), "loihi1")
    x = (np.random.default_rng(3).random((2, 30, 10)) < 0.3).astype(np.int64)
    ref, lava = reference.run(program, x), lava_backend.run(program, x)
    assert first_divergence(program, ref, lava, ("reference", "lava")) is None
    np.testing.assert_array_equal(ref.readout, lava.readout)
    assert int(ref.spikes[program.populations[0].name].sum()) > 10
