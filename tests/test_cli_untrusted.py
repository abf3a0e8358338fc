"""Untrusted input through the CLI (issue #11, items 4 and 5): every bad number, path, target or profile is one line
`spikestack: error: …` naming the option or file and the limit, exit code 2, no traceback, and nothing written:
the output path does not exist afterwards and every input keeps its bytes."""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

import nir
import pytest

from spikestack import cli
from spikestack.cli import main
from tests.conftest import make_lif_graph, make_nir_chain

REPO = Path(__file__).resolve().parents[1]
CHECKPOINT = REPO / "models" / "checkpoints" / "bispike-mlp.pt"
GENERIC_TARGET = (REPO / "compiler" / "targets" / "generic.toml").read_text()
LOIHI2_PROFILE = (REPO / "simulators" / "profiles" / "loihi2_assumed.toml").read_text()


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """A token artifact (the tiny chain on the corpus's 95 ids) and a foreign LIF artifact, compiled once."""
    root = tmp_path_factory.mktemp("built")
    nir.write(str(root / "tiny.nir"), make_nir_chain(vocab=95))
    nir.write(str(root / "lif.nir"), make_lif_graph(steps=20))
    assert main(["compile", str(root / "tiny.nir"), "--calibrate", "0", "-o", str(root / "art")]) == 0
    assert main(["compile", str(root / "lif.nir"), "--target", "loihi1", "-o", str(root / "lif.art")]) == 0
    return root


def _snapshot(folder: Path) -> dict[str, bytes | None]:
    return {str(p.relative_to(folder)): p.read_bytes() if p.is_file() else None for p in sorted(folder.rglob("*"))}


def _refused(capsys, argv: list[str], *needles: str) -> str:
    """Run argv in-process; exit code 2 (argparse's SystemExit or main's return), one error line holding needles."""
    capsys.readouterr()
    try:
        code = main(argv)
    except SystemExit as exc:
        code = exc.code
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert code == 2, captured.err
    assert len(lines) == 1 and lines[0].startswith("spikestack: error: "), captured.err
    assert "Traceback" not in captured.err and "usage:" not in captured.err
    for needle in needles:
        assert needle in lines[0], lines[0]
    return lines[0]


# ------------------------------------------------------------------------------------------- outputs and inputs
def test_export_never_overwrites_its_input_even_with_force(tmp_path, capsys):
    ckpt = tmp_path / "in.pt"
    shutil.copy(CHECKPOINT, ckpt)
    before = ckpt.read_bytes()
    _refused(capsys, ["export", str(ckpt), "-o", str(ckpt)], "is this command's input", "in.pt")
    _refused(capsys, ["export", str(ckpt), "-o", str(ckpt), "--force"], "even with --force")
    assert ckpt.read_bytes() == before and sorted(p.name for p in tmp_path.iterdir()) == ["in.pt"]


def test_export_refuses_existing_file_unless_forced_and_writes_atomically(tmp_path, capsys):
    out = tmp_path / "model.nir"
    out.write_text("my notes")
    _refused(capsys, ["export", str(CHECKPOINT), "-o", str(out)], "model.nir", "exists", "--force")
    assert out.read_text() == "my notes"
    assert main(["export", str(CHECKPOINT), "-o", str(out), "--force"]) == 0
    assert "wrote" in capsys.readouterr().out
    assert len(nir.read(str(out)).nodes) == 10
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.nir"]  # no temporary file left behind


def test_export_to_a_folder_or_a_missing_folder(tmp_path, capsys):
    (tmp_path / "dir").mkdir()
    _refused(capsys, ["export", str(CHECKPOINT), "-o", str(tmp_path / "dir")], "is a folder")
    _refused(capsys, ["export", str(CHECKPOINT), "-o", str(tmp_path / "no" / "m.nir")],
             "folder does not exist", str(tmp_path / "no"))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["dir"] and not any((tmp_path / "dir").iterdir())


