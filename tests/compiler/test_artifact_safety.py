"""Artifacts are untrusted input: `load` checks the manifest field by field, confines and bounds every file, and
runs the verifier; `save` never destroys what it did not write and survives crashes and races (issue #11)."""

import dataclasses
import hashlib
import json
import os
import pickle
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from spikestack.compiler import artifact, artifact_output, artifact_schema, ir
from spikestack.compiler.hybrid import ir as hir
from spikestack.compiler.kinds import KINDS

from spikestack import api
from spikestack.cli import main
from spikestack.errors import ArtifactError

CHAIN_W = "arrays/proj.fc1.weight.npy"  # int16 [128, 128] of the bispike-mlp checkpoint
HEAD_W = "arrays/proj.head.weight.npy"  # int16 [95, 128]
GROUPS = "arrays/proj.model.layers.0.self_attn.k_proj.groups.npy"  # int8 [64] of spikellm-char-tiny


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """One chain, one hybrid and one delayed-timing (LIF) artifact per module; tests edit copies."""
    from spikestack.compiler.pipeline import compile_graph

    from tests.conftest import make_lif_graph

    root = tmp_path_factory.mktemp("built")
    api.save(api.compile(Path("models/checkpoints/bispike-mlp.pt"), "loihi2"), root / "chain")
    api.save(api.compile(Path("models/checkpoints/spikellm-char-tiny.pt"), "loihi2"), root / "hybrid")
    artifact.save(compile_graph(make_lif_graph(delay_steps=np.arange(12) % 3), "loihi1"), root / "lif")
    return root


def _copy(built, kind, tmp_path):
    return Path(shutil.copytree(built / kind, tmp_path / kind, symlinks=True))


def _rehash(art, edit):
    """Edit the manifest and re-hash it, as someone forging an artifact would."""
    m = json.loads((art / "manifest.json").read_text())
    m.pop("content_sha256")
    edit(m)
    m["content_sha256"] = hashlib.sha256(artifact._canonical(m)).hexdigest()
    (art / "manifest.json").write_bytes(artifact._canonical(m))


def _replace_file(art, rel, blob):
    """Write a file and fix its sha256 in the manifest (and the content hash)."""
    (art / rel).write_bytes(blob)

    def edit(m):
        for entry in [*m["arrays"].values(), *m.get("host_programs", []), *m.get("stages", [])]:
            if entry["file"] == rel:
                entry["sha256"] = hashlib.sha256(blob).hexdigest()
    _rehash(art, edit)


def _npy(a, **kw):
    import io
    buf = io.BytesIO()
    np.save(buf, a, **kw)
    return buf.getvalue()


def _load_error(art):
    with pytest.raises(ArtifactError) as exc:
        artifact.load(art)
    msg = str(exc.value)
    assert "\n" not in msg
    return msg


def _cli_error(capsys, *args):
    assert main([*map(str, args)]) == 2
    out, err = capsys.readouterr()
    assert out == "" and "Traceback" not in err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("spikestack: error: ")
    return lines[0]


# ------------------------------------------------------------------------------------------ manifest parsing
@pytest.mark.parametrize("text, says", [
    ("[]", "top level is a JSON array, not an object"), ("null", "JSON null"), ("3", "JSON number"),
    ('{"format": NaN}', "NaN is not a JSON number"), ('{"x": -Infinity}', "-Infinity is not a JSON number"),
    ('{"x": 1e400}', "1e400 overflows"), ("[" * 100_000, "corrupt JSON"), ('{"x": "\\ud800', "corrupt JSON"),
])
def test_malformed_manifest_is_one_line(built, tmp_path, capsys, text, says):
    art = _copy(built, "chain", tmp_path)
    (art / "manifest.json").write_text(text)
    msg = _load_error(art)
    assert msg.startswith(f"{art / 'manifest.json'}: ") and says in msg
    assert says in _cli_error(capsys, "inspect", art)


