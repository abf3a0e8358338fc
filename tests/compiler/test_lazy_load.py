"""Lazy artifacts (issue 17): `load` maps big arrays read-only after streaming their sha256, the checks scan them
piece by piece, a mapped program runs bit-identically to the in-memory one, and `save` over a mapped artifact
leaves the mapped program valid."""

import os
from pathlib import Path

import numpy as np
import pytest
from spikestack.compiler import artifact, artifact_files
from spikestack.compiler.artifact_files import chunks, mapping_of, release_pages
from spikestack.compiler.pipeline import compile_graph

from spikestack import api
from spikestack.errors import ArtifactError
from tests.conftest import make_nir_chain

BIG_W = "arrays/proj.fc1.weight.npy"  # int16 [1024, 1024] = 2 MiB of the `chain` fixture: mapped by default


@pytest.fixture(scope="module")
def chain():
    """A chain program with one weight over MAP_MIN_BYTES (fc1) and the rest under it."""
    return compile_graph(make_nir_chain(hidden=1024, emb=512, vocab=64), "loihi2")


@pytest.fixture(scope="module")
def hybrid(tmp_path_factory):
    """spikellm-char-tiny compiled once, and its artifact."""
    program = api.compile(Path("models/checkpoints/spikellm-char-tiny.pt"), "loihi2")
    return program, artifact.save(program, tmp_path_factory.mktemp("lazy") / "hybrid")


def _arrays(program) -> dict[str, np.ndarray]:
    """Every array field of a chain program, by the name the artifact gives it."""
    out = {f"proj.{p.name}.weight": p.weight for p in program.projections}
    out.update({f"pop.{p.name}.thresholds": p.thresholds for p in program.populations if hasattr(p, "thresholds")})
    out["host_input.table"] = program.host_input.table
    return out


def test_big_arrays_are_mapped_read_only_and_equal(tmp_path, chain):
    assert chain.projections[0].weight.nbytes >= artifact_files.MAP_MIN_BYTES > chain.projections[1].weight.nbytes
    loaded = artifact.load(artifact.save(chain, tmp_path / "art"))
    saved, got = _arrays(chain), _arrays(loaded)
    for key, a in saved.items():
        np.testing.assert_array_equal(got[key], a)
        assert got[key].dtype == a.dtype and not got[key].flags.writeable
    mapped = {key for key, a in got.items() if mapping_of(a) is not None}
    assert mapped == {"proj.fc1.weight"}  # the 2 MiB weight; the 14 kB head and the small tables are read
    with pytest.raises(ValueError, match="read-only"):
        loaded.projections[0].weight[0, 0] = 1


def test_every_array_mapped_above_a_lower_threshold(tmp_path, chain, monkeypatch):
    monkeypatch.setattr(artifact_files, "MAP_MIN_BYTES", 1)
    loaded = artifact.load(artifact.save(chain, tmp_path / "art"))
    got = _arrays(loaded)
    assert all(mapping_of(a) is not None for a in got.values())
    for key, a in _arrays(chain).items():
        np.testing.assert_array_equal(got[key], a)


@pytest.mark.parametrize("where", [0.0, 0.5, 1.0])  # first data byte, middle, last byte
def test_flipped_byte_in_a_mapped_array_is_refused(tmp_path, chain, where):
    art = artifact.save(chain, tmp_path / "art")
    f = art / BIG_W
    blob = bytearray(f.read_bytes())
    data_start = len(blob) - chain.projections[0].weight.nbytes
    i = data_start + int(where * (len(blob) - 1 - data_start))
    blob[i] ^= 0x01
    f.write_bytes(bytes(blob))
    with pytest.raises(ArtifactError, match=r"proj\.fc1\.weight\.npy: sha256 mismatch \(corrupt or edited array\)$"):
        artifact.load(art)


def test_truncated_mapped_array_is_refused_before_mapping(tmp_path, chain):
    art = artifact.save(chain, tmp_path / "art")
    f = art / BIG_W
    f.write_bytes(f.read_bytes()[:-2])
    with pytest.raises(ArtifactError, match=r"expected 128 header \+ 2097152 data bytes \(truncated or padded\)"):
        artifact.load(art)