def test_a_failed_write_keeps_the_old_file_and_leaves_no_temporary(tmp_path):
    from spikestack.errors import SpikestackError
    from spikestack.outputs import atomic_write

    out = tmp_path / "t.csv"
    out.write_text("old")

    def half_then_fail(tmp: Path) -> None:
        tmp.write_text("half")
        raise OSError(28, "No space left on device")

    with pytest.raises(SpikestackError, match=r"t.csv: cannot write \(No space left on device\)"):
        atomic_write(out, half_then_fail)
    assert out.read_text() == "old" and [p.name for p in tmp_path.iterdir()] == ["t.csv"]


def test_compile_output_under_a_file(built, tmp_path, capsys):
    (tmp_path / "afile").write_text("x")
    _refused(capsys, ["compile", str(built / "tiny.nir"), "-o", str(tmp_path / "afile" / "sub")],
             "afile", "is a file, not a folder")
    _refused(capsys, ["compile", str(built / "tiny.nir"), "-o", str(tmp_path / "afile")], "is a file, not a folder")
    assert _snapshot(tmp_path) == {"afile": b"x"}


def test_run_trace_paths(built, tmp_path, capsys):
    art = str(built / "art")
    _refused(capsys, ["run", art, "--tokens", "2", "--trace", str(tmp_path / "a" / "b" / "t.npz")],
             "--trace", "folder does not exist", str(tmp_path / "a" / "b"))
    (tmp_path / "t.npz").write_bytes(b"keep")
    _refused(capsys, ["run", art, "--tokens", "2", "--trace", str(tmp_path / "t.npz")], "exists", "--force")
    _refused(capsys, ["run", art, "--tokens", "2", "--trace", str(tmp_path / "t.txt")], ".npz or .nir")
    assert _snapshot(tmp_path) == {"t.npz": b"keep"}
    assert main(["run", art, "--tokens", "2", "--trace", str(tmp_path / "t.npz"), "--force"]) == 0
    from spikestack.runtime.trace import Trace

    assert Trace.load(tmp_path / "t.npz").tokens == 2 and sorted(p.name for p in tmp_path.iterdir()) == ["t.npz"]


def test_simulate_plots_and_report_paths(built, tmp_path, capsys):
    art = str(built / "art")
    (tmp_path / "afile").write_text("x")
    _refused(capsys, ["simulate", art, "--tokens", "2", "--plots", str(tmp_path / "afile")],
             "--plots", "is a file, not a folder")
    _refused(capsys, ["simulate", art, "--tokens", "2", "--report", str(tmp_path / "missing" / "r.md")],
             "--report", "folder does not exist", str(tmp_path / "missing"))
    _refused(capsys, ["simulate", art, "--tokens", "2", "--report", str(tmp_path / "afile")],
             "writes Markdown (*.md) or HTML (*.html)")
    (tmp_path / "p").mkdir()
    (tmp_path / "p" / "core_load.png").write_bytes(b"mine")
    _refused(capsys, ["simulate", art, "--tokens", "2", "--plots", str(tmp_path / "p")], "core_load.png", "--force")
    assert _snapshot(tmp_path) == {"afile": b"x", "p": None, "p/core_load.png": b"mine"}


def test_simulate_json_never_prints_nan(built, monkeypatch, capsys):
    from spikestack import api
    from spikestack.results import Report

    real = api.simulate

    def with_nan(*args, **kwargs):
        report = real(*args, **kwargs).data
        return Report(dict(report, firing_rate=dict(report["firing_rate"], s2=float("nan"))))

    monkeypatch.setattr(api, "simulate", with_nan)
    _refused(capsys, ["simulate", str(built / "art"), "--tokens", "2", "--json"], "firing_rate.s2 is nan",
             "simulation report")
    assert capsys.readouterr().out == ""