def test_manifest_bytes_and_nesting_are_capped(built, tmp_path, monkeypatch):
    art = _copy(built, "chain", tmp_path)
    _rehash(art, lambda m: m["report"].update(deep=json.loads("[" * 80 + "]" * 80)))
    assert "nested deeper than 64 levels" in _load_error(art)
    monkeypatch.setattr(artifact, "MANIFEST_MAX_BYTES", 100)
    assert "manifest.json: manifest is" in _load_error(art) and "bytes, more than the limit of 100" in _load_error(art)
    (art / "manifest.json").write_bytes(b"\xff\xfe{}")
    assert "corrupt JSON" in _load_error(art)


@pytest.mark.parametrize("make, says", [
    (lambda p: p.mkdir(), "manifest is a folder, not a regular file"),
    (lambda p: os.mkfifo(p), "manifest is a FIFO, not a regular file"),  # and does not hang
    (lambda p: os.symlink("/dev/zero", p), "is or lies behind a symbolic link"),
])
def test_manifest_that_is_not_a_file(built, tmp_path, capsys, make, says):
    art = _copy(built, "chain", tmp_path)
    (art / "manifest.json").unlink()
    make(art / "manifest.json")
    assert says in _load_error(art)
    assert says in _cli_error(capsys, "run", art, "--tokens", "1")


def test_not_an_artifact_folder(tmp_path):
    assert _load_error(tmp_path / "nowhere") == f"{tmp_path / 'nowhere'}: not an artifact directory (missing)"
    (tmp_path / "file").write_text("x")
    assert "not an artifact directory (a file)" in _load_error(tmp_path / "file")
    assert "manifest.json: missing" in _load_error(tmp_path)


