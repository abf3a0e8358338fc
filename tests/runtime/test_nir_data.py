"""Traces as NIR recordings: written with stock nir.write_data, read back with nir.read_data, levels intact."""

import nir
import numpy as np
from spikestack.runtime import reference
from spikestack.runtime.nir_data import layer_events, write_nir_data


def test_layer_events_by_hand():
    levels = np.array([[[0, 1], [-1, 0]], [[0, 0], [0, 2]]])  # 2 samples, 2 steps, 2 neurons
    ev = layer_events(levels, dt=0.5)
    assert ev.idx.tolist() == [[1, 0], [1, -1]]
    assert ev.time.tolist() == [[0.0, 0.5], [0.5, np.inf]]
    assert ev.value.tolist() == [[1.0, -1.0], [2.0, 0.0]]
    assert (ev.n_neurons, ev.t_max) == (2, 1.0)


def test_trace_round_trips_through_nir_read_data(program, token_ids, tmp_path):
    trace = reference.run(program, token_ids[:6])
    path = tmp_path / "trace.nir"
    write_nir_data(trace, path)
    back = nir.read_data(str(path))
    for pop, levels in trace.spikes.items():
        ev = back.nodes[pop].observables["spikes"]
        assert isinstance(ev, nir.ValuedEventData)
        grid = ev.to_time_gridded(dt=1.0).data  # NIR's own conversion back to a [samples, steps, n] grid of values
        np.testing.assert_array_equal(grid, levels)
        rebuilt = np.zeros(levels.shape)
        for i in range(levels.shape[0]):
            ok = ev.idx[i] >= 0
            rebuilt[i, ev.time[i][ok].astype(int), ev.idx[i][ok]] = ev.value[i][ok]
        np.testing.assert_array_equal(rebuilt, levels)
