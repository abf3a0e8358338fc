"""Unrolled convolutions, recurrence and the producers' files on Lava's stock LIF and Dense: spike for spike equal
to the reference executor (short runs)."""

from pathlib import Path

import numpy as np
import pytest
from spikestack.compiler.pipeline import compile_graph
from spikestack.runtime import reference
from spikestack.runtime.lava import backend as lava_backend

from tests.fixtures.producers.paper_nets import cnn, event_frames, recurrent

pytestmark = pytest.mark.lava
FIXTURES = Path(__file__).parent.parent / "tests" / "fixtures" / "producers"


@pytest.mark.parametrize("make,shape,steps", [(cnn, (2, 34, 34), 12), (recurrent, (12,), 20)])
def test_paper_networks_on_lava(make, shape, steps):
    program = compile_graph(make(steps=steps), "loihi1")
    x = event_frames(1, steps, shape, 0.15)
    ref, lava = reference.run(program, x), lava_backend.run(program, x)
    for name, spikes in ref.spikes.items():
        np.testing.assert_array_equal(spikes, lava.spikes[name])
    assert int(ref.spikes[program.populations[0].name].sum()) > 0


@pytest.mark.parametrize("name,dt", [("sinabs_cnn", 1.0), ("snntorch_mlp", None)])
def test_producer_files_on_lava(name, dt):
    program = compile_graph(FIXTURES / f"{name}.nir", "loihi2", dt=dt, steps=20)
    x = (np.random.default_rng(0).random((1, 20, program.host_input.size)) < 0.3).astype(np.int64)
    ref, lava = reference.run(program, x), lava_backend.run(program, x)
    for pop, spikes in ref.spikes.items():
        np.testing.assert_array_equal(spikes, lava.spikes[pop])
