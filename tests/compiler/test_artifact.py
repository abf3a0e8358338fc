"""Artifact format: deterministic, hashed, atomic, and loud about corruption."""

import json

import numpy as np
import pytest
from spikestack.compiler import artifact
from spikestack.compiler.pipeline import compile_graph

from spikestack.errors import ArtifactError
from tests.conftest import make_nir_chain


def _tree(path):
    return {p.relative_to(path).as_posix(): p.read_bytes() for p in sorted(path.rglob("*")) if p.is_file()}


def test_same_input_byte_identical(tmp_path):
    a = artifact.save(compile_graph(make_nir_chain(), "loihi2"), tmp_path / "a")
    b = artifact.save(compile_graph(make_nir_chain(), "loihi2"), tmp_path / "b")
    assert _tree(a) == _tree(b)
    assert _tree(a) != _tree(artifact.save(compile_graph(make_nir_chain(seed=5), "loihi2"), tmp_path / "c"))


def test_round_trip_preserves_program(tmp_path, program):
    loaded = artifact.load(artifact.save(program, tmp_path / "art"))
    assert loaded.cores == program.cores and loaded.steps == program.steps
    for p, q in zip(program.projections, loaded.projections, strict=False):
        np.testing.assert_array_equal(p.weight, q.weight)
        assert p.weight.dtype == q.weight.dtype and p.message_bits == q.message_bits
    np.testing.assert_array_equal(loaded.pop("s2").thresholds, program.pop("s2").thresholds)


def test_corrupt_array_is_detected(tmp_path, program):
    art = artifact.save(program, tmp_path / "art")
    f = art / "arrays" / "proj.fc1.weight.npy"
    blob = bytearray(f.read_bytes())
    blob[-1] ^= 0xFF
    f.write_bytes(bytes(blob))
    with pytest.raises(ArtifactError, match=r"proj\.fc1\.weight\.npy: sha256 mismatch"):
        artifact.load(art)


def test_edited_manifest_and_version_are_detected(tmp_path, program):
    art = artifact.save(program, tmp_path / "art")
    m = json.loads((art / "manifest.json").read_text())
    m["steps"] = 9
    (art / "manifest.json").write_text(json.dumps(m))
    with pytest.raises(ArtifactError, match="content hash mismatch"):
        artifact.load(art)
    m["version"] = 99
    (art / "manifest.json").write_text(json.dumps(m))
    with pytest.raises(ArtifactError, match="artifact version 99"):
        artifact.load(art)
    with pytest.raises(ArtifactError, match="missing"):
        artifact.load(tmp_path / "nowhere")


def test_failed_save_leaves_nothing(tmp_path, program, monkeypatch):
    def boom(*a, **k):
        raise OSError("disk full")

    monkeypatch.setattr(artifact, "_canonical", boom)
    with pytest.raises(OSError):
        artifact.save(program, tmp_path / "art")
    assert list(tmp_path.iterdir()) == []


def test_lif_program_round_trips(tmp_path):
    from tests.conftest import make_lif_graph

    program = compile_graph(make_lif_graph(second="LI", delay_steps=np.arange(12) % 3), "loihi1")
    loaded = artifact.load(artifact.save(program, tmp_path / "art"))
    assert loaded.timing == "delayed"
    assert [(p.name, p.du, p.dv, p.vth) for p in loaded.populations] == \
        [(p.name, p.du, p.dv, p.vth) for p in program.populations]
    assert [p.neuron for p in loaded.populations] == ["LIF", "LI"]
    np.testing.assert_array_equal(loaded.projections[1].delay, program.projections[1].delay)
    assert loaded.host_input == program.host_input