def test_demo_checks_everything_before_writing(tmp_path, capsys):
    out = tmp_path / "demo"
    _refused(capsys, ["demo", "--out", str(out), "--tokens", "0"], "--tokens", ">= 1", "got 0")
    _refused(capsys, ["demo", "--out", str(out), "--tokens", "999999999"], "--tokens 999999999", "1..45891")
    _refused(capsys, ["demo", "--out", str(out), "--tokens", "8", "--verify-tokens", "9"], "1..8", "--verify-tokens")
    assert not out.exists()
    out.write_text("x")
    _refused(capsys, ["demo", "--out", str(out), "--tokens", "8"], "is a file, not a folder")
    out.unlink()
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    _refused(capsys, ["demo", "--out", str(out), "--tokens", "8"], "notes.txt", "which the demo did not write")
    assert _snapshot(tmp_path) == {"demo": None, "demo/notes.txt": b"mine"}


def test_train_refuses_an_existing_checkpoint_before_training(tmp_path, capsys):
    out = tmp_path / "m.pt"
    out.write_bytes(b"weights")
    _refused(capsys, ["train", "bispike-mlp", "--steps", "1", "-o", str(out)], "m.pt", "exists", "--force")
    _refused(capsys, ["train", "bispike-mlp", "--steps", "1", "-o", str(tmp_path / "no" / "m.pt")],
             "folder does not exist")
    assert _snapshot(tmp_path) == {"m.pt": b"weights"}


def test_generate_from_a_lif_artifact_is_one_line(built, capsys):
    _refused(capsys, ["generate", str(built / "lif.art"), "--tokens", "2"], "lif.art", "no vocabulary")


# ---------------------------------------------------------------------------------------------------- numbers
@pytest.mark.parametrize("argv, needles", [
    (["generate", "{art}", "--tokens", "999999999999"], ("--tokens", "0..10000", "999999999999")),
    (["generate", "{art}", "--tokens", "-1"], ("--tokens", "0..10000")),
    (["compile", "{nir}", "-o", "{out}", "--dt", "nan"], ("--dt", "(0, 1]", "nan")),
    (["compile", "{nir}", "-o", "{out}", "--dt", "inf"], ("--dt", "(0, 1]", "inf")),
    (["compile", "{nir}", "-o", "{out}", "--dt", "0"], ("--dt", "(0, 1]")),
    (["compile", "{nir}", "-o", "{out}", "--dt=-1e-4"], ("--dt", "(0, 1]")),
    (["compile", "{nir}", "-o", "{out}", "--dt", "fast"], ("--dt", "'fast'")),
    (["compile", "{nir}", "-o", "{out}", "--steps", "0"], ("--steps", "1..100000")),
    (["compile", "{nir}", "-o", "{out}", "--calibrate", "-1"], ("--calibrate", "0..16384")),
    (["compile", "{nir}", "-o", "{out}", "--calibrate", "100000"], ("--calibrate", "0..16384")),
    (["train", "bispike-mlp", "-o", "{out}", "--steps", "0"], ("--steps", "1..1000000")),
    (["train", "bispike-mlp", "-o", "{out}", "--seed", "-1"], ("--seed", "0..4294967295")),
    (["train", "bispike-mlp", "-o", "{out}", "--seed", "4294967296"], ("--seed", "0..4294967295")),
    (["run", "{art}", "--tokens", "abc"], ("--tokens", "integer", "'abc'")),
    (["run", "{art}", "--tokens", "0"], ("--tokens", ">= 1")),
    (["simulate", "{art}", "--tokens", "1.5"], ("--tokens", "'1.5'")),
    (["sweep", "{nir}", "--workers", "0"], ("--workers", "1..2")),
    (["sweep", "{nir}", "--workers", "3"], ("--workers", "1..2")),
    (["verify", "{art}", "--tokens", "0"], ("--tokens", ">= 1")),
    (["demo", "--out", "{out}", "--verify-tokens", "0"], ("--verify-tokens", ">= 1")),
])
def test_every_typed_number_is_range_checked(built, tmp_path, capsys, argv, needles):
    out = tmp_path / "out"
    argv = [a.format(art=built / "art", nir=built / "tiny.nir", out=out) for a in argv]
    _refused(capsys, argv, *needles)
    assert not out.exists()


@pytest.mark.parametrize("command", ["run", "simulate", "verify"])
def test_tokens_beyond_the_validation_text(built, capsys, command):
    _refused(capsys, [command, str(built / "art"), "--tokens", "999999999999"], "--tokens 999999999999",
             "use at most 45897")


