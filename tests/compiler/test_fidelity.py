"""Weight grid of host-read projections (compiler/hybrid/quantize.py `fitted_mantissas`) and the fidelity it buys:
the compiled SpikeLLM's bits per character within 1 % of its float model on the shipped text and on another text."""

from __future__ import annotations

import dataclasses
import functools
import inspect
from pathlib import Path

import numpy as np
import pytest
from spikestack.compiler.hybrid.quantize import fitted_mantissas, mantissas
from spikestack.compiler.targets import load_target

LOIHI2 = load_target("loihi2")  # 8-bit mantissas: q_max = 127


def test_fitted_grid_by_hand():
    w = np.array([[1.0, -0.5, 0.3]])
    m, step = fitted_mantissas(w, 1, "p", LOIHI2)
    assert step == 1.0 / 127  # the peak takes the largest mantissa
    # 2·rint(W·127): 127, −63.5 → −64 (half to even), 38.1 → 38
    assert m.tolist() == [[254, -128, 76]]
    m2, e2 = mantissas(w, 1, "p", LOIHI2)  # the power-of-two grid: 2^ceil(log2(1/127)) = 2^-6
    assert e2 == -6 and m2.tolist() == [[128, -64, 38]]  # 64, −32, 19.2 → 19


def test_fitted_grid_keeps_the_accumulator_bound():
    """Four weights 1.0, payload 1000, a 20-bit state (max 2^19 − 1 = 524,287): the fitted mantissas 254 sum to
    4·254·1000 = 1,016,000 > 524,287, so the step doubles: rint(63.5) = 64, 4·128·1000 = 512,000 fits."""
    target = dataclasses.replace(LOIHI2, state_bits=20)
    m, step = fitted_mantissas(np.ones((1, 4)), 1000, "p", target)
    assert step == 2.0 / 127 and m.tolist() == [[128] * 4]


def test_zero_weights():
    m, step = fitted_mantissas(np.zeros((2, 3)), 1, "p", LOIHI2)
    assert step == 1.0 and not m.any()


@functools.cache
def _spikellm():
    from spikestack.models.nir.export import model_to_nir

    from spikestack import api
    from spikestack.demo_lm import CHECKPOINTS

    graph = model_to_nir("spikellm", CHECKPOINTS / "spikellm-char-tiny.pt")
    return graph, api.compile(graph, "loihi2")


def test_compiled_projections_use_the_fitted_grid():
    """Every GIF projection: mantissas 2·rint(W/step) with step = peak/127 (no accumulator near the bound in this
    model), the host's unit step/2, and the report's weight error below the power-of-two grid's."""
    graph, program = _spikellm()
    grid = program.report["weight_grid"]
    assert len(grid) == 14  # 2 layers × (q, k, v, o, gate, up, down)
    for la in program.layers:
        p = la.projection
        w = np.asarray(graph.nodes[p.name].weight, np.float64)
        step = np.abs(w).max() / 127
        assert p.unit == pytest.approx(step / 2, rel=1e-12)
        assert np.array_equal(np.asarray(p.weight), 2 * np.rint(w / (2 * p.unit)).astype(np.int64))
        assert grid[p.name]["rel_rms"] < grid[p.name]["rel_rms_pow2"]
    # measured: the power-of-two grid's errors are 0.0098–0.0226 of ‖W‖, the fitted grid's 0.0080–0.0142
    assert max(g["rel_rms"] for g in grid.values()) < 0.015 < max(g["rel_rms_pow2"] for g in grid.values())


def _other_text(tmp_path: Path) -> Path:
    """A different text than the shipped docs: the stdlib's argparse source, lines the 95-character vocabulary
    can encode (it has no '$')."""
    import argparse

    lines = [ln for ln in inspect.getsource(argparse).splitlines() if "$" not in ln and ln.isascii()]
    path = tmp_path / "argparse.txt"
    path.write_text("\n".join(lines)[:60_000] + "\n")
    return path


@pytest.mark.parametrize("other", [False, True])
def test_spikellm_within_one_percent(other, tmp_path):
    """2048 next-character predictions (32 windows of 64): compiled BPC within 1 % of the float model's. Measured
    with the fitted grid: +0.47 % (shipped) and +0.17 % (argparse); the power-of-two grid gave +0.13 % and −0.06 %
    with a larger divergence (KL 0.066 / 0.094 bits against 0.063 / 0.087); the standard error of the relative
    difference at this length is ≈ 0.5 % (window-to-window spread), so 1 % is two of them."""
    from spikestack import api
    from spikestack.demo_lm import _float_logits
    from spikestack.evaluation import bpc, eval_inputs

    graph, program = _spikellm()
    text = _other_text(tmp_path) if other else None
    result = api.run(program, tokens=2048, text=text)
    inputs = eval_inputs(program, 2048, text)  # the same windows `run` read
    float_bpc = bpc(_float_logits(graph, inputs.inputs), inputs.targets)
    compiled_bpc = bpc(result.trace.logits, inputs.targets)
    assert abs(compiled_bpc - float_bpc) / float_bpc < 0.01
