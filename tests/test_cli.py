"""CLI: the happy path on a tiny graph, and one clear line + exit 2 for every bad input (no traceback)."""

import json
import subprocess
import sys

import nir
import pytest

from spikestack.cli import main
from tests.conftest import make_nir_chain


@pytest.fixture
def nir_file(tmp_path):
    path = tmp_path / "tiny.nir"
    nir.write(str(path), make_nir_chain(vocab=95))
    return path


def test_compile_then_simulate_json(nir_file, tmp_path, capsys):
    art = tmp_path / "art"
    assert main(["compile", str(nir_file), "--target", "loihi2", "-o", str(art)]) == 0
    capsys.readouterr()
    assert main(["simulate", str(art), "--json", "--tokens", "64"]) == 0
    report = json.loads(capsys.readouterr().out)
    for key in ("sops", "energy_j", "latency_s_per_step", "cores", "firing_rate"):
        assert key in report
    assert set(report["firing_rate"]) == {"s1", "s2"} and report["cores"] == 3
    assert report["sops"] > 0 and report["energy_j"] > 0


def test_verify_reference_vs_torch(nir_file, tmp_path, capsys):
    art = tmp_path / "art"
    main(["compile", str(nir_file), "-o", str(art)])
    assert main(["verify", str(art), "--backends", "torch,reference", "--tokens", "16"]) == 0
    assert "bit-exact: yes" in capsys.readouterr().out


def _one_line_error(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert err.startswith("spikestack: error: ") and "\n" not in err and "Traceback" not in err
    return err


def test_missing_file(tmp_path, capsys):
    assert main(["compile", str(tmp_path / "nope.nir"), "-o", str(tmp_path / "a")]) == 2
    assert "nope.nir: file not found" in _one_line_error(capsys)


def test_layer_that_does_not_fit_leaves_no_artifact(nir_file, tmp_path, capsys):
    target = tmp_path / "small.toml"
    text = open("compiler/targets/generic.toml").read().replace("max_axons_in = 1024", "max_axons_in = 4")
    target.write_text(text)
    art = tmp_path / "art"
    assert main(["compile", str(nir_file), "--target", str(target), "-o", str(art)]) == 2
    assert "layer 's2': fan-in 6 exceeds 4 input axons" in _one_line_error(capsys)
    assert not art.exists() and sorted(p.name for p in tmp_path.iterdir()) == ["small.toml", "tiny.nir"]


def test_corrupt_artifact(nir_file, tmp_path, capsys):
    art = tmp_path / "art"
    main(["compile", str(nir_file), "-o", str(art)])
    (art / "manifest.json").write_text("{not json")
    capsys.readouterr()
    assert main(["simulate", str(art)]) == 2
    assert "manifest.json: corrupt JSON" in _one_line_error(capsys)


def test_unknown_target_and_profile(nir_file, tmp_path, capsys):
    assert main(["compile", str(nir_file), "--target", "loihi9", "-o", str(tmp_path / "a")]) == 2
    assert "unknown target 'loihi9'" in _one_line_error(capsys)


def test_exit_code_from_console_entry_point(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "spikestack.cli", "run", str(tmp_path / "missing")],
                          capture_output=True, text=True)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [f"spikestack: error: {tmp_path / 'missing'}: not an artifact "
                                                 "directory (missing)"]


def test_inspect_artifact(nir_file, tmp_path, capsys):
    art = tmp_path / "art"
    main(["compile", str(nir_file), "--target", "generic", "-o", str(art)])
    capsys.readouterr()
    assert main(["inspect", str(art)]) == 0
    out = capsys.readouterr().out
    assert out.startswith("target generic: 3 cores, 4 steps per token, 24-bit state")
    assert "fc1         s1 → s2" in out and "graded" in out
    assert "host traffic per token: 24 values in, 7 values out" in out


def test_foreign_lif_graph_through_the_cli(tmp_path, capsys):
    from tests.conftest import make_lif_graph

    path = tmp_path / "lif.nir"
    nir.write(str(path), make_lif_graph(steps=20))
    art = tmp_path / "art"
    assert main(["compile", str(path), "--target", "loihi1", "-o", str(art)]) == 0
    capsys.readouterr()
    assert main(["run", str(art), "--tokens", "3"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert len(out["output_spike_counts"]) == 3 and set(out["firing_rate"]) == {"lif", "lif_1"}
    assert main(["simulate", str(art), "--json", "--tokens", "3"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["sops"] > 0 and report["target"] == "loihi1"
    assert main(["verify", str(art), "--backends", "torch,reference"]) == 0  # torch runs LIF programs too (#14)
    said = capsys.readouterr().out
    assert "torch" in said and "reference" in said, said


def test_inspect_foreign_artifact(tmp_path, capsys):
    from tests.conftest import make_lif_graph

    path = tmp_path / "lif.nir"
    nir.write(str(path), make_lif_graph(second="LI"))
    main(["compile", str(path), "--target", "loihi1", "-o", str(tmp_path / "art")])
    capsys.readouterr()
    assert main(["inspect", str(tmp_path / "art")]) == 0
    out = capsys.readouterr().out
    assert "40 steps per sample (delayed timing)" in out and "reads final v of 'li' (4 values)" in out
    assert "li (LI: du 4095, dv 205, vth 131071)" in out


def test_compile_calibrates_by_default_and_inspect_shows_it(nir_file, tmp_path, capsys):
    art = tmp_path / "art"
    assert main(["compile", str(nir_file), "-o", str(art), "--calibrate", "32"]) == 0
    capsys.readouterr()
    main(["inspect", str(art)])
    out = capsys.readouterr().out
    assert "quantisation error on 32 validation windows" in out and "spike agreement" in out
    other = tmp_path / "other.nir"
    nir.write(str(other), make_nir_chain(vocab=11))  # not the corpus's vocabulary: compiles, no calibration
    assert main(["compile", str(other), "-o", str(tmp_path / "art2")]) == 0
