"""`--input FILE` on run, verify and simulate, `--backend float` and `verify --nir` (issue #14): the user's own
spike rasters, checked at the border; a bad file is one line, exit 2, nothing written."""

from __future__ import annotations

import json

import nir
import numpy as np
import pytest

from spikestack.cli import main
from tests.compiler.test_recurrent import recurrent_graph


@pytest.fixture(scope="module")
def artifact(tmp_path_factory):
    folder = tmp_path_factory.mktemp("input")
    nir.write(str(folder / "rec.nir"), recurrent_graph())
    assert main(["compile", str(folder / "rec.nir"), "-o", str(folder / "art"), "--quiet"]) == 0
    x = np.zeros((2, 10, 1), np.int8)
    x[:, 0, 0] = 1  # both samples: one pulse at step 0 (the hand-computed raster of test_recurrent)
    np.save(folder / "x.npy", x)
    np.savez(folder / "x.npz", inputs=x.astype(bool))
    return folder


def _one_line(capsys) -> str:
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("spikestack: error: "), err
    return err


def test_run_on_the_users_spikes(artifact, capsys):
    trace = artifact / "t.npz"
    for name in ("x.npy", "x.npz"):
        capsys.readouterr()
        assert main(["run", str(artifact / "art"), "--input", str(artifact / name), "--trace", str(trace),
                     "--force"]) == 0
        out = json.loads(capsys.readouterr().out)
        assert out["inputs"] == f"file {artifact / name}" and out["tokens"] == 2
        assert out["output_spike_counts"] == [[9, 4], [9, 4]]
        assert out["layer_spike_counts"] == {"lif": [18, 8]}
        with np.load(trace) as saved:
            assert int(np.asarray(saved["spikes/lif"]).sum()) == 26  # the full rasters: 2 × (9 + 4)


def test_float_backend_and_verify_against_the_nir(artifact, capsys):
    x, nir_file = str(artifact / "x.npy"), str(artifact / "rec.nir")
    assert main(["run", str(artifact / "art"), "--input", x, "--backend", "float", "--nir", nir_file]) == 0
    assert json.loads(capsys.readouterr().out)["output_spike_counts"] == [[9, 4], [9, 4]]
    assert main(["verify", str(artifact / "art"), "--input", x, "--backends", "torch,reference",
                 "--nir", nir_file]) == 0
    line = capsys.readouterr().out
    assert "bit-exact: yes" in line and "float reference: 100.00% of raster entries equal" in line
    assert main(["run", str(artifact / "art"), "--input", x, "--backend", "float"]) == 2
    assert "needs the NIR file" in _one_line(capsys)


def _bad_files(folder) -> dict[str, str]:
    """name → the part of the one-line error that names what is wrong."""
    np.save(folder / "shape.npy", np.zeros((2, 9, 1), np.int64))
    np.save(folder / "dtype.npy", np.zeros((2, 10, 1), np.complex64))
    np.save(folder / "analog.npy", np.full((2, 10, 1), 0.5))
    np.save(folder / "pickle.npy", np.array([{"x": 1}], dtype=object), allow_pickle=True)
    np.savez(folder / "two.npz", a=np.zeros(1), b=np.zeros(1))
    return {"shape.npy": "shape [2, 9, 1], expected [samples, 10, 1]",
            "dtype.npy": "dtype complex64 — expected bool, integer or float",
            "analog.npy": "value 0.5 at [0, 0, 0]; input 'in' is a spike input",
            "pickle.npy": "pickled Python objects, which are never loaded",
            "two.npz": "one array or one named 'inputs', found ['a', 'b']",
            "missing.npy": "input file not found"}


@pytest.mark.parametrize("command", ["run", "verify", "simulate"])
def test_bad_input_files_one_line_nothing_written(artifact, capsys, command):
    for name, says in _bad_files(artifact).items():
        out = artifact / f"out_{command}.npz"
        extra = {"run": ["--trace", str(out)], "verify": ["--backends", "reference,torch"],
                 "simulate": ["--report", str(artifact / f"out_{command}.md")]}[command]
        capsys.readouterr()
        assert main([command, str(artifact / "art"), "--input", str(artifact / name), *extra]) == 2, name
        err = _one_line(capsys)
        assert f"{artifact / name}: " in err and says in err, err
        assert not out.exists() and not (artifact / f"out_{command}.md").exists()


def test_simulate_on_the_users_spikes(artifact, capsys):
    """Two samples of the hand-computed raster: 19 synaptic ops each (test_recurrent)."""
    assert main(["simulate", str(artifact / "art"), "--input", str(artifact / "x.npy"), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["sops"] == 2 * 19