# ------------------------------------------------------------------------------------------ manifest schema
@pytest.mark.parametrize("kind, edit, says", [
    ("chain", lambda m: m.update(steps=-3), "steps = -3; allowed: an integer in 1..1048576"),
    ("chain", lambda m: m.update(steps=10**12), "steps = 1000000000000; allowed: an integer in 1..1048576"),
    ("chain", lambda m: m.update(steps=True), "steps = true; allowed: an integer"),
    ("chain", lambda m: m["target_spec"].update(state_bits=0), "target_spec.state_bits = 0 is outside 8..32"),
    ("chain", lambda m: m["target_spec"].update(activation_shift=17), "target_spec.activation_shift = 17 is "
                                                                      "outside 0..16 (Loihi shifts inputs"),
    ("chain", lambda m: m["target_spec"].update(activation_shift=True), "target_spec.activation_shift must be an "
                                                                        "integer in 0..16, got True"),
    ("chain", lambda m: m["target_spec"].pop("decay_bits"), "target_spec.decay_bits is missing"),
    ("chain", lambda m: m["target_spec"].update(path="/tmp/x.toml"), "target_spec.path is not a target field"),
    ("chain", lambda m: m["target_spec"].update(name="../x"), "target_spec.name = '../x' must be a plain name"),
    ("chain", lambda m: m["target_spec"].update(neuron_models=["magic"]), "target_spec.neuron_models must be a "
                                                                          "non-empty list drawn from"),
    ("chain", lambda m: m.update(target_spec="loihi2"), 'target_spec = "loihi2"; allowed: an object with the fields'),
    ("chain", lambda m: m.update(target="loihi1"), 'target = "loihi1"; allowed: "loihi2", the name of target_spec'),
    ("hybrid", lambda m: m["target_spec"].update(mesh_x=100, mesh_y=100),
     "target_spec.mesh_x x mesh_y = 100 x 100 = 10000 tiles exceeds 4096 per chip"),
    ("hybrid", lambda m: m["target_spec"].update(state_bits=12, activation_shift=11),
     "target_spec.activation_shift = 11 leaves no threshold bits in the 12-bit state (at most state_bits - 2 = 10)"),
    ("lif", lambda m: m["target_spec"].update(decay_bits=11),  # du = 4095 was compiled for 12-bit decays
     "populations[0].du = 4095; allowed: an integer in 0..2047 (decay_bits = 11 of target loihi1)"),
    ("lif", lambda m: m["target_spec"].update(activation_shift=14),  # vth = 256, 512 compiled for a 6-bit shift
     "populations[1].vth = 512; allowed: an integer in 1..511 (vth << activation_shift must fit the 24-bit state"),
    ("chain", lambda m: m.pop("steps"), "steps is missing; required: an integer in 1..1048576"),
    ("chain", lambda m: m.update(kind="other"), 'kind = "other"; allowed: one of chain, hybrid'),
    ("chain", lambda m: m.update(populations=[]), "populations = []; allowed: a list of 1..1048576 items"),
    ("chain", lambda m: m.update(cores=[]), "cores = []; allowed: a list of 1..1048576 items"),
    ("chain", lambda m: m["populations"][1].update(name=5), "populations[1].name = 5; allowed: a plain name"),
    ("chain", lambda m: m["populations"][1].update(name="a\nb"), 'populations[1].name = "a\\nb"; allowed: a plain'),
    ("chain", lambda m: m["populations"][0].update(evil=1), "populations[0].evil is not a field here"),
    ("chain", lambda m: m["populations"][0].update(kind="x"), 'populations[0].kind = "x"; allowed: one of "bispike"'),
    ("chain", lambda m: m.update(input_pop="nope"), 'input_pop = "nope"; allowed: null or the name of a population'),
    ("chain", lambda m: m["projections"][0].update(dst="head"), 'projections[0].weight = {"array": "proj.fc1.weight"};'
                                                                " allowed: an array of shape [95, 128]"),
    ("chain", lambda m: m.update(steps=5), "populations[0].thresholds = "),  # the arrays stay [4, 1]
    ("chain", lambda m: m["cores"][0].update(index=99), "cores[0].index = 99; allowed: a core index in 0..3"),
    ("chain", lambda m: m["cores"][0].update(pop="nope"), 'cores[0].pop = "nope"; allowed: the name of a population'),
    ("chain", lambda m: m["cores"][0].update(hi=129), "cores[0].hi = 129; allowed: lo (0) < hi <= 128"),
    ("chain", lambda m: m["cores"][0].update(hi=64), "fails the compiler's verifier: layer 'spike1': cores"),
    ("chain", lambda m: m["arrays"]["proj.fc1.weight"].update(dtype="object"), 'arrays["proj.fc1.weight"].dtype = '
                                                                                '"object"; allowed: one of "int8"'),
    ("chain", lambda m: m["arrays"]["proj.fc1.weight"].update(shape=[1 << 40, 1 << 40]), "allowed: at most"),
    ("chain", lambda m: m["arrays"]["proj.fc1.weight"].update(file="../../etc/passwd"), 'file = "../../etc/passwd"'
                                                                                         "; allowed: a relative path"),
    ("chain", lambda m: m["arrays"]["proj.fc1.weight"].update(file="/etc/passwd"), "allowed: a relative path"),
    ("chain", lambda m: m["host_programs"][0].update(file="host/../../x.onnx"), "host_programs[0].file = "),
    ("chain", lambda m: m["report"].update(layers=[]), "report.layers = []; allowed: an object of objects"),
    ("chain", lambda m: m["report"].update(calibration={"tokens": 2, "layers": {"fc1": {"mean_abs_error": "x"}}}),
     'report.calibration.layers.fc1.mean_abs_error = "x"; allowed: a number'),
    ("hybrid", lambda m: m.update(layers=[]), "layers = []; allowed: a list of 1..1048576 items"),
    ("hybrid", lambda m: m.update(stages=m["stages"][:1]), "stages = "),
    ("hybrid", lambda m: m.update(time_axis="weird"), 'time_axis = "weird"; allowed: one of "tokens"'),
    ("hybrid", lambda m: m.update(steps_per_token=4), "steps_per_token = 4; allowed: 1 (time_axis 'sequence')"),
    ("hybrid", lambda m: m.update(vocab_size=0), "vocab_size = 0"),
    ("hybrid", lambda m: m["layers"][0].update(steps=0), "layers[0].steps = 0; allowed: an integer in 1.."),
    ("hybrid", lambda m: m["layers"][0].update(segment=99), "layers[0].segment = 99; allowed: a segment in 0..7"),
    ("hybrid", lambda m: m["layers"][0].update(source="nope"), 'layers[0].source = "nope"; allowed: another chip'),
    # a layer carries exactly its kind's fields (a GIF layer here): another kind's is refused, a missing own one named
    ("hybrid", lambda m: m["layers"][0].update(du=4095), "layers[0].du is not a field here; allowed: bias, in_unit"),
    ("hybrid", lambda m: m["layers"][0].update(kind="lif"), "layers[0].du is missing; required: an integer in 0.."),
    ("hybrid", lambda m: m["layers"][0].update(kind="neuron"), 'layers[0].kind = "neuron"; allowed: one of "bispike"'),
    ("hybrid", lambda m: m["stages"][1].update(index=5), "stages[1].index = 5; allowed: 1, the stage's position"),
    ("hybrid", lambda m: m.update(input_name="ids"), "fails the compiler's verifier: host stage 0: input 'input'"),
    ("hybrid", lambda m: m["report"].update(calibration={"positions": 1, "layers": {"x": {}}}),
     "report.calibration.layers.x.max_abs is missing"),
])
def test_schema_violation_names_the_field(built, tmp_path, kind, edit, says):
    art = _copy(built, kind, tmp_path)
    _rehash(art, edit)
    msg = _load_error(art)
    assert msg.startswith(f"{art / 'manifest.json'}: ") and says in msg, msg


