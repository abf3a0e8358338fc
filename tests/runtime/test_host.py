"""Host programs: the ONNX models compute exactly what the numpy definition computes."""

from dataclasses import replace

import numpy as np
import onnx
from spikestack.compiler import artifact
from spikestack.runtime import host


def test_onnx_host_equals_numpy_definition(program, token_ids):
    assert {h.name for h in program.host_programs} == {"encode", "decode"}
    bare = replace(program, host_programs=())  # falls back to the numpy definition
    np.testing.assert_array_equal(host.encode(program, token_ids), host.encode(bare, token_ids))
    acc = np.random.default_rng(0).integers(-(2**22), 2**22, size=(9, program.populations[-1].size))
    np.testing.assert_array_equal(host.decode(program, acc), host.decode(bare, acc))  # bit-identical doubles


def test_host_models_are_valid_onnx_with_the_expected_ops(program):
    enc = onnx.load_from_string(program.host_program("encode"))
    dec = onnx.load_from_string(program.host_program("decode"))
    onnx.checker.check_model(enc)
    assert [n.op_type for n in enc.graph.node] == ["Gather", "Reshape"]
    assert [n.op_type for n in dec.graph.node] == ["Cast", "Mul", "Div", "Add"]
    assert program.report["host"]["values_in_per_token"] == 6 * 4  # context 2 × emb 3, 4 steps


def test_artifact_stores_and_checks_host_programs(program, tmp_path):
    art = artifact.save(program, tmp_path / "art")
    assert (art / "host" / "encode.onnx").read_bytes() == program.host_program("encode")
    assert artifact.load(art).host_programs == program.host_programs
    (art / "host" / "decode.onnx").write_bytes(b"junk")
    import pytest

    from spikestack.errors import ArtifactError

    with pytest.raises(ArtifactError, match=r"decode\.onnx: sha256 mismatch"):
        artifact.load(art)
