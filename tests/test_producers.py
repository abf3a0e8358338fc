"""NIR files written by snnTorch 1.0.0, Norse 1.1.0, Sinabs 3.1.3 and Rockpool 3.1.0's own export functions
(tests/fixtures/producers/make_fixtures.py made them): compile → run on a given input → torch bit-exact → agreement
with the float reference of the graph's own equations. Lava: hwtests/test_conv_lava.py."""

from pathlib import Path

import numpy as np
import pytest
from spikestack.compiler.from_nir import from_nir, read_nir
from spikestack.compiler.pipeline import compile_graph
from spikestack.runtime import reference, torch_fakequant
from spikestack.runtime.float_reference import agreement, run_float

FIXTURES = Path(__file__).parent / "fixtures" / "producers"
# file → the time base to compile with (None: the graph's own / spikestack's default). Sinabs' IAF integrates one
# unit per step, so its graph means dt = 1 s (NIR's IF: dv/dt = R·I). Rockpool's LIFTorch ran at dt = 1 ms
# (make_fixtures.py), which its NIR file does not record. Norse and Rockpool write Input/Output as [1, N]: the
# reader drops that batch dimension with a warning (models/nir/io.py).
# Norse 1.1.0 wrote tau = 1e-6 s for tau_mem_inv = 100/s at its dt = 1e-4 s (dt/tau_mem_inv, not 1/tau_mem_inv):
# the file's own equations then need dt <= 1e-6 s, which is what our error message suggests.
PRODUCERS = {"snntorch_mlp": None, "norse_mlp": 1e-6, "sinabs_cnn": 1.0, "rockpool_mlp": 1e-3}
STEPS = 100  # Rockpool's τ = 20 ms at dt = 1 ms: its output layer first spikes after ~40 steps


def compiled(name: str):
    path = FIXTURES / f"{name}.nir"
    program = compile_graph(path, "loihi2", dt=PRODUCERS[name], steps=STEPS)
    return path, program


@pytest.mark.parametrize("name", sorted(PRODUCERS))
def test_producer_file_runs_bit_exact_and_close_to_its_float_equations(name):
    path, program = compiled(name)
    x = (np.random.default_rng(0).random((2, STEPS, program.host_input.size)) < 0.3).astype(np.int64)
    ref, tor = reference.run(program, x), torch_fakequant.run(program, x)
    for pop, spikes in ref.spikes.items():
        np.testing.assert_array_equal(spikes, tor.spikes[pop])
    assert int(ref.readout.sum()) > 0  # the output layer spikes: a real comparison
    floating = run_float(from_nir(read_nir(path), dt=PRODUCERS[name], steps=STEPS), x)
    agree = agreement(program, ref, floating)
    assert agree["raster_agreement"] >= 0.98, agree


def test_sinabs_cnn_is_unrolled_convolution():
    _, program = compiled("sinabs_cnn")
    assert program.host_input.size == 2 * 8 * 8 and program.populations[0].size == 3 * 8 * 8
    conv = program.projections[0]  # 3×3 kernel, padding 1, 2 input channels: at most 18 non-zero synapses a row
    assert int((np.asarray(conv.weight) != 0).sum(1).max()) <= 18