def test_schema_lists_every_dataclass_field():
    """Adding a field to the IR without teaching the schema fails here, not at load time in the field."""
    def names(spec):
        return {*spec.required, *spec.optional}

    chain, hybrid = artifact_schema.CHAIN.required, artifact_schema.HYBRID
    pops = chain["populations"].item.variants
    for cls, kind in ((ir.QSpikingPop, "bispike"), (ir.QReadoutPop, "readout"), (ir.QLIFPop, "lif")):
        assert names(pops[kind]) == {f.name for f in dataclasses.fields(cls)}
    hosts = chain["host_input"].variants
    assert names(hosts["embedding"]) == {f.name for f in dataclasses.fields(ir.QHostInput)}
    assert names(hosts["spikes"]) == {f.name for f in dataclasses.fields(ir.QSpikeInput)}
    assert names(chain["projections"].item) == {f.name for f in dataclasses.fields(ir.QProjection)}
    assert names(chain["cores"].item) == {f.name for f in dataclasses.fields(ir.Core)}
    layers = {**hybrid.required, **hybrid.optional}["layers"].item.variants
    assert set(layers) == set(KINDS)
    for kind, layer in layers.items():  # exactly the kind's layer class's fields
        assert names(layer) == {f.name for f in dataclasses.fields(KINDS[kind].layer_type)}
        assert names(layer.optional["projection"].inner) == {f.name for f in dataclasses.fields(hir.QChipProjection)}
    stage = hybrid.required["stages"].item
    assert names(stage) == {f.name for f in dataclasses.fields(hir.HostStage)} - {"onnx"} | {"file", "sha256"}
    assert names(hybrid.required["states"].item) == {f.name for f in dataclasses.fields(hir.StateSpec)}
    header = {"format", "version", "kind", "arrays", "content_sha256"}
    assert names(hybrid) == {f.name for f in dataclasses.fields(hir.HybridProgram)} | header
    assert names(artifact_schema.CHAIN) == {f.name for f in dataclasses.fields(ir.Program)} | header