def test_mapped_chain_runs_bit_identically(tmp_path, chain):
    from spikestack.runtime.reference import run

    loaded = artifact.load(artifact.save(chain, tmp_path / "art"))
    assert mapping_of(loaded.projections[0].weight) is not None
    ids = np.random.default_rng(3).integers(0, 64, size=(12, 2))
    want, got = run(chain, ids), run(loaded, ids)
    np.testing.assert_array_equal(got.logits, want.logits)
    np.testing.assert_array_equal(got.readout, want.readout)
    assert got.spikes.keys() == want.spikes.keys()
    for key in want.spikes:
        np.testing.assert_array_equal(got.spikes[key], want.spikes[key])


def test_mapped_hybrid_runs_bit_identically(hybrid, monkeypatch):
    from spikestack.runtime.hybrid.executor import run

    program, art = hybrid
    monkeypatch.setattr(artifact_files, "MAP_MIN_BYTES", 1)  # the tiny model's arrays are all under 1 MiB
    loaded = artifact.load(art)
    weights = [la.projection.weight for la in loaded.layers if la.projection is not None]
    assert weights and all(mapping_of(w) is not None for w in weights)
    assert all(w.strides != (0, 0) for w in weights)  # the verifier's stand-ins never reach the program
    ids = np.random.default_rng(4).integers(0, program.vocab_size, size=(2, 6))
    want, got = run(program, ids), run(loaded, ids)
    np.testing.assert_array_equal(got.logits, want.logits)
    assert got.payloads.keys() == want.payloads.keys() and want.payloads
    for key in want.payloads:
        np.testing.assert_array_equal(got.payloads[key], want.payloads[key])


def test_odd_mantissa_in_a_mapped_weight_fails_the_verifier(hybrid, tmp_path, monkeypatch):
    """The piecewise pre-check hands a failing weight to the verifier unchanged: its own message."""
    import hashlib
    import json
    import shutil

    _, built = hybrid
    art = Path(shutil.copytree(built, tmp_path / "art"))
    monkeypatch.setattr(artifact_files, "MAP_MIN_BYTES", 1)
    m = json.loads((art / "manifest.json").read_text())
    key = next(k for k in m["arrays"] if k.endswith(".weight"))
    f = art / m["arrays"][key]["file"]
    w = np.load(f)
    w.reshape(-1)[-1] += 1  # the last entry: the last piece of the scan
    np.save(f, w)
    m.pop("content_sha256")
    m["arrays"][key]["sha256"] = hashlib.sha256(f.read_bytes()).hexdigest()
    m["content_sha256"] = hashlib.sha256(artifact._canonical(m)).hexdigest()
    (art / "manifest.json").write_bytes(artifact._canonical(m))
    with pytest.raises(ArtifactError, match=r"fails the compiler's verifier: chip layer .*: weight mantissas must be "
                                            r"even"):
        artifact.load(art)


def test_save_over_a_mapped_artifact(tmp_path, chain):
    """`save` renames the old folder away and deletes it; the mapped files' inodes live on while mapped."""
    art = artifact.save(chain, tmp_path / "art")
    old_inode = os.stat(art / BIG_W).st_ino
    loaded = artifact.load(art)
    before = np.array(loaded.projections[0].weight)  # a copy, to compare after the swap
    other = compile_graph(make_nir_chain(seed=9, hidden=1024, emb=512, vocab=64), "loihi2")
    assert not np.array_equal(other.projections[0].weight, before)
    artifact.save(other, art)
    assert os.stat(art / BIG_W).st_ino != old_inode and [p.name for p in tmp_path.iterdir()] == ["art"]
    np.testing.assert_array_equal(loaded.projections[0].weight, before)  # still the old file's bytes
    release_pages(loaded.projections[0].weight)  # faulted back in from the unlinked inode
    np.testing.assert_array_equal(loaded.projections[0].weight, before)
    np.testing.assert_array_equal(artifact.load(art).projections[0].weight, other.projections[0].weight)


def test_chunks_cover_the_array_in_order_and_release_keeps_values(tmp_path):
    a = np.arange(5000, dtype=np.int32).reshape(50, 100)
    np.save(tmp_path / "a.npy", a)
    mapped, mapping = artifact_files.map_npy(tmp_path / "a.npy", a.dtype, a.shape)
    pieces = list(chunks(mapped, chunk_bytes=4096))  # 1,024 int32 per piece
    assert [p.size for p in pieces] == [1024, 1024, 1024, 1024, 904]
    np.testing.assert_array_equal(np.concatenate(pieces), a.reshape(-1))
    release_pages(mapped)
    np.testing.assert_array_equal(mapped, a)
    assert mapping_of(a) is None and mapping_of(mapped)[0] is mapping