def test_lif_samples_are_bounded_by_memory(built, capsys):
    # 20 steps x 10 inputs per sample: 2^26 values hold 335,544 samples
    _refused(capsys, ["run", str(built / "lif.art"), "--tokens", "999999999999"], "use at most 335544 --tokens")


# ---------------------------------------------------------------------------------------- the error line itself
def test_parser_errors_are_one_line(capsys):
    _refused(capsys, ["frobnicate"], "invalid choice: 'frobnicate'")
    _refused(capsys, ["run"], "the following arguments are required: artifact")
    _refused(capsys, ["run", "x", "--backend", "gpu"], "--backend", "'gpu'")


@pytest.mark.parametrize("exc, needle", [
    (PermissionError(13, "Permission denied", "/data/out.nir"), "spikestack: error: /data/out.nir: Permission denied"),
    (IsADirectoryError(21, "Is a directory", "/data/x"), "spikestack: error: /data/x: Is a directory"),
    (OSError(28, "No space left on device"), "spikestack: error: No space left on device"),
    (MemoryError(), "spikestack: error: out of memory"),
    (RecursionError("maximum recursion depth exceeded"), "spikestack: error: recursion limit exceeded"),
])
def test_machine_errors_are_one_line_and_debug_shows_them(monkeypatch, capsys, exc, needle):
    def boom(args):
        raise exc

    monkeypatch.setitem(cli.COMMANDS, "targets", boom)
    assert _refused(capsys, ["targets"]).startswith(needle)
    with pytest.raises(type(exc)):
        main(["targets", "--debug"])  # --debug after the subcommand
    with pytest.raises(type(exc)):
        main(["--debug", "targets"])


def test_debug_after_the_subcommand_shows_the_traceback(tmp_path):
    from spikestack.errors import ArtifactError

    with pytest.raises(ArtifactError, match="not an artifact directory"):
        main(["run", str(tmp_path / "missing"), "--debug"])


# ----------------------------------------------------------------------------------------- targets and profiles
def _target(tmp_path: Path, old: str, new: str) -> Path:
    assert old in GENERIC_TARGET
    path = tmp_path / "bad.toml"
    path.write_text(GENERIC_TARGET.replace(old, new))
    return path


@pytest.mark.parametrize("old, new, needles", [
    ("state_bits = 24", "state_bits = 1", ("[numerics] state_bits = 1", "8..32")),
    ("state_bits = 24", "state_bits = 200", ("[numerics] state_bits = 200", "8..32")),
    ("state_bits = 24", "state_bits = nan", ("[numerics] state_bits", "integer in 8..32", "nan")),
    ("state_bits = 24", "state_bits = 24.0", ("[numerics] state_bits", "integer in 8..32", "24.0")),
    ("mesh_x = 4", "mesh_x = 1000000000", ("[chip] mesh_x = 1000000000", "1..4096")),
    ("mesh_x = 4", "mesh_x = 1e9", ("[chip] mesh_x", "integer", "1000000000.0")),
    ("mesh_x = 4", "mesh_x = true", ("[chip] mesh_x", "integer", "True")),
    ("mesh_x = 4\nmesh_y = 4", "mesh_x = 100\nmesh_y = 100", ("100 x 100 = 10000 tiles", "4096")),
    ("cores = 64", "cores = 5000", ("[chip] cores = 5000", "1..4096")),
    ("cores_per_tile = 4", "cores_per_tile = 0", ("[chip] cores_per_tile = 0", "1..64")),
    ("weight_mantissa_bits = 8", "weight_mantissa_bits = 0", ("weight_mantissa_bits = 0", "1..32")),
    ("max_payload_bits = 24", "max_payload_bits = 33", ("max_payload_bits = 33", "1..32")),
    ("max_neurons = 64", "max_neurons = -64", ("[core] max_neurons = -64", "1..1048576")),
    ('name = "generic"', 'name = "../../x"', ("name = '../../x'", "plain name", "never a path")),
    ('default_profile = "loihi1_sanafe_calibrated"', 'default_profile = "/etc/passwd"', ("default_profile",)),
    ("[chip]", "chip = 3\n[chipx]", ("chip must be a [chip] table",)),
    ('neuron_models = ["cuba_lif", "programmable"]', 'neuron_models = ["hodgkin"]', ("neuron_models", "hodgkin")),
    ("[numerics]", "[numerics\n", ("not valid TOML",)),
])
def test_bad_target_files_are_refused_by_key(built, tmp_path, capsys, old, new, needles):
    target = _target(tmp_path, old, new)
    art = tmp_path / "art"
    start = time.perf_counter()
    _refused(capsys, ["compile", str(built / "tiny.nir"), "--target", str(target), "-o", str(art)],
             str(target), *needles)
    assert time.perf_counter() - start < 5.0  # refused at load, not after placing a huge mesh
    assert not art.exists()