# ------------------------------------------------------------------------------------------------- files
@pytest.mark.parametrize("make, says", [
    (lambda p: os.symlink("/dev/zero", p), "array is or lies behind a symbolic link"),
    (lambda p: os.mkfifo(p), "array is a FIFO, not a regular file"),
    (lambda p: p.mkdir(), "array is a folder, not a regular file"),
    (lambda p: None, "missing array"),
])
def test_array_file_that_is_not_a_regular_file(built, tmp_path, capsys, make, says):
    art = _copy(built, "chain", tmp_path)
    (art / CHAIN_W).unlink()
    make(art / CHAIN_W)
    assert _load_error(art).startswith(f"{art / CHAIN_W}: {says}")
    assert says in _cli_error(capsys, "simulate", art, "--tokens", "1")


def test_arrays_folder_symlinked_elsewhere(built, tmp_path):
    art = _copy(built, "chain", tmp_path)
    shutil.move(art / "arrays", tmp_path / "elsewhere")
    os.symlink(tmp_path / "elsewhere", art / "arrays")
    assert "is or lies behind a symbolic link" in _load_error(art)


@pytest.mark.parametrize("blob, says", [
    (lambda a: _npy(a[:8].astype(object), allow_pickle=True), "header says object [8, 128], the manifest int16"),
    (lambda a: _npy(a)[:-10], "truncated or padded"),
    (lambda a: _npy(a) + b"\0" * 10, "truncated or padded"),
    (lambda a: _npy(a) + b"\0" * 20_000, "more than the 32768 bytes of int16 [128, 128] plus a .npy header"),
    (lambda a: _npy(a[:64]), "header says int16 [64, 128]"),
    (lambda a: _npy(a[:, :64].astype(np.int32)), "header says int32 [128, 64]"),
    (lambda a: _npy(np.asfortranarray(a)), "header says int16 [128, 128] Fortran order, the manifest int16"),
    (lambda a: b"\x93NUMPY\x01\x00" + b"\xff" * 200, "not a valid .npy file"),
])
def test_npy_header_is_checked_before_the_data(built, tmp_path, blob, says):
    art = _copy(built, "chain", tmp_path)
    _replace_file(art, CHAIN_W, blob(np.load(art / CHAIN_W)))
    assert _load_error(art).startswith(f"{art / CHAIN_W}: ") and says in _load_error(art)


def test_edited_weight_fails_the_verifier(built, tmp_path):
    art = _copy(built, "chain", tmp_path)
    w = np.load(art / CHAIN_W).copy()
    w[0, 0] = 3
    _replace_file(art, CHAIN_W, _npy(w))
    assert "verifier: projection 'fc1': weights must be even integers in [-254, 254]" in _load_error(art)


def test_garbage_onnx_is_refused_by_inspect_and_run(built, tmp_path, capsys):
    art = _copy(built, "chain", tmp_path)
    _replace_file(art, "host/decode.onnx", b"\x08\x07garbage that protobuf may half-parse")
    assert _load_error(art).startswith(f"{art / 'host/decode.onnx'}: not a valid ONNX model")
    for cmd in (["inspect"], ["run", "--tokens", "1"]):
        assert "decode.onnx: not a valid ONNX model" in _cli_error(capsys, cmd[0], art, *cmd[1:])


def test_onnx_with_other_inputs_is_refused(built, tmp_path):
    art = _copy(built, "chain", tmp_path)
    _replace_file(art, "host/encode.onnx", (art / "host/decode.onnx").read_bytes())
    assert "encode.onnx: ONNX inputs ['acc'] differ from the manifest's ['ids']" in _load_error(art)
    hyb = _copy(built, "hybrid", tmp_path)
    _replace_file(hyb, "host/stage001.onnx", (hyb / "host/stage002.onnx").read_bytes())
    assert "stage001.onnx: ONNX inputs" in _load_error(hyb)


