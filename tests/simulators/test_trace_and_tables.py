"""`simulate --trace` reuses a saved trace; the sweep's console table shows every dimension and whole errors; the
core-load map is per core."""

import json

import nir
import numpy as np
from spikestack.simulators.plots import core_load_grid

from spikestack.cli import main
from spikestack.sweep import format_table
from tests.conftest import make_nir_chain


def test_simulate_prices_a_saved_trace_like_a_fresh_run(tmp_path, capsys):
    src = tmp_path / "tiny.nir"
    nir.write(str(src), make_nir_chain(vocab=95))
    art = tmp_path / "art"
    assert main(["compile", str(src), "-o", str(art)]) == 0
    assert main(["run", str(art), "--tokens", "12", "--trace", str(tmp_path / "t.npz")]) == 0
    capsys.readouterr()
    assert main(["simulate", str(art), "--tokens", "12", "--json"]) == 0
    fresh = json.loads(capsys.readouterr().out)
    assert main(["simulate", str(art), "--trace", str(tmp_path / "t.npz"), "--json"]) == 0
    saved = json.loads(capsys.readouterr().out)
    assert saved["tokens"] == 12
    for key in ("sops", "spikes", "messages", "hops", "neuron_updates_active", "energy_j"):
        assert saved[key] == fresh[key], key


def test_simulate_refuses_a_trace_of_another_program(tmp_path, capsys):
    src = tmp_path / "tiny.nir"
    nir.write(str(src), make_nir_chain(vocab=95))
    art = tmp_path / "art"
    assert main(["compile", str(src), "-o", str(art)]) == 0
    bad = tmp_path / "bad.npz"
    np.savez(bad, **{"spikes/bispike": np.zeros((2, 3, 9), np.int8)}, inputs=np.zeros((2, 6), np.int64),
             readout=np.zeros((2, 7), np.int64), logits=np.zeros((2, 7)))
    capsys.readouterr()
    assert main(["simulate", str(art), "--trace", str(bad)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("spikestack: error: ") and "bad.npz" in err[0]
    assert main(["simulate", str(art), "--trace", str(tmp_path / "missing.npz")]) == 2
    assert "trace file not found" in capsys.readouterr().err


def test_sweep_table_shows_encoding_and_whole_error():
    error = "layer 'hidden': 5000 neurons exceed max_neurons = 1024 of target loihi1 " + "x" * 80 + " END"
    rows = [{"target": "loihi2", "encoding": "auto:graded", "profile": "p", "cores": 3, "tiles": 1,
             "sops_per_token": 1.5, "energy_per_token_j": 2e-9, "tokens_per_s": None, "error": ""},
            {"target": "loihi1", "encoding": "unary", "profile": "p", "cores": None, "tiles": None,
             "sops_per_token": None, "energy_per_token_j": None, "tokens_per_s": None, "error": error}]
    lines = format_table(rows).splitlines()
    assert lines[0].split() == ["target", "encoding", "profile", "cores", "tiles", "sops_per_token",
                                "energy_per_token_j", "tokens_per_s", "error"]
    assert "auto:graded" in lines[1] and "unary" in lines[2]
    assert lines[2].endswith(" END")  # not cut at 60 characters


def test_core_load_map_is_per_core():
    # four cores on tile (0, 0) (slots 0..3) and one on tile (1, 0): 4 + 1 cells, not 2 tile sums
    per_core = [{"core": i, "tile": [0, 0, 0], "slot": i, "synaptic_ops_per_step": float(i + 1)} for i in range(4)]
    per_core.append({"core": 4, "tile": [0, 1, 0], "slot": 0, "synaptic_ops_per_step": 10.0})
    grid = core_load_grid({"per_core": per_core}, chip=0)
    assert grid.shape == (1, 8)
    assert grid[0, :5].tolist() == [1.0, 2.0, 3.0, 4.0, 10.0]
    assert np.isnan(grid[0, 5:]).all()  # slots 1..3 of tile (1, 0) are unused