def test_target_names_are_never_paths(built, tmp_path, capsys):
    _refused(capsys, ["compile", str(built / "tiny.nir"), "--target", "../../x", "-o", str(tmp_path / "a")],
             "target '../../x'", "not a target name")
    bad = tmp_path / "latin1.toml"
    bad.write_bytes(b'name = "caf\xe9"\n')
    _refused(capsys, ["compile", str(built / "tiny.nir"), "--target", str(bad), "-o", str(tmp_path / "a")],
             "latin1.toml: not valid TOML")
    folder = tmp_path / "dir.toml"
    folder.mkdir()
    _refused(capsys, ["compile", str(built / "tiny.nir"), "--target", str(folder), "-o", str(tmp_path / "a")],
             "dir.toml: not a target file")
    assert not (tmp_path / "a").exists()


@pytest.mark.parametrize("old, new, needles", [
    ("synaptic_op = 35.5", "synaptic_op = nan", ("[energy_pj] synaptic_op = nan", "not a finite number")),
    ("synaptic_op = 35.5", "synaptic_op = inf", ("[energy_pj] synaptic_op = inf", "not a finite number")),
    ("synaptic_op = 35.5", "synaptic_op = -35.5", ("[energy_pj] synaptic_op = -35.5", "outside 0..1e+09")),
    ("hop = 5.3", "hop = -inf", ("[time_ns] hop = -inf",)),
    ('synaptic_op = 3.8', 'synaptic_op = "fast"', ("[time_ns] synaptic_op", "must be a number", "'fast'")),
    ("tiles = [1, 2, 4, 29]", "tiles = [1, 4, 2, 29]", ("[barrier_ns] tiles", "strictly increasing")),
    ("time = [600.0, 1000.0, 1400.0, 1800.0]", "time = [600.0, nan, 1400.0, 1800.0]", ("[barrier_ns] time[1]",)),
    ("assumption = true", 'assumption = "false"', ("assumption must be true or false",)),
    ('name = "loihi2_assumed"', 'name = "a/b"', ("name = 'a/b'", "plain name")),
    ("[energy_pj]", "[energy_pj\n", ("not valid TOML",)),
])
def test_bad_profile_files_are_refused_by_key(built, tmp_path, capsys, old, new, needles):
    assert LOIHI2_PROFILE.count(old) == 1
    profile = tmp_path / "bad.toml"
    profile.write_text(LOIHI2_PROFILE.replace(old, new))
    out = capsys.readouterr().out
    _refused(capsys, ["simulate", str(built / "art"), "--tokens", "2", "--json", "--profile", str(profile)],
             str(profile), *needles)
    assert "NaN" not in out + capsys.readouterr().out


def test_good_files_still_load_and_json_is_strict(built, tmp_path, capsys):
    assert main(["simulate", str(built / "art"), "--tokens", "2", "--json", "--profile", "horowitz45_fp32"]) == 0
    text = capsys.readouterr().out
    report = json.loads(text, parse_constant=lambda c: pytest.fail(f"non-strict JSON constant {c}"))
    assert report["profile"] == "horowitz45_fp32" and report["latency_s_per_step"] is None