def test_array_values_the_verifiers_leave_open(built, tmp_path):
    hyb = _copy(built, "hybrid", tmp_path)
    _replace_file(hyb, GROUPS, _npy(np.full(64, 7, np.int8)))
    assert "layers[0].projection.groups = 7; allowed: accumulator group of every input: every value in 0..1" \
        in _load_error(hyb)
    lif = _copy(built, "lif", tmp_path)
    _replace_file(lif, "arrays/proj.linear.delay.npy", _npy(np.full((4, 12), 100, np.int64)))
    assert "projections[1].delay = 100; allowed: Lava's 6-bit synaptic delay" in _load_error(lif)
    _replace_file(lif, "arrays/pop.lif.bias_exp.npy", _npy(np.full(12, -1, np.int32)))
    assert "populations[0].bias_exp = -1" in _load_error(lif)


def test_shipped_artifacts_load(built):
    assert isinstance(artifact.load(built / "chain"), ir.Program)
    assert isinstance(artifact.load(built / "hybrid"), hir.HybridProgram)
    assert artifact.load(built / "lif").timing == "delayed"


# ------------------------------------------------------------------------------------- outputs never destroy
def _entries(folder):
    return sorted(p.name for p in folder.iterdir())


@pytest.fixture(scope="module")
def small_program():
    from spikestack.compiler.pipeline import compile_graph

    from tests.conftest import make_nir_chain

    return compile_graph(make_nir_chain(), "loihi2")


def test_save_refuses_what_it_did_not_write(built, tmp_path, small_program, capsys):
    fake = tmp_path / "fake"
    fake.mkdir()
    (fake / "manifest.json").write_text('{"format": "spikestack-artifact"}')
    (fake / "thesis.tex").write_text("years of work")
    with pytest.raises(ArtifactError, match=f"{fake}: exists and is not a complete spikestack artifact"):
        artifact.save(small_program, fake)
    assert _entries(fake) == ["manifest.json", "thesis.tex"]
    extra = _copy(built, "chain", tmp_path)
    (extra / "notes.txt").write_text("mine")
    with pytest.raises(ArtifactError, match="it holds notes.txt, which is not part of the artifact"):
        artifact.save(small_program, extra)
    (tmp_path / "file").write_text("x")
    with pytest.raises(ArtifactError, match="exists and is not a spikestack artifact"):
        artifact.save(small_program, tmp_path / "file")
    os.symlink(built / "chain", tmp_path / "link")
    with pytest.raises(ArtifactError, match="is a symbolic link; refusing to replace it"):
        artifact.save(small_program, tmp_path / "link")
    assert "refusing" in _cli_error(capsys, "compile", "models/checkpoints/bispike-mlp.pt", "-o", fake,
                                    "--calibrate", "0")
    assert (fake / "thesis.tex").read_text() == "years of work"


def test_save_replaces_a_complete_artifact_and_leaves_nothing_else(tmp_path, small_program):
    out = tmp_path / "art"
    artifact.save(small_program, out)
    before = (out / "manifest.json").read_bytes()
    artifact.save(small_program, out)
    assert (out / "manifest.json").read_bytes() == before and _entries(tmp_path) == ["art"]


def test_crash_mid_write_keeps_the_previous_artifact(tmp_path, small_program, monkeypatch):
    out = artifact.save(small_program, tmp_path / "art")
    manifest = (out / "manifest.json").read_bytes()

    def interrupted(*a, **k):
        raise KeyboardInterrupt

    monkeypatch.setattr(artifact, "_save_npy", interrupted)
    with pytest.raises(KeyboardInterrupt):
        artifact.save(small_program, out)
    assert _entries(tmp_path) == ["art"] and (out / "manifest.json").read_bytes() == manifest
    artifact.load(out)


