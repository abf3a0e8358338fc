"""The dataflow fold with a real-valued embedding (compiler/hybrid/fold.py; issue 13 item 4): the shipped
SpikeGPT checkpoint's weights with `binary_embedding` off, so LN0(e) is dense and real, as in SpikeGPT-216M."""

from __future__ import annotations

import dataclasses
import functools
from pathlib import Path

import numpy as np
import pytest
import torch
from spikestack.compiler.hybrid.compile import compile_hybrid
from spikestack.compiler.hybrid.cut import plan_cut
from spikestack.compiler.hybrid.fold import EMBED_PAYLOAD_BITS, embed_grid
from spikestack.models.data import load_corpus
from spikestack.models.nir.export import model_to_nir
from spikestack.models.nir.export_spikegpt import spikegpt_to_nir
from spikestack.models.nir.to_torch import nir_to_module, run_tokens
from spikestack.models.spikegpt import load_checkpoint

CKPT = Path(__file__).resolve().parents[2] / "models" / "checkpoints" / "spikegpt-char-2x64.pt"
RELAYS = {f"blocks.{i}.{n}" for i in (0, 1) for n in ("att_key", "att_value", "att_receptance", "ffn_key",
                                                        "ffn_receptance")} | {"head"}


@functools.cache
def real_graph():
    model = load_checkpoint(CKPT)[0]
    model.cfg = dataclasses.replace(model.cfg, binary_embedding=False)
    graph = spikegpt_to_nir(model.double().eval())
    assert not np.all(np.isin(np.asarray(graph.nodes["emb"].weight), (0.0, 1.0)))  # the table is real now
    return graph


def calib_ids() -> np.ndarray:
    return load_corpus().val_ids[:48].reshape(3, 16)


@functools.cache
def real_program(target: str = "loihi2", encoding: str | None = None):
    return compile_hybrid(real_graph(), target, calib_ids(), dataflow=True, encoding=encoding)


def test_every_linear_of_the_stream_folds_with_a_real_embedding():
    plan = plan_cut(real_graph(), dataflow=True)
    folds = {la.neuron: la.fold for la in plan.layers if la.kind == "relay"}
    assert set(folds) == RELAYS
    assert all(f.real_embedding and f.normed == "blocks.0.ln0" for f in folds.values())
    head = folds["head"]
    assert head.bound_s == 4 and 127 < head.bound_e <= 2**EMBED_PAYLOAD_BITS - 1  # u uses the 8-bit range
    assert "blocks.0.ln1" not in plan.order


def test_embed_grid_is_the_smallest_power_of_two_covering_every_channel():
    graph = real_graph()
    norm, table = graph.nodes["blocks.0.ln0"], np.asarray(graph.nodes["emb"].weight)
    grid = embed_grid(norm, table)
    a = norm.reference(table.astype(np.float64))
    u = np.round(a / grid.step).astype(np.int64) - grid.offset
    assert u.min() == 0 and u.max() == grid.levels <= 255
    span = (a.max(0) - a.min(0)).max()
    assert span / grid.step <= 254 < span / (grid.step / 2)  # half the step would not fit 8 bits
    assert np.abs(a - (u + grid.offset) * grid.step).max() <= grid.step / 2 + 1e-12


def test_real_embedding_program_is_bit_exact_and_within_reported_error():
    """Reference (numpy) and torch chips agree on every payload and logit; the logits stay within the error the
    calibration report states for the model's layers (compile --calibrate), and close to the float model."""
    from spikestack.runtime.hybrid.calibration import layer_errors
    from spikestack.runtime.hybrid.executor import run
    from spikestack.runtime.hybrid.verify import verify

    prog = real_program()
    assert sum(la.kind == "relay" for la in prog.layers) == 11
    ids = load_corpus().val_ids[2000:2000 + 3 * 33].reshape(3, 33)
    traces, problems = verify(prog, ids[:1, :8], ("torch", "reference"))
    assert problems == []
    np.testing.assert_array_equal(traces["torch"].logits, traces["reference"].logits)
    with torch.no_grad():
        ref = run_tokens(nir_to_module(real_graph(), dtype=torch.float64), torch.as_tensor(ids[:, :-1])).numpy()
    got = run(prog, ids[:, :-1]).logits
    report = layer_errors(real_graph(), prog, ids[:, :-1])
    assert set(report) == {f"blocks.{i}.lif{k}" for i in (0, 1) for k in (1, 2)}
    # a flipped spike is the only error a LIF layer has. Measured on the shipped checkpoint (retrained at 800 steps,
    # #16): 4.2 %, 4.6 %, 26.9 %, 10.7 % of spikes flipped; the binary-embedding fold of the same weights 2.8 %,
    # 3.4 %, 13.5 %, 7.6 %: the embedding's 8-bit rounding at most doubles the flips of the deepest layer
    assert all(r["max_abs"] <= 1.0 and r["saturations"] == 0 for r in report.values())
    assert max(r["rel_mean"] for r in report.values()) < 0.3, report
    # the embedding's rounding adds little to the weights' 8-bit mantissas: logits about as close to the float
    # model as the binary-embedding fold's are to theirs (measured 12.3 % vs 10.5 % mean relative error on the
    # 800-step checkpoint; 7.6 % vs 7.1 % on the earlier 400-step one)
    binary = model_to_nir("spikegpt", CKPT)
    with torch.no_grad():
        ref_b = run_tokens(nir_to_module(binary, dtype=torch.float64), torch.as_tensor(ids[:, :-1])).numpy()
    got_b = run(compile_hybrid(binary, "loihi2", calib_ids(), dataflow=True), ids[:, :-1]).logits
    rel, rel_b = (np.abs(a - b).mean() / np.abs(b).mean() for a, b in ((got, ref), (got_b, ref_b)))
    assert rel < 1.25 * rel_b and rel < 0.15, (rel, rel_b)
    assert (ref.argmax(-1) == got.argmax(-1)).mean() >= 0.8  # measured 0.85 (binary fold: 0.95)


@pytest.mark.parametrize("encoding", ["bitserial"])
def test_binary_planes_carry_the_unsigned_embedding_payload(encoding):
    """u is unsigned (offset), so Loihi 1's bit-serial planes carry it: same logits as graded, bit for bit."""
    from spikestack.runtime.hybrid.executor import run

    ids = load_corpus().val_ids[300:324].reshape(2, 12)
    binary = real_program(encoding=encoding)
    assert {la.projection.encoding for la in binary.layers if la.kind == "relay"} == {encoding}
    np.testing.assert_array_equal(run(binary, ids).logits, run(real_program(), ids).logits)
