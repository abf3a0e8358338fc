"""A token-timing chain as the smallest hybrid program (compiler/chain_hybrid.py): the hybrid executor on the
lowered program gives the chain executor's integers and logits bit for bit, saturations included."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
from spikestack.compiler import artifact
from spikestack.compiler.chain_hybrid import chain_as_hybrid
from spikestack.compiler.hybrid.compile import verify_hybrid
from spikestack.compiler.kinds import ReadoutLayer
from spikestack.runtime.hybrid.executor import run as run_hybrid
from spikestack.runtime.reference import run as run_chain

import spikestack
from spikestack.errors import CompileError
from spikestack.evaluation import eval_inputs

CKPT = Path(__file__).resolve().parents[2] / "models" / "checkpoints"


@pytest.fixture(scope="module")
def mlp():
    program = spikestack.compile(CKPT / "bispike-mlp.pt", target="loihi2")
    return program, eval_inputs(program, 200).inputs


def _same(chain_program, hybrid_program, ids) -> None:
    """Every spike level, accumulator, logit and saturation count of the two executors equal."""
    a, b = run_chain(chain_program, ids), run_hybrid(hybrid_program, ids)
    assert np.array_equal(a.logits, b.logits) and a.logits.dtype == b.logits.dtype
    assert np.array_equal(a.readout, b.host_tensors["acc"])
    for pop in chain_program.populations[:-1]:
        payloads = b.payloads[pop.name][:, 0].astype(np.int64)  # [T calls, tokens, n]: s · a_t
        levels = payloads // np.asarray(pop.amplitude, np.int64)[:, None, None]
        assert np.array_equal(levels.transpose(1, 0, 2), a.spikes[pop.name]), pop.name
    assert b.saturations == a.saturations  # per population, the readout's included


def test_the_shipped_mlp_is_its_own_hybrid_program(mlp, tmp_path):
    program, ids = mlp
    hybrid = chain_as_hybrid(program)
    verify_hybrid(hybrid)
    assert [la.kind for la in hybrid.layers] == ["bispike", "bispike", "bispike", "readout"]
    assert [la.source for la in hybrid.layers] == [None, "spike1", "spike2", "spike3"]
    assert (hybrid.time_axis, hybrid.steps_per_token, hybrid.readout, hybrid.input_window) == ("steps", 4,
                                                                                                 "last_step", 8)
    assert [p.name for p in hybrid.populations] == [p.name for p in program.populations]  # the chain's cores
    assert hybrid.cores == program.cores
    _same(program, hybrid, ids)
    back = artifact.load(artifact.save(hybrid, tmp_path / "art"))  # a readout layer and windows in the artifact
    assert isinstance(back.layers[-1], ReadoutLayer) and back.input_window == 8
    assert np.array_equal(run_hybrid(back, ids).logits, run_chain(program, ids).logits)


def test_saturating_layers_and_readout_stay_equal(mlp):
    """Weights scaled until bi-spike membranes and the readout's accumulators pass ±state_max: both executors clip
    and count the same places (the readout saturates per step, not only at the token's end)."""
    program, ids = mlp
    scale = {"fc2": 60, "head": 120}
    projections = tuple(dataclasses.replace(p, weight=(np.asarray(p.weight, np.int64) * scale.get(p.name, 1))
                                            .astype(np.int16)) for p in program.projections)
    loud = dataclasses.replace(program, projections=projections)
    a = run_chain(loud, ids)
    assert a.saturations["spike3"] > 0 and a.saturations["head"] > 0  # it does saturate
    assert np.abs(a.readout).max() == loud.state_max
    _same(loud, chain_as_hybrid(loud), ids)


def test_what_is_not_expressible_yet_is_named(mlp):
    program, _ = mlp
    unary = spikestack.compile(CKPT / "bispike-mlp.pt", target="loihi2", encoding="unary")
    with pytest.raises(CompileError, match=r"projection 'fc1': unary events .*graded only"):
        chain_as_hybrid(unary)
    with pytest.raises(CompileError, match="delayed timing"):
        chain_as_hybrid(dataclasses.replace(program, timing="delayed"))
    with pytest.raises(ValueError, match=r"token windows \[tokens, 8\]"):
        run_hybrid(chain_as_hybrid(program), np.zeros((3, 5), np.int64))


def test_both_simulators_count_the_lowered_chain_alike(mlp):
    """The hybrid simulator on the lowered chain counts what the chain simulator counts on the chain, event for
    event, and prices it the same: synaptic ops, spikes, messages, hops, host traffic, neuron updates (a chained
    layer's neurons once, not also as its source's projection cores) and energy. Only the timing models differ
    (per token-step for chains, per call over all positions for hybrid programs: docs/roadmap.md)."""
    from spikestack.simulators.hybrid import simulate_hybrid
    from spikestack.simulators.model import simulate as simulate_chain
    from spikestack.simulators.profiles import load_profile

    program, ids = mlp
    hybrid = chain_as_hybrid(program)
    profile = load_profile(program.target_spec.default_profile)
    a = simulate_chain(program, run_chain(program, ids), profile)
    b = simulate_hybrid(hybrid, run_hybrid(hybrid, ids), profile)
    for key in ("tokens", "sops", "spikes", "messages", "hops", "input_messages", "chip_crossings", "neuron_updates",
                "neuron_updates_active", "host_values_in_per_token", "host_values_out_per_token", "energy_j",
                "energy_per_token_j", "energy_breakdown_j", "firing_rate"):
        assert a[key] == b[key] or (key == "firing_rate" and b[key] == {**a[key], "head": 0.0}), key
    assert a["neuron_updates"] == (128 * 3 + 95) * 4 * len(ids)  # every core's neurons, every step, once


def test_the_torch_chip_runs_the_lowered_chain_bit_for_bit(mlp):
    """The torch chip backend (its readout step included) gives the numpy reference's payloads, accumulators,
    logits and saturations on the lowered chain, as it does on the language models (runtime/hybrid/verify.py)."""
    from spikestack.runtime.hybrid.verify import chip_backend, first_divergence

    program, ids = mlp
    hybrid = chain_as_hybrid(program)
    ref, tor = run_hybrid(hybrid, ids[:64]), run_hybrid(hybrid, ids[:64], chip_backend("torch"))
    assert first_divergence(hybrid, ref, tor, ("reference", "torch")) is None
    assert np.array_equal(ref.logits, tor.logits) and np.array_equal(ref.host_tensors["acc"], tor.host_tensors["acc"])
    assert ref.saturations == tor.saturations
