"""The speed-ups for compiling SpikeGPT-216M the user's way (issue 13 item 6) change no byte of what is compiled:
the host stages exported with the dry run's outputs are the ONNX of a fresh run of every stage, and the faster
checks of models/nir/nodes.py refuse what the old ones refused."""

from __future__ import annotations

import math
import os
import re
from pathlib import Path

import numpy as np
import pytest
import torch
from spikestack.compiler.hybrid import host_export, host_stages
from spikestack.compiler.hybrid.compile import compile_hybrid
from spikestack.models.data import load_corpus
from spikestack.models.nir.builder import to_numpy
from spikestack.models.nir.export import model_to_nir
from spikestack.models.nir.io import check_finite
from spikestack.models.nir.nodes import MAX_MAGNITUDE, _in_range

from spikestack.errors import NIRFormatError

CKPT = Path(__file__).resolve().parents[2] / "models" / "checkpoints"
CASES = [("spikegpt", "spikegpt-char-2x64", False), ("spikegpt", "spikegpt-char-2x64", True),
         ("spikelm-dec", "spikelm-dec-tiny", False), ("spikellm", "spikellm-char-tiny", False)]


@pytest.mark.parametrize(("family", "name", "dataflow"), CASES)
def test_host_onnx_is_the_onnx_of_a_fresh_run_of_each_stage(family, name, dataflow, monkeypatch):
    """Every stage's ONNX bytes (and the KV-cache program's) with the dry run's outputs reused equal those of the
    old path, which ran each stage once more before exporting it."""
    graph = model_to_nir(family, CKPT / f"{name}.pt")
    ids = load_corpus().val_ids[:48].reshape(3, 16)
    reused: list[int] = []
    outputs = host_stages.TracedStage.outputs

    def counting(self, stage, args):
        got = outputs(self, stage, args)
        reused.append(got is not None)
        return got

    monkeypatch.setattr(host_stages.TracedStage, "outputs", counting)
    fast = compile_hybrid(graph, "loihi2", ids, dataflow=dataflow)
    monkeypatch.setattr(host_stages.TracedStage, "outputs", lambda self, stage, args: None)  # always run again
    slow = compile_hybrid(graph, "loihi2", ids, dataflow=dataflow)
    assert all(reused) and len(reused) == len(fast.stages) + len(fast.decode_stages) >= 3
    for a, b in zip((*fast.stages, *fast.decode_stages), (*slow.stages, *slow.decode_stages), strict=True):
        assert a.onnx == b.onnx and (a.inputs, a.outputs) == (b.inputs, b.outputs)


@pytest.mark.parametrize("child", ["works", "fails"])
def test_two_process_export_gives_the_serial_bytes(child, monkeypatch):
    """A forked child exporting half the stages (forced on a small model) gives the bytes of the one-process
    export; a child that fails leaves its stages to this process, with the same result."""
    graph = model_to_nir("spikegpt", CKPT / "spikegpt-char-2x64.pt")
    ids = load_corpus().val_ids[:48].reshape(3, 16)
    serial = compile_hybrid(graph, "loihi2", ids, dataflow=True)
    monkeypatch.setattr(host_export, "PARALLEL_MIN_WEIGHTS", 0)
    # earlier tests in the same process may leave a thread behind (the export then stays in one process, by design)
    monkeypatch.setattr(host_export, "_alone", lambda: True)
    forks: list[int] = []
    fork = os.fork
    monkeypatch.setattr(host_export.os, "fork", lambda: forks.append(1) or fork())
    if child == "fails":  # only the child calls it: it dies before sending a frame
        monkeypatch.setattr(host_export, "_child_start", lambda: 1 / 0)
    parallel = compile_hybrid(graph, "loihi2", ids, dataflow=True)
    assert forks == [1] and len(parallel.stages) == len(serial.stages) >= 3
    assert [s.onnx for s in parallel.stages] == [s.onnx for s in serial.stages]
    assert host_export._split([5.0, 1.0, 1.0, 4.0, 2.0]) == ([0, 1, 2], [3, 4])  # 7 against 6


def test_traced_outputs_only_for_the_values_the_dry_run_read():
    """Different inputs (another value, dtype or shape) mean the stage runs again: None."""

    class Stage:
        inputs, outputs = ["x"], ["y"]

    x = torch.arange(4.0)
    traced = host_stages.TracedStage(read={"x": x}, wrote={"y": x * 2})
    assert torch.equal(traced.outputs(Stage(), (x.clone(),))[0], torch.tensor([0.0, 2.0, 4.0, 6.0]))
    for other in (x + 1, x.double(), x[None]):
        assert traced.outputs(Stage(), (other,)) is None


@pytest.mark.parametrize("dtype", [np.float64, np.float32, np.int64, np.int8])
def test_in_range_refuses_what_the_mask_check_refused(dtype):
    ok = np.arange(-5, 6).astype(dtype)
    _in_range(ok, "n", "weight")
    _in_range(ok[:0], "n", "weight")  # empty: nothing to check
    if np.dtype(dtype).kind == "f":
        for bad in (math.nan, math.inf, -math.inf):
            for where in (0, 5, 10):
                broken = ok.copy()
                broken[where] = bad
                with pytest.raises(NIRFormatError, match="'weight' holds NaN or inf"):
                    _in_range(broken, "n", "weight")
        big = ok.copy()
        big[3] = -2 * MAX_MAGNITUDE
        with pytest.raises(NIRFormatError, match=re.escape(f"holds {2 * MAX_MAGNITUDE:.3g}, beyond")):
            _in_range(big, "n", "weight")
    elif dtype is np.int8:
        _in_range(np.array([-128, 127], dtype), "n", "w")  # |−128| is 128 (np.abs would wrap it to −128)
    else:
        with pytest.raises(NIRFormatError, match=re.escape("holds 2e+09, beyond")):
            _in_range(np.array([3, -2_000_000_000], dtype), "n", "w")


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.float64, torch.bfloat16])
def test_to_numpy_is_the_exact_float64_copy(dtype):
    t = (torch.randn(7, 5, generator=torch.Generator().manual_seed(0)) * 3).to(dtype)
    a = to_numpy(t)
    assert a.dtype == np.float64 and a.flags.c_contiguous and a.flags.writeable
    assert np.array_equal(a, t.double().numpy()) and not np.shares_memory(a, t.numpy() if dtype != torch.bfloat16
                                                                          else a[:0])


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
def test_check_finite_names_the_node_and_field(bad):
    graph = model_to_nir("spikegpt", CKPT / "spikegpt-char-2x64.pt")
    check_finite(graph)  # the shipped graph is finite
    weight = graph.nodes["head"].weight
    weight[5, 3], old = bad, weight[5, 3]
    try:
        with pytest.raises(NIRFormatError, match="node 'head': field 'weight' holds NaN or inf"):
            check_finite(graph)
    finally:
        weight[5, 3] = old