def _dead_pid():
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_killed_compile_leftovers_are_removed_and_foreign_folders_kept(tmp_path, small_program):
    out = tmp_path / "art"
    script = ("import os, pickle, signal, sys\nfrom spikestack.compiler import artifact\n"
              "artifact._save_npy = lambda *a: os.kill(os.getpid(), signal.SIGKILL)\n"
              "artifact.save(pickle.load(open(sys.argv[1], 'rb')), sys.argv[2])\n")
    (tmp_path / "p.pkl").write_bytes(pickle.dumps(small_program))
    proc = subprocess.run([sys.executable, "-c", script, str(tmp_path / "p.pkl"), str(out)], cwd=os.getcwd())
    assert proc.returncode == -9
    leftover = [p for p in tmp_path.iterdir() if p.name.startswith(".art.")]
    assert len(leftover) == 1 and (leftover[0] / artifact_output.MARKER).exists() and not out.exists()
    (tmp_path / ".art.users").mkdir()  # no marker: not ours
    live = artifact_output.new_temp(out)  # our own live pid, fresh: another compile still writing
    artifact.save(small_program, out)
    assert _entries(tmp_path) == sorted([".art.users", live.name, "art", "p.pkl"])
    artifact.load(out)


def test_lock_held_by_a_live_writer_and_an_abandoned_lock(tmp_path, small_program):
    out = tmp_path / "art"
    lock = tmp_path / ".art.lock"
    lock.write_text(json.dumps({"pid": os.getpid(), "host": socket.gethostname(), "started": 1e18}))
    with pytest.raises(ArtifactError, match=f"{out}: another compile wrote {out} at the same time"):
        artifact.save(small_program, out)
    assert _entries(tmp_path) == [".art.lock"]
    lock.write_text(json.dumps({"pid": _dead_pid(), "host": socket.gethostname(), "started": 2e9}))
    artifact.save(small_program, out)
    assert _entries(tmp_path) == ["art"]


def test_other_compile_finishing_first_wins(tmp_path, small_program, monkeypatch):
    out = tmp_path / "art"
    real, calls = artifact._save_npy, []

    def racing(a, path):
        if not calls:  # while this save writes, another compile finishes the same output
            calls.append(1)
            monkeypatch.setattr(artifact, "_save_npy", real)
            artifact.save(small_program, out)
            monkeypatch.setattr(artifact, "_save_npy", racing)
        return real(a, path)

    monkeypatch.setattr(artifact, "_save_npy", racing)
    with pytest.raises(ArtifactError, match=f"another compile wrote {out} at the same time"):
        artifact.save(small_program, out)
    assert _entries(tmp_path) == ["art"]
    artifact.load(out)


def test_concurrent_processes_end_with_one_valid_artifact(tmp_path, small_program):
    out = tmp_path / "out" / "art"
    (tmp_path / "p.pkl").write_bytes(pickle.dumps(small_program))
    script = ("import os, pickle, sys, time\nfrom spikestack.compiler import artifact\n"
              "from spikestack.errors import ArtifactError\nprogram = pickle.load(open(sys.argv[1], 'rb'))\n"
              "save_npy = artifact._save_npy\n"  # slow writes, so that the four compiles overlap
              "artifact._save_npy = lambda a, p: time.sleep(0.05) or save_npy(a, p)\n"
              "while not os.path.exists(sys.argv[3]): time.sleep(0.001)\n"
              "try:\n    artifact.save(program, sys.argv[2])\nexcept ArtifactError as exc:\n"
              "    print(exc); sys.exit(3)\n")
    go = tmp_path / "go"
    procs = [subprocess.Popen([sys.executable, "-c", script, str(tmp_path / "p.pkl"), str(out), str(go)],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(4)]
    go.write_text("")
    results = [(p.wait(timeout=120), p.stdout.read(), p.stderr.read()) for p in procs]
    assert all(rc in (0, 3) and "Traceback" not in err for rc, _, err in results), results
    assert any(rc == 0 for rc, _, _ in results)
    assert all("another compile wrote" in msg for rc, msg, _ in results if rc == 3), results
    assert _entries(out.parent) == ["art"]
    artifact.load(out)
